"""The sweep's plan for one tick over a vault (list it, or read keys' versions), and what it knows of a key's
other versions between version listings. Pure functions of plain values."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rotation.domain.model import KeyRef, KeyVersion
from rotation.domain.sweep_cost import (
    KEYS_PER_PAGE,
    SIZE_MAX_AGE,
    VERSIONS_MAX_AGE,
    TickPlan,
    VaultSize,
    VersionsSeen,
    carried_forward,
    near_expiry,
    needs_versions,
    plan_tick,
    queued,
    versions_seen,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
NEAR = timedelta(days=30)
KEY = KeyRef("https://kv.vault.azure.net", "cmk")


def version(name: str, created_days_ago: int, expires_in_days: int | None, *, enabled: bool = True) -> KeyVersion:
    expires = NOW + timedelta(days=expires_in_days) if expires_in_days is not None else None
    created = NOW - timedelta(days=created_days_ago)
    return KeyVersion(KEY, name, enabled, created, updated=created, expires=expires)


def known(*, seen_ago: timedelta = timedelta(hours=1), vouched: bool = True) -> VersionsSeen:
    return VersionsSeen(NOW - timedelta(days=10), NOW - timedelta(days=10), None, None, NOW - seen_ago, vouched)


def managed(count: int) -> list[str]:
    return [f"https://kv.vault.azure.net/keys/k{i}" for i in range(count)]


def size(keys: int, pages: int, *, complete: bool = True, pending: tuple[str, ...] = (), ago: int = 1) -> VaultSize:
    return VaultSize(keys, pages, complete, NOW - timedelta(hours=ago), pending, catch_up=bool(pending))


class TestPlan:
    """Every plan costs at most min(M, the pages a listing takes) calls, whatever the sweep knows of the vault."""

    def test_one_managed_key_is_read_on_its_own(self) -> None:
        assert plan_tick(managed(1), None, NOW) == TickPlan(0, (managed(1)[0],))

    def test_an_unknown_vault_is_listed_at_most_one_page_per_managed_key(self) -> None:
        assert plan_tick(managed(10), None, NOW) == TickPlan(10)
        assert plan_tick(managed(2), None, NOW) == TickPlan(2)

    def test_a_vault_of_at_least_as_many_pages_as_managed_keys_reads_each_key(self) -> None:
        keys = managed(2)
        assert plan_tick(keys, size(50, 2, complete=False), NOW) == TickPlan(0, tuple(keys))
        assert plan_tick(managed(4), size(100, 4), NOW).read == tuple(managed(4))
        assert plan_tick(managed(4), size(60, 4), NOW).read == tuple(managed(4))  # short pages: 4 calls to list

    def test_a_vault_read_key_by_key_is_listed_again_after_a_day(self) -> None:
        """A size can go stale (the vault shrank; a record another process wrote): a day on, a listing cut at
        M pages, within the bound, measures it again."""
        keys = managed(4)
        assert plan_tick(keys, size(5000, 200, ago=23), NOW).read == tuple(keys)
        assert plan_tick(keys, size(5000, 200, ago=int(SIZE_MAX_AGE.total_seconds() // 3600)), NOW) == TickPlan(4)
        assert plan_tick(keys, size(5000, 200, ago=-1), NOW) == TickPlan(4)  # dated ahead of the clock

    def test_a_smaller_vault_is_listed_unless_keys_wait_for_their_versions(self) -> None:
        keys = managed(10)
        assert plan_tick(keys, size(100, 4), NOW) == TickPlan(10)

    def test_catching_up_reads_the_queue_in_order_at_most_one_key_per_page(self) -> None:
        keys = managed(10)
        waiting = (keys[7], keys[2], "https://kv.vault.azure.net/keys/not-managed", keys[5], keys[1], keys[0])

        plan = plan_tick(keys, size(100, 4, pending=waiting), NOW)

        assert plan == TickPlan(0, (keys[7], keys[2], keys[5], keys[1]))
        assert plan_tick(keys, replace(size(100, 4, pending=waiting), catch_up=False), NOW) == TickPlan(10)

    @given(
        vault_keys=st.integers(min_value=1, max_value=10_000),
        count=st.integers(min_value=1, max_value=60),
        listed=st.tuples(st.integers(min_value=1, max_value=500), st.integers(min_value=0, max_value=12_500)),
        flags=st.tuples(st.booleans(), st.booleans()),
        queue=st.integers(min_value=0, max_value=60),
    )
    def test_no_plan_costs_more_than_the_bound(
        self, vault_keys: int, count: int, listed: tuple[int, int], flags: tuple[bool, bool], queue: int
    ) -> None:
        """Whatever size the sweep remembers (right, stale, or forged within what decodes), a plan lists at
        most M pages or reads at most M keys; reading keys is chosen only on a size that says a listing
        takes at least M pages, or (catching up) at most one key per page the last listing took."""
        keys = managed(min(count, vault_keys))
        pages, seen_keys = listed
        complete, catch_up = flags
        remembered = VaultSize(min(seen_keys, pages * 25), pages, complete, NOW, tuple(keys[:queue]), catch_up)

        for plan in (plan_tick(keys, None, NOW), plan_tick(keys, remembered, NOW)):
            assert not (plan.list_pages and plan.read)
            assert plan.list_pages <= len(keys)
            assert len(plan.read) <= len(keys)
        plan = plan_tick(keys, remembered, NOW)
        if plan.read and len(keys) > 1:
            listing_cost = remembered.expected_pages
            assert listing_cost >= len(keys) or (remembered.catch_up and len(plan.read) <= listing_cost)

    def test_a_full_vault_costs_at_most_min_m_and_its_pages(self) -> None:
        """On a size a listing of full pages measured, the plan's calls are within min(M, ⌈N/25⌉) exactly."""
        for vault_keys in (1, 24, 25, 26, 100, 101, 5000):
            pages = math.ceil(vault_keys / KEYS_PER_PAGE)
            for count in (1, 2, 3, 4, 5, 10, 40):
                keys = managed(min(count, vault_keys))
                for queue in (0, 1, len(keys)):
                    measured = VaultSize(vault_keys, pages, True, NOW, tuple(keys[:queue]), queue > 0)
                    plan = plan_tick(keys, measured, NOW)
                    assert min(plan.list_pages, pages) + len(plan.read) <= min(len(keys), pages)


