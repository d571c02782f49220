"""Self-healing, per key: retry stopped rotations whose cause may pass, act on consumers left on expiring
versions, and page a human (``needs_human``, audited) when waiting or retrying no longer helps.

The reconciler (``rotation.service.reconcile.sweep``) calls ``reconcile_key`` for every managed key and
``escalate_stale_wait`` for every waiting rotation; on-call's ``retry`` reuses ``retry_rotation``. The
decisions are pure (``rotation.domain.healing``).
"""

from __future__ import annotations

from datetime import timedelta

from rotation.domain.healing import expiring_uses, retry_decision, retryable, versions_near_expiry
from rotation.domain.model import KeyRef, KeyVersion, RotationStatus, Trigger
from rotation.domain.plan import build_plan
from rotation.domain.steps import RotationState, holds_key
from rotation.errors import NeedsHuman, RotationError, RotationInProgress
from rotation.logs import get_logger
from rotation.service.deps import Dependencies
from rotation.service.executor import Execution
from rotation.service.outcomes import safe_message
from rotation.service.queries import observe
from rotation.service.start import start_rotation
from rotation.service.views import RotationView, SweepItem

_log = get_logger("rotation.reconciler")

#: After a rotation of a key stops for a human, the timer leaves the key alone this long (events and
#: people can still start one): repeating a refused rotation every tick would only repeat the refusal.
STOPPED_HOLD_OFF = timedelta(hours=24)
_STOPPED = (
    RotationStatus.REFUSED,
    RotationStatus.FAILED,
    RotationStatus.ROLLED_BACK,
    RotationStatus.NEEDS_HUMAN,
    RotationStatus.ABANDONED,
)


def latest_rotation(deps: Dependencies, key: KeyRef) -> RotationState | None:
    recent = deps.journal.list(key.uri, None, 1)
    return recent[0] if recent else None


def adoptable(versions: list[KeyVersion], replaced: str | None) -> str | None:
    """The version a retry moves consumers to: the newest, if enabled and not the one being replaced.

    That is the version the stopped rotation created (or one Key Vault made since); None when a new
    one must be created (the newest was disabled, say by a failed probe).
    """
    if not versions:
        return None
    newest = max(versions, key=lambda v: (v.created, v.version))
    if not newest.enabled or newest.version == replaced:
        return None
    return newest.version


def retry_rotation(deps: Dependencies, stopped: RotationState, trigger: Trigger, *, reason: str) -> RotationView:
    """Start the next attempt of ``stopped``: a new rotation adopting the version it created.

    Raises:
        RotationInProgress: another rotation holds the key.
    """
    key, _ = KeyRef.parse(stopped.key_uri)
    adopt = adoptable(list(deps.keys.list_versions(key)), stopped.old_version)
    view = start_rotation(deps, key.uri, trigger, reason=reason, adopt_version=adopt, retry_of=stopped)
    _log.info(
        "rotation_retried",
        retry_of=stopped.rotation_id,
        rotation_id=view.rotation_id,
        attempt=stopped.attempt + 1,
        adopt_version=adopt,
        error_code=stopped.error[0] if stopped.error else None,
    )
    return view


def escalate(deps: Dependencies, state: RotationState, reason: str) -> RotationView:
    """Stop ``state`` for a human: ``needs_human``, audited, the key released.

    Left alone while another executor holds its claim.
    """
    current, etag = deps.journal.load(state.rotation_id)
    execution = Execution(deps, current, etag)
    if not execution.claim():
        return RotationView.from_state(current)
    try:
        execution.stop(current.stage, RotationStatus.NEEDS_HUMAN, NeedsHuman(reason), "needs_human")
    finally:
        execution.release()
    _log.warning("rotation_escalated", rotation_id=state.rotation_id, key=state.key_uri, reason=reason)
    return RotationView.from_state(execution.state)


def escalate_stale_wait(deps: Dependencies, state: RotationState) -> SweepItem | None:
    """A rotation waiting (on its re-wrap) longer than ``ROTATION_REWRAP_WAIT_HOURS`` goes to a human.

    It then releases the key, so an expiring key can still be rotated; the old version stays enabled.
    """
    if state.status != RotationStatus.WAITING:
        return None
    step = next((r for r in state.steps if r.name == state.stage and r.status == "waiting"), None)
    if step is None:
        return None
    limit = timedelta(hours=deps.settings.rewrap_wait_hours)
    if deps.clock.now() - step.started_at < limit:
        return None
    reason = f"{state.stage} has waited longer than {deps.settings.rewrap_wait_hours:g} h: {step.detail}"[:500]
    view = escalate(deps, state, reason)
    return SweepItem(state.key_uri, state.rotation_id, "escalated", f"{view.status.value}: {reason}")


