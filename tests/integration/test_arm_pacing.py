"""The ARM adapters pace their writes from ARM's rate-limit headers: under a write bucket smaller than
the work the emulator never answers 429 (each PATCH is sent exactly once). How long the pacer waits is
tested on an injected clock in tests/unit/test_arm_pacing.py; here only the outcome is asserted."""

from __future__ import annotations

from rotation.adapters.arm_pacing import ArmPacer
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.adapters.storage_accounts import ArmStorageAccounts
from tests.integration.emulators.test_arm import (
    TESTER,
    World,
    account_name,
    cmk_account_body,
    identity_with_access,
    world,
)

__all__ = ["world"]  # the fixture, imported for this module


class TestPacedWrites:
    """More re-points than the write bucket holds: paced, none throttled, all done."""

    def test_storage_repoints_wait_for_the_refill(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        version = world.keys.get_key(world.key_name).properties.version
        names = [account_name() for _ in range(6)]
        for name in names:
            world.storage().storage_accounts.begin_create(
                world.resource_group, name, cmk_account_body(world, identity_id, identity, version)
            ).result()
        new_version = world.new_version().rsplit("/", 1)[-1]
        world.arm_admin.set_throttle(writes=(3, 0.5))  # 3 writes, then one every 2 seconds
        world.arm_admin.reset_counters()
        pacer = ArmPacer(reserve=0, refill_per_s={"reads": 25.0, "writes": 0.5, "deletes": 10.0})
        adapter = ArmStorageAccounts(
            world.arm_url, LocalDevelopmentCredential(TESTER), {"connection_verify": world.ca}, pacer=pacer
        )

        moved = [
            adapter.set_key_version(world.account_id(name), world.vault["url"], world.key_name, new_version)
            for name in names
        ]

        assert [m.key_version for m in moved] == [new_version] * len(names)
        # No 429, so no retry: whatever the machine's speed, the pacer's estimate never exceeds the bucket.
        assert world.arm_admin.counters()["StorageAccounts_Update"] == len(names)
