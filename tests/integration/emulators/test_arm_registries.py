"""The ARM emulator's Microsoft.ContainerRegistry provider, driven by azure-mgmt-containerregistry unmodified.

The SDK's own serialisation, Azure-AsyncOperation polling and error mapping run against the emulator;
the key is checked as the registry's identity through the Key Vault emulator.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import (
    EncryptionProperty,
    IdentityProperties,
    KeyVaultProperties,
    Registry,
    RegistryPropertiesUpdateParameters,
    RegistryUpdateParameters,
    Sku,
    UserIdentityProperties,
)

from tests.integration.emulators.test_arm import TESTER, World, arm_error, world

__all__ = ["world"]  # the fixture, imported for this module


def acr(world: World, principal: str = TESTER) -> ContainerRegistryManagementClient:
    return world.mgmt(ContainerRegistryManagementClient, principal)


def registry_id(world: World, name: str) -> str:
    return world.resource_id("Microsoft.ContainerRegistry/registries", name)


def registry_with_key(
    world: World, key_identifier: str, *, granted: bool = True, sku: str = "Premium"
) -> tuple[str, Registry, str]:
    """(name, the created registry, the client id of its encryption identity)."""
    identity_id = world.identity_id(f"uai-{uuid.uuid4().hex[:6]}")
    registered = world.arm_admin.register_user_assigned_identity(identity_id)
    # Granting anyone turns Key Vault RBAC on: then only the principals granted may use the key.
    world.grant_key_access(*([registered["principal_id"]] if granted else []))
    name = f"acr{uuid.uuid4().hex[:12]}"
    body = Registry(
        location="eastus",
        sku=Sku(name=sku),
        identity=IdentityProperties(
            type="UserAssigned", user_assigned_identities={identity_id: UserIdentityProperties()}
        ),
        encryption=EncryptionProperty(
            status="enabled",
            key_vault_properties=KeyVaultProperties(key_identifier=key_identifier, identity=registered["client_id"]),
        ),
    )
    created = acr(world).registries.begin_create(world.resource_group, name, body).result()
    return name, created, registered["client_id"]


def versionless(world: World) -> str:
    return f"{world.vault['url'].rstrip('/')}/keys/{world.key_name}"


class TestCreate:
    """A Premium registry is created (long-running, Azure-AsyncOperation) with the key its identity can use."""

    def test_pinned_version_is_reported_in_use(self, world: World) -> None:
        version_id = str(world.keys.get_key(world.key_name).id)

        name, created, client_id = registry_with_key(world, version_id)

        read = acr(world).registries.get(world.resource_group, name)
        assert created.provisioning_state == "Succeeded"
        kvp = read.encryption.key_vault_properties
        assert (read.encryption.status, kvp.key_identifier, kvp.versioned_key_identifier) == (
            "enabled",
            version_id,
            version_id,
        )
        assert kvp.key_rotation_enabled is False
        assert kvp.identity == client_id
        assert world.arm_admin.counters().get("Registries_OperationStatus", 0) >= 1

    def test_key_the_identity_cannot_use_is_refused_and_nothing_is_created(self, world: World) -> None:
        with pytest.raises(HttpResponseError) as caught:
            registry_with_key(world, str(world.keys.get_key(world.key_name).id), granted=False)

        assert caught.value.status_code == 400
        assert "Key" in arm_error(caught.value)["code"]
        assert list(acr(world).registries.list_by_resource_group(world.resource_group)) == []

    def test_customer_managed_key_needs_premium(self, world: World) -> None:
        with pytest.raises(HttpResponseError) as caught:
            registry_with_key(world, versionless(world), sku="Standard")

        assert arm_error(caught.value)["code"] == "CMKNotSupportedForSku"


class TestVersionlessKeyRotatesOnItsOwnSchedule:
    """A key identifier without a version follows the newest version within the hour, not at once."""

    def test_new_version_is_adopted_after_the_hourly_check(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _, _ = registry_with_key(world, versionless(world))
        new = world.new_version()

        before = acr(world).registries.get(world.resource_group, name).encryption.key_vault_properties
        world.arm_admin.advance_clock(3600)
        after = acr(world).registries.get(world.resource_group, name).encryption.key_vault_properties

        assert (before.key_rotation_enabled, before.versioned_key_identifier) == (True, old)
        assert after.versioned_key_identifier == new
        assert after.key_identifier == versionless(world)

    def test_admin_action_runs_the_check_now(self, world: World) -> None:
        name, _, _ = registry_with_key(world, versionless(world))
        new = world.new_version()

        result = world.arm_admin.auto_rotate(registry_id(world, name))

        assert result["changed"] is True
        assert result["resource"]["properties"]["encryption"]["keyVaultProperties"]["versionedKeyIdentifier"] == new


class TestUpdateKey:
    """PATCH of encryption is long-running; the new key is checked as the registry's identity first."""

    def test_repoint_to_a_new_version(self, world: World) -> None:
        name, _, client_id = registry_with_key(world, str(world.keys.get_key(world.key_name).id))
        new = world.new_version()
        patch = RegistryUpdateParameters(
            properties=RegistryPropertiesUpdateParameters(
                encryption=EncryptionProperty(
                    status="enabled", key_vault_properties=KeyVaultProperties(key_identifier=new, identity=client_id)
                )
            )
        )

        updated = acr(world).registries.begin_update(world.resource_group, name, patch).result()

        assert updated.encryption.key_vault_properties.versioned_key_identifier == new
        assert updated.provisioning_state == "Succeeded"

    def test_disabled_version_is_refused_and_the_registry_keeps_its_key(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _, client_id = registry_with_key(world, old)
        new = world.new_version()
        world.keys.update_key_properties(world.key_name, new.rsplit("/", 1)[-1], enabled=False)
        patch = RegistryUpdateParameters(
            properties=RegistryPropertiesUpdateParameters(
                encryption=EncryptionProperty(
                    status="enabled", key_vault_properties=KeyVaultProperties(key_identifier=new, identity=client_id)
                )
            )
        )

        with pytest.raises(HttpResponseError) as caught:
            acr(world).registries.begin_update(world.resource_group, name, patch).result()

        assert arm_error(caught.value)["code"] == "KeyVaultKeyDisabled"
        read = acr(world).registries.get(world.resource_group, name)
        assert read.encryption.key_vault_properties.versioned_key_identifier == old

    def test_encryption_cannot_be_disabled(self, world: World) -> None:
        name, _, _ = registry_with_key(world, versionless(world))
        patch = RegistryUpdateParameters(
            properties=RegistryPropertiesUpdateParameters(encryption=EncryptionProperty(status="disabled"))
        )

        with pytest.raises(HttpResponseError) as caught:
            acr(world).registries.begin_update(world.resource_group, name, patch).result()

        assert arm_error(caught.value)["code"] == "EncryptionCannotBeDisabled"


class TestKeyAccess:
    """The admin access query judges, live, whether the version the registry uses is still usable."""

    def test_disabling_the_version_in_use_makes_the_registry_inaccessible(self, world: World) -> None:
        version_id = str(world.keys.get_key(world.key_name).id)
        name, _, _ = registry_with_key(world, version_id)
        before: dict[str, Any] = world.arm_admin.key_access(registry_id(world, name))

        world.keys.update_key_properties(world.key_name, version_id.rsplit("/", 1)[-1], enabled=False)
        after = world.arm_admin.key_access(registry_id(world, name))

        assert (before["accessible"], before["keys_in_use"]) == (True, [version_id])
        assert after["accessible"] is False
        assert after["reason"].startswith("KeyVaultKeyDisabled")