def reconcile_key(
    deps: Dependencies,
    key: KeyRef,
    latest: KeyVersion,
    trigger: Trigger,
    start_reason: str | None,
    *,
    known_versions: list[KeyVersion] | None = None,
) -> SweepItem | None:
    """What the reconciler does about one managed key whose latest version is ``latest``.

    ``known_versions``: every version of the key, when the sweep has just listed them (not read again).

    In order: a stopped rotation whose cause may pass is retried with back-off (or escalated when its
    window closed); a latest version due for rotation starts one (``start_reason``); a consumer on an
    expiring version while the latest is fresh starts one adopting the latest (no new version).
    """
    now = deps.clock.now()
    last = latest_rotation(deps, key)
    if last is not None and retryable(last):
        return _retry_or_escalate(deps, key, last, trigger)
    if start_reason is not None:
        item = _start(deps, key, trigger, last, start_reason)
        if item.action in ("skipped", "failed"):
            # The latest version is due and no rotation moves its consumers: say who is on what.
            versions = known_versions if known_versions is not None else list(deps.keys.list_versions(key))
            if versions:
                _expiring_uses(deps, key, versions, None)
        return item
    if last is not None and holds_key(last, now):
        return None  # its rotation is moving the consumers (the active loop drives it)
    versions = known_versions if known_versions is not None else list(deps.keys.list_versions(key))
    if not versions:
        return None
    newest = max(versions, key=lambda v: (v.created, v.version))
    uses = _expiring_uses(deps, key, versions, newest.version)
    if not uses or not newest.enabled:
        return None
    reason = f"{len(uses)} consumers on expiring versions: {uses[0]}"
    return _start(deps, key, trigger, last, reason, adopt_version=newest.version)


def _expiring_uses(deps: Dependencies, key: KeyRef, versions: list[KeyVersion], latest: str | None) -> list[str]:
    """Each consumer on an expired or expiring version of ``key`` other than ``latest``, logged for the alert.

    Consumers are discovered only when some version other than ``latest`` (any, when None) is expiring or expired.
    """
    now = deps.clock.now()
    near = timedelta(days=deps.settings.near_expiry_days)
    if not versions_near_expiry(versions, latest or "", now, near):
        return []
    observed = observe(deps, key)
    plan = build_plan(observed, deps.consumers.units)
    found = []
    for use in expiring_uses(plan.consumers, observed.versions, now, near):
        if use.version == latest:
            continue
        _log.warning(
            "consumer_version_expiring",
            key=key.uri,
            consumer=use.consumer,
            version=use.version,
            expires=use.expires.isoformat(),
            days_left=round((use.expires - now).total_seconds() / 86400, 2),
        )
        found.append(use.describe(now))
    return found


def _retry_or_escalate(deps: Dependencies, key: KeyRef, last: RotationState, trigger: Trigger) -> SweepItem:
    settings = deps.settings
    old_expires = None
    if last.old_version:
        old = next((v for v in deps.keys.list_versions(key) if v.version == last.old_version), None)
        old_expires = old.expires if old is not None else None
    decision = retry_decision(
        last,
        deps.clock.now(),
        old_expires=old_expires,
        base=timedelta(minutes=settings.retry_backoff_minutes),
        cap=timedelta(hours=settings.retry_backoff_cap_hours),
        max_attempts=settings.retry_max_attempts,
    )
    if decision.action == "wait":
        return SweepItem(key.uri, last.rotation_id, "waiting", decision.reason[:500])
    if decision.action == "escalate":
        view = escalate(deps, last, decision.reason)
        return SweepItem(key.uri, last.rotation_id, "escalated", f"{view.status.value}: {decision.reason}"[:500])
    try:
        view = retry_rotation(deps, last, trigger, reason=f"reconciler: {decision.reason}")
    except RotationInProgress as exc:
        return SweepItem(key.uri, exc.rotation_id, "in_progress", "a rotation is already running")
    return SweepItem(key.uri, view.rotation_id, "retried", f"{decision.reason}: {view.status.value}"[:500])


def _start(
    deps: Dependencies,
    key: KeyRef,
    trigger: Trigger,
    last: RotationState | None,
    reason: str,
    *,
    adopt_version: str | None = None,
) -> SweepItem:
    if last is not None and last.status in _STOPPED and deps.clock.now() - last.updated_at < STOPPED_HOLD_OFF:
        why = last.error[1] if last.error else last.status.value
        return SweepItem(key.uri, last.rotation_id, "skipped", f"last rotation {last.status.value}: {why}"[:500])
    try:
        view = start_rotation(deps, key.uri, trigger, reason=f"reconciler: {reason}"[:500], adopt_version=adopt_version)
    except RotationInProgress as exc:
        return SweepItem(key.uri, exc.rotation_id, "in_progress", "a rotation is already running")
    except RotationError as exc:
        return SweepItem(key.uri, None, "failed", safe_message(exc))
    return SweepItem(key.uri, view.rotation_id, "started", reason[:500])
