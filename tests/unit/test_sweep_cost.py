"""The sweep's choice between one vault listing and one version listing per managed key, and when a
key's current attributes from the listing are all its decision needs. Pure functions of plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotation.domain.model import KeyRef, KeyVersion
from rotation.domain.sweep_cost import (
    VERSIONS_MAX_AGE,
    VaultSize,
    VersionsSeen,
    list_the_vault,
    listing_suffices,
    page_limit,
    versions_seen,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
NEAR = timedelta(days=30)
KEY = KeyRef("https://kv.vault.azure.net", "cmk")


def version(name: str, created_days_ago: int, expires_in_days: int | None, *, enabled: bool = True) -> KeyVersion:
    expires = NOW + timedelta(days=expires_in_days) if expires_in_days is not None else None
    return KeyVersion(KEY, name, enabled, NOW - timedelta(days=created_days_ago), expires=expires)


class TestChoice:
    """List the vault only when it is expected to take fewer calls than reading each managed key."""

    def test_a_known_small_vault_with_many_managed_keys_is_listed(self) -> None:
        assert list_the_vault(10, VaultSize(keys=100, pages=4, complete=True))  # 4 pages < 10 reads

    def test_a_known_big_vault_with_few_managed_keys_is_not(self) -> None:
        assert not list_the_vault(2, VaultSize(keys=5000, pages=200, complete=True))
        assert not list_the_vault(2, VaultSize(keys=25, pages=1, complete=False))  # more than one page
        assert not list_the_vault(4, VaultSize(keys=100, pages=4, complete=True))  # a tie reads per key

    def test_one_managed_key_is_always_read_on_its_own(self) -> None:
        assert not list_the_vault(1, None)
        assert not list_the_vault(1, VaultSize(keys=1, pages=1, complete=True))

    def test_an_unknown_size_is_learnt_by_listing(self) -> None:
        assert list_the_vault(10, None)  # a first tick: learns the size, once for every later process
        assert list_the_vault(2, None)

    def test_a_listing_stops_before_it_costs_as_much_as_reading_each_key(self) -> None:
        assert page_limit(10) == 9
        assert page_limit(2) == 1

    def test_a_cut_listing_expects_at_least_one_more_page(self) -> None:
        assert VaultSize(keys=25, pages=1, complete=False).expected_pages == 2
        assert VaultSize(keys=0, pages=1, complete=True).expected_pages == 1
        assert VaultSize(keys=101, pages=5, complete=True).expected_pages == 5


class TestListingSuffices:
    """A key is judged from the listing only while what its last version listing showed still holds."""

    def seen(self, *, others_expire_in: int | None = 200, seen_ago: timedelta = timedelta(hours=1)) -> VersionsSeen:
        versions = [version("old", 100, others_expire_in), version("current", 10, 300)]
        seen = versions_seen(versions, NOW - seen_ago)
        assert seen is not None
        return seen

    def test_the_same_current_version_and_nothing_older_near_expiry(self) -> None:
        listed = version("", 10, 300)

        assert listing_suffices(self.seen(), listed, NOW, NEAR)

    def test_a_new_current_version_needs_the_versions(self) -> None:
        listed = version("", 1, 300)  # created since

        assert not listing_suffices(self.seen(), listed, NOW, NEAR)

    def test_an_older_version_entering_the_window_needs_the_versions(self) -> None:
        listed = version("", 10, 300)

        assert not listing_suffices(self.seen(others_expire_in=29), listed, NOW, NEAR)
        assert listing_suffices(self.seen(others_expire_in=None), listed, NOW, NEAR)

    def test_a_current_version_near_expiry_needs_the_versions(self) -> None:
        listed = version("", 10, 300)
        near = version("", 10, 20)

        assert listing_suffices(self.seen(), listed, NOW, NEAR)
        assert not listing_suffices(self.seen(), near, NOW, NEAR)

    def test_what_was_seen_is_trusted_for_a_day(self) -> None:
        listed = version("", 10, 300)

        assert not listing_suffices(self.seen(seen_ago=VERSIONS_MAX_AGE), listed, NOW, NEAR)
        assert not listing_suffices(None, listed, NOW, NEAR)

    def test_disabled_older_versions_do_not_count(self) -> None:
        versions = [version("old", 100, 5, enabled=False), version("current", 10, 300)]

        seen = versions_seen(versions, NOW)

        assert seen is not None
        assert seen.others_expire is None
        assert versions_seen([], NOW) is None
