"""On-call controls: ``retry``, ``abandon`` and ``unretire``, each audited with the caller and a reason.

- ``retry_now``: a stopped rotation (rolled back, failed, needs a human, abandoned) gets its next
  attempt now, adopting the version it created; a running or waiting one is resumed now.
- ``abandon``: release the key and stop the rotation where it is; consumers stay where they are, the
  old version stays enabled (it is never retired by an abandoned rotation).
- ``unretire``: re-enable a version this service retired (a retired rotation of a managed key names
  it); an emergency control for a consumer found still needing it.

The caller's identity is the trigger's ``caller`` (the CLI user, the HTTP principal); each action writes
one audit record on the rotation it concerns, before it is reported.
"""

from __future__ import annotations

from dataclasses import replace

from rotation.domain.model import AuditOutcome, KeyRef, RotationStatus, Trigger
from rotation.domain.steps import RUNNABLE_STATUSES, RotationState, with_intent
from rotation.errors import InputError, JournalConflict, PreconditionFailed, RotationInProgress
from rotation.logs import bound, get_logger
from rotation.service.deps import Dependencies
from rotation.service.executor import Execution
from rotation.service.heal import retry_rotation
from rotation.service.outcomes import audit_outcome
from rotation.service.queries import managed_key
from rotation.service.views import RotationView

_log = get_logger("rotation.oncall")

#: Statuses on-call may retry: stopped before cut-over, so the key's consumers may still need moving.
RETRYABLE_BY_HAND = frozenset(
    {RotationStatus.ROLLED_BACK, RotationStatus.FAILED, RotationStatus.NEEDS_HUMAN, RotationStatus.ABANDONED}
)
#: Statuses on-call may abandon: anything not finished.
ABANDONABLE = frozenset(
    {
        *RUNNABLE_STATUSES,
        RotationStatus.AWAITING_RETIREMENT,
        RotationStatus.ROLLED_BACK,
        RotationStatus.FAILED,
        RotationStatus.NEEDS_HUMAN,
    }
)
MAX_REASON_CHARS = 500


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InputError("a reason is required (it is recorded in the journal and the audit trail)")
    if len(text) > MAX_REASON_CHARS:
        raise InputError(f"the reason is {len(text)} characters; at most {MAX_REASON_CHARS}")
    return text


def _by(trigger: Trigger) -> str:
    return f"{trigger.kind.value} {trigger.caller or 'unknown'}"


def _audit(deps: Dependencies, state: RotationState, outcome: AuditOutcome, trigger: Trigger, text: str) -> None:
    audit_outcome(deps, replace(state, trigger=trigger), outcome, f"{text} (by {_by(trigger)})"[:1000])


def retry_now(deps: Dependencies, rotation_id: str, trigger: Trigger, *, reason: str = "") -> RotationView:
    """Retry a stopped rotation now (a new attempt adopting its version), or resume a running or waiting one.

    Raises:
        RotationNotFound: no such rotation. PreconditionFailed: it finished (cut over, retired) or was
        superseded by a later rotation of its key. RotationInProgress: another rotation holds the key.
    """
    state, _ = deps.journal.load(rotation_id)
    managed_key(deps, state.key_uri)
    text = reason.strip()[:MAX_REASON_CHARS] or "on-call retry"
    with bound(rotation_id=rotation_id, key=state.key_uri, trigger=trigger.kind.value):
        if state.status in RUNNABLE_STATUSES:
            deps.dispatcher.dispatch(rotation_id)
            _log.info("oncall_retry", mode="resumed", caller=trigger.caller)
            current, _ = deps.journal.load(rotation_id)
            return RotationView.from_state(current)
        if state.status not in RETRYABLE_BY_HAND:
            raise PreconditionFailed(f"rotation {rotation_id} is {state.status.value}: there is nothing to retry")
        newest = deps.journal.list(state.key_uri, None, 1)
        if newest and newest[0].rotation_id != rotation_id:
            raise PreconditionFailed(
                f"rotation {newest[0].rotation_id} of the key started after {rotation_id}; retry that one"
            )
        _audit(deps, state, "retry_requested", trigger, f"retry of {rotation_id}: {text}")
        view = retry_rotation(deps, state, trigger, reason=f"on-call retry of {rotation_id}: {text}")
        _log.info("oncall_retry", mode="new_attempt", caller=trigger.caller, new_rotation_id=view.rotation_id)
        return view


def abandon(deps: Dependencies, rotation_id: str, trigger: Trigger, *, reason: str) -> RotationView:
    """Stop a rotation where it is and release its key; consumers stay where they are.

    Raises:
        InputError: no reason. RotationNotFound. PreconditionFailed: already finished.
        RotationInProgress: an executor is driving it right now (try again when its claim lapses).
    """
    text = _reason(reason)
    state, etag = deps.journal.load(rotation_id)
    managed_key(deps, state.key_uri)
    with bound(rotation_id=rotation_id, key=state.key_uri, trigger=trigger.kind.value):
        if state.status not in ABANDONABLE:
            raise PreconditionFailed(f"rotation {rotation_id} is {state.status.value}: there is nothing to abandon")
        execution = Execution(deps, state, etag)
        if not execution.claim():
            raise RotationInProgress(state.key_uri, rotation_id)
        try:
            now = deps.clock.now()
            stopped = replace(
                with_intent(execution.state, None, now),
                status=RotationStatus.ABANDONED,
                error=("Abandoned", f"abandoned by {_by(trigger)}: {text}"[:500]),
                history=(*execution.state.history, f"{now.isoformat()} abandoned by {_by(trigger)}")[-60:],
            )
            _audit(deps, stopped, "abandoned", trigger, f"abandoned at {state.stage} ({state.status.value}): {text}")
            execution.commit(stopped)
        except JournalConflict:
            raise RotationInProgress(state.key_uri, rotation_id) from None
        finally:
            execution.release()
        _log.warning("rotation_abandoned", caller=trigger.caller, stage=state.stage, previous=state.status.value)
        return RotationView.from_state(execution.state)


def unretire(deps: Dependencies, key_uri: str, version: str, trigger: Trigger, *, reason: str) -> RotationView:
    """Re-enable ``version`` of a managed key, which a rotation of this service retired.

    Raises:
        InputError: no reason, not a version. UnknownKeyError: not a managed key.
        PreconditionFailed: no rotation of this service retired that version.
    """
    text = _reason(reason)
    key: KeyRef = managed_key(deps, key_uri)
    if not version or not version.isalnum() or len(version) > 64:
        raise InputError(f"{version[:70]!r} is not a key version (letters and digits)")
    retired = [s for s in deps.journal.list(key.uri, (RotationStatus.RETIRED,), 500) if s.old_version == version]
    if not retired:
        raise PreconditionFailed(f"version {version} of {key.uri} was not retired by this service; not re-enabled")
    state = retired[0]
    with bound(rotation_id=state.rotation_id, key=key.uri, trigger=trigger.kind.value):
        current, etag = deps.journal.load(state.rotation_id)
        now = deps.clock.now()
        noted = replace(
            current, history=(*current.history, f"{now.isoformat()} unretire {version} by {_by(trigger)}")[-60:]
        )
        _audit(deps, noted, "unretired", trigger, f"version {version} re-enabled: {text}")
        if not deps.keys.get_key(key, version).enabled:
            deps.keys.update_version(key, version, enabled=True)
        deps.journal.save(replace(noted, updated_at=now), etag)
        _log.warning("version_unretired", version=version, caller=trigger.caller)
        return RotationView.from_state(noted)
