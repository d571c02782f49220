"""Starting a rotation, or a dry run: the real steps walked with writes switched off."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime

from rotation.domain.model import KeyRef, RotationStatus, Trigger
from rotation.domain.steps import RotationState, holds_key
from rotation.errors import InputError, JournalConflict, RotationInProgress, RotationNotFound
from rotation.logs import bound, get_logger
from rotation.service.deps import Dependencies
from rotation.service.executor import Execution
from rotation.service.outcomes import audit_outcome
from rotation.service.queries import get_rotation, managed_key, require_discovery_scope
from rotation.service.views import RotationView

_log = get_logger("rotation.workflow")
#: A start after a rotation stopped in one of these adopts the version it created (see _stopped_with_version).
_REATTEMPTED = (RotationStatus.ROLLED_BACK, RotationStatus.FAILED)


def new_rotation_id(now: datetime) -> str:
    return f"rot-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def start_rotation(
    deps: Dependencies,
    key_uri: str,
    trigger: Trigger,
    *,
    reason: str = "",
    dry_run: bool = False,
    adopt_version: str | None = None,
    retry_of: RotationState | None = None,
) -> RotationView:
    """Start a rotation of a managed key (or show what one would do, with ``dry_run``).

    ``retry_of`` names the stopped rotation this one retries: the journal records the attempt number.

    Raises:
        UnknownKeyError: not a managed key.
        SettingsError: ``ROTATION_SUBSCRIPTIONS`` is empty and no kind discovers beyond it.
        RotationInProgress: another rotation of the key is running, waiting, or cut over within its grace period.
    """
    key = managed_key(deps, key_uri)
    require_discovery_scope(deps)
    now = deps.clock.now()
    rotation_id = new_rotation_id(now)
    with bound(rotation_id=rotation_id, key=key.uri, trigger=trigger.kind.value):
        if dry_run:
            return _dry_run(deps, key, trigger, rotation_id, reason=reason, adopt_version=adopt_version)
        if adopt_version is not None and not adopt_version.isalnum():
            raise InputError(f"{adopt_version!r} is not a key version")
        holder, lock_etag = deps.journal.lock_holder(key.uri)
        if holder is not None:
            try:
                held, _ = deps.journal.load(holder)
            except RotationNotFound:
                held = None
            if held is not None and holds_key(held, now):
                _log.info("rotation_in_progress", holder=holder)
                raise RotationInProgress(key.uri, holder)
        if adopt_version is None and retry_of is None:
            retry_of = _stopped_with_version(deps, key)
            adopt_version = retry_of.new_version if retry_of is not None else None
        state = _new_state(deps, rotation_id, key, trigger, reason=reason, adopt_version=adopt_version)
        if retry_of is not None:
            state = replace(state, attempt=retry_of.attempt + 1, retry_of=retry_of.rotation_id)
        try:
            deps.journal.begin(state, lock_etag)
        except JournalConflict:
            holder, _ = deps.journal.lock_holder(key.uri)
            _log.info("rotation_in_progress", holder=holder)
            raise RotationInProgress(key.uri, holder or "unknown") from None
        _log.info("rotation_started", reason=reason, adopt_version=adopt_version, attempt=state.attempt)
    deps.dispatcher.dispatch(rotation_id)
    return get_rotation(deps, rotation_id)


def _stopped_with_version(deps: Dependencies, key: KeyRef) -> RotationState | None:
    """The key's latest rotation, when it stopped (rolled back or failed) after creating a version that is
    still the newest and enabled: any next start (event, timer, person) is its next attempt and adopts that
    version, so a key gets one new version however many attempts it takes.
    """
    recent = deps.journal.list(key.uri, None, 1)
    last = recent[0] if recent else None
    if last is None or last.status not in _REATTEMPTED or not last.new_version:
        return None
    versions = list(deps.keys.list_versions(key))
    if not versions:
        return None
    newest = max(versions, key=lambda v: (v.created, v.version))
    return last if newest.version == last.new_version and newest.enabled else None


def _new_state(
    deps: Dependencies,
    rotation_id: str,
    key: KeyRef,
    trigger: Trigger,
    *,
    reason: str,
    adopt_version: str | None,
    dry_run: bool = False,
) -> RotationState:
    """A rotation as it starts, with the step list of this build (a dry run shows the version it adopts)."""
    now = deps.clock.now()
    return RotationState(
        rotation_id=rotation_id,
        key_uri=key.uri,
        status=RotationStatus.DRY_RUN if dry_run else RotationStatus.RUNNING,
        trigger=trigger,
        started_at=now,
        updated_at=now,
        reason=reason,
        dry_run=dry_run,
        new_version=adopt_version if dry_run else None,
        adopt_version=adopt_version,
        run_steps=deps.consumers.run_steps(),
    )


def _dry_run(
    deps: Dependencies, key: KeyRef, trigger: Trigger, rotation_id: str, *, reason: str, adopt_version: str | None
) -> RotationView:
    """Every step walked with writes switched off; nothing written but the audit record of the dry run."""
    state = _new_state(deps, rotation_id, key, trigger, reason=reason, adopt_version=adopt_version, dry_run=True)
    execution = Execution(deps, state, "", dry_run=True)
    execution.walk()
    walked = execution.state
    status = RotationStatus.DRY_RUN if walked.error is None else RotationStatus.REFUSED
    state = replace(walked, status=status, stage=state.stage, updated_at=deps.clock.now())
    problems = walked.error[1] if walked.error else ""
    audit_outcome(deps, state, "dry_run", "dry run: " + (problems or "plan is safe to apply"))
    _log.info("rotation_dry_run", ok=walked.error is None, consumers=len(walked.consumers), would=len(execution.would))
    return RotationView.from_state(state)
