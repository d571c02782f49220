"""The ARM adapters pace their writes from ARM's rate-limit headers: under a write bucket smaller than
the work the emulator never answers 429 (each PATCH is sent exactly once). How long the pacer waits is
tested on an injected clock in tests/unit/test_arm_pacing.py; here only the outcome is asserted."""

from __future__ import annotations

from rotation.adapters.arm_pacing import ArmPacer
from tests.integration.emulators.test_arm import World, create_cmk_account, identity_with_access, world
from tests.integration.test_arm_failure_shapes import storage_accounts

__all__ = ["world"]  # the fixture, imported for this module


class TestPacedWrites:
    """More re-points than the write bucket holds: paced, none throttled, all done."""

    def test_storage_repoints_wait_for_the_refill(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        names = [create_cmk_account(world, identity_id=identity_id, identity=identity) for _ in range(6)]
        new_version = world.new_version().rsplit("/", 1)[-1]
        world.arm_admin.set_throttle(writes=(3, 0.5))  # 3 writes, then one every 2 seconds
        world.arm_admin.reset_counters()
        pacer = ArmPacer(reserve=0, refill_per_s={"reads": 25.0, "writes": 0.5, "deletes": 10.0})
        adapter = storage_accounts(world, pacer)

        moved = [
            adapter.set_key_version(world.account_id(name), world.vault["url"], world.key_name, new_version)
            for name in names
        ]

        assert [m.key_version for m in moved] == [new_version] * len(names)
        # No 429, so no retry: whatever the machine's speed, the pacer's estimate never exceeds the bucket.
        assert world.arm_admin.counters()["StorageAccounts_Update"] == len(names)
