"""The ARM adapters pace their writes from ARM's rate-limit headers: under a write bucket smaller than
the work the emulator never answers 429 (each PATCH is sent exactly once), and a rotation re-pointing
many accounts at once from a drained write bucket meets one 429 at most (its first write, before ARM
reported anything) while reading each account twice per write. How long the pacer waits is tested on an
injected clock in tests/unit/test_arm_pacing.py; here only counts are asserted (the emulator's own)."""

from __future__ import annotations

from typing import Any

from rotation.adapters.arm_pacing import ArmPacer
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import start_rotation
from tests.integration.emulators.test_arm import World, create_cmk_account, identity_with_access, world
from tests.integration.test_arm_failure_shapes import storage_accounts
from tests.integration.workflow.estate import OPERATOR, build_storage_estate

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


class TestRepointReads:
    """A re-point reads the account once before its write (what it decides on is what the PATCH keeps)."""

    def test_a_write_based_on_a_reading_keeps_the_encryption_identity_without_reading_again(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        account_id = world.account_id(create_cmk_account(world, identity_id=identity_id, identity=identity))
        new_version = world.new_version().rsplit("/", 1)[-1]
        adapter = storage_accounts(world)
        read = adapter.get_account(account_id)
        world.arm_admin.reset_counters()

        moved = adapter.set_key_version(account_id, world.vault["url"], world.key_name, new_version, based_on=read)
        counters = world.arm_admin.counters()

        assert counters == {"StorageAccounts_Update": 1}
        assert moved.key_version == new_version
        raw = world.storage().storage_accounts.get_properties(world.resource_group, account_id.rsplit("/", 1)[-1])
        assert raw.encryption.encryption_identity.encryption_user_assigned_identity == identity_id

    def test_without_a_reading_the_write_reads_first(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        account_id = world.account_id(create_cmk_account(world, identity_id=identity_id, identity=identity))
        new_version = world.new_version().rsplit("/", 1)[-1]
        world.arm_admin.reset_counters()

        storage_accounts(world).set_key_version(account_id, world.vault["url"], world.key_name, new_version)

        assert world.arm_admin.counters() == {"StorageAccounts_GetProperties": 1, "StorageAccounts_Update": 1}


class TestConcurrentRepointUnderTheBucket:
    """Concurrent re-points share one pacer: from a drained write bucket (Azure's sizes and refills), one 429
    at most, one PATCH per account, two reads per account in the re-point and one in the verify step."""

    def test_drained_write_bucket(self, local_azure: dict[str, Any]) -> None:
        accounts = 16
        estate = build_storage_estate(local_azure, accounts=accounts)
        arm = estate.arm_admin
        arm.set_throttle(
            enabled=True, reads=(250, 25.0), writes=(200, 10.0), deletes=(200, 10.0), initial={"writes": 0}
        )
        try:
            deps = estate.deps(ROTATION_REPOINT_CONCURRENCY="8")
            arm.reset_counters()
            view = start_rotation(deps, estate.key.uri, Trigger(TriggerKind.CLI, caller="test"), reason="test")
            stats = {s["kind"]: s for s in arm.throttle_stats(estate.subscription_id) if s["principal"] == OPERATOR}
            counters = arm.counters()
        finally:
            arm.reset_throttle()

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        state, _ = deps.journal.load(view.rotation_id)
        assert [c.status for c in state.consumers] == ["changed"] * accounts
        writes = stats["writes"]
        assert writes["granted"] == accounts
        assert writes["throttled"] <= 1  # the first write, before ARM reported the bucket empty
        assert counters["StorageAccounts_Update"] == accounts + writes["throttled"]
        # One read per account: the write's own read of what its PATCH keeps. Before the write the step's
        # listing is the read, after it the PATCH's answer, and verify_consumers reads by listing.
        assert counters["StorageAccounts_GetProperties"] == accounts
        assert stats["reads"]["throttled"] == 0
