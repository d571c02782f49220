"""On-call controls (retry, abandon, unretire) through the service, the CLI and the HTTP API, and what
``status`` says a rotation not finished is waiting for."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from rotation import bootstrap
from rotation.cli import EXIT_OK, EXIT_USAGE, main
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.errors import InputError, PreconditionFailed
from rotation.logs import configure_logging
from rotation.service import abandon, get_rotation, retry_now, start_rotation, sweep, unretire
from tests.fakes.estate import KEY, Estate, rewrap_estate, standard_estate
from tests.functions_host import http

ONCALL = Trigger(TriggerKind.CLI, caller="alice")
TIMER = Trigger(TriggerKind.TIMER)
JSON = {"content-type": "application/json"}


def rolled_back(estate: Estate, old: str) -> str:
    estate.storage.refuse_nth_key_write(1, unless=old)
    view = start_rotation(estate.deps(), KEY.uri, ONCALL)
    assert view.status == RotationStatus.ROLLED_BACK
    return view.rotation_id


def retired(estate: Estate) -> tuple[str, str]:
    """A rotation whose old version this service retired: (rotation id, old version)."""
    view = start_rotation(estate.deps(), KEY.uri, ONCALL)
    for account in list(estate.storage.accounts.values()):
        if account.versionless:
            estate.storage.adopt_latest(account.account_id, KEY, str(view.new_version))
    estate.clock.advance(timedelta(hours=25))
    sweep(estate.deps(), TIMER)
    done = get_rotation(estate.deps(), view.rotation_id)
    assert done.status == RotationStatus.RETIRED, done.steps
    return view.rotation_id, str(done.old_version)


class TestRetry:
    def test_a_rolled_back_rotation_is_retried_adopting_its_version(self) -> None:
        estate, old = standard_estate()
        stopped = rolled_back(estate, old)
        created = get_rotation(estate.deps(), stopped).new_version

        view = retry_now(estate.deps(), stopped, ONCALL, reason="role granted")

        assert view.status == RotationStatus.AWAITING_RETIREMENT
        assert (view.new_version, view.attempt, view.retry_of) == (created, 2, stopped)
        assert len(estate.keys.all_versions(KEY)) == 2
        request = next(r for r in estate.audit.all if r.outcome == "retry_requested")
        assert request.rotation_id == stopped
        assert request.trigger.caller == "alice"
        assert "role granted" in request.reason

    def test_only_the_newest_rotation_of_the_key_is_retried(self) -> None:
        estate, old = standard_estate()
        stopped = rolled_back(estate, old)
        retry_now(estate.deps(), stopped, ONCALL)

        with pytest.raises(PreconditionFailed, match="retry that one"):
            retry_now(estate.deps(), stopped, ONCALL)

    def test_a_cut_over_rotation_has_nothing_to_retry(self) -> None:
        estate, _ = standard_estate()
        view = start_rotation(estate.deps(), KEY.uri, ONCALL)

        with pytest.raises(PreconditionFailed, match="nothing to retry"):
            retry_now(estate.deps(), view.rotation_id, ONCALL)


class TestAbandon:
    def test_releases_the_key_and_leaves_consumers(self) -> None:
        estate, _ = rewrap_estate(blobs=10, per_poll=0)
        waiting = start_rotation(estate.deps(), KEY.uri, ONCALL)
        assert waiting.status == RotationStatus.WAITING
        writes_before = list(estate.storage.writes)

        view = abandon(estate.deps(), waiting.rotation_id, ONCALL, reason="blobs under legal hold")

        assert view.status == RotationStatus.ABANDONED
        assert estate.storage.writes == writes_before  # nothing rolled back or moved
        record = estate.audit.all[-1]
        assert (record.outcome, record.trigger.caller) == ("abandoned", "alice")
        assert "legal hold" in record.reason
        again = start_rotation(estate.deps(), KEY.uri, ONCALL)
        assert again.rotation_id != waiting.rotation_id

    def test_a_reason_is_required(self) -> None:
        estate, old = standard_estate()
        stopped = rolled_back(estate, old)

        with pytest.raises(InputError, match="reason is required"):
            abandon(estate.deps(), stopped, ONCALL, reason="  ")


class TestUnretire:
    def test_re_enables_a_version_this_service_retired(self) -> None:
        estate, _ = standard_estate()
        rotation_id, old = retired(estate)
        assert not estate.keys.get_key(KEY, old).enabled

        unretire(estate.deps(), KEY.uri, old, ONCALL, reason="ws3 still needs it")

        assert estate.keys.get_key(KEY, old).enabled
        record = estate.audit.all[-1]
        assert (record.outcome, record.rotation_id, record.trigger.caller) == ("unretired", rotation_id, "alice")

    def test_refuses_a_version_it_did_not_retire(self) -> None:
        estate, old = standard_estate()
        estate.keys.update_version(KEY, old, enabled=False)  # disabled by someone else

        with pytest.raises(PreconditionFailed, match="not retired by this service"):
            unretire(estate.deps(), KEY.uri, old, ONCALL, reason="x")
        assert not estate.keys.get_key(KEY, old).enabled


class TestStatusSaysWhatItWaitsFor:
    def test_waiting_and_stopped_rotations(self) -> None:
        estate, _ = rewrap_estate(blobs=10, per_poll=0)
        waiting = start_rotation(estate.deps(), KEY.uri, ONCALL)

        assert "rewrap" in waiting.waiting_for
        assert f"abandon {waiting.rotation_id} --reason TEXT" in waiting.on_call
        cut_over = standard_estate()[0]
        done = start_rotation(cut_over.deps(), KEY.uri, ONCALL)
        assert done.waiting_for.startswith("retirement of")

    def test_a_stopped_rotation_names_the_retry(self) -> None:
        estate, old = standard_estate()
        view = get_rotation(estate.deps(), rolled_back(estate, old))

        assert view.waiting_for.startswith("a human")
        assert f"retry {view.rotation_id}" in view.on_call


@pytest.fixture
def cli_estate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Estate, str]]:
    estate, old = standard_estate()
    monkeypatch.setattr("rotation.cli.rotations._deps", estate.deps)
    configure_logging("json", "INFO", sys.stderr)
    return estate, old


class TestCli:
    def test_retry_abandon_and_status(self, cli_estate: tuple[Estate, str], capsys: pytest.CaptureFixture[str]) -> None:
        estate, old = cli_estate
        stopped = rolled_back(estate, old)

        status = main(["status", "--key", KEY.uri])
        table = capsys.readouterr().out
        abandoned = main(["--json", "abandon", stopped, "--reason", "drill"])
        payload = json.loads(capsys.readouterr().out)
        retried = main(["--json", "retry", stopped])
        retry = json.loads(capsys.readouterr().out)

        assert status == EXIT_OK
        assert f"retry {stopped}" in table
        assert abandoned == EXIT_OK
        assert payload["status"] == "abandoned"
        assert retried == EXIT_OK
        assert retry["retry_of"] == stopped
        assert retry["status"] == "awaiting_retirement"

    def test_abandon_without_reason_is_a_usage_error(self, cli_estate: tuple[Estate, str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["abandon", "rot-1"])

        assert exit_info.value.code == EXIT_USAGE

    def test_unretire_of_an_unknown_version(
        self, cli_estate: tuple[Estate, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["unretire", "--key", KEY.uri, "--version", "abc123", "--reason", "x"])

        assert code == 1
        assert "not retired by this service" in capsys.readouterr().err


@pytest.fixture
def api_estate() -> Iterator[tuple[Estate, str]]:
    estate, old = standard_estate()
    bootstrap.override_dependencies(estate.deps())
    yield estate, old
    bootstrap.override_dependencies(None)


def _post(path: str, body: Any) -> tuple[int, dict[str, Any]]:
    resp = http("POST", path, body=json.dumps(body).encode(), headers=JSON)
    return resp.status_code, json.loads(resp.get_body())


class TestApi:
    def test_retry_and_abandon(self, api_estate: tuple[Estate, str]) -> None:
        estate, old = api_estate
        stopped = rolled_back(estate, old)

        no_reason, refused = _post(f"/api/rotations/{stopped}/abandon", {})
        retried, view = _post(f"/api/rotations/{stopped}/retry", {"reason": "fixed"})
        again, conflict = _post(f"/api/rotations/{stopped}/retry", {})

        assert no_reason == 400
        assert "reason" in refused["error"]["message"]
        assert retried == 200
        assert view["retry_of"] == stopped
        assert again == 409
        assert conflict["error"]["code"] == "PreconditionFailed"

    def test_unretire_validates_its_input(self, api_estate: tuple[Estate, str]) -> None:
        bad_version, body = _post("/api/keys/unretire", {"key": KEY.uri, "version": "../x", "reason": "r"})
        unknown, missing = _post("/api/rotations/rot-nope/abandon", {"reason": "r"})
        not_retired, refused = _post("/api/keys/unretire", {"key": KEY.uri, "version": "abc", "reason": "r"})

        assert bad_version == 400
        assert "version" in body["error"]["message"]
        assert unknown == 404
        assert missing["error"]["code"] == "RotationNotFound"
        assert not_retired == 409
        assert "not retired" in refused["error"]["message"]
