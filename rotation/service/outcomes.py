"""Rotation outcomes into the audit trail, and the log-safe form of an error."""

from __future__ import annotations

from rotation.domain.model import AuditOutcome, AuditRecord, RetirementEvidence
from rotation.domain.steps import RotationState
from rotation.errors import RotationError
from rotation.service.deps import Dependencies


def _record_id(state: RotationState, outcome: str) -> str:
    return f"{state.rotation_id}-{outcome}"


def audit_outcome(
    deps: Dependencies,
    state: RotationState,
    outcome: AuditOutcome,
    reason: str,
    *,
    evidence: RetirementEvidence | None = None,
) -> None:
    """Append the outcome to the audit trail (before it is reported anywhere else), once per outcome.

    A process killed after the append and before the journal write repeats the step; the record id
    is derived from the rotation and outcome, so the repeat finds the record and appends nothing.
    """
    record_id = _record_id(state, outcome)
    if any(r.record_id == record_id for r in deps.audit.records(state.key_uri, since=state.started_at)):
        return
    deps.audit.append(
        AuditRecord(
            record_id=record_id,
            rotation_id=state.rotation_id,
            key_uri=state.key_uri,
            old_version=state.old_version,
            new_version=state.new_version,
            trigger=state.trigger,
            outcome=outcome,
            reason=reason,
            steps=state.steps,
            consumers=state.consumers,
            rewrap=state.rewrap,
            recorded_at=deps.clock.now(),
            evidence=evidence,
        )
    )


def safe_message(exc: BaseException) -> str:
    """An error's message for journal/audit: rotation errors are log-safe by contract; others by type only."""
    if isinstance(exc, RotationError):
        return exc.message[:500]
    return type(exc).__name__
