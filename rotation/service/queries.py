"""Reading: the managed key a URI names, what a rotation would see, the plan, and rotations."""

from __future__ import annotations

from rotation.domain.model import KeyRef
from rotation.domain.plan import Observed, build_plan
from rotation.domain.steps import HOLDING_STATUSES, RotationState, holds_key
from rotation.errors import PreconditionFailed, RotationNotFound, SettingsError, UnknownKeyError
from rotation.logs import bound, get_logger
from rotation.service.deps import Dependencies
from rotation.service.views import PlanView, RotationView

_log = get_logger("rotation.workflow")


def managed_key(deps: Dependencies, key_uri: str) -> KeyRef:
    """The managed key named by ``key_uri`` (versionless or versioned).

    Raises:
        InputError: not a key URI. UnknownKeyError: not one of ``ROTATION_MANAGED_KEYS``.
    """
    key, _ = KeyRef.parse(key_uri)
    for managed in deps.settings.managed_keys:
        candidate, _ = KeyRef.parse(managed)
        if candidate.vault_url == key.vault_url and candidate.name.lower() == key.name.lower():
            return candidate
    raise UnknownKeyError(f"{key.uri} is not a managed key (ROTATION_MANAGED_KEYS)")


SCOPE_SETTING = "ROTATION_SUBSCRIPTIONS"


def discovery_gap(deps: Dependencies) -> str | None:
    """Why discovery cannot see the whole estate, or None when it can (fail closed, issue 16).

    With ``ROTATION_SUBSCRIPTIONS`` empty, the kinds that search the configured subscriptions find
    nothing, so nothing would block retirement. That is accepted only when a registered kind declares
    ``whole_reach`` (it searches every subscription the identity can read, as Resource Graph does).
    """
    if deps.settings.subscriptions or any(getattr(unit, "whole_reach", False) for unit in deps.consumers):
        return None
    return f"{SCOPE_SETTING} is empty and no consumer kind searches beyond it: discovery would see no consumer"


def require_discovery_scope(deps: Dependencies) -> None:
    """Refuse to plan or start a rotation that could not see the key's consumers.

    Raises:
        SettingsError: ``ROTATION_SUBSCRIPTIONS`` is empty and nothing discovers beyond it.
    """
    if discovery_gap(deps) is not None:
        raise SettingsError(
            SCOPE_SETTING,
            "is empty, so no storage account or workspace would be found and nothing would keep an old key "
            "version in use from being disabled",
            "the subscription ids to search, comma-separated",
        )


def observe(deps: Dependencies, key: KeyRef) -> Observed:
    """Read the key's versions, its vault and every candidate consumer of every registered kind."""
    versions = tuple(deps.keys.list_versions(key))
    current = deps.keys.get_key(key) if versions else None
    try:
        vault = deps.vaults.get_vault(key.vault_url, deps.settings.subscriptions)
    except PreconditionFailed as exc:
        if exc.code != PreconditionFailed.code:
            raise
        vault = None
    found = {unit.kind: tuple(unit.discover(deps, key)) for unit in deps.consumers}
    return Observed(key, versions, vault, found, current)


def plan(deps: Dependencies, key_uri: str) -> PlanView:
    """The plan for a managed key: its consumers, what a rotation would change, and any blocker."""
    key = managed_key(deps, key_uri)
    require_discovery_scope(deps)
    with bound(key=key.uri):
        registry = deps.consumers
        result = build_plan(observe(deps, key), registry.units, run_steps=registry.run_steps())
        _log.info("plan_built", consumers=len(result.consumers), problems=len(result.problems))
        return PlanView.from_plan(result)


def get_rotation(deps: Dependencies, rotation_id: str) -> RotationView:
    state, _ = deps.journal.load(rotation_id)
    return RotationView.from_state(state)


def list_rotations(
    deps: Dependencies, key_uri: str | None = None, active_only: bool = False, limit: int = 50
) -> list[RotationView]:
    key = managed_key(deps, key_uri).uri if key_uri else None
    statuses = HOLDING_STATUSES if active_only else None
    return [RotationView.from_state(s) for s in deps.journal.list(key, statuses, limit)]


def holding_rotation(deps: Dependencies, key_uri: str) -> RotationState | None:
    """The rotation that holds the key's lock, if it still holds the key (``holds_key``)."""
    holder, _ = deps.journal.lock_holder(key_uri)
    if holder is None:
        return None
    try:
        state, _ = deps.journal.load(holder)
    except RotationNotFound:
        return None
    return state if holds_key(state, deps.clock.now()) else None
