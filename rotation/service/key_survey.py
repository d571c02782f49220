"""How the sweep reads its managed keys: min(M, ⌈N/25⌉) Key Vault calls a tick for a vault of N keys with M
managed, every tick, the first of a deployment too.

Per vault, :func:`rotation.domain.sweep_cost.plan_tick` chooses: a listing (cut at M pages) judged with
what the sweep knows of each key's other versions, or one version listing per key (every managed key, or
the keys a vault that is *catching up* does not know completely). What earlier ticks learnt lives in
``deps.sweep_memory`` and, between worker processes, in ``deps.sweep_store``
(``rotation.service.sweep_recall``): read before the tick, written after it. A key the tick could not
judge within the bound (a cut listing did not reach it; a catching-up tick did not read it) is
*deferred* to a later tick and logged (``sweep_keys_deferred``). A listing that fails part-way makes the
keys it did not reach ``failed`` items this tick: never a read per key on top (that would break the bound
when Key Vault is struggling already).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from rotation.domain.model import KeyRef, KeyVersion
from rotation.domain.sweep_cost import (
    VaultSize,
    carried_forward,
    judged_before,
    key_id,
    near_expiry,
    needs_versions,
    newest,
    plan_tick,
    queued,
    versions_seen,
)
from rotation.errors import RotationError
from rotation.logs import get_logger
from rotation.service.deps import Dependencies
from rotation.service.outcomes import safe_message
from rotation.service.sweep_recall import keep, recall
from rotation.service.views import SweepItem

_log = get_logger("rotation.reconciler")

#: A managed key judged this tick: its current version, and its versions (all of them when read; only the
#: current one when judged from a listing; None when due for rotation: the decision reads what it needs).
Judged = tuple[KeyRef, KeyVersion, list[KeyVersion] | None]


@dataclass
class Survey:
    """Each managed key judged this tick, the keys deferred to a later one, and the cost."""

    keys: list[Judged] = field(default_factory=list)
    deferred: list[KeyRef] = field(default_factory=list)
    list_calls: int = 0  # pages of a vault's key listing (a page that failed too)
    key_reads: int = 0  # version listings of one managed key (one call for up to 25 versions)


@dataclass
class _Listing:
    """The managed keys a listing of their vault showed (by lower-case name); ``complete``: every key was
    seen; ``failed``: why a page could not be read (the keys of the pages before it are still good)."""

    current: dict[str, KeyVersion] = field(default_factory=dict)
    complete: bool = False
    failed: str | None = None


def survey_keys(deps: Dependencies, keys: list[KeyRef], items: list[SweepItem]) -> Survey:
    """Each managed key the tick can judge within the bound, in the settings' order. A failure to read a
    key or list its vault becomes a ``failed`` item; a managed key missing from its vault is skipped (logged)."""
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
    ids = [key_id(key) for key in managed]
    size = memory.vaults.get(vault)
    plan = plan_tick(ids, size, now)
    judged: set[str] = set()
    if plan.list_pages:
        listing = _list_vault(deps, managed, plan.list_pages, survey)
        judged |= _judge_listed(deps, managed, listing, survey)
        if listing.failed is not None:
            for key in managed:
                if key_id(key) not in judged:
                    judged.add(key_id(key))
                    items.append(SweepItem(key.uri, None, "failed", f"list the vault: {listing.failed}"))
        else:
            near = timedelta(days=deps.settings.near_expiry_days)
            shown = {key_id(key) for key in managed if key.name.lower() in listing.current}
            due = [i for i in ids if i in shown and needs_versions(memory.keys.get(i), now, near)]
            pending = queued(size.pending if size is not None else (), due)
            memory.vaults[vault] = replace(memory.vaults[vault], pending=pending, catch_up=bool(pending))
    elif size is not None and size.catch_up:  # this tick catches up; the next lists again
        rest = tuple(i for i in size.pending if i in ids and i not in plan.read)
        memory.vaults[vault] = replace(size, pending=rest, catch_up=False)
    for key in managed:
        if key_id(key) in plan.read:
            survey.key_reads += 1
            judged.add(key_id(key))
            versions = _versions(deps, key, items)
            if versions:
                survey.keys.append((key, newest(versions), _remember(deps, key, versions)))
        elif key_id(key) not in judged:
            survey.deferred.append(key)


def _remember(deps: Dependencies, key: KeyRef, versions: list[KeyVersion]) -> list[KeyVersion]:
    """Remember what a version listing of ``key`` showed, and return the versions its decision is judged on:
    all of them, or the current one only when they show what they showed when last judged in full
    (``judged_before``): a key read every tick has its consumers looked for when an older version enters
    the window and once a day, not on every tick (an expired version Key Vault leaves enabled would
    otherwise cost a search each tick)."""
    now, near = deps.clock.now(), timedelta(days=deps.settings.near_expiry_days)
    read = versions_seen(versions, now)
    assert read is not None  # versions is not empty
    if judged_before(deps.sweep_memory.keys.get(key_id(key)), read, now, near):
        return [newest(versions)]
    deps.sweep_memory.keys[key_id(key)] = read
    return versions


def _judge_listed(deps: Dependencies, managed: list[KeyRef], listing: _Listing, survey: Survey) -> set[str]:
    """Judge each managed key the listing showed on its current version, carrying forward what the sweep
    knows of its other versions; return the ids of those judged or missing from the vault."""
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
        # Due for rotation: its decision reads what it needs. Otherwise the current version is all a listing
        # can judge; a key whose other versions need looking at is queued for a version listing.
        survey.keys.append((key, listed, None if near_expiry(listed.expires, now, near) else [listed]))
    return done


def _list_vault(deps: Dependencies, managed: list[KeyRef], most: int, survey: Survey) -> _Listing:
    """List the vault's keys, at most ``most`` pages, stopping once every managed key was seen; remember its
    size unless a page failed (logged)."""
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
        survey.list_calls += 1  # the page that failed was asked for
        _log.warning("vault_listing_failed", vault=vault_url, error_code=exc.code, error=safe_message(exc))
        listing.complete, listing.failed = False, safe_message(exc)
        return listing
    deps.sweep_memory.vaults[vault_url.lower()] = VaultSize(seen, pages, listing.complete, deps.clock.now())
    return listing


def _versions(deps: Dependencies, key: KeyRef, items: list[SweepItem]) -> list[KeyVersion]:
    """Every version of ``key`` (one call for up to 25); [] when it cannot be read."""
    try:
        return list(deps.keys.list_versions(key))
    except RotationError as exc:
        if exc.code == "NotFound":  # the adapters' NotFound (the service knows no adapter)
            _log.warning("managed_key_missing", key=key.uri)
            return []
        items.append(SweepItem(key.uri, None, "failed", f"read key: {safe_message(exc)}"))
        return []
