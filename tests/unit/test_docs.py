"""What the docs name exists: links, repo paths, make targets, CLI commands, modules, settings, events, routes.

The README and every page under docs/ are read as Markdown. A relative link must resolve to a file
(and a heading, when it names one); a backticked path inside the repo must exist; ``make X`` must be
a Makefile target; ``python -m rotation ...`` (or ``cmk-rotation ...``) must parse as a CLI command
with options that command accepts; ``python -m M`` must name a module; every ``ROTATION_*`` setting
must be read by the app; the runbook's log events must be emitted somewhere in ``rotation/``; the
functions and HTTP routes of docs/reference.md must be the app's.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
PLACEHOLDER = re.compile(r"[<>*{}$]|\.\.\.")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Page:
    path: Path
    text: str

    @property
    def name(self) -> str:
        return str(self.path.relative_to(REPO)) if self.path.is_relative_to(REPO) else self.path.name

    @property
    def prose(self) -> str:
        """The page without its fenced code blocks."""
        return FENCE.sub("", self.text)

    def code_spans(self) -> list[str]:
        return INLINE.findall(self.prose)

    def code_lines(self) -> list[str]:
        """Lines of fenced code blocks, with shell comments and continuations removed."""
        lines: list[str] = []
        for block in FENCE.findall(self.text):
            for line in block.splitlines()[1:-1]:
                lines.append(line.split("  #", 1)[0].rstrip(" \\"))
        return lines

    def commands(self) -> list[str]:
        """Everything on the page that may be a command: code spans and code-block lines."""
        return [*self.code_spans(), *self.code_lines()]


@cache
def pages() -> tuple[Page, ...]:
    return tuple(Page(p, p.read_text()) for p in PAGES)


def page(name: str) -> Page:
    return next(p for p in pages() if p.name == name)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


@cache
def tracked_top_level() -> frozenset[str]:
    """The repo's top-level files and folders, as git tracks them (not what a build or a test left behind)."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return frozenset(line.split("/", 1)[0] for line in listed.splitlines() if line)


def repo_paths(spans: list[str]) -> Iterator[str]:
    """Code spans that name a path inside the repo (first segment is tracked at the top), placeholders excluded."""
    top = tracked_top_level()
    for span in spans:
        candidate = span.strip().split(" ", 1)[0] if span.count(" ") else span.strip()
        first = candidate.split("/", 1)[0]
        if ("/" in candidate or candidate in top) and first in top and not PLACEHOLDER.search(candidate):
            yield candidate


@cache
def make_targets() -> frozenset[str]:
    text = (REPO / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, re.M))


def make_invocations(command: str) -> list[str]:
    return re.findall(r"(?:^|[;&|]\s*)make\s+((?:[a-z][\w-]*\s*)+)", command)


@cache
def cli_parser() -> argparse.ArgumentParser:
    from rotation.cli import build_parser

    return build_parser()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def cli_problem(invocation: str) -> str | None:
    """Why ``invocation`` (the words after ``python -m rotation``) is not a CLI command, or None."""
    words = [w.strip("[]|,") for w in invocation.split()]
    parser = cli_parser()
    accepted = options(parser)
    path: list[str] = []
    for word in words:
        if not word or word.startswith("#"):
            break
        choices = subcommands(parser)
        if word.startswith("--"):
            if word.split("=", 1)[0] not in accepted:
                return f"{' '.join(path) or '(top level)'} has no option {word}"
        elif choices:
            if word not in choices:
                return f"no command {' '.join([*path, word])!r}; there are {sorted(choices)}"
            parser = choices[word]
            accepted |= options(parser)
            path.append(word)
    if subcommands(parser):
        return f"{' '.join(path) or '(top level)'} needs a subcommand"
    return None


