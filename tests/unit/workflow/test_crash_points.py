"""Every crash point, in memory: the executor dies before or after each journal write and each side effect.

The integration crash matrix kills real processes around the external side effects; this one covers
every journal write too (intent, outcome, step records, claims), cheaply. A crash freezes the dead
executor: nothing it would still do (its ``finally`` blocks included) reaches any fake. A successor
with its own name resumes after the dead executor's claim has lapsed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
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
    ("workspaces", "begin_key_identifier"),
    ("workspaces", "poll_key_update"),
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


def _rotate_to_the_end(estate: Estate, deps: Dependencies, *, tries: int = 6, between_s: float = 0) -> None:
    """The next triggers: resume (or start) until cut over, the clock moved ``between_s`` before each resume
    (a continuation's delay)."""
    for _ in range(tries):
        held = holding_rotation(deps, KEY.uri)
        if held is None:
            start_rotation(deps, KEY.uri, CLI)
        elif held.status == RotationStatus.AWAITING_RETIREMENT:
            return
        else:
            estate.clock.advance(timedelta(seconds=between_s))
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
    assert set(estate.workspaces.patches.values()) <= {1}, "exactly one PATCH per workspace"
    for account in estate.storage.accounts.values():
        if account.key_name == KEY.name and not account.versionless:
            assert account.key_version == new.version
    for workspace in estate.workspaces.workspaces.values():
        if f"/keys/{KEY.name}/" in workspace.key_identifier:
            assert workspace.key_identifier.endswith(new.version)
    assert estate.data_keys.versions_in_use(KEY, [LOCATION]) == {new.version: 5}
    assert [r.outcome for r in estate.audit.for_rotation(state.rotation_id)] == ["succeeded"]
    return state.rotation_id


def _lro_estate(*, apply_at_completion: bool = False, polls: int = 2, concurrency: int | None = None) -> Estate:
    """The estate with workspace updates as operations of ``polls`` polls 30 s apart (see test_long_operations),
    re-pointed ``concurrency`` at a time (None: the settings' default)."""
    estate = _estate()
    if concurrency is not None:
        estate.settings = replace(estate.settings, repoint_concurrency=concurrency)
    estate.workspaces.lro_polls = polls
    estate.workspaces.retry_after_s = 30.0
    estate.workspaces.apply_at_completion = apply_at_completion
    return estate


def _budgeted(deps: Dependencies) -> Dependencies:
    deps.invocation_budget_seconds = 45.0  # one poll per invocation: every update outlasts one
    return deps


def _invoke_to_the_end(estate: Estate, deps: Dependencies) -> None:
    """The queue's invocations, each with its budget, each after the continuation's delay, until cut over."""
    _rotate_to_the_end(estate, deps, tries=12, between_s=31)


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


def _long_operation_points(apply_at_completion: bool, polls: int, concurrency: int | None) -> int:
    estate = _lro_estate(apply_at_completion=apply_at_completion, polls=polls, concurrency=concurrency)
    return _count(lambda e, d: _invoke_to_the_end(e, _budgeted(d)), estate)


def _first_call(name: str, estate: Estate) -> int:
    """The number of the first ``name`` call (a crash point) in a clean rotation of a copy of ``estate``'s kind."""
    killer = Killer(estate)
    _invoke_to_the_end(estate, _budgeted(estate.deps(owner="counting", inline=False)))
    killer.restore()
    return killer.calls.index(name) + 1


ROTATION_CASES = _cases(_rotation_points())
RETIRE_CASES = _cases(_retire_points())
#: (the workspace shows the new key only when its update ends, polls of an update, re-points at once, crash point,
#: before/after). The second kind of update (180 s) outlasts the victim's claim (120 s): the successor finds it
#: still running, whether its polling URL was journalled or not; its consumers go one at a time, so every run
#: makes the same calls in the same order (concurrent ones may share a journal write, or not).
LONG_OPERATION_VARIANTS = ((False, 2, None), (True, 6, 1))
LONG_OPERATION_CASES = [
    (a, p, c, n, w) for a, p, c in LONG_OPERATION_VARIANTS for n, w in _cases(_long_operation_points(a, p, c))
]


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


class TestEveryCrashPointOfARotationAcrossInvocations:
    """Workspace updates that outlast the invocation budget: killed around any journal write, PATCH or poll of
    any invocation, the next invocations finish the rotation with one PATCH per workspace."""

    @pytest.mark.parametrize(("apply_at_completion", "polls", "concurrency", "at", "when"), LONG_OPERATION_CASES)
    def test_resume(self, apply_at_completion: bool, polls: int, concurrency: int | None, at: int, when: str) -> None:
        estate = _lro_estate(apply_at_completion=apply_at_completion, polls=polls, concurrency=concurrency)
        killer = Killer(estate, at, when)
        with pytest.raises(Crash):
            _invoke_to_the_end(estate, _budgeted(estate.deps(owner="victim", inline=False)))
        killer.restore()
        estate.clock.advance(timedelta(seconds=estate.deps().lease_seconds + 1))

        _invoke_to_the_end(estate, _budgeted(estate.deps(owner="successor", inline=False)))

        _check_cut_over(estate)


class TestACrashBetweenAcceptedAndDone:
    """Killed after an update's operation was journalled and before it ended, while the workspace still reads
    its old key (the key changes when the operation completes): the successor polls the journalled operation
    on and never PATCHes again (re-reading the workspace alone would)."""

    @pytest.mark.parametrize("polls_before_the_crash", [0, 1])
    def test_resumes_without_a_second_patch(self, polls_before_the_crash: int) -> None:
        estate = _lro_estate(apply_at_completion=True)
        estate.workspaces.lro_polls = 3
        # One at a time, so the crash comes after an accepted operation and before anything else was sent.
        estate.settings = replace(estate.settings, repoint_concurrency=1)
        polls = estate.workspaces.polls
        poll, save = estate.workspaces.poll_key_update, estate.journal.save
        dead = threading.Event()

        def dying_poll(workspace_id: str, operation: Any) -> Any:
            if dead.is_set() or len(polls) >= polls_before_the_crash:
                dead.set()
                raise Crash("workspaces.poll_key_update")
            return poll(workspace_id, operation)

        def frozen_save(state: Any, etag: str) -> str:
            if dead.is_set():
                raise Crash("journal.save")  # the dead process writes nothing more
            return save(state, etag)

        estate.workspaces.poll_key_update = dying_poll  # type: ignore[method-assign]
        estate.journal.save = frozen_save  # type: ignore[method-assign]
        with pytest.raises(Crash):
            _invoke_to_the_end(estate, estate.deps(owner="victim", inline=False))
        estate.workspaces.poll_key_update, estate.journal.save = poll, save  # type: ignore[method-assign]
        state = estate.journal.list(KEY.uri)[0]
        journalled = [i.operation.url for i in state.in_flight if i.operation is not None]
        old = state.old_version
        assert len(journalled) == 1, "the crash came after the operation was journalled"
        assert all(
            w.key_identifier.endswith(f"/{old}")
            for w in estate.workspaces.workspaces.values()
            if "/cmk/" in w.key_identifier
        )
        estate.clock.advance(timedelta(seconds=estate.deps().lease_seconds + 1))

        _invoke_to_the_end(estate, _budgeted(estate.deps(owner="successor", inline=False)))

        _check_cut_over(estate)
        assert set(journalled) <= set(estate.workspaces.polls), "the journalled operations were polled on"
        assert sorted(estate.workspaces.patches.values()) == [1, 1]  # the second workspace's first PATCH came later


class TestACrashBetweenAnUpdatesAnswerAndItsJournalWrite:
    """Killed after ARM accepted a workspace update and before its polling URL was journalled (the intent is
    journalled, the URL is lost), while the workspace still reads its old key: the successor sends nothing while
    the workspace reads ``Updating``, judges from the read once its provisioningState is terminal, and PATCHes
    again only if the update did not take."""

    @staticmethod
    def _crash_after_the_first_accept(polls: int = 10) -> tuple[Estate, str]:
        """The estate after the crash, once the victim's claim has lapsed, and the workspace whose update was
        accepted and not journalled. The update ends ``polls`` x 30 s after it was accepted (by default well
        after the claim lapsed)."""

        def one_at_a_time() -> Estate:
            estate = _lro_estate(apply_at_completion=True)
            estate.workspaces.lro_polls = polls
            estate.settings = replace(estate.settings, repoint_concurrency=1)
            return estate

        at = _first_call("workspaces.begin_key_identifier", one_at_a_time())
        estate = one_at_a_time()
        killer = Killer(estate, at, "after")
        with pytest.raises(Crash):
            _invoke_to_the_end(estate, _budgeted(estate.deps(owner="victim", inline=False)))
        killer.restore()
        state = estate.journal.list(KEY.uri)[0]
        unanswered = [i for i in state.in_flight if i.operation is None]
        assert [(i.action, i.value) for i in unanswered] == [("set_workspace_key", state.new_version)]
        assert state.in_flight == tuple(unanswered), "no polling URL was journalled"
        estate.clock.advance(timedelta(seconds=estate.deps().lease_seconds + 1))
        return estate, unanswered[0].target

    @pytest.mark.parametrize("budget", [45.0, None])
    def test_one_patch_per_workspace(self, budget: float | None) -> None:
        estate, target = self._crash_after_the_first_accept()
        at_the_crash = estate.workspaces.get_workspace(target)  # as the successor first reads it
        lost = set(estate.workspaces.operations)  # the URL ARM answered, never journalled
        successor = estate.deps(owner="successor", inline=False)
        successor.invocation_budget_seconds = budget

        _invoke_to_the_end(estate, successor)

        assert at_the_crash.provisioning_state == "Updating"
        assert at_the_crash.key_identifier.endswith(f"/{estate.journal.list(KEY.uri)[0].old_version}")
        _check_cut_over(estate)
        assert sorted(estate.workspaces.patches.values()) == [1, 1]
        assert len(lost) == 1
        assert not lost & set(estate.workspaces.polls), "the lost operation is never polled: nothing knows its URL"

    def test_the_budget_runs_out_while_the_update_runs(self) -> None:
        """An update longer than the budget: the invocation pauses with the intent still journalled and
        re-enqueues itself; the next ones read on, and nothing is sent until the update has ended."""
        estate, target = self._crash_after_the_first_accept()
        first = _budgeted(estate.deps(owner="first", inline=False))

        run_rotation(first, estate.journal.list(KEY.uri)[0].rotation_id)

        state = estate.journal.list(KEY.uri)[0]
        assert state.status == RotationStatus.RUNNING
        assert next(s for s in state.steps if s.name == "repoint_workspaces").status == "waiting"
        assert [(i.target, i.operation) for i in state.in_flight] == [(target, None)]
        assert len(first.dispatcher.delays) == 1  # type: ignore[attr-defined]  # its continuation
        assert estate.workspaces.patches[target.lower()] == 1
        _invoke_to_the_end(estate, _budgeted(estate.deps(owner="next", inline=False)))
        _check_cut_over(estate)
        assert sorted(estate.workspaces.patches.values()) == [1, 1]

    def test_an_update_that_ended_failed_is_sent_again(self) -> None:
        """The lost update ended ``Failed`` (the workspace kept its key): the successor PATCHes once more, then."""
        estate, target = self._crash_after_the_first_accept()
        new = estate.journal.list(KEY.uri)[0].new_version
        assert new is not None
        estate.workspaces.fail_versions.add(new)
        estate.clock.advance(timedelta(seconds=300))  # past the update's end: a read shows its outcome
        failed = estate.workspaces.get_workspace(target)
        estate.workspaces.fail_versions.clear()

        _invoke_to_the_end(estate, _budgeted(estate.deps(owner="successor", inline=False)))

        assert failed.provisioning_state == "Failed"
        assert not failed.key_identifier.endswith(f"/{new}")
        state = estate.journal.list(KEY.uri)[0]
        assert state.status == RotationStatus.AWAITING_RETIREMENT, state.error
        patches = {w.rsplit("/", 1)[-1]: n for w, n in estate.workspaces.patches.items()}
        assert patches == {target.lower().rsplit("/", 1)[-1]: 2, **{n: 1 for n in patches if n not in target.lower()}}
        assert all(
            w.key_identifier.endswith(f"/{new}")
            for w in estate.workspaces.workspaces.values()
            if "/cmk/" in w.key_identifier
        )


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
    assert len(LONG_OPERATION_CASES) > len(ROTATION_CASES)
    assert len(RETIRE_CASES) >= 2 * 3
