"""The rotation as an explicit step protocol over a journalled state. Pure: no I/O.

A rotation runs named steps in order; the journal records the list it started with and each step's
outcome. ``next_step`` says what to run next from the recorded state alone, and ``guard`` rejects
states that cannot happen (a corrupted or hand-edited journal), so the executor never acts on
nonsense. With the consumer kinds registered today (``rotation.consumers``)::

    plan -> new_version -> verify_version -> repoint_storage -> repoint_workspaces
         -> track_versionless -> rewrap -> verify_consumers -> cut_over      (run_rotation)
    retire                                                                 (sweep, after the grace period)

Each side effect is bracketed by an ``Intent`` written to the journal before it and cleared
with the outcome after it, so a process killed in between leaves a record of what it was doing.
Concurrent re-points keep theirs in ``RotationState.in_flight`` (a set, one per consumer).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from rotation.domain.model import (
    TERMINAL_STATUSES,
    ConsumerChange,
    RetirementEvidence,
    RewrapSummary,
    RotationStatus,
    StepRecord,
    Trigger,
)
from rotation.domain.operations import Operation
from rotation.errors import NeedsHuman


class Step(StrEnum):
    """The workflow's own steps. Consumer steps are named by their units (``rotation.consumers``)."""

    PLAN = "plan"
    NEW_VERSION = "new_version"
    VERIFY_VERSION = "verify_version"
    VERIFY_CONSUMERS = "verify_consumers"
    CUT_OVER = "cut_over"
    RETIRE = "retire"


#: The run steps before the consumer steps and after them. The whole list of a build is
#: ``rotation.consumers.RUN_STEPS``: these around each registered kind's re-point steps, then its
#: settle steps. A rotation records the list it started with (``RotationState.run_steps``) and keeps
#: following it, so a deploy that inserts or reorders steps never strands a rotation in flight.
BEFORE_CONSUMERS: tuple[str, ...] = (Step.PLAN, Step.NEW_VERSION, Step.VERIFY_VERSION)
AFTER_CONSUMERS: tuple[str, ...] = (Step.VERIFY_CONSUMERS, Step.CUT_OVER)

#: The list every rotation followed before the journal recorded it: what a journal entry without
#: ``run_steps`` started with. Never change it.
HISTORICAL_RUN_STEPS: tuple[str, ...] = (
    "plan",
    "new_version",
    "verify_version",
    "repoint_storage",
    "repoint_workspaces",
    "track_versionless",
    "rewrap",
    "verify_consumers",
    "cut_over",
)

#: Statuses in which run_rotation still has steps to drive.
RUNNABLE_STATUSES = frozenset({RotationStatus.RUNNING, RotationStatus.WAITING})
#: Statuses in which a rotation may hold its key (see ``holds_key``) and the reconciler has work.
HOLDING_STATUSES = frozenset({*RUNNABLE_STATUSES, RotationStatus.AWAITING_RETIREMENT})
ACTIVE_STATUSES = HOLDING_STATUSES

ROTATION_TAG = "rotation-id"


@dataclass(frozen=True)
class Intent:
    """A side effect about to happen: what and to which target (a version or an ARM id)."""

    action: str  # create_version | set_storage_version | set_workspace_key | rollback_* | disable_version | ...
    target: str
    value: str = ""
    recorded_at: datetime | None = None
    #: The long-running operation ARM accepted for this write, while it runs (polled by a later invocation).
    operation: Operation | None = None


