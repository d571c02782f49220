"""The sweep's Key Vault bound, min(M, ⌈N/25⌉) calls a tick, counted by the fake Key Vault itself, while the
vault changes under it: keys with enabled older versions past expiry, a vault that shrinks, a listing that
fails part-way, a managed key that cannot be read."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

from rotation.domain.model import KeyListPage, KeyRef, KeyVersion
from rotation.errors import PermissionDenied, ThrottledError
from rotation.service import sweep
from rotation.service.views import SweepReport
from tests.fakes.estate import VAULT, Estate
from tests.triggers import TIMER


def _vault(vault_keys: int, managed: int, *, last: bool = False) -> tuple[Estate, list[KeyRef]]:
    """A vault of ``vault_keys`` keys far from expiry, ``managed`` of them managed: the first names listed,
    or the ``last``."""
    estate = Estate()
    far = estate.clock.current + timedelta(days=300)
    keys = [KeyRef(VAULT, f"key-{i:05d}") for i in range(vault_keys)]
    for key in keys:
        estate.keys.add_key(key, kty="EC", expires=far)
    chosen = keys[-managed:] if last else keys[:managed]
    estate.settings = replace(estate.settings, managed_keys=tuple(k.uri for k in chosen))
    return estate, chosen


def _tick(estate: Estate, *, minutes: int = 15) -> tuple[SweepReport, int]:
    """One tick of a new worker process and the Key Vault calls it made, as the fake counted them."""
    estate.clock.advance(timedelta(minutes=minutes))
    estate.keys.calls.clear()
    report = sweep(estate.deps(cold=True), TIMER)
    return report, sum(estate.keys.calls.values())


def test_old_versions_enabled_past_expiry_cost_no_read_each_tick() -> None:
    """Key Vault never disables an expired version: a key's older version, enabled and past expiry (no
    consumer on it), is looked at when it enters the window and once a day, not on every tick."""
    estate, managed = _vault(20, 3)
    for key in managed:  # each key's current version becomes an older one, already expired
        old = estate.keys.get_key(key)
        estate.keys.versions[key][0] = replace(old, expires=estate.clock.current - timedelta(days=1))
        estate.keys.create_version(key, old, {}, estate.clock.current + timedelta(days=300))
    first = [_tick(estate) for _ in range(7)]  # listed, then caught up: one key a tick (a vault of one page)

    steady = [_tick(estate) for _ in range(8)]

    # Catching up, each key read once; its expired version makes the decision look for consumers on it
    # (the action's calls, counted by the fake but not the survey's).
    assert all(report.list_calls + report.key_reads <= 1 for report, _ in first), first
    assert sum(report.key_reads for report, _ in first) == 3
    assert [calls for _, calls in steady] == [1] * 8  # the listing only: min(3 managed, 1 page)
    assert all(report.items == () for report, _ in [*first, *steady])
    a_day_later, calls = _tick(estate, minutes=24 * 60)
    assert (a_day_later.list_calls, calls) == (1, 1)  # listed; the keys queued again for their daily read


def test_a_key_read_every_tick_has_its_consumers_looked_for_once_until_something_changes() -> None:
    """In a vault read key by key, a key whose older version Key Vault left enabled past expiry has its
    consumers looked for on its first read, when something changes, and once a day; the other ticks cost
    the reads alone."""
    estate, managed = _vault(100, 2, last=True)
    old = estate.keys.get_key(managed[0])
    estate.keys.versions[managed[0]][0] = replace(old, expires=estate.clock.current - timedelta(days=1))
    estate.keys.create_version(managed[0], old, {}, estate.clock.current + timedelta(days=300))
    _tick(estate)  # the first tick lists 2 pages of 4 and reaches neither key
    first, first_calls = _tick(estate)

    steady = [_tick(estate) for _ in range(6)]
    far = estate.clock.current + timedelta(days=300)
    estate.keys.create_version(managed[0], estate.keys.get_key(managed[0]), {}, far)
    changed, changed_calls = _tick(estate)
    later = [_tick(estate) for _ in range(3)]
    measured, measured_calls = _tick(estate, minutes=24 * 60)  # the vault's size is a day old: listed again
    a_day_later, day_calls = _tick(estate)

    assert (first.key_reads, first_calls) == (2, 4)  # and the search: the key's versions and its current one
    assert [calls for _, calls in steady] == [2] * 6  # min(2 managed, 4 pages): the reads alone
    assert (changed.key_reads, changed_calls) == (2, 4)  # a new version: looked at again
    assert [calls for _, calls in later] == [2] * 3
    assert (measured.list_calls, measured_calls) == (2, 2)
    assert (a_day_later.key_reads, day_calls) == (2, 4)  # and once a day
    ticks = [first, *(r for r, _ in steady), changed, *(r for r, _ in later), measured, a_day_later]
    assert all(report.items == () for report in ticks)


def test_a_vault_that_shrank_is_measured_again_within_a_day() -> None:
    """A vault read key by key (it took at least M pages) that shrinks keeps being read key by key until its
    size is a day old; then a listing cut at M pages measures it again and the sweep lists it."""
    estate, _ = _vault(200, 4, last=True)
    cold, cold_calls = _tick(estate)  # 4 pages of 8 (a listing cut at M): the managed keys not reached
    known, known_calls = _tick(estate)  # at least 5 pages: each key read
    assert (cold.list_calls, len(cold.deferred), cold_calls) == (4, 4, 4)
    assert (known.key_reads, known_calls) == (4, 4)
    for i in range(196):
        del estate.keys.versions[KeyRef(VAULT, f"key-{i:05d}")]  # 4 keys left: one page

    after = [_tick(estate, minutes=60) for _ in range(30)]

    assert all(calls <= 4 for _, calls in after)
    measured = next(i for i, (report, _) in enumerate(after) if report.list_calls)
    assert measured <= 24  # within a day of the last measure
    assert [calls for _, calls in after[measured + 1 :]] == [1] * (len(after) - measured - 1)  # min(4, 1)


def test_a_listing_that_fails_part_way_reads_nothing_more() -> None:
    """A page of the listing throttled: the keys its earlier pages showed are judged, the others are
    ``failed`` items this tick, and no key is read on top (Key Vault is struggling already)."""
    estate, _ = _vault(100, 10)
    far = estate.clock.current + timedelta(days=300)
    late = [KeyRef(VAULT, f"zz-{i}") for i in range(5)]  # sorted after the first pages
    for key in late:
        estate.keys.add_key(key, kty="EC", expires=far)
    estate.settings = replace(estate.settings, managed_keys=(*estate.settings.managed_keys[:5], *(k.uri for k in late)))
    listing = estate.keys.list_key_pages

    def throttled_after_one_page(vault_url: str) -> Iterator[KeyListPage]:
        pages = listing(vault_url)
        yield next(pages)
        raise ThrottledError("Key Vault throttled the listing", retry_after=5)

    estate.keys.list_key_pages = throttled_after_one_page  # type: ignore[method-assign]

    report, calls = _tick(estate)

    assert (report.list_calls, report.key_reads, calls) == (2, 0, 1)  # the fake counts the page it answered
    assert sorted(i.key_uri for i in report.items if i.action == "failed") == sorted(k.uri for k in late)
    assert all("list the vault" in i.detail for i in report.items)


def test_a_managed_key_that_cannot_be_read_never_holds_back_the_others() -> None:
    """Catching up is first in first out: a key whose version listing is refused goes to the back of the
    queue, and the others are read in turn."""
    estate, managed = _vault(40, 5)  # 2 pages: catching up reads 2 keys a tick
    refused = managed[0]
    list_versions = estate.keys.list_versions

    def refuse_one(key: KeyRef) -> list[KeyVersion]:
        if key == refused:
            estate.keys.calls["list_versions"] = estate.keys.calls.get("list_versions", 0) + 1
            raise PermissionDenied("not allowed: keys/read", "Microsoft.KeyVault/vaults/keys/read")
        return list_versions(key)

    estate.keys.list_versions = refuse_one  # type: ignore[method-assign]

    ticks = [_tick(estate) for _ in range(8)]

    bound = min(5, math.ceil(40 / 25))
    assert all(calls <= bound for _, calls in ticks), ticks
    rows = estate.sweep_store.rows[VAULT.lower()]
    assert all(k.uri.lower() in rows for k in managed[1:])  # every other key's versions read and kept
    assert refused.uri.lower() not in rows
    failures = [i for report, _ in ticks for i in report.items]
    assert {i.key_uri for i in failures} == {refused.uri}
    assert all(i.action == "failed" for i in failures)
