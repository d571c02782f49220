"""The consumer steps, the same for every kind: re-point (bounded concurrency), settle, verify every re-pointed one.

A unit owns its steps (``repoint_step``, ``settle_step``); these bodies run them for it. Each
consumer's re-point is the unit's self-contained ``repoint`` (read, journalled write, read back);
a refusal or a wrong read-back rolls that consumer back through its unit and stops the rotation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from rotation.consumers import AnyUnit, Reading, UnitPorts
from rotation.domain.model import ConsumerChange, KeyRef, RotationStatus
from rotation.domain.operations import Operation, OperationPending, OperationPoll
from rotation.domain.plan import PlanContext
from rotation.domain.steps import RotationState, Step, consumer, record_step, with_consumer
from rotation.errors import JournalConflict, TransientError, VerificationFailed
from rotation.service.outcomes import safe_message
from rotation.service.steps.pool import run_bounded
from rotation.service.steps.run import StepResult, StepRun

NOT_FOUND_AGAIN = "not found again as a consumer of the key: not acted on"
#: The detail of a consumer refused while others' operations were still pending at the budget: it is rolled
#: back with the step's other failures once none is pending (``repoint``).
REFUSED = "refused, to roll back: "


def found_again(run: StepRun, unit: AnyUnit) -> dict[str, Reading | None]:
    """The resource ids (lower-case) a fresh discovery finds as consumers of the rotation's key, of ``unit``'s
    kind, each with its reading when the discovery shows it (``unit.readings``). Journalled consumers are
    input: only these are ever written to."""
    mine = [item for item in unit.discover(run.deps, run.key) if unit.uses_key(item, run.key)]
    planned = unit.plan(mine, PlanContext(run.key, None, run.state.new_version))
    readings = unit.readings(mine, run.key)
    return {c.resource_id.lower(): readings.get(c.resource_id.lower()) for c in planned.consumers}


def repoint(run: StepRun, *, unit: AnyUnit, step: str) -> StepResult:
    """Move every consumer of ``unit``'s kind to the new version, up to ``repoint_concurrency`` at once.

    Each consumer is journalled (its intent in ``in_flight`` before its write, its outcome after)
    and read back. When one fails, those already moving finish, none starts after it, and only the
    failed ones are rolled back (consumers never started stay ``planned``). A dry run goes one by one.
    When long-running operations are still running at the invocation's budget the step pauses
    (``paused``; the executor re-enqueues the rotation): the next invocation polls them on, and only
    then rolls back any consumer refused meanwhile.
    A journalled consumer that a fresh discovery does not find as a consumer of the key is recorded as
    such and not touched.
    """
    todo = [c for c in run.state.consumers if c.kind == unit.kind]
    found = found_again(run, unit) if todo else {}
    bound = 1 if run.dry_run else run.deps.settings.repoint_concurrency
    outcomes = run_bounded(todo, lambda change: repoint_consumer(run, unit, change, found), bound)
    if all(o.error is None or isinstance(o.error, Exception) for o in outcomes):
        run.flush()  # the outcomes the re-points held (``repoint_consumer``), before anything else is journalled
    pending = [o.error for o in outcomes if isinstance(o.error, OperationPending)]
    errors = [o.error for o in outcomes if o.error is not None and not isinstance(o.error, OperationPending)]
    for error in errors:
        if not isinstance(error, Exception) or isinstance(error, JournalConflict):
            raise error  # the process is going down, or another executor took over: nothing to roll back
    refused = [(o.item, o.error) for o in outcomes if isinstance(o.error, VerificationFailed)]
    fatal = [e for e in errors if not isinstance(e, TransientError | VerificationFailed)]
    if pending and not fatal:
        # Operations still run at the invocation's budget: roll nothing back yet (what they move must be
        # known first). A refused consumer is journalled as such and rolled back once none is pending.
        for change, error in refused:
            detail = f"{REFUSED}{safe_message(error)}"
            run.update_consumer(
                replace(consumer(run.state, change.resource_id) or change, status="failed", detail=detail)
            )
        return run.pause(step, pending, unit.label)
    if refused:
        return run.roll_back_all(refused)
    if errors:
        raise errors[0]  # transient or fatal: the step's retry (or stop) decides; each consumer re-checks first
    moved = [o.item for o in outcomes if o.result]
    if run.dry_run:
        return run.finish_step(step, unit.describe(moved))
    return run.finish_step(step, f"{len(moved)} {unit.label} re-pointed")


class _OneConsumer:
    """The ``ConsumerRun`` one consumer's re-point sees: its writes are concurrent-safe and counted."""

    def __init__(self, run: StepRun) -> None:
        self._run = run
        self.writes = 0
        self.outcomes: list[Callable[[RotationState], RotationState]] = []  # of writes done, not yet journalled

    @property
    def ports(self) -> UnitPorts:
        return self._run.ports

    @property
    def key(self) -> KeyRef:
        return self._run.key

    @property
    def state(self) -> RotationState:
        return self._run.state

    @property
    def dry_run(self) -> bool:
        return self._run.dry_run

    def write(self, action: str, target: str, value: str, act: Callable[[], object]) -> bool:
        return self._count(self._run.write_in_flight(action, target, value, act, defer=self.outcomes.append))

    def write_long_running(
        self,
        action: str,
        target: str,
        value: str,
        begin: Callable[[], Operation | None],
        poll: Callable[[Operation], OperationPoll],
    ) -> bool:
        return self._count(self._run.write_long_running(action, target, value, begin, poll))

    def awaiting(self, target: str) -> bool:
        return self._run.awaiting(target)

    def await_unanswered(
        self, action: str, target: str, value: str, reading: Reading, read: Callable[[], Reading]
    ) -> Reading:
        return self._run.await_unanswered(action, target, value, reading, read)

    def _count(self, acted: bool) -> bool:
        if acted or self._run.dry_run:
            self.writes += 1
        return acted


