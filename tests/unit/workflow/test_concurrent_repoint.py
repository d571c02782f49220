"""Consumers of a step are re-pointed concurrently, at most ``repoint_concurrency`` at once.

The fakes are instrumented, not timed: a gate counts the writes in progress under a lock and holds
the first ``bound`` of them at a barrier until all have arrived, so the run provably reaches its
bound, and a higher count would be seen. The barrier's timeout only keeps a broken build from hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from rotation.domain.model import ConsumerKind, RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import guard
from rotation.errors import VerificationFailed
from rotation.service import run_rotation, start_rotation
from rotation.service.queries import holding_rotation
from rotation.service.steps.pool import run_bounded
from tests.fakes.estate import KEY, pinned_estate

CLI = Trigger(TriggerKind.CLI)
SAFETY = 30  # seconds: a barrier never reached means a broken build, not a slow machine


class Gate:
    """Wraps a callable: counts calls in progress (and the most at once); the first ``hold`` calls
    wait for each other at a barrier."""

    def __init__(self, method: Callable[..., Any], hold: int) -> None:
        self.method, self.hold = method, hold
        self.lock = threading.Lock()
        self.active = self.most = self.started = 0
        self.barrier = threading.Barrier(hold, timeout=SAFETY) if hold > 1 else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.active += 1
            self.started += 1
            self.most = max(self.most, self.active)
            held = self.started <= self.hold
        try:
            if held and self.barrier is not None:
                self.barrier.wait()
            return self.method(*args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1


class TestBoundedPool:
    @pytest.mark.parametrize(("items", "bound"), [(20, 4), (3, 8), (9, 1)])
    def test_never_more_than_the_bound_and_reaches_it(self, items: int, bound: int) -> None:
        gate = Gate(lambda item: item * 2, hold=min(bound, items))

        outcomes = run_bounded(range(items), gate, bound)

        assert gate.most == min(bound, items)
        assert sorted(o.result for o in outcomes if o.result is not None) == [i * 2 for i in range(items)]
        assert all(o.error is None for o in outcomes)

    def test_a_failure_lets_the_running_ones_finish_and_is_handed_back(self) -> None:
        finished: list[int] = []
        refused = threading.Event()

        def work(item: int) -> int:
            if item == 0:
                refused.set()
                raise VerificationFailed("refused")
            if item in (1, 2):  # in flight with the failing one: finish only after it has failed
                refused.wait(SAFETY)
            finished.append(item)
            return item

        gate = Gate(work, hold=3)
        outcomes = run_bounded(range(30), gate, 3)

        errors = [o for o in outcomes if o.error is not None]
        assert [o.item for o in errors] == [0]
        assert {1, 2} <= set(finished), "the two in flight with the failing one finished"
        assert len(outcomes) < 30, "nothing started once the failure was seen"

    def test_a_bound_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            run_bounded([1], lambda i: i, 0)


class TestConcurrentRepoint:
    @pytest.mark.parametrize("bound", [1, 3, 5])
    def test_concurrency_never_exceeds_its_bound(self, bound: int) -> None:
        estate, _ = pinned_estate(accounts=7, bound=bound, workspaces=4)
        storage = Gate(estate.storage.set_key_version, hold=bound)
        workspaces = Gate(estate.workspaces.set_key_identifier, hold=min(bound, 4))
        estate.storage.set_key_version = storage  # type: ignore[method-assign]
        estate.workspaces.set_key_identifier = workspaces  # type: ignore[method-assign]

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert (storage.most, storage.started) == (bound, 7)
        assert (workspaces.most, workspaces.started) == (min(bound, 4), 4)
        new = estate.keys.latest(KEY).version
        assert all(a.key_version == new for a in estate.storage.accounts.values())
        state = estate.journal.list(KEY.uri)[0]
        assert state.intent is None
        assert state.in_flight == ()
        assert [c.status for c in state.consumers] == ["changed"] * 11

    def test_one_refused_the_others_in_flight_finish_only_it_is_rolled_back(self) -> None:
        estate, old = pinned_estate(accounts=3, bound=3)
        refused = next(a for a in estate.storage.accounts.values() if a.name == "pinned01").account_id
        original = estate.storage.set_key_version

        def set_key_version(account_id: str, *args: Any, **kwargs: Any) -> Any:
            if account_id == refused and args[-1] != old:
                raise VerificationFailed("the account identity cannot use the new version")
            return original(account_id, *args, **kwargs)

        gate = Gate(set_key_version, hold=3)
        estate.storage.set_key_version = gate  # type: ignore[method-assign]

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.ROLLED_BACK
        new = estate.keys.latest(KEY).version
        state = estate.journal.list(KEY.uri)[0]
        by_name = {c.resource_id.rsplit("/", 1)[-1]: c for c in state.consumers}
        assert by_name["pinned01"].status == "rolled_back"
        assert by_name["pinned00"].status == by_name["pinned02"].status == "changed"
        versions = {a.name: a.key_version for a in estate.storage.accounts.values()}
        assert versions == {"pinned00": new, "pinned01": old, "pinned02": new}
        # The rollback wrote to the refused account only (it had not moved: nothing to write at all).
        assert [a for a, v in estate.storage.writes if v == old] == []
        assert state.in_flight == ()
        assert [r.outcome for r in estate.audit.for_rotation(state.rotation_id)] == ["rolled_back"]


class Died(BaseException):
    """The process died."""


class TestCrashWithSeveralInFlight:
    """Killed while three re-points are in flight (all three intents journalled), the next trigger
    finishes with exactly one PATCH per account."""

    @pytest.mark.parametrize("when", ["before", "after"])
    def test_resumes_to_one_patch_per_consumer(self, when: str) -> None:
        estate, _ = pinned_estate(accounts=5, bound=3)
        original = estate.storage.set_key_version
        lock = threading.Lock()
        dead = {"now": False}

        def dying(*args: Any, **kwargs: Any) -> Any:
            with lock:
                first = not dead["now"]
                dead["now"] = True
            if not first:
                raise Died("the process is gone")
            if when == "after":
                original(*args, **kwargs)
            raise Died("killed")

        victim = Gate(dying, hold=3)
        estate.storage.set_key_version = victim  # type: ignore[method-assign]
        with pytest.raises(Died):
            start_rotation(estate.deps(owner="victim"), KEY.uri, CLI)
        held = holding_rotation(estate.deps(), KEY.uri)
        assert held is not None
        state, _ = estate.journal.load(held.rotation_id)
        assert len(state.in_flight) == 3, "every re-point in flight left its intent"
        assert {i.action for i in state.in_flight} == {"set_storage_version"}
        guard(state)

        estate.storage.set_key_version = original  # type: ignore[method-assign]
        estate.clock.advance(timedelta(seconds=estate.deps().lease_seconds + 1))
        view = run_rotation(estate.deps(owner="successor"), held.rotation_id)

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        new = estate.keys.latest(KEY).version
        patched = [a.lower() for a, _ in estate.storage.writes]
        assert sorted(patched) == sorted({a.account_id.lower() for a in estate.storage.accounts.values()})
        assert all(a.key_version == new for a in estate.storage.accounts.values())
        state, _ = estate.journal.load(held.rotation_id)
        assert state.in_flight == ()
        assert all(c.status == "changed" for c in state.consumers if c.kind == ConsumerKind.STORAGE_ACCOUNT)
