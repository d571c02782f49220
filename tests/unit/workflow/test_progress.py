"""Progress: ``status`` shows consumers done / total per step, elapsed time and what is pending;
``rotate`` and ``status --watch`` show it live: a bar on a terminal, plain lines otherwise, JSON lines
with ``--json``."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest

from rotation.cli import EXIT_OK, main
from rotation.cli.progress import LiveBar, PlainLines, reporter
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import Intent
from rotation.logs import configure_logging
from rotation.service import start_rotation
from rotation.service.views import RotationView
from tests.fakes.estate import KEY, Estate, standard_estate

CLI = Trigger(TriggerKind.CLI, caller="tester")


@pytest.fixture
def estate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    estate, _ = standard_estate()
    monkeypatch.setattr("rotation.cli.rotations._deps", estate.deps)
    configure_logging("json", "INFO", sys.stderr)
    return estate


def _half_done(estate: Estate) -> dict[str, object]:
    """A rotation stopped after moving the storage accounts: workspaces pending, one in flight."""
    view = start_rotation(estate.deps(), KEY.uri, CLI)
    state, _ = estate.journal.load(view.rotation_id)
    workspaces = [c for c in state.consumers if c.kind == "ml_workspace"]
    consumers = tuple(replace(c, status="planned") if c in workspaces else c for c in state.consumers)
    state = replace(
        state,
        status=RotationStatus.RUNNING,
        stage="repoint_workspaces",
        consumers=consumers,
        in_flight=(Intent("set_workspace_key", workspaces[0].resource_id, "v"),),
    )
    return RotationView.from_state(state).to_dict()


class TestStatusShowsProgress:
    def test_done_over_total_per_step_elapsed_and_pending(self, estate: Estate) -> None:
        view = _half_done(estate)

        progress = view["progress"]
        assert isinstance(progress, dict)
        steps = {s["step"]: (s["done"], s["total"]) for s in progress["steps"]}
        assert steps["repoint_storage"] == (3, 3)
        assert steps["repoint_workspaces"] == (0, 2)
        assert progress["in_flight"] == ["ws1"]
        assert progress["pending"] == ["ws1", "ws2"]
        assert progress["elapsed_s"] >= 0

    def test_status_of_one_rotation_prints_progress(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        capsys.readouterr()

        assert main(["status", view.rotation_id]) == EXIT_OK

        out = capsys.readouterr().out
        assert "progress: awaiting_retirement" in out
        assert "repoint_storage 3/3" in out
        assert "repoint_workspaces 2/2" in out


class TestThreeForms:
    def test_plain_lines_when_not_a_terminal(self, estate: Estate) -> None:
        stream = io.StringIO()
        live = reporter(stream, as_json=False)
        assert isinstance(live, PlainLines)

        view = _half_done(estate)
        live.update(view)
        live.update(view)  # unchanged: no second line
        live.close()

        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        assert "repoint_workspaces 0/2" in lines[0]
        assert "in flight: ws1" in lines[0]
        assert "pending: ws1, ws2" in lines[0]
        assert "\x1b[" not in lines[0]

    def test_a_live_bar_on_a_terminal(self, estate: Estate) -> None:
        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        stream = Terminal()
        live = reporter(stream, as_json=False)
        assert isinstance(live, LiveBar)

        live.update(_half_done(estate))
        live.close()

        out = stream.getvalue()
        assert "repoint_workspaces" in out
        assert "0/2" in out
        assert "3/3" in out
        assert "━" in out  # rich's bar

    def test_status_watch_json_lines(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        capsys.readouterr()

        assert main(["--json", "status", "--watch", "--key", KEY.uri]) == EXIT_OK

        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1  # not running: one reading, then it stops
        payload = json.loads(lines[0])
        assert payload["rotation_id"] == view.rotation_id
        assert {s["step"]: s["done"] for s in payload["progress"]["steps"]}["repoint_storage"] == 3

    def test_status_watch_plain(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        capsys.readouterr()

        assert main(["status", "--watch", view.rotation_id]) == EXIT_OK

        out = capsys.readouterr().out
        assert out.startswith("awaiting_retirement  stage cut_over  consumers repoint_storage 3/3")

    def test_watch_needs_a_rotation_or_key(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["status", "--watch"]) == 2
        assert "ROTATION_ID or --key" in capsys.readouterr().err

    def test_rotate_shows_plain_progress_on_stderr_and_the_result_on_stdout(
        self, estate: Estate, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["rotate", "--key", KEY.uri]) == EXIT_OK

        captured = capsys.readouterr()
        assert "rotation: rot-" in captured.out
        progress = [line for line in captured.err.splitlines() if line.startswith("awaiting_retirement  stage")]
        assert progress
        assert "repoint_workspaces 2/2" in progress[-1]
