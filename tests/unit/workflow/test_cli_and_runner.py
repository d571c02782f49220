"""The rotation CLI commands and the ``run_rotation`` queue trigger, over in-memory fakes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import timedelta

import azure.functions as func
import pytest

from rotation import bootstrap
from rotation.cli import EXIT_FAILED, EXIT_OK, main
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.errors import InputError
from rotation.logs import configure_logging
from rotation.service import get_rotation, start_rotation
from rotation.triggers import runner
from tests.fakes.estate import KEY, LOCATION, Estate, rewrap_estate, standard_estate
from tests.functions_host import functions


@pytest.fixture
def estate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    estate, _ = standard_estate()
    monkeypatch.setattr("rotation.cli.rotations._deps", estate.deps)
    configure_logging("json", "INFO", sys.stderr)  # as the CLI does: logs on stderr, results on stdout
    return estate


class TestCli:
    """plan / rotate / status / sweep print tables by default and JSON on request."""

    def test_plan_table(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["plan", "--key", KEY.uri])

        out = capsys.readouterr().out
        assert code == EXIT_OK
        assert "safe to rotate" in out
        assert "pinned1" in out
        assert "unrelated CMK consumers left alone: 2" in out

    def test_rotate_json(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["--json", "rotate", "--key", KEY.uri, "--reason", "drill"])

        payload = json.loads(capsys.readouterr().out)
        assert code == EXIT_OK
        assert payload["status"] == "awaiting_retirement"
        assert payload["reason"] == "drill"
        assert payload["trigger"]["kind"] == "cli"

    def test_dry_run_writes_nothing(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["rotate", "--key", KEY.uri, "--dry-run", "--json"])

        payload = json.loads(capsys.readouterr().out)
        assert code == EXIT_OK
        assert payload["status"] == "dry_run"
        assert estate.journal.writes == 0

    def test_status_and_sweep(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        main(["--json", "rotate", "--key", KEY.uri])
        rotation_id = json.loads(capsys.readouterr().out)["rotation_id"]

        listed = main(["status", "--key", KEY.uri])
        listing = capsys.readouterr().out
        one = main(["status", rotation_id])
        detail = capsys.readouterr().out
        swept = main(["sweep", "--json"])
        report = json.loads(capsys.readouterr().out)

        assert (listed, one, swept) == (EXIT_OK, EXIT_OK, EXIT_OK)
        assert rotation_id in listing
        assert "cut_over" in detail
        assert [i["action"] for i in report["items"]] == ["waiting"]

    def test_plan_table_lists_blob_history(self, capsys: pytest.CaptureFixture[str]) -> None:
        with_history, old = rewrap_estate(blobs=1)
        with_history.data_keys.put_history(
            LOCATION, "b000000", "snapshot 2026-01-01T00:00:01.0000000Z", KEY.version_uri(old)
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("rotation.cli.rotations._deps", with_history.deps)
            code = main(["plan", "--key", KEY.uri])

        out = capsys.readouterr().out
        assert code == EXIT_OK
        history = out.split("blob history on this key", 1)[1]
        assert f"{LOCATION.display}/b000000" in history
        assert "snapshot 2026-01-01T00:00:01.0000000Z" in history
        assert old in history

    def test_status_shows_the_retirement_evidence(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        main(["--json", "rotate", "--key", KEY.uri])
        view = json.loads(capsys.readouterr().out)
        estate.follower_adopts(view["new_version"])
        estate.clock.advance(timedelta(hours=25))
        main(["sweep", "--json"])
        capsys.readouterr()

        code = main(["status", view["rotation_id"]])

        out = capsys.readouterr().out
        assert code == EXIT_OK
        evidence = out.split("retirement evidence (checked ", 1)[1]
        assert f"old version {view['old_version']}):" in evidence
        assert f"storage_account: 3 consumers ({view['new_version']}: 3)" in evidence
        assert "references to the old version: 0" in evidence

    def test_refused_rotation_exits_1(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        estate.vaults.add("https://kv-main.vault.azure.net", purge_protection=False)

        code = main(["rotate", "--key", KEY.uri])

        assert code == EXIT_FAILED
        assert "purge protection" in capsys.readouterr().out

    def test_unknown_key_is_a_usage_error(self, estate: Estate, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["plan", "--key", "https://kv-main.vault.azure.net/keys/unknown"])

        assert code == 2
        assert "not a managed key" in capsys.readouterr().err


class TestRunnerTrigger:
    """The queue trigger runs the rotation a message names; malformed or unknown ids are dropped."""

    def test_runs_queued_rotation(self) -> None:
        estate, _ = standard_estate()
        deps = estate.deps(inline=False)
        view = start_rotation(deps, KEY.uri, Trigger(TriggerKind.EVENT))
        bootstrap.override_dependencies(estate.deps())
        try:
            runner.run_rotation_message(func.QueueMessage(body=json.dumps({"rotation_id": view.rotation_id})))
        finally:
            bootstrap.override_dependencies(None)

        assert view.status == RotationStatus.RUNNING
        assert get_rotation(deps, view.rotation_id).status == RotationStatus.AWAITING_RETIREMENT

    def test_message_shapes(self) -> None:
        assert runner.rotation_id_of(b'{"rotation_id": "rot-1"}') == "rot-1"
        assert runner.rotation_id_of(b"rot-2") == "rot-2"
        with pytest.raises(InputError):
            runner.rotation_id_of(b"{}")

    def test_unknown_rotation_is_dropped(self) -> None:
        estate, _ = standard_estate()
        bootstrap.override_dependencies(estate.deps())
        try:
            runner.run_rotation_message(func.QueueMessage(body=b'{"rotation_id": "rot-missing"}'))
        finally:
            bootstrap.override_dependencies(None)

        assert estate.journal.writes == 0

    def test_registered(self) -> None:
        registered = functions()

        trigger = registered["run_rotation"].get_trigger()
        assert trigger.queue_name == "rotation-run"
        assert trigger.connection == "AzureWebJobsStorage"
