"""Build the deployment zip of the Function app: ``python scripts/package.py`` (``make package``).

What ships: ``function_app.py``, ``host.json``, ``requirements.txt`` and ``rotation/`` (less anything
``.funcignore`` excludes), plus the dependencies of ``requirements.txt`` only, installed for Linux
x86-64 CPython 3.11 into ``.python_packages/lib/site-packages`` (the layout the Functions host loads
pre-built packages from, so no remote build is needed). Tests, emulators, benchmarks, the demo,
docs, infra and dev tools never ship.

The installed dependencies are cached in ``.build/deps-<hash of requirements.txt>``; a second build
only re-zips. Prints the zip's path, entry count and size.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
APP_ENTRIES = ("function_app.py", "host.json", "requirements.txt", "rotation")
SITE_PACKAGES = PurePosixPath(".python_packages/lib/site-packages")
# Wheels for the Functions Linux workers: manylinux2014 (glibc 2.17) and manylinux_2_28 tags.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
PYTHON_VERSION = "3.11"
# A fixed timestamp keeps the zip byte-identical across builds of the same inputs.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def funcignore_patterns(repo: Path = REPO) -> list[str]:
    """The patterns of ``.funcignore`` (gitignore-like: blank lines and comments skipped)."""
    path = repo / ".funcignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def is_ignored(relative: PurePosixPath, patterns: list[str]) -> bool:
    """True when any part of ``relative``, or the whole path, matches a ``.funcignore`` pattern."""
    for pattern in patterns:
        anchored = pattern.lstrip("/")
        if fnmatch.fnmatch(relative.as_posix(), anchored):
            return True
        if "/" not in anchored and any(fnmatch.fnmatch(part, anchored) for part in relative.parts):
            return True
        if relative.as_posix().startswith(anchored + "/"):
            return True
    return False


def app_files(repo: Path = REPO, patterns: list[str] | None = None) -> list[PurePosixPath]:
    """The app's own files that ship, relative to the repo, sorted."""
    patterns = funcignore_patterns(repo) if patterns is None else patterns
    files: list[PurePosixPath] = []
    for entry in APP_ENTRIES:
        path = repo / entry
        if not path.exists():
            raise SystemExit(f"package: {entry} is missing")
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for candidate in candidates:
            relative = PurePosixPath(candidate.relative_to(repo).as_posix())
            if not is_ignored(relative, [*patterns, "__pycache__", "*.pyc"]):
                files.append(relative)
    return sorted(files)


def requirements_hash(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(" ".join((*PLATFORMS, PYTHON_VERSION)).encode())
    return digest.hexdigest()[:16]


def install_dependencies(requirements: Path, build: Path) -> Path:
    """Install the requirements for the Functions workers into a cached folder and return it."""
    build.mkdir(parents=True, exist_ok=True)
    target = build / f"deps-{requirements_hash(requirements)}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    argv = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(partial), "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--only-binary=:all:", *(arg for p in PLATFORMS for arg in ("--platform", p)),
        "-r", str(requirements),
    ]  # fmt: skip
    # argv is built here from constants and a path; pip is the build's own interpreter's.
    subprocess.run(argv, check=True)  # noqa: S603
    partial.rename(target)
    (target / ".complete").touch()
    return target


def dependency_files(site_packages: Path) -> Iterator[tuple[Path, PurePosixPath]]:
    """Every installed file, less byte code and the top-level console scripts, as (source, zip name)."""
    for root, dirs, files in os.walk(site_packages):
        relative_root = PurePosixPath(Path(root).relative_to(site_packages).as_posix())
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (relative_root.parts == () and d == "bin"))
        for name in sorted(files):
            if name == ".complete" or name.endswith(".pyc"):
                continue
            yield Path(root) / name, SITE_PACKAGES / relative_root / name


def write_zip(output: Path, repo: Path, files: list[PurePosixPath], site_packages: Path | None) -> int:
    """Write the zip and return its number of entries."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".zip.partial")
    count = 0
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        entries: list[tuple[Path, PurePosixPath]] = [(repo / f, f) for f in files]
        if site_packages is not None:
            entries += list(dependency_files(site_packages))
        for source, name in entries:
            info = zipfile.ZipInfo(name.as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if os.access(source, os.X_OK) else 0o644) << 16
            archive.writestr(info, source.read_bytes())
            count += 1
    partial.replace(output)
    return count


def build(
    output: Path, repo: Path = REPO, with_dependencies: bool = True, cache: Path | None = None
) -> tuple[int, int]:
    """Build the deployment zip; returns (entries, bytes). Dependencies are cached in ``cache``
    (default: the zip's folder)."""
    files = app_files(repo)
    cache = output.parent if cache is None else cache
    site_packages = install_dependencies(repo / "requirements.txt", cache) if with_dependencies else None
    entries = write_zip(output, repo, files, site_packages)
    return entries, output.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=REPO / ".build" / "function.zip", help="zip to write")
    parser.add_argument(
        "--app-only", action="store_true", help="leave the dependencies out (a quick look at the app files)"
    )
    args = parser.parse_args(argv)
    entries, size = build(args.output.resolve(), with_dependencies=not args.app_only)
    shown = args.output.resolve()
    with contextlib.suppress(ValueError):  # outside the working directory: show the absolute path
        shown = shown.relative_to(Path.cwd())
    print(f"package: wrote {shown}: {entries} entries, {size / 1_048_576:.1f} MiB ({size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