def cli_invocations() -> Iterator[tuple[str, str]]:
    """(page, words after the program name) for every CLI command the docs show."""
    prefix = re.compile(r"(?<![\w-])(?:python -m rotation|cmk-rotation)(?=\s|$)(.*)")
    for p in pages():
        for command in p.commands():
            for match in prefix.finditer(command):
                if match.group(1).strip():  # the bare program name is a mention, not a command
                    yield p.name, match.group(1)
    reference = page("docs/reference.md").text
    cli = reference.split("\n## CLI\n", 1)[1]
    for row in re.findall(r"^\| (`.+?) \| .+ \|$", cli, re.M):
        for span in INLINE.findall(row):
            yield "docs/reference.md (CLI table)", span


def emitted_events() -> set[str]:
    text = "\n".join(p.read_text() for p in (REPO / "rotation").rglob("*.py"))
    return set(re.findall(r"\.(?:debug|info|warning|error|exception|critical)\(\s*\"([a-z][a-z0-9_]*)\"", text))


def table_rows(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def broken_links(p: Page) -> list[str]:
    """Relative links of ``p`` that name no file, or no heading of the file they name."""
    broken = []
    for target in LINK.findall(p.prose):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (p.path.parent / file_part).resolve() if file_part else p.path
        if not resolved.exists():
            broken.append(f"{p.name}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{p.name}: {target} (no heading #{anchor})")
    return broken


class TestFrontDoor:
    """The README stays a front door: short, with the two commands for a fresh machine."""

    def test_readme_is_under_10_kb(self) -> None:
        size = len(page("README.md").text.encode())

        assert size < 10 * 1024

    def test_readme_gives_the_two_commands(self) -> None:
        section = page("README.md").text.split("\n## Two commands\n", 1)[1].split("\n## ", 1)[0]

        commands = [line.split("#", 1)[0].strip() for line in FENCE.findall(section)[0].splitlines()[1:-1]]

        assert commands == ["make demo", "make test"]


class TestLinks:
    """Every relative link in the README and docs/ resolves to a file, and to a heading when it names one."""

    def test_relative_links_resolve(self) -> None:
        links = sum(len(LINK.findall(p.prose)) for p in pages())

        broken = [problem for p in pages() for problem in broken_links(p)]

        assert links > 30
        assert broken == []

    def test_a_missing_file_or_heading_is_reported(self, tmp_path: Path) -> None:
        (tmp_path / "b.md").write_text("# Other\n")
        text = "# Title\n\n[a](b.md#other) [b](#title) [c](missing.md) [d](b.md#nope) [e](https://x.test/y)\n"
        (tmp_path / "a.md").write_text(text)

        broken = broken_links(Page(tmp_path / "a.md", text))

        assert [b.split(": ", 1)[1] for b in broken] == ["missing.md (no such file)", "b.md#nope (no heading #nope)"]


class TestNamedThingsExist:
    """Paths, make targets, modules and settings the docs name are in the repo."""

    def test_backticked_repo_paths_exist(self) -> None:
        missing = []
        checked = 0
        for p in pages():
            for path in repo_paths(p.code_spans()):
                checked += 1
                if not (REPO / path.rstrip("/")).exists():
                    missing.append(f"{p.name}: {path}")

        assert checked > 30
        assert missing == []

    def test_only_repo_paths_without_placeholders_are_checked(self) -> None:
        spans = ["rotation/settings.py", "docs/", "Makefile", "rotation/nope.py --flag", "<table>/<YYYY-MM>.jsonl",
                 "Microsoft.Storage/storageAccounts/read", "DIR/endpoints.json", "docs/*.md", "plan.py"]  # fmt: skip

        named = list(repo_paths(spans))

        assert named == ["rotation/settings.py", "docs/", "Makefile", "rotation/nope.py"]
        assert not (REPO / "rotation/nope.py").exists()

    def test_make_targets_exist(self) -> None:
        missing = []
        named = set()
        for p in pages():
            for command in p.commands():
                for targets in make_invocations(command):
                    for target in targets.split():
                        named.add(target)
                        if target not in make_targets():
                            missing.append(f"{p.name}: make {target}")

        assert {"demo", "test"} <= named
        assert missing == []

    def test_python_modules_exist(self) -> None:
        missing = []
        for p in pages():
            for command in p.commands():
                for module in re.findall(r"python -m ([\w.]+)", command):
                    if importlib.util.find_spec(module) is None:
                        missing.append(f"{p.name}: python -m {module}")

        assert missing == []

    def test_settings_are_read_by_the_app(self) -> None:
        source = "\n".join(p.read_text() for p in (REPO / "rotation").rglob("*.py"))
        named = {s for p in pages() for s in re.findall(r"\bROTATION_[A-Z0-9_]+\b", p.text)}

        unknown = sorted(s for s in named if f'"{s}"' not in source)

        assert len(named) > 15
        assert unknown == []

    def test_every_setting_the_app_declares_is_documented(self) -> None:
        source = (REPO / "rotation" / "settings.py").read_text()
        declared = set(re.findall(r"\"(ROTATION_[A-Z0-9_]+)\"", source))
        rows = table_rows(page("docs/configuration.md").text, "| setting | default | meaning |")
        table = "\n".join(r[0] for r in rows)

        undocumented = sorted(s for s in declared if f"`{s}`" not in table)

        assert len(declared) > 15
        assert undocumented == []


class TestCommands:
    """Every CLI command the docs show parses, with options its subcommand accepts."""

    def test_cli_commands_parse(self) -> None:
        invocations = list(cli_invocations())

        problems = [f"{name}: {words.strip()!r}: {why}" for name, words in invocations if (why := cli_problem(words))]

        assert len(invocations) > 10
        assert problems == []

    @pytest.mark.parametrize(
        ("words", "problem"),
        [
            ("rotate --key URI --force", "rotate has no option --force"),
            ("audit lst", "no command 'audit lst'"),
            ("audit", "audit needs a subcommand"),
        ],
    )
    def test_the_checker_refuses_what_the_cli_refuses(self, words: str, problem: str) -> None:
        why = cli_problem(words)

        assert why is not None
        assert why.startswith(problem)


class TestReference:
    """The functions, routes and log events the reference and runbook name are the app's own."""

    def test_trigger_functions_exist(self) -> None:
        from tests.functions_host import functions

        text = page("docs/reference.md").text
        named = {row[0].strip("`") for row in table_rows(text, "| function | trigger | does |")}

        assert named
        assert named <= set(functions())

    def test_http_routes_exist(self) -> None:
        from rotation.api.app import create_app

        paths = create_app().openapi()["paths"]
        routes = {(method.upper(), re.sub(r"\{[^}]+\}", "{}", path)) for path, ops in paths.items() for method in ops}
        text = page("docs/reference.md").text
        named = set()
        for row in table_rows(text, "| method and path | answers |"):
            method = "GET"
            for span in INLINE.findall(row[0]):
                found = re.match(r"(?:(GET|POST|PUT|PATCH|DELETE) )?(/api/[^?\s]*)", span)
                if found:
                    method = found.group(1) or method
                    named.add((method, re.sub(r"\{[^}]+\}", "{}", found.group(2))))

        assert len(named) >= 7
        assert named <= routes, sorted(named - routes)

    def test_runbook_covers_every_rotation_status(self) -> None:
        from rotation.domain.model import RotationStatus

        text = page("docs/runbook.md").text
        documented = [row[0].strip("`") for row in table_rows(text, "| status | means | what to do |")]

        assert sorted(documented) == sorted(s.value for s in RotationStatus)

    def test_runbook_events_are_emitted(self) -> None:
        text = page("docs/runbook.md").text
        named = {e for row in table_rows(text, "| event | level | when | look at |") for e in INLINE.findall(row[0])}

        assert len(named) > 40
        assert sorted(named - emitted_events()) == []
