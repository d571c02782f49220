"""The timer function ``reconcile``, called as the host calls it with a real func.TimerRequest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.functions.timer import TimerRequest
from structlog.testing import capture_logs

from rotation import bootstrap
from rotation.domain.model import TriggerKind
from rotation.errors import TransientError
from rotation.triggers.timer import DEFAULT_SCHEDULE, SCHEDULE_SETTING, schedule_binding
from tests.fakes.estate import KEY, OTHER_KEY, Estate
from tests.functions_host import functions, invoke


@pytest.fixture
def near_expiry() -> Iterator[Estate]:
    """One managed key expiring in 10 days (inside the 30-day window), one in a year."""
    estate = Estate()
    now = estate.clock.now()
    old = estate.keys.add_key(KEY, expires=now + timedelta(days=10)).version
    estate.keys.add_key(OTHER_KEY, expires=now + timedelta(days=365))
    estate.storage.add("pinned", KEY, old)
    bootstrap.override_dependencies(estate.deps())
    yield estate
    bootstrap.override_dependencies(None)


class TestBinding:
    """The timer binds the ROTATION_RECONCILE_SCHEDULE setting when present, the default otherwise."""

    def test_indexed_as_timer(self) -> None:
        binding = json.loads(functions()["reconcile"].get_function_json())["bindings"][0]

        assert binding["type"] == "timerTrigger"
        assert binding["runOnStartup"] is False

    def test_schedule_names_the_setting_when_set(self) -> None:
        schedule = schedule_binding({SCHEDULE_SETTING: "0 0 * * * *"})

        assert schedule == f"%{SCHEDULE_SETTING}%"

    def test_default_when_unset(self) -> None:
        schedule = schedule_binding({})

        assert schedule == DEFAULT_SCHEDULE == "0 */15 * * * *"


class TestReconcile:
    """A tick rotates keys near expiry whose event was missed, leaves the others, and logs a summary."""

    def test_missed_near_expiry_is_rotated(self, near_expiry: Estate) -> None:
        timer = TimerRequest(past_due=True)

        with capture_logs() as logs:
            invoke("reconcile", timer)

        rotations = near_expiry.journal.list()
        assert [r.key_uri for r in rotations] == [KEY.uri]
        assert rotations[0].trigger.kind == TriggerKind.TIMER
        events = [entry["event"] for entry in logs]
        assert "reconcile_past_due" in events
        summary = next(entry for entry in logs if entry["event"] == "reconcile_finished")
        assert summary["started"] == 1
        # A first tick: one page holds the vault and judges both managed keys (min(2, 1) = 1 call).
        assert (summary["list_calls"], summary["key_reads"], summary["deferred"]) == (1, 0, 0)

    def test_second_tick_starts_nothing_new(self, near_expiry: Estate) -> None:
        invoke("reconcile", TimerRequest())

        invoke("reconcile", TimerRequest())

        assert len(near_expiry.journal.list()) == 1

    def test_sweep_failure_is_logged_and_raised(self, near_expiry: Estate) -> None:
        class Down:
            def list(self, *args: object, **kwargs: object) -> object:
                raise TransientError("table storage unavailable")

        deps = near_expiry.deps()
        deps.journal = Down()  # type: ignore[assignment]
        bootstrap.override_dependencies(deps)

        with capture_logs() as logs, pytest.raises(TransientError):
            invoke("reconcile", TimerRequest())

        assert logs[-1]["event"] == "reconcile_failed"
        assert logs[-1]["code"] == "Transient"
