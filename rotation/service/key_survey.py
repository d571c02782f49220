"""How the sweep reads its managed keys: min(M, ⌈N/25⌉) Key Vault calls a tick for a vault of N keys with M
managed, every tick, the first of a deployment too.

Per vault, :func:`rotation.domain.sweep_cost.plan_tick` chooses: a listing (cut at M pages) judged with
what the sweep knows of each key's other versions, or one version listing per key (every managed key, or
the keys a vault that is *catching up* does not know completely). What earlier ticks learnt lives in
``deps.sweep_memory`` and, between worker processes, in ``deps.sweep_store``
(``rotation.service.sweep_recall``): read before the tick, written after it. A key the tick could not
judge within the bound (a cut listing did not reach it; a catching-up tick did not read it) is
*deferred* to a later tick and logged (``sweep_keys_deferred``). Where a version nears expiry, the
decision's version listing is counted apart (``decision_reads``): it belongs to the action.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from rotation.domain.model import KeyRef, KeyVersion
from rotation.domain.sweep_cost import (
    VaultSize,
    carried_forward,
    catching_up,
    key_id,
    near_expiry,
    newest,
    plan_tick,
    versions_seen,
)
from rotation.errors import RotationError
from rotation.logs import get_logger
from rotation.service.deps import Dependencies
from rotation.service.outcomes import safe_message
from rotation.service.sweep_recall import keep, recall
from rotation.service.views import SweepItem

_log = get_logger("rotation.reconciler")

#: A managed key judged this tick: its current version, and its versions (all of them; only the current
#: one when the sweep knows no other is near expiry; None when the decision reads them if it needs them).
Judged = tuple[KeyRef, KeyVersion, list[KeyVersion] | None]


@dataclass
class Survey:
    """Each managed key judged this tick, the keys deferred to a later one, and the cost."""

    keys: list[Judged] = field(default_factory=list)
    deferred: list[KeyRef] = field(default_factory=list)
    list_calls: int = 0  # pages of a vault's key listing
    key_reads: int = 0  # version listings of one managed key (one call for up to 25 versions)
    decision_reads: int = 0  # version listings a decision needed (a version near expiry): its action's


@dataclass
class _Listing:
    """The managed keys a listing of their vault showed (by lower-case name); ``complete``: every key was seen."""

    current: dict[str, KeyVersion] = field(default_factory=dict)
    complete: bool = False


def survey_keys(deps: Dependencies, keys: list[KeyRef], items: list[SweepItem]) -> Survey:
    """Each managed key the tick can judge within the bound, in the settings' order. A failure to read a
    key becomes a ``failed`` item; a managed key missing from its vault is skipped (logged)."""
    survey = Survey()
    vaults: dict[str, list[KeyRef]] = {}
    for key in keys:
        vaults.setdefault(key.vault_url.lower(), []).append(key)
    stored = recall(deps, vaults)
    for vault, managed in vaults.items():
        _survey_vault(deps, vault, managed, survey, items)
    keep(deps, vaults, stored)
    order = {key_id(key): i for i, key in enumerate(keys)}
    survey.keys.sort(key=lambda judged: order[key_id(judged[0])])
    if survey.deferred:
        _log.info("sweep_keys_deferred", keys=[key.uri for key in survey.deferred])
    return survey


def _survey_vault(
    deps: Dependencies, vault: str, managed: list[KeyRef], survey: Survey, items: list[SweepItem]
) -> None:
    memory, now = deps.sweep_memory, deps.clock.now()
    size = memory.vaults.get(vault)
    plan = plan_tick([key_id(key) for key in managed], size, memory.keys, now)
    judged: set[str] = set()
    if plan.list_pages:
        listing = _list_vault(deps, managed, plan.list_pages, survey)
        if listing is None:  # each key is then read on its own, and reports its own failure
            plan = replace(plan, read=tuple(key_id(key) for key in managed))
        else:
            judged |= _judge_listed(deps, managed, listing, survey, items)
            listed_size = memory.vaults[vault]
            due = catching_up([key_id(key) for key in managed], memory.keys, now)
            memory.vaults[vault] = replace(listed_size, catch_up=bool(due))
    elif size is not None and size.catch_up:
        memory.vaults[vault] = replace(size, catch_up=False)  # the next tick lists again
    for key in managed:
        if key_id(key) in plan.read:
            survey.key_reads += 1
            judged.add(key_id(key))
            _judge_read(deps, key, survey, items)
        elif key_id(key) not in judged:
            survey.deferred.append(key)


def _judge_listed(
    deps: Dependencies, managed: list[KeyRef], listing: _Listing, survey: Survey, items: list[SweepItem]
) -> set[str]:
    """Judge each managed key the listing showed; return the ids of those judged or missing from the vault."""
    now, near = deps.clock.now(), timedelta(days=deps.settings.near_expiry_days)
    done: set[str] = set()
    for key in managed:
        listed = listing.current.get(key.name.lower())
        if listed is None:
            if listing.complete:
                _log.warning("managed_key_missing", key=key.uri)
                done.add(key_id(key))
            continue
        done.add(key_id(key))
        seen = carried_forward(deps.sweep_memory.keys.get(key_id(key)), listed)
        if seen is not None:
            deps.sweep_memory.keys[key_id(key)] = seen
        if seen is not None and near_expiry(seen.others_expire, now, near):
            survey.decision_reads += 1  # a consumer may sit on that version: the decision needs them all
            _judge_read(deps, key, survey, items)
        elif near_expiry(listed.expires, now, near):
            survey.keys.append((key, listed, None))  # a rotation is due; its decision reads what it needs
        else:
            survey.keys.append((key, listed, [listed]))
    return done


def _judge_read(deps: Dependencies, key: KeyRef, survey: Survey, items: list[SweepItem]) -> None:
    versions = _versions(deps, key, items)
    if versions:
        survey.keys.append((key, newest(versions), versions))


def _list_vault(deps: Dependencies, managed: list[KeyRef], most: int, survey: Survey) -> _Listing | None:
    """List the vault's keys, at most ``most`` pages, stopping once every managed key was seen; remember
    its size. None when the listing failed (logged)."""
    vault_url = managed[0].vault_url
    wanted = {key.name.lower() for key in managed}
    listing = _Listing()
    seen = pages = 0
    try:
        for page in deps.keys.list_key_pages(vault_url):
            pages += 1
            survey.list_calls += 1
            seen += len(page.keys)
            listing.current.update((v.key.name.lower(), v) for v in page.keys if v.key.name.lower() in wanted)
            listing.complete = not page.more
            if listing.complete or pages >= most or len(listing.current) == len(wanted):
                break
    except RotationError as exc:
        _log.warning("vault_listing_failed", vault=vault_url, error_code=exc.code, error=safe_message(exc))
        return None
    deps.sweep_memory.vaults[vault_url.lower()] = VaultSize(seen, pages, listing.complete)
    return listing


def _versions(deps: Dependencies, key: KeyRef, items: list[SweepItem]) -> list[KeyVersion]:
    """Every version of ``key`` (one call for up to 25), remembered for later ticks; [] when it cannot be read."""
    try:
        versions = list(deps.keys.list_versions(key))
    except RotationError as exc:
        if exc.code == "NotFound":  # the adapters' NotFound (the service knows no adapter)
            _log.warning("managed_key_missing", key=key.uri)
            return []
        items.append(SweepItem(key.uri, None, "failed", f"read key: {safe_message(exc)}"))
        return []
    seen = versions_seen(versions, deps.clock.now())
    if seen is not None:
        deps.sweep_memory.keys[key_id(key)] = seen
    return versions
