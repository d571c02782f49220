"""Cut over: every consumer is on the new version; the old one retires after the grace period."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from rotation.domain.model import RotationStatus
from rotation.domain.steps import Step, record_step
from rotation.service.outcomes import audit_outcome
from rotation.service.steps.run import StepResult, StepRun


def cut_over(run: StepRun) -> StepResult:
    """Start the grace period and record the rotation's success in the audit trail."""
    hours = run.deps.settings.retire_grace_hours
    if run.dry_run:
        return run.finish_step(Step.CUT_OVER, f"would start the grace period ({hours} hours)")
    now = run.deps.clock.now()
    retire_after = run.state.retire_after or now + timedelta(hours=hours)
    state = replace(run.state, retire_after=retire_after, status=RotationStatus.AWAITING_RETIREMENT)
    state = record_step(state, Step.CUT_OVER, "succeeded", now, f"old version retires after {retire_after}")
    audit_outcome(run.deps, state, "succeeded", "every consumer on the new version")
    run.commit(state)
    return "done"
