"""The registry, disk-encryption-set and key-reference adapters against local Azure.

Resources are created with the official SDKs (as in the emulator tests) and read, re-pointed and
discovered with the service's adapters; errors arrive as :mod:`rotation.errors`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from rotation.adapters.arm_rest import ArmRest
from rotation.adapters.disk_encryption_sets import ArmDiskEncryptionSets
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.adapters.registries import ArmContainerRegistries
from rotation.adapters.resource_graph import ArmKeyReferences
from rotation.domain.model import KeyRef
from rotation.errors import InputError, PermissionDenied, PreconditionFailed, VerificationFailed
from tests.integration.emulators.test_arm import TESTER, World, cmk_account_body, identity_with_access, world
from tests.integration.emulators.test_arm_disk_encryption_sets import create_set, des_id
from tests.integration.emulators.test_arm_registries import registry_id, registry_with_key, versionless

__all__ = ["world"]  # the fixture, imported for this module


def rest(world: World, principal: str = TESTER) -> ArmRest:
    return ArmRest(
        world.arm_url,
        LocalDevelopmentCredential(principal),
        {"connection_verify": world.ca, "retry_total": 0},
        polling_interval=0.05,
    )


def managed_key(world: World) -> KeyRef:
    return KeyRef.parse(versionless(world))[0]


class TestContainerRegistries:
    """Read and re-point a registry's key; a refused key leaves it where it was."""

    def test_repoint_pinned_then_versionless(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _, client_id = registry_with_key(world, old)
        registries = ArmContainerRegistries(rest(world))
        new = world.new_version()

        before = registries.get_registry(registry_id(world, name))
        pinned = registries.set_key_identifier(registry_id(world, name), new)
        floating = registries.set_key_identifier(registry_id(world, name), versionless(world))

        assert (before.versioned_key_identifier, before.versionless, before.identity_client_id) == (
            old,
            False,
            client_id,
        )
        assert (pinned.key_identifier, pinned.versioned_key_identifier) == (new, new)
        assert (floating.versionless, floating.versioned_key_identifier) == (True, new)

    def test_refused_key_is_verification_failed_and_nothing_changes(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _, _ = registry_with_key(world, old)
        new = world.new_version()
        world.keys.update_key_properties(world.key_name, new.rsplit("/", 1)[-1], enabled=False)
        registries = ArmContainerRegistries(rest(world))

        with pytest.raises(VerificationFailed) as caught:
            registries.set_key_identifier(registry_id(world, name), new)

        assert "KeyVaultKeyDisabled" in caught.value.message
        assert registries.get_registry(registry_id(world, name)).versioned_key_identifier == old

    def test_reader_may_read_but_not_write(self, world: World) -> None:
        name, _, _ = registry_with_key(world, versionless(world))
        world.arm_admin.set_role_assignments(
            [
                {"principal_id": TESTER, "role": "Owner"},
                {"principal_id": "reader", "role": "Reader", "scope": f"/subscriptions/{world.subscription_id}"},
            ]
        )
        registries = ArmContainerRegistries(rest(world, "reader"))

        registries.get_registry(registry_id(world, name))
        with pytest.raises(PermissionDenied) as caught:
            registries.set_key_identifier(registry_id(world, name), versionless(world))

        assert caught.value.permission == "Microsoft.ContainerRegistry/registries/write"

    def test_missing_registry_and_malformed_id(self, world: World) -> None:
        registries = ArmContainerRegistries(rest(world))

        with pytest.raises(PreconditionFailed):
            registries.get_registry(registry_id(world, "acrmissing"))
        with pytest.raises(InputError):
            registries.get_registry("/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z")


class TestDiskEncryptionSets:
    """Read and re-point a set's active key (long-running); versioned keys only."""

    def test_repoint_to_new_version(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _ = create_set(world, old)
        sets = ArmDiskEncryptionSets(rest(world))
        new = world.new_version()

        before = sets.get_set(des_id(world, name))
        after = sets.set_active_key(des_id(world, name), new)

        assert (before.key_url, before.source_vault_id, before.auto_rotation) == (old, world.vault["arm_id"], False)
        assert (after.key_url, after.previous_key_urls, after.source_vault_id) == (new, (), world.vault["arm_id"])

    def test_versionless_url_is_an_input_error_and_refusal_is_verification_failed(self, world: World) -> None:
        old = str(world.keys.get_key(world.key_name).id)
        name, _ = create_set(world, old, grant=False)
        sets = ArmDiskEncryptionSets(rest(world))
        new = world.new_version()

        with pytest.raises(InputError):
            sets.set_active_key(des_id(world, name), versionless(world))
        with pytest.raises(VerificationFailed):
            sets.set_active_key(des_id(world, name), new)

        assert sets.get_set(des_id(world, name)).key_url == old


class TestKeyReferences:
    """One query finds every reference to a key, in any subscription, any case, any port form, any version."""

    def test_every_kind_of_reference_is_found_with_its_property_path(self, world: World) -> None:
        world.arm_admin.set_graph_quota(queries=1000, window_s=5)
        identity_id, identity = identity_with_access(world)
        account = f"sa{uuid.uuid4().hex[:12]}"
        world.storage().storage_accounts.begin_create(
            world.resource_group, account, cmk_account_body(world, identity_id, identity)
        ).result()
        registry, _, _ = registry_with_key(world, versionless(world))
        des, _ = create_set(world, str(world.keys.get_key(world.key_name).id))
        elsewhere = str(uuid.uuid4())
        cosmos = f"/subscriptions/{elsewhere}/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/c1"
        world.arm_admin.put_generic_resource(cosmos, {"keyVaultKeyUri": versionless(world).upper()})

        found = ArmKeyReferences(rest(world)).find(managed_key(world))

        paths: dict[str, set[str]] = {}
        for reference in found:
            paths.setdefault(reference.resource_id, set()).add(reference.property_path)
        assert paths[world.account_id(account)] >= {"properties.encryption.keyvaultproperties"}
        assert paths[registry_id(world, registry)] == {
            "properties.encryption.keyVaultProperties.keyIdentifier",
            "properties.encryption.keyVaultProperties.versionedKeyIdentifier",
        }
        assert paths[des_id(world, des)] == {"properties.activeKey.keyUrl"}
        assert paths[cosmos] == {"properties.keyVaultKeyUri"}
        assert next(r for r in found if r.resource_id == cosmos).version is None

    def test_port_case_and_similar_names(self, world: World) -> None:
        world.arm_admin.set_graph_quota(queries=1000, window_s=5)
        host = f"kv{uuid.uuid4().hex[:8]}.vault.azure.net"
        sub = str(uuid.uuid4())

        def seed(name: str, uri: str) -> str:
            resource_id = f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Sql/servers/{name}"
            world.arm_admin.put_generic_resource(resource_id, {"keyUri": uri})
            return resource_id

        with_port = seed("a", f"https://{host.upper()}:443/keys/CMK/abc123")
        plain = seed("b", f"https://{host}/keys/cmk")
        seed("c", f"https://{host}/keys/cmk2")

        found = ArmKeyReferences(rest(world)).find(KeyRef(f"https://{host}", "cmk"))

        assert {(r.resource_id, r.version) for r in found} == {(with_port, "abc123"), (plain, None)}

    def test_pages_wait_for_the_quota_to_reset(self, world: World) -> None:
        host = f"kv{uuid.uuid4().hex[:8]}.vault.azure.net"
        sub = str(uuid.uuid4())
        for name in ("a", "b", "c"):
            world.arm_admin.put_generic_resource(
                f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Sql/servers/{name}",
                {"keyUri": f"https://{host}/keys/cmk"},
            )
        world.arm_admin.set_graph_quota(queries=1, window_s=1)
        throttled_before = world.arm_admin.counters().get("ResourceGraph_Throttled", 0)
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        try:
            found = ArmKeyReferences(rest(world, f"q-{uuid.uuid4().hex[:6]}"), sleep=sleep, page_size=1).find(
                KeyRef(f"https://{host}", "cmk")
            )
        finally:
            world.arm_admin.set_graph_quota()

        assert len(found) == 3
        assert len(waits) == 2
        assert all(w >= 1 for w in waits)
        counters: dict[str, Any] = world.arm_admin.counters()
        assert counters.get("ResourceGraph_Throttled", 0) == throttled_before

    def test_one_query_per_key_within_the_reuse_window(self, world: World) -> None:
        world.arm_admin.set_graph_quota(queries=1000, window_s=5)
        key = KeyRef(f"https://kv{uuid.uuid4().hex[:8]}.vault.azure.net", "cmk")
        now = [100.0]
        references = ArmKeyReferences(rest(world), reuse_s=30, monotonic=lambda: now[0])
        before = world.arm_admin.counters().get("ResourceGraph_Resources", 0)

        references.find(key)
        references.find(key)
        reused = world.arm_admin.counters().get("ResourceGraph_Resources", 0)
        now[0] += 31
        references.find(key)
        after = world.arm_admin.counters().get("ResourceGraph_Resources", 0)

        assert (reused - before, after - reused) == (1, 1)
