"""The sweep's plan for one tick over a vault (list it, or read keys' versions), and what it knows of a key's
other versions between version listings. Pure functions of plain values."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rotation.domain.model import KeyRef, KeyVersion
from rotation.domain.sweep_cost import (
    KEYS_PER_PAGE,
    VERSIONS_MAX_AGE,
    TickPlan,
    VaultSize,
    VersionsSeen,
    carried_forward,
    catching_up,
    near_expiry,
    plan_tick,
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


class TestPlan:
    """Every plan costs at most min(M, ⌈N/25⌉) calls, whatever the sweep knows of the vault."""

    def test_one_managed_key_is_read_on_its_own(self) -> None:
        assert plan_tick(managed(1), None, {}, NOW) == TickPlan(0, (managed(1)[0],))

    def test_an_unknown_vault_is_listed_at_most_one_page_per_managed_key(self) -> None:
        assert plan_tick(managed(10), None, {}, NOW) == TickPlan(10)
        assert plan_tick(managed(2), None, {}, NOW) == TickPlan(2)

    def test_a_vault_of_at_least_as_many_pages_as_managed_keys_reads_each_key(self) -> None:
        keys = managed(2)
        assert plan_tick(keys, VaultSize(5000, 2, complete=False), {}, NOW) == TickPlan(0, tuple(keys))
        assert plan_tick(managed(4), VaultSize(100, 4, complete=True), {}, NOW).read == tuple(managed(4))

    def test_a_smaller_vault_is_listed_while_every_key_is_known(self) -> None:
        keys = managed(10)
        everything = dict.fromkeys(keys, known())
        assert plan_tick(keys, VaultSize(100, 4, complete=True, catch_up=True), everything, NOW) == TickPlan(10)

    def test_catching_up_reads_at_most_as_many_keys_as_the_vault_has_pages(self) -> None:
        keys = managed(10)
        some = {keys[0]: known(), keys[1]: known(seen_ago=VERSIONS_MAX_AGE), keys[2]: known(vouched=False)}
        size = VaultSize(100, 4, complete=True, catch_up=True)

        plan = plan_tick(keys, size, some, NOW)

        assert plan.list_pages == 0
        assert plan.read == tuple(keys[3:7])  # never seen first
        assert plan_tick(keys, VaultSize(100, 4, complete=True), some, NOW) == TickPlan(10)  # listing's turn

    @given(
        vault_keys=st.integers(min_value=1, max_value=10_000),
        count=st.integers(min_value=1, max_value=60),
        listed_pages=st.integers(min_value=1, max_value=80),
        flags=st.tuples(st.booleans(), st.booleans()),
        known_share=st.integers(min_value=0, max_value=100),
    )
    def test_no_plan_costs_more_than_the_bound(
        self, vault_keys: int, count: int, listed_pages: int, flags: tuple[bool, bool], known_share: int
    ) -> None:
        complete, catch_up = flags
        keys = managed(min(count, vault_keys))
        pages = math.ceil(vault_keys / KEYS_PER_PAGE)
        # A size the sweep can have learnt of this vault: the full listing, or a cut one shorter than it.
        size = VaultSize(vault_keys, pages, True, catch_up) if complete or listed_pages >= pages else None
        if size is None:
            size = VaultSize(listed_pages * KEYS_PER_PAGE, listed_pages, False, catch_up)
        seen = {key: known() for i, key in enumerate(keys) if i * 100 < known_share * len(keys)}
        bound = min(len(keys), pages)

        for plan in (plan_tick(keys, None, seen, NOW), plan_tick(keys, size, seen, NOW)):
            # A listing stops at the vault's last page: it costs no more than the pages that exist.
            assert min(plan.list_pages, pages) + len(plan.read) <= bound
            assert not (plan.list_pages and plan.read)


class TestWhatIsKnown:
    def test_a_version_listing_is_complete_for_a_day(self) -> None:
        assert known().complete(NOW)
        assert not known(seen_ago=VERSIONS_MAX_AGE).complete(NOW)
        assert not known(vouched=False).complete(NOW)

    def test_catching_up_takes_the_never_seen_then_the_oldest(self) -> None:
        keys = managed(4)
        seen = {keys[0]: known(seen_ago=timedelta(hours=30)), keys[1]: known(), keys[2]: known(vouched=False)}

        assert catching_up(keys, seen, NOW) == (keys[3], keys[0], keys[2])

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
