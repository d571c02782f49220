"""The executor: claims a rotation, drives its recorded steps, journals intent and outcome of every write.

One ``Execution`` is one executor's pass over one rotation. It holds the journal entry's state and
etag, renews its claim with every journal write, and brackets each side effect with an intent
written before and the outcome after (``side_effect``/``write``), so a process killed in between
leaves a record and the step, run again, re-checks the world first. Step bodies live in
``rotation.service.steps``; consumer steps come from the registered units (``rotation.consumers``).

A consumer step re-points its consumers concurrently (``repoint_concurrency`` at most): each
write's intent joins ``state.in_flight`` before it and leaves it with its outcome (``in_flight``/
``write_in_flight``); every read-modify-write of the state and every journal write happens under
one lock, so the one journal entry (one ETag) records several intents at once. A crash with several
in flight leaves all of them; the step, run again, re-reads each consumer before writing.

The same pass walks a dry run: writes switched off (``write`` records what it would do and returns
False), nothing journalled, every step recorded ``skipped`` with what it would do.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Literal, TypeVar

from rotation.consumers import AnyUnit, ConsumerRegistry, Reading
from rotation.domain.model import AuditOutcome, ConsumerChange, RotationStatus
from rotation.domain.operations import (
    MAX_READ_BACK_INTERVAL_S,
    MIN_POLL_INTERVAL_S,
    Operation,
    OperationPending,
    OperationPoll,
    polling_url_problem,
    provisioning_ended,
)
from rotation.domain.steps import (
    Intent,
    RotationState,
    Step,
    awaiting,
    consumer,
    guard,
    next_step,
    record_step,
    settled,
    with_consumer,
    with_in_flight,
    with_intent,
    with_operation,
    without_in_flight,
)
from rotation.errors import (
    JournalConflict,
    NeedsHuman,
    PreconditionFailed,
    RotationError,
    TransientError,
    VerificationFailed,
)
from rotation.logs import bound, get_logger
from rotation.retry import run_step_with_retries
from rotation.service import steps
from rotation.service.deps import Dependencies
from rotation.service.outcomes import audit_outcome, safe_message
from rotation.service.queries import managed_key
from rotation.service.views import RotationView

_log = get_logger("rotation.workflow")
T = TypeVar("T")

StepResult = Literal["done", "waiting", "stop", "paused"]
StepBody = Callable[["Execution"], StepResult]
Edit = Callable[[RotationState], RotationState]
Defer = Callable[[Edit], None]


def run_rotation(deps: Dependencies, rotation_id: str) -> RotationView:
    """Drive a rotation's steps until it is terminal, cut over or waiting. Idempotent: resumes after a crash.

    If another executor holds an unexpired claim on the rotation, returns its current view untouched.
    """
    state, etag = deps.journal.load(rotation_id)
    budget = deps.invocation_budget_seconds
    with bound(rotation_id=rotation_id, key=state.key_uri, trigger=state.trigger.kind.value):
        deadline = deps.clock.now() + timedelta(seconds=budget) if budget is not None else None
        execution = Execution(deps, state, etag, deadline=deadline)
        if next_step(state) is None or not execution.claim():
            _log.info("rotation_claimed_elsewhere", owner=state.lease_owner)
            return RotationView.from_state(execution.state)
        try:
            execution.drive()
        except JournalConflict:
            _log.info("rotation_taken_over")
            state, _ = deps.journal.load(rotation_id)
            return RotationView.from_state(state)
        finally:
            execution.release()
        if execution.continue_after is not None:
            # Operations still run at the budget: the next invocation polls them on (never a second write).
            deps.dispatcher.dispatch(rotation_id, delay_seconds=execution.continue_after)
            _log.info("rotation_continued", stage=execution.state.stage, delay_s=execution.continue_after)
        final = execution.state
        _log.info(
            "rotation_summary",
            status=final.status.value,
            stage=final.stage,
            old_version=final.old_version,
            new_version=final.new_version,
            consumers=len(final.consumers),
        )
        return RotationView.from_state(final)


def retire_rotation(deps: Dependencies, rotation_id: str) -> RotationView:
    """Run the ``retire`` step of a cut-over rotation (the reconciler's, after the grace period).

    The step disables the old version once the grace period is over and nothing uses it, and
    otherwise records why it waits. Never deletes; safe to repeat. A rotation another executor has
    claimed is left to it. Errors propagate (the rotation stays awaiting retirement).
    """
    state, etag = deps.journal.load(rotation_id)
    if state.status != RotationStatus.AWAITING_RETIREMENT:
        return RotationView.from_state(state)
    with bound(rotation_id=rotation_id, key=state.key_uri, trigger="timer"):
        execution = Execution(deps, state, etag)
        if not execution.claim(lazily=True):
            return RotationView.from_state(state)
        try:
            body_for(Step.RETIRE, deps.consumers)(execution)
        except JournalConflict:
            state, _ = deps.journal.load(rotation_id)
            return RotationView.from_state(state)
        finally:
            execution.release()
        return RotationView.from_state(execution.state)


def body_for(step: str, registry: ConsumerRegistry) -> StepBody:
    """The body of ``step``: the workflow's own, or a registered unit's re-point or settle step.

    Raises:
        NeedsHuman: no unit of this build owns the step.
    """
    own = steps.WORKFLOW_STEPS.get(step)
    if own is not None:
        return own
    owner = registry.owner(step)
    if owner is None:
        raise NeedsHuman(f"step {step} is not known to this build")
    unit, role = owner
    return partial(steps.repoint if role == "repoint" else steps.settle, unit=unit, step=step)


def known_steps(registry: ConsumerRegistry) -> frozenset[str]:
    return frozenset({*steps.WORKFLOW_STEPS, *(s for u in registry for s in (u.repoint_step, u.settle_step) if s)})


def _composed(edits: Sequence[Edit]) -> Edit:
    """One edit applying ``edits`` in order."""

    def apply(state: RotationState) -> RotationState:
        for edit in edits:
            state = edit(state)
        return state

    return apply


class _QueuedEdit:
    """An edit of the state waiting for a journal write (see ``Execution.change``)."""

    def __init__(self, edit: Callable[[RotationState], RotationState]) -> None:
        self.edit = edit
        self.done = False
        self.error: BaseException | None = None


class Execution:
    """One executor's pass over one rotation: holds the state and the etag of the journal entry.

    It is the ``ConsumerRun`` the units see: ``ports``, ``key``, ``state``, ``dry_run``, ``write``.
    """

    def __init__(
        self,
        deps: Dependencies,
        state: RotationState,
        etag: str,
        *,
        dry_run: bool = False,
        deadline: datetime | None = None,
    ) -> None:
        self.deps = deps
        self.state = state
        self.etag = etag
        # The journal entry is input: the key it names must still be one of ROTATION_MANAGED_KEYS (every path
        # that acts, run, resume, sweep, retire, rollback, HTTP/CLI by id, goes through here).
        self.key = managed_key(deps, state.key_uri)
        self.claimed = False
        self.dry_run = dry_run
        self.would: list[str] = []  # a dry run's writes, as "action target value"
        self.writes = 0  # writes done since the current step started
        #: When this invocation must stop polling long-running operations (None: poll them to the end).
        self.deadline = deadline
        #: Set when a step paused at the budget: the continuation runs this many seconds later.
        self.continue_after: float | None = None
        # Unique per pass, so two invocations in one worker process never share a claim.
        self.owner = f"{deps.owner}#{secrets.token_hex(3)}"
        # Concurrent re-points share this pass: every read-modify-write of ``state`` and every
        # journal write happens under this lock (one journal entry, one ETag).
        self._lock = threading.RLock()
        self._queue: list[_QueuedEdit] = []  # edits waiting for the next journal write (``change``)
        self._held: dict[int, list[Edit]] = {}  # by thread: outcomes for its next journal write (``change``)
        self._queue_lock = threading.Lock()

    @property
    def ports(self) -> Dependencies:
        return self.deps

    def unit(self, change: ConsumerChange) -> AnyUnit:
        """The registered unit of a journalled consumer. Raises NeedsHuman for a kind this build lacks."""
        unit = self.deps.consumers.unit(change.kind)
        if unit is None:
            raise NeedsHuman(f"consumer kind {change.kind} of {change.resource_id} is not known to this build")
        return unit

    # -- journal ---------------------------------------------------------------------------

    def commit(self, state: RotationState) -> None:
        """Write ``state`` (renewing our claim) if nobody else wrote since we read. A dry run keeps it in memory."""
        with self._lock:
            now = self.deps.clock.now()
            if self.dry_run:
                self.state = replace(state, updated_at=now)
                return
            state = replace(
                state,
                updated_at=now,
                lease_owner=self.owner if self.claimed else state.lease_owner,
                lease_expires=now + timedelta(seconds=self.deps.lease_seconds) if self.claimed else state.lease_expires,
            )
            self.etag = self.deps.journal.save(state, self.etag)
            self.state = state

    def change(self, edit: Callable[[RotationState], RotationState], *, wait: bool = True) -> None:
        """Journal ``edit`` of the current state, atomically with respect to concurrent re-points.

        Group commit: edits queued by other threads while a write is under way go out together in
        the next write (one ETag-guarded save), so N consumers in flight cost far fewer than N
        round trips each. Returns once a save holding the edit succeeded; raises what that save raised.

        ``wait`` False: hold ``edit`` and return at once; it goes out with this thread's next ``change``
        (the intent of the next consumer it re-points: one journal write instead of two, and still before
        that consumer's write) or with ``flush``. Only for an outcome, whose write has ended: until that
        save its intent stays journalled, as after a crash, and a step reading its consumer again re-checks
        it. The caller flushes once its threads are done, before anything else is committed.
        """
        me = threading.get_ident()
        with self._queue_lock:
            if not wait:
                self._held.setdefault(me, []).append(edit)
                return
            held = self._held.pop(me, [])
        edit_ = _QueuedEdit(_composed([*held, edit]) if held else edit)
        with self._queue_lock:
            self._queue.append(edit_)
        with self._lock:
            if not edit_.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                state = self.state
                for queued in batch:
                    state = queued.edit(state)
                try:
                    self.commit(state)
                except BaseException as exc:
                    for queued in batch:
                        queued.done, queued.error = True, exc
                    raise
                for queued in batch:
                    queued.done = True
        if edit_.error is not None:
            raise edit_.error

    def flush(self) -> None:
        """Journal the edits every thread holds (``change(..., wait=False)``) in one write; none held: no write."""
        with self._queue_lock:
            held = [edit for edits in self._held.values() for edit in edits]
            self._held.clear()
        if held:
            self.change(_composed(held))

    def claim(self, *, lazily: bool = False) -> bool:
        """Take the rotation unless another executor's claim has not lapsed; False if someone else wrote first.

        Args:
            lazily: write the claim with the step's first journal write instead of now (a step that
                usually only records that it waits, like ``retire``, then costs one write).
        """
        state = self.state
        now = self.deps.clock.now()
        if (
            state.lease_owner is not None
            and state.lease_owner != self.owner
            and state.lease_expires is not None
            and state.lease_expires > now
        ):
            return False
        self.claimed = True
        if lazily:
            return True
        try:
            self.commit(state)
        except JournalConflict:
            self.claimed = False
            return False
        if state.lease_owner is not None:
            _log.info("rotation_resumed", previous_owner=state.lease_owner, stage=state.stage)
        return True

    def release(self) -> None:
        """Give the claim up; after a pause, keep it until the continuation is due, so the reconciler does
        not start a second chain of invocations beside the continuation (it resumes the rotation if the
        continuation message is lost, once the claim has lapsed)."""
        if not self.claimed:
            return
        self.claimed = False
        expires = None
        if self.continue_after is not None:
            expires = self.deps.clock.now() + timedelta(seconds=self.continue_after)
        owner = self.owner if expires is not None else None
        with contextlib.suppress(JournalConflict, TransientError):  # else the claim simply expires
            self.commit(replace(self.state, lease_owner=owner, lease_expires=expires))

    @contextmanager
    def side_effect(self, action: str, target: str, value: str = "") -> Iterator[None]:
        """Journal the intent, let the caller act, journal the outcome (intent cleared)."""
        now = self.deps.clock.now()
        self.commit(with_intent(self.state, Intent(action, target, value), now))
        _log.info("side_effect_intent", action=action, target=target, value=value)
        try:
            yield
        except RotationError as exc:
            # Not a crash: we know it did not complete. The step re-checks the world if it runs again.
            failed = replace(self.state, history=(*self.state.history, f"failed {action} {target}: {exc.code}"))
            self.commit(with_intent(failed, None, self.deps.clock.now()))
            raise
        self.commit(with_intent(self.state, None, self.deps.clock.now()))
        _log.info("side_effect_done", action=action, target=target)

    @contextmanager
    def in_flight(self, action: str, target: str, value: str = "", defer: Defer | None = None) -> Iterator[None]:
        """``side_effect`` for one of several concurrent writes: the intent joins ``state.in_flight``
        (one per target) and leaves it with the outcome; each journal write is serialised.

        ``defer``: given, the outcome of a write that completed is handed to it instead of journalled here,
        for the caller to journal with what it records next (one journal write instead of two).
        """
        self.change(lambda s: with_in_flight(s, Intent(action, target, value), self.deps.clock.now()))
        _log.info("side_effect_intent", action=action, target=target, value=value)
        try:
            yield
        except RotationError as exc:
            outcome = f"failed ({exc.code})"
            self.change(lambda s: without_in_flight(s, target, self.deps.clock.now(), outcome))
            raise
        done: Edit = lambda s: without_in_flight(s, target, self.deps.clock.now())  # noqa: E731
        if defer is None:
            self.change(done)
        else:
            defer(done)
        _log.info("side_effect_done", action=action, target=target)

    def write(self, action: str, target: str, value: str, act: Callable[[], object]) -> bool:
        """``act()`` as a journalled side effect; True when it acted. A dry run records it instead."""
        return self._write(self.side_effect, action, target, value, act)

    def write_in_flight(
        self, action: str, target: str, value: str, act: Callable[[], object], defer: Defer | None = None
    ) -> bool:
        """``write`` for one of a step's concurrent re-points (thread-safe; see ``in_flight``)."""
        return self._write(partial(self.in_flight, defer=defer), action, target, value, act)

    def awaiting(self, target: str) -> bool:
        """Whether an accepted long-running operation on ``target`` is journalled (a later invocation polls it)."""
        with self._lock:
            return awaiting(self.state, target) is not None

    def await_unanswered(
        self, action: str, target: str, value: str, reading: Reading, read: Callable[[], Reading]
    ) -> Reading:
        """``reading``, or, when this long-running write's intent is journalled without an operation, the first
        reading whose ``provisioningState`` is terminal.

        Such an intent is left by an invocation that died after journalling it and before journalling ARM's
        answer: the write may have been accepted, and its polling URL is lost. ARM keeps a resource's
        ``provisioningState`` non-terminal while an operation on it runs (RPC async-api-reference.md:
        "Updating" for a PATCH), so the consumer is re-read, ``MIN_POLL_INTERVAL_S`` doubling up to
        ``MAX_READ_BACK_INTERVAL_S`` apart, until it ends; the caller judges from that reading, and writes
        again only if the write did not take. Nothing is sent while it runs.

        Raises:
            OperationPending: still running when the next wait would cross this invocation's deadline (the
                intent stays journalled; the next invocation reads on).
        """
        if self.dry_run or provisioning_ended(reading.provisioning_state):
            return reading
        with self._lock:
            left = next((i for i in self.state.in_flight if i.target.lower() == target.lower()), None)
        if left is None or left.operation is not None or (left.action, left.value) != (action, value):
            return reading
        _log.info("operation_unanswered", action=action, target=target, provisioning_state=reading.provisioning_state)
        wait = MIN_POLL_INTERVAL_S
        while not provisioning_ended(reading.provisioning_state):
            if self._past_deadline_after(wait):
                raise OperationPending(target, wait)
            self.deps.sleep(wait)
            reading = read()
            wait = min(wait * 2, MAX_READ_BACK_INTERVAL_S)
        _log.info("operation_unanswered_ended", target=target, provisioning_state=reading.provisioning_state)
        return reading

    def write_long_running(
        self,
        action: str,
        target: str,
        value: str,
        begin: Callable[[], Operation | None],
        poll: Callable[[Operation], OperationPoll],
    ) -> bool:
        """``write_in_flight`` for an ARM write that may be accepted as a long-running operation.

        The intent is journalled, ``begin()`` sends the write; when ARM accepts it as an operation, its
        polling URL (checked against the settings) joins the intent in the journal before any poll. Then
        it is polled until done, or until this invocation's deadline: ``OperationPending`` leaves intent
        and URL journalled, and the next invocation polls the journalled operation on; the write is never
        sent again for it. A journalled URL is input: one that fails the check stops the rotation for a
        human, and nothing is sent to it. True when it acted (False in a dry run, which records it).

        Raises:
            OperationPending: still running at the deadline.
            NeedsHuman: a polling URL (from ARM or from the journal) that the settings do not allow.
        """
        if self.dry_run:
            with self._lock:
                self.would.append(f"{action} {target} {value}".rstrip())
            return False
        with self._lock:
            journalled = awaiting(self.state, target)
        if journalled is not None and (journalled.action, journalled.value) == (action, value):
            assert journalled.operation is not None
            operation = journalled.operation
            self._check_polling_url(operation, target, "the journalled operation")
            _log.info("operation_resumed", action=action, target=target, header=operation.header)
            first_wait = 0.0  # the continuation was delayed by Retry-After: poll at once, so each invocation polls
        else:
            self.change(lambda s: with_in_flight(s, Intent(action, target, value), self.deps.clock.now()))
            _log.info("side_effect_intent", action=action, target=target, value=value)
            started = self._outcome_of(target, begin)
            if started is None:
                return self._done(action, target)
            operation = replace(started, accepted_at=self.deps.clock.now())
            self._outcome_of(target, lambda: self._check_polling_url(operation, target, "ARM's answer"))
            self.change(lambda s: with_operation(s, target, operation, self.deps.clock.now()))
            _log.info("operation_accepted", action=action, target=target, header=operation.header)
            first_wait = operation.retry_after_s
        self._outcome_of(target, lambda: self._await(target, operation, poll, first_wait))
        return self._done(action, target)

    def _check_polling_url(self, operation: Operation, target: str, source: str) -> None:
        problem = polling_url_problem(operation.url, self.deps.settings.arm_endpoint, target)
        if problem is not None:
            _log.error("polling_url_refused", target=target, source=source, problem=problem)
            raise NeedsHuman(f"{source} for {target[:300]} is refused: {problem}; nothing was sent to it")

    def _outcome_of(self, target: str, act: Callable[[], T]) -> T:
        """``act()``; a ``RotationError`` clears the in-flight intent with its outcome (``OperationPending``
        leaves it: the operation still runs)."""
        try:
            return act()
        except RotationError as exc:
            outcome = f"failed ({exc.code})"
            self.change(lambda s: without_in_flight(s, target, self.deps.clock.now(), outcome))
            raise

    def _done(self, action: str, target: str) -> bool:
        self.change(lambda s: without_in_flight(s, target, self.deps.clock.now()))
        _log.info("side_effect_done", action=action, target=target)
        with self._lock:
            self.writes += 1
        return True

    def _past_deadline_after(self, wait: float) -> bool:
        """Whether waiting ``wait`` seconds now would cross this invocation's deadline (the budget)."""
        return self.deadline is not None and self.deps.clock.now() + timedelta(seconds=wait) > self.deadline

    def _await(
        self, target: str, operation: Operation, poll: Callable[[Operation], OperationPoll], first_wait: float
    ) -> None:
        """Poll ``operation`` every ``Retry-After`` until it is done or gone, or raise ``OperationPending``
        when the next wait would cross the deadline (a first wait of 0 always polls once, so every
        invocation makes progress whatever its budget). A gone operation (404) is left to the caller's read-back."""
        wait = first_wait
        while True:
            if wait > 0 and self._past_deadline_after(wait):
                raise OperationPending(target, max(wait, operation.retry_after_s))
            self.deps.sleep(wait)
            answer = poll(operation)
            if answer.status == "running":
                wait = answer.retry_after_s
                continue
            if answer.status == "gone":
                _log.warning("operation_record_gone", target=target)
            return

    def pause(self, step: str, pending: Sequence[OperationPending], label: str) -> StepResult:
        """Stop ``step`` at the invocation's budget with operations still running: journal which consumers
        await which operation (their intents keep the URLs) and have a continuation run after the shortest
        ``Retry-After``."""
        delay = min(p.retry_after_s for p in pending)
        names = ", ".join(sorted(p.target.rstrip("/").rsplit("/", 1)[-1] for p in pending))
        detail = f"{len(pending)} {label} awaiting their update operations (continued next invocation): {names}"
        self.commit(record_step(self.state, step, "waiting", self.deps.clock.now(), detail[:500]))
        self.continue_after = delay
        _log.info("step_paused", step=step, awaiting=len(pending), retry_after_s=delay)
        return "paused"

    def _write(
        self,
        bracket: Callable[[str, str, str], contextlib.AbstractContextManager[None]],
        action: str,
        target: str,
        value: str,
        act: Callable[[], object],
    ) -> bool:
        if self.dry_run:
            with self._lock:
                self.would.append(f"{action} {target} {value}".rstrip())
            return False
        with bracket(action, target, value):
            act()
        with self._lock:
            self.writes += 1
        return True

    # -- driving ---------------------------------------------------------------------------

    def drive(self) -> None:
        registry = self.deps.consumers
        while (step := next_step(self.state)) is not None:
            try:
                guard(self.state, known_steps(registry))
                body = body_for(step, registry)
            except NeedsHuman as exc:
                self.stop(step, RotationStatus.NEEDS_HUMAN, exc, "needs_human")
                return
            self.commit(record_step(self.state, step, "started", self.deps.clock.now()))
            _log.info("step_started", step=step)
            self.writes = 0
            try:
                result = run_step_with_retries(
                    step, partial(body, self), attempts=self.deps.step_attempts, sleep=self.deps.sleep
                )
            except JournalConflict:
                raise
            except TransientError as exc:
                # Still failing after the step's retries: leave it resumable for the next trigger/sweep.
                self.commit(record_step(self.state, step, "failed", self.deps.clock.now(), safe_message(exc)))
                _log.warning("step_interrupted", step=step, error_code=exc.code, error=str(exc))
                return
            except VerificationFailed as exc:
                self.stop(step, RotationStatus.FAILED, exc, "failed")
                return
            except NeedsHuman as exc:
                self.stop(step, RotationStatus.NEEDS_HUMAN, exc, "needs_human")
                return
            except PreconditionFailed as exc:
                status = RotationStatus.REFUSED if step == Step.PLAN else RotationStatus.FAILED
                self.stop(step, status, exc, "refused" if step == Step.PLAN else "failed")
                return
            except RotationError as exc:
                self.stop(step, RotationStatus.FAILED, exc, "failed")
                return
            if result in ("stop", "paused"):
                return
            if result == "waiting":
                _log.info("step_waiting", step=step)
                return
            _log.info("step_succeeded", step=step)

    def walk(self) -> None:
        """A dry run: every recorded step and ``retire``, writes switched off, each recorded ``skipped``.

        A step that fails is recorded ``failed`` with its reason and the walk goes on; the first
        failure becomes the dry run's error.
        """
        assert self.dry_run
        registry = self.deps.consumers
        for step in (*self.state.run_steps, Step.RETIRE):
            if self.state.old_version is None and step != Step.PLAN:
                detail = "not reached: " + (self.state.error[1] if self.state.error else "no version to replace")
                self.commit(record_step(self.state, step, "skipped", self.deps.clock.now(), detail[:500]))
                continue
            try:
                body_for(step, registry)(self)
            except RotationError as exc:
                if step == Step.PLAN:
                    raise
                self.commit(record_step(self.state, step, "failed", self.deps.clock.now(), safe_message(exc)))
                if self.state.error is None:
                    self.state = replace(self.state, error=(exc.code, f"{step}: {safe_message(exc)}"))

    def stop(self, step: str, status: RotationStatus, exc: RotationError, outcome: AuditOutcome) -> None:
        now = self.deps.clock.now()
        state = settled(record_step(self.state, step, "failed", now, safe_message(exc)), now)
        state = replace(state, status=status, error=(exc.code, safe_message(exc)))
        audit_outcome(self.deps, state, outcome, f"{step}: {safe_message(exc)}")
        self.commit(state)
        _log.warning("rotation_stopped", step=step, status=status.value, error_code=exc.code, error=safe_message(exc))

    def finish_step(self, step: str, detail: str = "", state: RotationState | None = None) -> StepResult:
        """Record ``step`` done (``skipped`` in a dry run) with ``detail``, resolving any intent left over."""
        now = self.deps.clock.now()
        status = "skipped" if self.dry_run else "succeeded"
        # A step finishes only once it has reconciled the world, so an intent left by a crashed
        # executor (whose action the step then found already done) is resolved here.
        finished = settled(record_step(state or self.state, step, status, now, detail), now)
        self.commit(finished)
        return "done"

    # -- consumers -------------------------------------------------------------------------

    def update_consumer(self, change: ConsumerChange, *, commit: bool = True) -> None:
        if commit:
            self.change(lambda s: with_consumer(s, change))
            return
        with self._lock:
            self.state = with_consumer(self.state, change)

    def roll_back(self, change: ConsumerChange, exc: VerificationFailed) -> StepResult:
        """Put a consumer that failed back on the old version through its unit, then stop for a human."""
        return self.roll_back_all([(change, exc)])

    def roll_back_all(self, failures: Sequence[tuple[ConsumerChange, VerificationFailed]]) -> StepResult:
        """Put each consumer that failed back on its old version through its unit (one after another),
        then stop for a human with one audit record naming them all.

        A roll-back that is a long-running operation still running at the invocation's budget pauses the step
        as a re-point's does: its polling URL stays journalled, the consumer is journalled ``failed`` with
        ``REFUSED`` (the step, run again, rolls it back on: polls the operation, never sends it again), and
        the rotation stops only once every roll-back has ended.
        """
        found: dict[str, dict[str, Reading | None]] = {}
        pending: list[OperationPending] = []
        for change, exc in failures:
            current = consumer(self.state, change.resource_id) or change
            unit = self.unit(change)
            message = safe_message(exc)
            # Only a consumer a fresh discovery still finds is written to (the journal entry is input).
            if change.kind not in found:
                found[change.kind] = steps.found_again(self, unit)
            if change.resource_id.lower() in found[change.kind]:
                try:
                    unit.roll_back(self, change)
                except OperationPending as running:
                    pending.append(running)
                    self.update_consumer(replace(current, status="failed", detail=f"{steps.REFUSED}{message}"))
                    continue
            else:
                _log.warning("consumer_not_found_again", consumer=change.resource_id[:200])
            self.update_consumer(
                replace(current, status="rolled_back", after=change.before, detail=f"rolled back: {message}")
            )
            _log.warning("consumer_rolled_back", consumer=change.resource_id, error=message)
        if pending:
            return self.pause(self.state.stage, pending, "roll-backs")
        first = failures[0][1]
        message = safe_message(first)
        # Those rolled back by an earlier invocation of this roll-back too (it paused at the budget).
        rolled_back = [c for c in self.state.consumers if c.status == "rolled_back"]
        summary = "; ".join(f"{c.resource_id}: {c.detail.removeprefix('rolled back: ')}" for c in rolled_back)
        now = self.deps.clock.now()
        state = record_step(self.state, self.state.stage, "failed", now, message)
        state = replace(state, status=RotationStatus.ROLLED_BACK, error=(first.code, message))
        audit_outcome(self.deps, state, "rolled_back", summary)
        self.commit(state)
        return "stop"
