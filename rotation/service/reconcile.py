"""The reconciler (``sweep``, run by the timer) and the Key Vault event handler.

``sweep`` resumes interrupted or waiting rotations, performs due retirements and starts rotations
of keys near expiry whose event was missed, each key its own error boundary. Its Key Vault cost, for a
vault of N keys with M managed, is at most min(M, ⌈N/25⌉) calls a tick plus what its actions need, the
first tick of a deployment too (``rotation.service.key_survey``; the choice is
``rotation.domain.sweep_cost``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Literal

from rotation.domain.model import (
    KeyRef,
    KeyVaultEvent,
    RotationStatus,
    Trigger,
    TriggerKind,
)
from rotation.domain.policy import should_rotate
from rotation.domain.steps import ROTATION_TAG, RotationState, Step
from rotation.errors import RotationError, RotationInProgress
from rotation.logs import bound, get_logger
from rotation.service.deps import Dependencies
from rotation.service.executor import retire_rotation
from rotation.service.heal import escalate_stale_wait, reconcile_key
from rotation.service.key_survey import survey_keys
from rotation.service.outcomes import safe_message
from rotation.service.queries import holding_rotation, managed_key
from rotation.service.start import start_rotation
from rotation.service.views import EventOutcome, RotationView, SweepItem, SweepReport

_log = get_logger("rotation.reconciler")


def retire_if_due(deps: Dependencies, rotation_id: str) -> RotationView:
    """Run the ``retire`` step of a cut-over rotation (``rotation.service.executor.retire_rotation``).

    Never deletes. Safe to repeat: a disabled version is not disabled again.
    """
    return retire_rotation(deps, rotation_id)


def sweep(deps: Dependencies, trigger: Trigger) -> SweepReport:
    """The timer reconciler: resume, retire, retry, escalate, and rotate keys whose consumers need it.

    Every rotation and every key is its own error boundary: whatever one raises is logged, counted as
    a ``failed`` item, and the sweep goes on with the next (``sweep_item_failed``).
    """
    started = deps.clock.now()
    items: list[SweepItem] = []
    with bound(trigger=trigger.kind.value):
        active = deps.journal.list(
            None, (RotationStatus.RUNNING, RotationStatus.WAITING, RotationStatus.AWAITING_RETIREMENT), 500
        )
        for state in active:
            item = _guarded(state.key_uri, state.rotation_id, partial(_sweep_one, deps, state))
            if item is not None:
                items.append(item)
        keys = [KeyRef.parse(uri)[0] for uri in deps.settings.managed_keys]
        near = timedelta(days=deps.settings.near_expiry_days)
        survey = survey_keys(deps, keys, items)
        for managed, latest, versions in survey.keys:
            decision = should_rotate(latest, None, deps.clock.now(), near)
            due = decision.reason if decision.rotate else None
            work = partial(reconcile_key, deps, managed, latest, trigger, due, known_versions=versions)
            item = _guarded(managed.uri, None, work)
            if item is not None:
                items.append(item)
    report = SweepReport(
        started,
        deps.clock.now(),
        tuple(items),
        survey.list_calls,
        survey.key_reads,
        tuple(key.uri for key in survey.deferred),
    )
    _log.info(
        "sweep_summary",
        resumed=report.count("resumed"),
        retired=report.count("retired"),
        started=report.count("started"),
        retried=report.count("retried"),
        escalated=report.count("escalated"),
        waiting=report.count("waiting"),
        failed=report.count("failed"),
    )
    return report


def _guarded(key_uri: str, rotation_id: str | None, work: Callable[[], SweepItem | None]) -> SweepItem | None:
    """``work()``; anything it raises is logged and becomes a ``failed`` item: one bad row never stops the sweep."""
    try:
        return work()
    except RotationError as exc:
        _log.warning(
            "sweep_item_failed", key=key_uri, rotation_id=rotation_id, error_code=exc.code, error=safe_message(exc)
        )
        return SweepItem(key_uri, rotation_id, "failed", safe_message(exc))
    except Exception as exc:  # noqa: BLE001 - the per-key error boundary: log, count, go on
        _log.exception("sweep_item_failed", key=key_uri, rotation_id=rotation_id, error_code=type(exc).__name__)
        return SweepItem(key_uri, rotation_id, "failed", f"unexpected {type(exc).__name__}")


def _sweep_one(deps: Dependencies, state: RotationState) -> SweepItem:
    if state.status == RotationStatus.AWAITING_RETIREMENT:
        view = retire_if_due(deps, state.rotation_id)
        if view.status == RotationStatus.RETIRED:
            return SweepItem(state.key_uri, state.rotation_id, "retired", f"disabled {state.old_version}")
        detail = next((s.detail for s in view.steps if s.name == Step.RETIRE.value), "")
        return SweepItem(state.key_uri, state.rotation_id, "waiting", detail)
    escalated = escalate_stale_wait(deps, state)
    if escalated is not None:
        return escalated
    # One line per unfinished rotation per sweep: the "unfinished for hours" alert reads it.
    _log.info(
        "rotation_unfinished",
        rotation_id=state.rotation_id,
        key=state.key_uri,
        status=state.status.value,
        stage=state.stage,
        age_hours=round((deps.clock.now() - state.started_at).total_seconds() / 3600, 2),
    )
    dispatched = _resumable(deps, state)
    view = _resume(deps, state)
    action: Literal["resumed", "waiting", "failed", "in_progress"] = "resumed"
    if view.status in (RotationStatus.FAILED, RotationStatus.ROLLED_BACK, RotationStatus.NEEDS_HUMAN):
        action = "failed"
    elif view.status == RotationStatus.WAITING:
        action = "waiting"
    elif view.status == RotationStatus.RUNNING and not dispatched:
        action = "in_progress"  # an executor is driving it right now
    detail = view.status.value if not dispatched or view.status != RotationStatus.RUNNING else "dispatched"
    return SweepItem(state.key_uri, state.rotation_id, action, detail)


def handle_key_event(deps: Dependencies, event: KeyVaultEvent) -> EventOutcome:
    """Act on a Key Vault key event. Duplicate and out-of-order deliveries are harmless.

    - ``KeyNearExpiry`` / ``KeyExpired``: start a rotation unless one is running or the version
      the event names has already been replaced.
    - ``KeyNewVersionCreated``: a version this service created is a no-op; a version Key Vault
      created itself (auto-rotation) is adopted: consumers move to it, nothing new is created.
    """
    trigger = Trigger(TriggerKind.EVENT, event_id=event.event_id, event_type=f"Microsoft.KeyVault.{event.event_type}")
    allowed = deps.settings.allowed_vaults or tuple(KeyRef.parse(k)[0].vault_url for k in deps.settings.managed_keys)
    with bound(key=event.key.uri, trigger="event", event_id=event.event_id):
        if event.key.vault_url.lower() not in {v.rstrip("/").lower() for v in allowed}:
            return EventOutcome(event.event_id, "ignored", "vault not allowed", event.key.uri)
        try:
            key = managed_key(deps, event.key.uri)
        except RotationError:
            return EventOutcome(event.event_id, "ignored", "not a managed key", event.key.uri)
        held = holding_rotation(deps, key.uri)
        latest = deps.keys.get_key(key)

        if event.event_type == "KeyNewVersionCreated":
            return _on_new_version(deps, event, key, trigger, held=held, latest=latest.version)

        if held is not None and held.status == RotationStatus.AWAITING_RETIREMENT:
            return EventOutcome(
                event.event_id, "duplicate", "rotation cut over; awaiting retirement", key.uri, held.rotation_id
            )
        if held is not None:
            if event.version and held.old_version not in (None, event.version):
                return EventOutcome(event.event_id, "duplicate", "rotation in progress", key.uri, held.rotation_id)
            view = _resume(deps, held)
            return EventOutcome(event.event_id, "resumed", f"rotation {view.status.value}", key.uri, held.rotation_id)
        if event.version and event.version != latest.version:
            return EventOutcome(event.event_id, "ignored", f"version {event.version} was already replaced", key.uri)
        try:
            view = start_rotation(deps, key.uri, trigger, reason=event.event_type)
        except RotationInProgress as exc:
            return EventOutcome(event.event_id, "in_progress", "rotation in progress", key.uri, exc.rotation_id)
        return EventOutcome(event.event_id, "started", event.event_type, key.uri, view.rotation_id)


def _resume(deps: Dependencies, state: RotationState) -> RotationView:
    """Hand an interrupted or waiting rotation to the dispatcher (in-process locally, the queue in Azure).

    A rotation an executor is driving right now (its claim has not lapsed) is left to it.
    """
    if _resumable(deps, state):
        deps.dispatcher.dispatch(state.rotation_id)
        state, _ = deps.journal.load(state.rotation_id)
    return RotationView.from_state(state)


def _resumable(deps: Dependencies, state: RotationState) -> bool:
    now = deps.clock.now()
    return state.lease_owner is None or state.lease_expires is None or state.lease_expires <= now


def _on_new_version(
    deps: Dependencies, event: KeyVaultEvent, key: KeyRef, trigger: Trigger, *, held: RotationState | None, latest: str
) -> EventOutcome:
    version = event.version
    if not version:
        return EventOutcome(event.event_id, "ignored", "event names no version", key.uri)
    created = deps.keys.get_key(key, version)
    ours = created.tags.get(ROTATION_TAG)
    if ours:
        return EventOutcome(event.event_id, "duplicate", f"created by this service ({ours})", key.uri, ours)
    if held is not None:
        if held.new_version == version:
            return EventOutcome(
                event.event_id, "duplicate", "already the rotation's new version", key.uri, held.rotation_id
            )
        return EventOutcome(event.event_id, "in_progress", "rotation in progress", key.uri, held.rotation_id)
    for previous in deps.journal.list(key.uri, None, 20):
        if version in (previous.new_version, previous.adopt_version):
            return EventOutcome(
                event.event_id, "duplicate", f"rotation {previous.status.value}", key.uri, previous.rotation_id
            )
    if version != latest:
        return EventOutcome(event.event_id, "ignored", f"version {version} is not the latest", key.uri)
    try:
        view = start_rotation(deps, key.uri, trigger, reason="KeyNewVersionCreated", adopt_version=version)
    except RotationInProgress as exc:
        return EventOutcome(event.event_id, "in_progress", "rotation in progress", key.uri, exc.rotation_id)
    return EventOutcome(event.event_id, "adopted", f"moving consumers to {version}", key.uri, view.rotation_id)


__all__ = ["handle_key_event", "retire_if_due", "sweep"]