class TestWhatIsKnown:
    def test_a_version_listing_is_complete_for_a_day(self) -> None:
        assert known().complete(NOW)
        assert not known(seen_ago=VERSIONS_MAX_AGE).complete(NOW)
        assert not known(vouched=False).complete(NOW)

    def test_versions_are_needed_when_unknown_stale_carried_forward_or_entering_the_window(self) -> None:
        entering = replace(known(seen_ago=timedelta(hours=2)), others_expire=NOW + NEAR - timedelta(hours=1))
        inside = replace(known(seen_ago=timedelta(hours=2)), others_expire=NOW + NEAR - timedelta(hours=3))

        assert needs_versions(None, NOW, NEAR)
        assert needs_versions(known(seen_ago=VERSIONS_MAX_AGE), NOW, NEAR)
        assert needs_versions(known(vouched=False), NOW, NEAR)
        assert needs_versions(entering, NOW, NEAR)  # outside the window when read, inside now
        assert not needs_versions(inside, NOW, NEAR)  # inside already when read: its consumers were looked at
        assert not needs_versions(known(), NOW, NEAR)

    def test_the_queue_keeps_its_order_and_puts_the_newly_due_last(self) -> None:
        a, b, c, d = managed(4)

        assert queued((c, a), [a, b, c]) == (c, a, b)
        assert queued((c, a), [b, d]) == (b, d)  # no longer due: out of the queue
        assert queued((), [d, a]) == (d, a)

    def test_a_version_listing_shows_the_current_and_the_earliest_other_enabled_expiry(self) -> None:
        versions = [version("a", 100, 40), version("b", 50, 20, enabled=False), version("c", 10, 300)]

        seen = versions_seen(versions, NOW)

        assert seen == VersionsSeen(
            versions[2].created, versions[2].updated, versions[2].expires, versions[0].expires, NOW
        )
        assert versions_seen([], NOW) is None

    def test_the_same_current_version_in_a_listing_changes_nothing(self) -> None:
        seen = versions_seen([version("a", 100, 40), version("c", 10, 300)], NOW)

        assert carried_forward(seen, version("", 10, 300)) is seen
        assert carried_forward(None, version("", 10, 300)) is None

    def test_a_newer_current_version_makes_the_one_before_another_version(self) -> None:
        seen = versions_seen([version("a", 100, 400), version("c", 10, 60)], NOW)
        assert seen is not None

        after = carried_forward(seen, version("", 1, 300))

        assert after is not None
        assert after.others_expire == seen.current_expires  # the earlier of 400 days and 60 days
        assert (after.current_created, after.current_expires) == (NOW - timedelta(days=1), NOW + timedelta(days=300))
        assert not after.vouched  # versions made between the two are unknown
        assert after.seen_at == seen.seen_at

    def test_an_edit_of_the_current_version_counts_as_a_change(self) -> None:
        seen = versions_seen([version("c", 10, 300)], NOW)
        edited = KeyVersion(KEY, "", True, NOW - timedelta(days=10), updated=NOW, expires=NOW + timedelta(days=300))

        after = carried_forward(seen, edited)

        assert after is not None
        assert not after.vouched

    def test_near_expiry(self) -> None:
        assert near_expiry(NOW + NEAR, NOW, NEAR)
        assert not near_expiry(NOW + NEAR + timedelta(seconds=1), NOW, NEAR)
        assert not near_expiry(None, NOW, NEAR)
