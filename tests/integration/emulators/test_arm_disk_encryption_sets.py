"""The ARM emulator's Microsoft.Compute/diskEncryptionSets provider, driven by azure-mgmt-compute unmodified.

Creates and updates are long-running (202 + Location, polled by the SDK's ARMPolling); the key must
be fully versioned and usable by the set's identity; automatic rotation follows the newest version on
the set's own schedule and keeps the old key in ``previousKeys`` while the change is in progress.
"""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    DiskEncryptionSet,
    DiskEncryptionSetUpdate,
    DiskEncryptionSetUpdateProperties,
    EncryptionSetIdentity,
    EncryptionSetProperties,
    KeyForDiskEncryptionSet,
    SourceVault,
)

from tests.integration.emulators.test_arm import TESTER, World, arm_error, world

__all__ = ["world"]  # the fixture, imported for this module


def compute(world: World, principal: str = TESTER) -> ComputeManagementClient:
    return world.mgmt(ComputeManagementClient, principal)


def des_id(world: World, name: str) -> str:
    return world.resource_id("Microsoft.Compute/diskEncryptionSets", name)


def create_set(world: World, key_url: str, *, auto: bool = False, grant: bool = True) -> tuple[str, DiskEncryptionSet]:
    """A set with a system-assigned identity, granted on the vault after creation (Microsoft's documented order)."""
    name = f"des-{uuid.uuid4().hex[:8]}"
    body = DiskEncryptionSet(
        location="eastus",
        identity=EncryptionSetIdentity(type="SystemAssigned"),
        properties=EncryptionSetProperties(
            encryption_type="EncryptionAtRestWithCustomerKey",
            active_key=KeyForDiskEncryptionSet(key_url=key_url, source_vault=SourceVault(id=world.vault["arm_id"])),
            rotation_to_latest_key_version_enabled=auto,
        ),
    )
    created = compute(world).disk_encryption_sets.begin_create_or_update(world.resource_group, name, body).result()
    assert created.identity is not None
    world.grant_key_access(*([created.identity.principal_id] if grant else []))
    return name, created


def repoint(world: World, name: str, key_url: str) -> DiskEncryptionSet:
    patch = DiskEncryptionSetUpdate(
        properties=DiskEncryptionSetUpdateProperties(active_key=KeyForDiskEncryptionSet(key_url=key_url))
    )
    return compute(world).disk_encryption_sets.begin_update(world.resource_group, name, patch).result()


class TestCreate:
    """Create is long-running and records the versioned key; a versionless key URL is refused."""

    def test_versioned_key_is_the_active_key(self, world: World) -> None:
        version_id = str(world.keys.get_key(world.key_name).id)

        name, created = create_set(world, version_id)

        read = compute(world).disk_encryption_sets.get(world.resource_group, name)
        assert created.properties.provisioning_state == "Succeeded"
        assert read.properties.active_key.key_url == version_id
        assert read.properties.active_key.source_vault.id == world.vault["arm_id"]
        assert read.properties.previous_keys == []
        assert world.arm_admin.counters().get("DiskEncryptionSets_OperationStatus", 0) >= 1

    def test_versionless_key_url_is_refused(self, world: World) -> None:
        with pytest.raises(HttpResponseError) as caught:
            create_set(world, f"{world.vault['url'].rstrip('/')}/keys/{world.key_name}")

        error = arm_error(caught.value)
        assert (caught.value.status_code, error["code"]) == (400, "InvalidParameter")
        assert error["target"] == "activeKey.keyUrl"


class TestUpdateActiveKey:
    """PATCH of the active key is long-running; the key is checked as the set's identity first."""

    def test_repoint_to_a_new_version_polls_to_completion(self, world: World) -> None:
        name, _ = create_set(world, str(world.keys.get_key(world.key_name).id))
        new = world.new_version()

        updated = repoint(world, name, new)

        assert updated.properties.active_key.key_url == new
        assert updated.properties.provisioning_state == "Succeeded"
        assert updated.properties.previous_keys == []

    def test_key_the_identity_cannot_use_is_refused_and_nothing_changes(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _ = create_set(world, old, grant=False)
        new = world.new_version()

        with pytest.raises(HttpResponseError) as caught:
            repoint(world, name, new)

        assert arm_error(caught.value)["code"] == "KeyVaultAccessForbidden"
        assert compute(world).disk_encryption_sets.get(world.resource_group, name).properties.active_key.key_url == old


class TestAutomaticRotation:
    """rotationToLatestKeyVersionEnabled: the newest version within the hour; the old one in use meanwhile."""

    def test_newest_version_becomes_active_and_the_old_stays_in_use_until_done(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _ = create_set(world, old, auto=True)
        new = world.new_version()

        world.arm_admin.advance_clock(3600)
        rotating = compute(world).disk_encryption_sets.get(world.resource_group, name)
        in_use = world.arm_admin.key_access(des_id(world, name))["keys_in_use"]
        world.arm_admin.advance_clock(3600)
        done = compute(world).disk_encryption_sets.get(world.resource_group, name)

        assert rotating.properties.active_key.key_url == new
        assert [k.key_url for k in rotating.properties.previous_keys] == [old]
        assert in_use == [new, old]
        assert (done.properties.active_key.key_url, done.properties.previous_keys) == (new, [])

    def test_a_disabled_old_version_in_use_makes_the_set_inaccessible(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _ = create_set(world, old, auto=True)
        world.new_version()
        world.arm_admin.auto_rotate(des_id(world, name))

        world.keys.update_key_properties(world.key_name, old.rsplit("/", 1)[-1], enabled=False)
        access = world.arm_admin.key_access(des_id(world, name))

        assert access["accessible"] is False
        assert access["reason"].startswith("KeyVaultKeyDisabled")