@dataclass(frozen=True)
class RotationState:
    """Everything the journal records about one rotation. Never key material."""

    rotation_id: str
    key_uri: str
    status: RotationStatus
    trigger: Trigger
    started_at: datetime
    updated_at: datetime
    reason: str = ""
    dry_run: bool = False
    stage: str = Step.PLAN.value
    old_version: str | None = None
    new_version: str | None = None
    adopt_version: str | None = None
    retire_after: datetime | None = None
    steps: tuple[StepRecord, ...] = ()
    consumers: tuple[ConsumerChange, ...] = ()
    rewrap: RewrapSummary | None = None
    error: tuple[str, str] | None = None  # (code, message)
    intent: Intent | None = None
    #: Side effects in flight at the same time (a re-point step moving several consumers at once),
    #: one per target; each is added before its write and removed with its outcome.
    in_flight: tuple[Intent, ...] = ()
    lease_owner: str | None = None
    lease_expires: datetime | None = None
    history: tuple[str, ...] = field(default=())  # compact log-safe log of intents/outcomes
    #: The run steps this rotation started with, in order (see ``RUN_STEPS``).
    run_steps: tuple[str, ...] = HISTORICAL_RUN_STEPS
    #: 1 for a first try; a retry the reconciler (or on-call) started of a stopped rotation counts on.
    attempt: int = 1
    #: The stopped rotation this one retries (its version is adopted, never a new one per attempt).
    retry_of: str | None = None
    #: What the latest retirement check relied on (the one that disabled the old version, once retired).
    evidence: RetirementEvidence | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def step_done(self, step: str) -> bool:
        return any(r.name == step and r.status in ("succeeded", "skipped") for r in self.steps)


def holds_key(state: RotationState, now: datetime) -> bool:
    """Whether ``state`` keeps any other rotation of its key from starting, whoever triggers it.

    A running or waiting rotation holds its key; so does one that cut over, until its grace period
    ends. After that a new rotation may start even if the old version cannot retire yet (say a
    versionless account has not adopted, or blobs failed to re-wrap): the old rotation keeps trying to
    retire its own old version, and a key must never expire because an earlier retirement is stuck.
    """
    if state.status in RUNNABLE_STATUSES:
        return True
    if state.status == RotationStatus.AWAITING_RETIREMENT:
        return state.retire_after is None or now < state.retire_after
    return False


def next_step(state: RotationState) -> str | None:
    """The first of the rotation's recorded run steps not yet done, or None when the run is over."""
    if state.terminal or state.status == RotationStatus.AWAITING_RETIREMENT:
        return None
    for step in state.run_steps:
        if not state.step_done(step):
            return step
    return None


def guard(state: RotationState, known_steps: Collection[str] | None = None) -> None:
    """Reject a state that no sequence of steps could have produced.

    Order is checked against the step list the rotation recorded when it started, not this build's.

    Args:
        known_steps: the step names this build can run; a recorded step outside them needs a human
            (a build that dropped a step while a rotation still had it to do).

    Raises:
        NeedsHuman: the journal entry is inconsistent; acting on it could harm consumers.
    """
    problems: list[str] = []
    planned = state.run_steps
    done = [s for s in planned if state.step_done(s)]
    if done != list(planned[: len(done)]):
        problems.append(f"steps completed out of order: {done}")
    if known_steps is not None:
        unknown = [s for s in planned if s not in known_steps and not state.step_done(s)]
        if unknown:
            problems.append(f"steps {unknown} are not known to this build")
    if state.step_done(Step.PLAN) and state.old_version is None and not state.terminal:
        problems.append("planned without an old version")
    if state.step_done(Step.NEW_VERSION) and not state.new_version:
        problems.append("new_version step done but no new version recorded")
    if state.new_version is not None and state.new_version == state.old_version:
        problems.append("new version equals the old version")
    if state.status in (RotationStatus.AWAITING_RETIREMENT, RotationStatus.RETIRED) and not state.step_done(
        Step.CUT_OVER
    ):
        problems.append(f"status {state.status.value} before cut-over")
    if state.status == RotationStatus.RETIRED and not state.step_done(Step.RETIRE):
        problems.append("retired without the retire step")
    if problems:
        raise NeedsHuman(f"rotation {state.rotation_id} journal is inconsistent: " + "; ".join(problems))


