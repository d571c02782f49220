"""The consumer steps, the same for every kind: re-point one by one, settle, verify every re-pointed one.

A unit owns its steps (``repoint_step``, ``settle_step``); these bodies run them for it. Each
consumer's re-point is the unit's self-contained ``repoint`` (read, journalled write, read back);
a refusal or a wrong read-back rolls that consumer back through its unit and stops the rotation.
"""

from __future__ import annotations

from dataclasses import replace

from rotation.consumers import AnyUnit
from rotation.domain.model import ConsumerChange, RotationStatus
from rotation.domain.steps import Step, record_step, with_consumer
from rotation.errors import VerificationFailed
from rotation.service.steps.run import StepResult, StepRun


def repoint(run: StepRun, *, unit: AnyUnit, step: str) -> StepResult:
    """Move every consumer of ``unit``'s kind to the new version, one at a time, each journalled."""
    moved = []
    for change in [c for c in run.state.consumers if c.kind == unit.kind]:
        try:
            if repoint_consumer(run, unit, change):
                moved.append(change)
        except VerificationFailed as exc:
            return run.roll_back(change, exc)
    if run.dry_run:
        return run.finish_step(step, unit.describe(moved))
    return run.finish_step(step, f"{len(moved)} {unit.label} re-pointed")


def repoint_consumer(run: StepRun, unit: AnyUnit, change: ConsumerChange) -> bool:
    """One consumer, self-contained: its unit reads it, writes (intent journalled before, outcome
    after) and reads it back; then its record is journalled. True when it wrote (in a dry run:
    would write).

    Raises:
        VerificationFailed: refused, or the read-back is not the new version; the caller rolls it back.
    """
    writes = run.writes + len(run.would)
    updated = unit.repoint(run, change)
    if updated is not None:
        run.update_consumer(updated)
    return run.writes + len(run.would) > writes


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
    new = run.state.new_version
    assert new is not None
    for change in changed:
        unit = run.unit(change)
        reading = unit.read_back(run.deps, run.key, change)
        if reading is None:
            continue
        problem = unit.verify(change, reading, new)
        if problem is not None:
            return run.roll_back(change, VerificationFailed(problem))
    return run.finish_step(Step.VERIFY_CONSUMERS, "every re-pointed consumer reads back the new version")
