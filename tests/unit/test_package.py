"""The deployment zip (scripts/package.py, ``make package``): the app and its runtime dependencies only.

The zip is built once per session the way ``make package`` builds it (pip installs requirements.txt
for Linux x86-64 CPython 3.11; the installed tree is cached in .build/deps-<hash>, so only the first
run downloads anything).
"""

from __future__ import annotations

import importlib.util
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = ".python_packages/lib/site-packages/"
DEV_TOOLS = ("pytest", "ruff", "mypy", "uvicorn", "hypothesis", "schemathesis", "httpx", "pycep_parser", "checkov")


def _load_package_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_script", REPO / "scripts" / "package.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


package = _load_package_script()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _requirements() -> set[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return {_normalise(line.split("==")[0]) for line in lines if line.strip() and not line.startswith("#")}


@pytest.fixture(scope="session")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    output = tmp_path_factory.mktemp("package") / "function.zip"
    package.build(output, cache=REPO / ".build")
    with zipfile.ZipFile(output) as archive:
        yield archive


def _dists(archive: zipfile.ZipFile) -> set[str]:
    """Normalised names of the distributions installed in the zip."""
    names = set()
    for name in archive.namelist():
        match = re.fullmatch(re.escape(SITE) + r"([^/]+)-[^-/]+\.dist-info/METADATA", name)
        if match:
            names.add(_normalise(match.group(1)))
    return names


class TestZipHoldsTheApp:
    """The app's own files are at the root of the zip, where the Functions host looks for them."""

    def test_entry_point_host_config_requirements_and_package_are_present(self, built_zip: zipfile.ZipFile) -> None:
        names = set(built_zip.namelist())

        expected = {"function_app.py", "host.json", "requirements.txt", "rotation/__init__.py", "rotation/settings.py"}

        assert expected <= names

    def test_app_files_are_byte_identical_to_the_source(self, built_zip: zipfile.ZipFile) -> None:
        shipped = built_zip.read("function_app.py")

        source = (REPO / "function_app.py").read_bytes()

        assert shipped == source


class TestZipHoldsNothingElse:
    """No tests, emulators, benchmarks, demo, docs, infra, scripts, byte code or dev tools ship."""

    def test_every_entry_is_an_app_file_or_a_dependency(self, built_zip: zipfile.ZipFile) -> None:
        app_roots = {"function_app.py", "host.json", "requirements.txt", "rotation"}

        strays = [
            n for n in built_zip.namelist() if not n.startswith(SITE) and PurePosixPath(n).parts[0] not in app_roots
        ]

        assert strays == []

    def test_no_project_folder_other_than_the_app_ships(self, built_zip: zipfile.ZipFile) -> None:
        roots = {PurePosixPath(n).parts[0] for n in built_zip.namelist()}

        unwanted = roots & {"tests", "emulators", "bench", "demo", "docs", "infra", "scripts", ".venv", "node_modules"}

        assert unwanted == set()

    def test_no_byte_code_or_markdown(self, built_zip: zipfile.ZipFile) -> None:
        names = built_zip.namelist()

        compiled = [n for n in names if n.endswith(".pyc") or "/__pycache__/" in n]
        markdown_in_app = [n for n in names if n.endswith(".md") and not n.startswith(SITE)]

        assert compiled == []
        assert markdown_in_app == []

    def test_dependencies_are_requirements_txt_and_never_dev_tools(self, built_zip: zipfile.ZipFile) -> None:
        dists = _dists(built_zip)

        missing = _requirements() - dists
        dev_tools = {t for t in DEV_TOOLS if _normalise(t) in dists}
        top_level = {PurePosixPath(n[len(SITE) :]).parts[0] for n in built_zip.namelist() if n.startswith(SITE)}

        assert missing == set()
        assert dev_tools == set()
        assert not top_level & {"pytest", "_pytest", "ruff", "mypy", "uvicorn", "hypothesis", "httpx", "pycep"}


class TestZipIsBuiltForTheFunctionsWorkers:
    """Compiled extensions are Linux x86-64 builds for CPython 3.11 (or the stable ABI), never this machine's guess."""

    def test_extension_modules_target_linux_x86_64(self, built_zip: zipfile.ZipFile) -> None:
        extensions = [n for n in built_zip.namelist() if n.endswith(".so")]

        foreign = [n for n in extensions if not re.search(r"(cpython-311-x86_64-linux-gnu|abi3)\.so$", n)]

        assert any("pydantic_core" in n for n in extensions)
        assert any("cryptography" in n for n in extensions)
        assert foreign == []


class TestFuncignoreIsHonoured:
    """Files under the app entries that .funcignore excludes are left out of the zip."""

    def test_ignored_patterns_are_left_out(self, tmp_path: Path) -> None:
        for name in ("function_app.py", "host.json", "requirements.txt"):
            (tmp_path / name).write_text("x\n")
        (tmp_path / "rotation" / "__pycache__").mkdir(parents=True)
        (tmp_path / "rotation" / "core.py").write_text("x = 1\n")
        (tmp_path / "rotation" / "NOTES.md").write_text("notes\n")
        (tmp_path / "rotation" / "secret.local").write_text("nope\n")
        (tmp_path / "rotation" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\0")
        (tmp_path / ".funcignore").write_text("# comment\n*.md\nrotation/secret.local\n")

        files = package.app_files(tmp_path)

        assert [f.as_posix() for f in files] == ["function_app.py", "host.json", "requirements.txt", "rotation/core.py"]


class TestPackageCommand:
    """`make package` (scripts/package.py) writes the zip and prints its size; rebuilding is byte-identical."""

    def test_prints_path_entries_and_size_and_is_reproducible(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        output = tmp_path / "out" / "function.zip"

        package.main(["--output", str(output), "--app-only"])
        first = output.read_bytes()
        package.main(["--output", str(output), "--app-only"])
        printed = capsys.readouterr().out

        assert re.search(r"package: wrote .*function\.zip: \d+ entries, \d+\.\d MiB \(\d+ bytes\)", printed)
        assert f"({len(first)} bytes)" in printed
        assert output.read_bytes() == first