def record_step(state: RotationState, step: str, status: str, now: datetime, detail: str = "") -> RotationState:
    """The state with ``step``'s record replaced by a new one (one record per step name), in run order."""
    name = str(step)
    previous = next((r for r in state.steps if r.name == name), None)
    begun = previous.started_at if previous is not None else now
    finished = None if status in ("started", "waiting") else now
    record = StepRecord(name, status, begun, finished, detail)  # type: ignore[arg-type]
    steps = (*(r for r in state.steps if r.name != name), record)
    index = {s: i for i, s in enumerate((*state.run_steps, Step.RETIRE.value))}
    ordered = tuple(sorted(steps, key=lambda r: index.get(r.name, len(index))))
    return replace(state, steps=ordered, stage=name, updated_at=now)


def with_consumer(state: RotationState, change: ConsumerChange) -> RotationState:
    """The state with the record of ``change.resource_id`` replaced (or added)."""
    wanted = change.resource_id.lower()
    if any(c.resource_id.lower() == wanted for c in state.consumers):
        consumers = tuple(change if c.resource_id.lower() == wanted else c for c in state.consumers)
    else:
        consumers = (*state.consumers, change)
    return replace(state, consumers=consumers)


def consumer(state: RotationState, resource_id: str) -> ConsumerChange | None:
    return next((c for c in state.consumers if c.resource_id.lower() == resource_id.lower()), None)


def with_intent(state: RotationState, intent: Intent | None, now: datetime) -> RotationState:
    """Record (or clear, with the outcome) the side effect in flight, keeping a compact history line."""
    if intent is not None:
        line = f"{now.isoformat()} intent {intent.action} {intent.target} {intent.value}".rstrip()
    elif state.intent is not None:
        line = f"{now.isoformat()} done {state.intent.action} {state.intent.target}"
    else:
        return state
    if intent is not None:
        intent = replace(intent, recorded_at=now)
    return replace(state, intent=intent, history=(*state.history, line)[-60:], updated_at=now)


def with_in_flight(state: RotationState, intent: Intent, now: datetime) -> RotationState:
    """Add a concurrent side effect about to happen (replacing one left on the same target)."""
    line = f"{now.isoformat()} intent {intent.action} {intent.target} {intent.value}".rstrip()
    others = tuple(i for i in state.in_flight if i.target.lower() != intent.target.lower())
    return replace(
        state,
        in_flight=(*others, replace(intent, recorded_at=now)),
        history=(*state.history, line)[-60:],
        updated_at=now,
    )


def without_in_flight(state: RotationState, target: str, now: datetime, outcome: str = "done") -> RotationState:
    """Remove the concurrent side effect on ``target`` with its outcome (``done`` or why it failed)."""
    gone = [i for i in state.in_flight if i.target.lower() == target.lower()]
    if not gone:
        return state
    line = f"{now.isoformat()} {outcome} {gone[0].action} {target}"
    return replace(
        state,
        in_flight=tuple(i for i in state.in_flight if i.target.lower() != target.lower()),
        history=(*state.history, line)[-60:],
        updated_at=now,
    )


def with_operation(state: RotationState, target: str, operation: Operation, now: datetime) -> RotationState:
    """Record the long-running operation ARM accepted for the in-flight write on ``target``."""
    line = f"{now.isoformat()} accepted {target} (polling {operation.header})"
    in_flight = tuple(
        replace(i, operation=operation) if i.target.lower() == target.lower() else i for i in state.in_flight
    )
    return replace(state, in_flight=in_flight, history=(*state.history, line)[-60:], updated_at=now)


def awaiting(state: RotationState, target: str) -> Intent | None:
    """The in-flight write on ``target`` whose long-running operation was accepted, if any."""
    return next((i for i in state.in_flight if i.target.lower() == target.lower() and i.operation is not None), None)


def settled(state: RotationState, now: datetime) -> RotationState:
    """No side effect in flight any more (a step that reconciled the world, or stopped)."""
    return replace(with_intent(state, None, now), in_flight=())