def repoint_consumer(
    run: StepRun, unit: AnyUnit, change: ConsumerChange, found: Mapping[str, Reading | None] | None = None
) -> bool:
    """One consumer, self-contained: its unit reads it, writes (intent journalled before, outcome
    after) and reads it back; then its record and the write's outcome are held for this thread's next
    journal write (the intent of the next consumer it re-points, or the caller's ``run.flush()``, which
    the caller makes before journalling anything else). True when it wrote (in a dry run: would write).
    Safe to run for several consumers of one rotation at once.

    Raises:
        VerificationFailed: refused, or the read-back is not the new version; the caller rolls it back.

    ``found``: the consumers a fresh discovery found (``found_again``), computed here when not given;
    the reading it holds is the consumer's read before its write.
    """
    found = found_again(run, unit) if found is None else found
    if change.status == "failed" and change.detail.startswith(REFUSED):
        raise VerificationFailed(change.detail.removeprefix(REFUSED))  # refused while others were pending
    if change.resource_id.lower() not in found:
        if change.status != "failed" or change.detail != NOT_FOUND_AGAIN:
            run.update_consumer(replace(change, status="failed", detail=NOT_FOUND_AGAIN))
        return False
    one = _OneConsumer(run)
    try:
        updated = unit.repoint(one, change, found[change.resource_id.lower()])
    except Exception:
        _journal(run, one.outcomes, None)  # the outcome of a write done before the read-back failed
        raise
    # The write's outcome and the consumer's record go out in one journal write, held: with this thread's next
    # consumer's intent (journalled before that consumer's write) or with the step's flush (``repoint``).
    _journal(run, one.outcomes, updated, wait=False)
    return one.writes > 0


