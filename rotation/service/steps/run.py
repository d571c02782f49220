"""What a step body sees of the executor running it (``rotation.service.executor.Execution``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from rotation.consumers import AnyUnit, ConsumerRun
from rotation.domain.model import ConsumerChange, KeyRef
from rotation.domain.operations import OperationPending
from rotation.domain.steps import RotationState
from rotation.errors import VerificationFailed
from rotation.service.deps import Dependencies

StepResult = Literal["done", "waiting", "stop", "paused"]


class StepRun(ConsumerRun, Protocol):
    """One executor's pass over one rotation, as the step bodies use it."""

    deps: Dependencies
    state: RotationState  # the bodies may replace it; ``commit`` journals it
    would: list[str]  # a dry run's writes, "action target value"
    writes: int  # writes done since the current step started

    @property
    def key(self) -> KeyRef: ...

    def commit(self, state: RotationState) -> None:
        """Journal ``state`` (renewing the claim); a dry run keeps it in memory."""
        ...

    def finish_step(self, step: str, detail: str = "", state: RotationState | None = None) -> StepResult:
        """Record ``step`` done (``skipped`` in a dry run) with ``detail``."""
        ...

    def update_consumer(self, change: ConsumerChange, *, commit: bool = True) -> None:
        """Record one consumer's change (journalled unless ``commit`` is False)."""
        ...

    def roll_back(self, change: ConsumerChange, exc: VerificationFailed) -> StepResult:
        """Put ``change``'s consumer back through its unit and stop the rotation for a human."""
        ...

    def roll_back_all(self, failures: Sequence[tuple[ConsumerChange, VerificationFailed]]) -> StepResult:
        """Put each failed consumer back through its unit and stop the rotation for a human."""
        ...

    def change(self, edit: Callable[[RotationState], RotationState], *, wait: bool = True) -> None:
        """Journal ``edit`` of the current state (thread-safe; concurrent edits may share one journal write).
        ``wait`` False: an outcome, held for this thread's next journal write (``flush`` before committing anything
        else)."""
        ...

    def flush(self) -> None:
        """Journal the edits held by ``change(..., wait=False)``."""
        ...

    def write_in_flight(
        self,
        action: str,
        target: str,
        value: str,
        act: Callable[[], object],
        defer: Callable[[Callable[[RotationState], RotationState]], None] | None = None,
    ) -> bool:
        """``write`` for one of a step's concurrent re-points: thread-safe, its intent kept in
        ``state.in_flight`` (one per target) until its outcome is journalled (by ``defer``'s receiver
        when given, with what it records next)."""
        ...

    def pause(self, step: str, pending: Sequence[OperationPending], label: str) -> StepResult:
        """Stop ``step`` at the invocation's budget with ``pending`` operations running; a continuation
        polls them on."""
        ...

    def unit(self, change: ConsumerChange) -> AnyUnit:
        """The registered unit of a journalled consumer."""
        ...
