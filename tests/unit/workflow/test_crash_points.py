"""Every crash point, in memory: the executor dies before or after each journal write and each side effect.

The integration crash matrix kills real processes around the external side effects; this one covers
every journal write too (intent, outcome, step records, claims), cheaply. A crash freezes the dead
executor: nothing it would still do (its ``finally`` blocks included) reaches any fake. A successor
with its own name resumes after the dead executor's claim has lapsed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from rotation.consumers import RUN_STEPS
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import Step, guard
from rotation.service import run_rotation, start_rotation, sweep
from rotation.service.deps import Dependencies
from rotation.service.queries import holding_rotation
from tests.fakes.estate import KEY, LOCATION, Estate, standard_estate

CLI = Trigger(TriggerKind.CLI)
TIMER = Trigger(TriggerKind.TIMER)

POINTS = (
    ("journal", "begin"),
    ("journal", "save"),
    ("keys", "create_version"),
    ("keys", "update_version"),
    ("storage", "set_key_version"),
    ("workspaces", "set_key_identifier"),
    ("data_keys", "begin_rewrap"),
    ("audit", "append"),
)


class Crash(BaseException):
    """The process died."""


class Killer:
    """Wraps every crash point of an estate; the ``at``-th call dies ``when`` (before/after), then all calls die."""

    def __init__(self, estate: Estate, at: int | None = None, when: str = "before") -> None:
        self.at, self.when, self.calls, self.dead = at, when, [], False
        self._lock = threading.Lock()  # consumers are re-pointed concurrently: count each call once
        self._originals: list[tuple[Any, str, Any]] = []
        for attr, method in POINTS:
            target = getattr(estate, attr)
            original = getattr(target, method)
            self._originals.append((target, method, original))
            setattr(target, method, self._wrap(f"{attr}.{method}", original))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self.dead:
                    raise Crash(name)
                self.calls.append(name)
                number = len(self.calls)
                if number == self.at and self.when == "before":
                    self.dead = True
                    raise Crash(name)
            result = method(*args, **kwargs)
            if number == self.at and self.when == "after":
                with self._lock:
                    self.dead = True
                raise Crash(name)
            return result

        return wrapper

    def restore(self) -> None:
        for target, method, original in self._originals:
            setattr(target, method, original)


def _estate() -> Estate:
    estate, old = standard_estate()
    estate.with_data_locations()
    estate.data_keys.put_blobs(LOCATION, KEY, old, 5)
    return estate


def _rotate_to_the_end(estate: Estate, deps: Dependencies) -> None:
    """The next triggers: resume (or start) until cut over."""
    for _ in range(6):
        held = holding_rotation(deps, KEY.uri)
        if held is None:
            start_rotation(deps, KEY.uri, CLI)
        elif held.status == RotationStatus.AWAITING_RETIREMENT:
            return
        else:
            run_rotation(deps, held.rotation_id)


def _check_cut_over(estate: Estate) -> str:
    versions = estate.keys.all_versions(KEY)
    assert len(versions) == 2, "exactly one new version"
    old, new = versions
    assert old.enabled
    rotations = estate.journal.list(KEY.uri)
    assert len(rotations) == 1
    state = rotations[0]
    guard(state)
    assert state.status == RotationStatus.AWAITING_RETIREMENT
    assert state.new_version == new.version
    assert state.intent is None
    assert state.in_flight == ()
    assert all(state.step_done(s) for s in RUN_STEPS)
    # Consumers are re-pointed concurrently: whatever was in flight at the crash, one PATCH each.
    patched = [account_id.lower() for account_id, _ in estate.storage.writes]
    patched += [workspace_id.lower() for workspace_id, _ in estate.workspaces.writes]
    assert sorted(patched) == sorted(set(patched)), "exactly one PATCH per consumer"
    for account in estate.storage.accounts.values():
        if account.key_name == KEY.name and not account.versionless:
            assert account.key_version == new.version
    for workspace in estate.workspaces.workspaces.values():
        if f"/keys/{KEY.name}/" in workspace.key_identifier:
            assert workspace.key_identifier.endswith(new.version)
    assert estate.data_keys.versions_in_use(KEY, [LOCATION]) == {new.version: 5}
    assert [r.outcome for r in estate.audit.for_rotation(state.rotation_id)] == ["succeeded"]
    return state.rotation_id


def _count(run: Callable[[Estate, Dependencies], None], estate: Estate) -> int:
    killer = Killer(estate)
    run(estate, estate.deps(owner="counting"))
    killer.restore()
    return len(killer.calls)


def _cases(total: int) -> list[tuple[int, str]]:
    return [(n, w) for n in range(1, total + 1) for w in ("before", "after")]


def _rotation_points() -> int:
    return _count(_rotate_to_the_end, _estate())


def _sweep(_estate: Estate, deps: Dependencies) -> None:
    sweep(deps, TIMER)


def _adopt_and_wait(estate: Estate) -> None:
    estate.follower_adopts(estate.keys.latest(KEY).version)
    estate.clock.advance(timedelta(hours=25))


def _retire_points() -> int:
    estate = _estate()
    _rotate_to_the_end(estate, estate.deps())
    _adopt_and_wait(estate)
    return _count(_sweep, estate)


ROTATION_CASES = _cases(_rotation_points())
RETIRE_CASES = _cases(_retire_points())


class TestEveryCrashPointOfARotation:
    """Killed around any journal write or side effect of a rotation, the next trigger finishes it once."""

    @pytest.mark.parametrize(("at", "when"), ROTATION_CASES)
    def test_resume(self, at: int, when: str) -> None:
        estate = _estate()
        killer = Killer(estate, at, when)
        with pytest.raises(Crash):
            _rotate_to_the_end(estate, estate.deps(owner="victim"))
        killer.restore()
        estate.clock.advance(timedelta(seconds=estate.deps().lease_seconds + 1))

        _rotate_to_the_end(estate, estate.deps(owner="successor"))

        _check_cut_over(estate)


class TestEveryCrashPointOfARetirement:
    """Killed around any journal write or side effect of the retirement, the next sweep finishes it once."""

    @pytest.mark.parametrize(("at", "when"), RETIRE_CASES)
    def test_resume(self, at: int, when: str) -> None:
        estate = _estate()
        _rotate_to_the_end(estate, estate.deps())
        rotation_id = _check_cut_over(estate)
        _adopt_and_wait(estate)
        killer = Killer(estate, at, when)
        with pytest.raises(Crash):
            sweep(estate.deps(owner="victim"), TIMER)
        killer.restore()
        estate.clock.advance(timedelta(seconds=estate.deps().lease_seconds + 1))

        sweep(estate.deps(owner="successor"), TIMER)

        state, _ = estate.journal.load(rotation_id)
        guard(state)
        assert state.status == RotationStatus.RETIRED
        assert state.intent is None
        assert state.step_done(Step.RETIRE)
        old, new = estate.keys.all_versions(KEY)
        assert (old.enabled, new.enabled) == (False, True)
        assert [r.outcome for r in estate.audit.for_rotation(rotation_id)] == ["succeeded", "retired"]


def test_the_matrix_is_not_empty() -> None:
    """Guards the parametrisation itself: the clean runs found the points they must."""
    assert len(ROTATION_CASES) >= 2 * 20
    assert len(RETIRE_CASES) >= 2 * 3