def _journal(
    run: StepRun,
    outcomes: Sequence[Callable[[RotationState], RotationState]],
    updated: ConsumerChange | None,
    *,
    wait: bool = True,
) -> None:
    edits = [*outcomes, *(() if updated is None else (lambda s: with_consumer(s, updated),))]
    if not edits:
        return

    def apply(state: RotationState) -> RotationState:
        for edit in edits:
            state = edit(state)
        return state

    run.change(apply, wait=wait)


def settle(run: StepRun, *, unit: AnyUnit, step: str) -> StepResult:
    """Let ``unit`` settle its consumers (track adoption, wait on a re-wrap); waits while it says so."""
    settled = unit.settle(run)
    state = run.state
    for change in settled.changes:
        state = with_consumer(state, change)
    if settled.rewrap is not None:
        state = replace(state, rewrap=settled.rewrap)
    now = run.deps.clock.now()
    if settled.skipped and not run.dry_run:
        run.commit(record_step(state, step, "skipped", now, settled.detail))
        return "done"
    if not settled.done:
        state = record_step(state, step, "waiting", now, settled.detail)
        run.commit(replace(state, status=RotationStatus.WAITING))
        return "waiting"
    if not run.dry_run:
        state = replace(state, status=RotationStatus.RUNNING)
    return run.finish_step(step, settled.detail, state)


def verify_consumers(run: StepRun) -> StepResult:
    """Read every re-pointed consumer back through its unit; one not on the new version is rolled back."""
    changed = [c for c in run.state.consumers if c.status == "changed"]
    if run.dry_run:
        registry = run.deps.consumers
        movable = [c for c in run.state.consumers if (u := registry.unit(c.kind)) is not None and u.repoint_step]
        planned = sum(c.status == "planned" for c in movable)
        return run.finish_step(Step.VERIFY_CONSUMERS, f"would read back every re-pointed consumer ({planned})")
    refused = [c for c in run.state.consumers if c.status == "failed" and c.detail.startswith(REFUSED)]
    if refused:
        # A roll-back of this step paused at the budget: roll back on (its operations are polled, not re-sent).
        return run.roll_back_all([(c, VerificationFailed(c.detail.removeprefix(REFUSED))) for c in refused])
    new = run.state.new_version
    assert new is not None
    listed = read_by_listing(run, changed)

    def problem_of(change: ConsumerChange) -> str | None:
        unit = run.unit(change)
        reading = listed.get(change.resource_id.lower()) or unit.read_back(run.deps, run.key, change)
        return None if reading is None else unit.verify(change, reading, new)

    # Reads only (those the listings did not answer): as many at once as the re-point steps write.
    outcomes = run_bounded(changed, problem_of, run.deps.settings.repoint_concurrency)
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    wrong = sorted((o for o in outcomes if o.result), key=lambda o: changed.index(o.item))
    if wrong:
        return run.roll_back(wrong[0].item, VerificationFailed(str(wrong[0].result)))
    return run.finish_step(Step.VERIFY_CONSUMERS, "every re-pointed consumer reads back the new version")


def read_by_listing(run: StepRun, changes: Sequence[ConsumerChange]) -> dict[str, Reading]:
    """The readings of ``changes`` that one discovery per kind answers, by lower-case resource id.

    A kind is listed when it has more consumers to read than discovery costs list calls (one per configured
    subscription, at the least); the others, and any consumer a listing misses, are read one by one.
    """
    by_kind: dict[str, list[ConsumerChange]] = {}
    for change in changes:
        by_kind.setdefault(change.kind, []).append(change)
    readings: dict[str, Reading] = {}
    for kind_changes in by_kind.values():
        if len(kind_changes) <= max(1, len(run.deps.settings.subscriptions)):
            continue
        unit = run.unit(kind_changes[0])
        listed = unit.readings(unit.discover(run.deps, run.key), run.key)
        readings.update(
            (c.resource_id.lower(), listed[c.resource_id.lower()])
            for c in kind_changes
            if c.resource_id.lower() in listed
        )
    return readings
