"""How the sweep reads its managed keys: min(M, ⌈N/25⌉) Key Vault calls for a vault of N keys with M managed.

Per vault, either one version listing per managed key, or a listing of the vault (cut at ``M - 1``
pages) with a version listing only for the keys the listing cannot judge; the choice, and what makes the
listing enough for a key, are ``rotation.domain.sweep_cost``'s. What earlier ticks learnt (the vault's
size, what each key's last version listing showed) lives in ``deps.sweep_memory`` and, between worker
processes, in ``deps.sweep_store`` (``rotation.service.sweep_recall``): read before the tick, written
after it. With nothing remembered anywhere, the first tick lists the vault to learn its size (at most
M - 1 pages) and reads each managed key (at most 2M - 1 calls in all); from then on a tick, in this
process or a new one, costs min(M, ⌈N/25⌉) plus the version listings its decisions need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from rotation.domain.model import KeyRef, KeyVersion
from rotation.domain.sweep_cost import (
    VaultSize,
    key_id,
    list_the_vault,
    listing_suffices,
    page_limit,
    versions_seen,
)
from rotation.errors import RotationError
from rotation.logs import get_logger
from rotation.service.deps import Dependencies
from rotation.service.outcomes import safe_message
from rotation.service.sweep_recall import keep, recall
from rotation.service.views import SweepItem

_log = get_logger("rotation.reconciler")


@dataclass
class Survey:
    """Each managed key with its current version and the versions its decision is judged on, and the cost."""

    keys: list[tuple[KeyRef, KeyVersion, list[KeyVersion]]] = field(default_factory=list)
    list_calls: int = 0  # pages of a vault's key listing
    key_reads: int = 0  # version listings of one managed key (one call for up to 25 versions)


@dataclass
class _Listing:
    """The managed keys a listing of their vault showed (by lower-case name); ``complete``: every key was seen."""

    current: dict[str, KeyVersion] = field(default_factory=dict)
    complete: bool = False


def survey_keys(deps: Dependencies, keys: list[KeyRef], items: list[SweepItem]) -> Survey:
    """Each managed key with its current version and the versions its decision is judged on: all of them,
    or only the current one when the sweep knows no other enabled version nears expiry. A failure to read
    a key becomes a ``failed`` item; a managed key missing from its vault is skipped (logged).
    """
    now = deps.clock.now()
    near = timedelta(days=deps.settings.near_expiry_days)
    survey = Survey()
    vaults: dict[str, list[KeyRef]] = {}
    for key in keys:
        vaults.setdefault(key.vault_url.lower(), []).append(key)
    stored = recall(deps, vaults)
    listings = {vault: _list_vault(deps, managed, survey) for vault, managed in vaults.items()}
    for key in keys:
        listing = listings[key.vault_url.lower()]
        listed = listing.current.get(key.name.lower())
        if listed is not None and listing_suffices(deps.sweep_memory.keys.get(key_id(key)), listed, now, near):
            survey.keys.append((key, listed, [listed]))
            continue
        if listed is None and listing.complete:
            _log.warning("managed_key_missing", key=key.uri)
            continue
        survey.key_reads += 1
        versions = _versions(deps, key, items)
        if versions:
            survey.keys.append((key, max(versions, key=lambda v: (v.created, v.version)), versions))
    keep(deps, vaults, stored)
    return survey


def _list_vault(deps: Dependencies, managed: list[KeyRef], survey: Survey) -> _Listing:
    """List the vault's keys when that is expected to be cheaper, at most ``page_limit`` pages; remember its size."""
    memory = deps.sweep_memory
    vault_url = managed[0].vault_url
    if not list_the_vault(len(managed), memory.vaults.get(vault_url.lower())):
        return _Listing()
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
            if listing.complete or pages >= page_limit(len(managed)) or len(listing.current) == len(wanted):
                break
    except RotationError as exc:  # each key is then read on its own, and reports its own failure
        _log.warning("vault_listing_failed", vault=vault_url, error_code=exc.code, error=safe_message(exc))
        return _Listing()
    memory.vaults[vault_url.lower()] = VaultSize(seen, pages, listing.complete)
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
