"""The ``ContainerRegistries``, ``DiskEncryptionSets`` and ``KeyReferences`` contracts: the fakes and the
adapters on the ARM emulator agree.

A registry pinned to ``old``, one versionless, a disk encryption set on ``old`` and a Cosmos DB account
(a generic resource) in another subscription naming the key without a version. Re-points are absolute,
read back and repeat; a version the resource provider refuses is ``VerificationFailed`` and nothing
changes; an unknown resource is ``NotFound``; references are found in every subscription, with their
property paths and versions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest

from rotation.domain.model import KeyRef
from rotation.domain.operations import Operation, OperationPoll, polling_url_problem
from rotation.errors import InputError, PreconditionFailed, VerificationFailed
from rotation.ports import ContainerRegistries, DiskEncryptionSets, KeyReferences
from tests.contracts.conftest import BOTH
from tests.integration.emulators.test_arm import world

__all__ = ["world"]  # the emulator fixture, asked for by the real estate only


@dataclass
class Estate:
    key: KeyRef
    old: str
    new: str
    pinned_registry: str
    versionless_registry: str
    disk_encryption_set: str
    cosmos: str  # a generic resource in another subscription
    registries: ContainerRegistries
    sets: DiskEncryptionSets
    references: KeyReferences
    refused: str  # a version the resource providers refuse
    arm_endpoint: str = "https://management.azure.com"


def fake_estate() -> Estate:
    import secrets

    from tests.fakes.references import FakeContainerRegistries, FakeDiskEncryptionSets, FakeKeyReferences

    key = KeyRef("https://kv-contract.vault.azure.net", "cmk")
    old, new, refused = (secrets.token_hex(16) for _ in range(3))
    registries, sets = FakeContainerRegistries(), FakeDiskEncryptionSets()
    registries.refuse_versions.add(refused)
    sets.refuse_versions.add(refused)
    references = FakeKeyReferences(registries, sets)
    cosmos = references.add_resource(
        "Microsoft.DocumentDB/databaseAccounts", "cosmos", {"keyVaultKeyUri": key.uri}, subscription=str(uuid.uuid4())
    )
    return Estate(
        key,
        old,
        new,
        registries.add("acrpinned", key, old).registry_id,
        registries.add("acrfollows", key, None, in_use=old).registry_id,
        sets.add("des", key, old).set_id,
        cosmos,
        registries,
        sets,
        references,
        refused,
    )


def real_estate(world: Any) -> Estate:
    from rotation.adapters.arm_rest import ArmRest
    from rotation.adapters.disk_encryption_sets import ArmDiskEncryptionSets
    from rotation.adapters.local_credential import LocalDevelopmentCredential
    from rotation.adapters.registries import ArmContainerRegistries
    from rotation.adapters.resource_graph import ArmKeyReferences
    from tests.integration.emulators.test_arm_disk_encryption_sets import create_set, des_id
    from tests.integration.emulators.test_arm_registries import registry_id, registry_with_key, versionless

    world.arm_admin.set_graph_quota(queries=1000, window_s=5)
    key = KeyRef.parse(versionless(world))[0]
    old = str(world.keys.get_key(world.key_name).properties.version)
    pinned, pinned_body, _ = registry_with_key(world, key.version_uri(old))
    follows, follows_body, _ = registry_with_key(world, versionless(world))
    des, des_body = create_set(world, key.version_uri(old))
    principals = [
        entry.principal_id
        for body in (pinned_body, follows_body)
        for entry in (body.identity.user_assigned_identities or {}).values()
    ]
    # Each helper granted only its own identity: grant all three together (Key Vault RBAC stays on, so a
    # version created and then disabled is one every resource provider refuses).
    world.grant_key_access(*principals, des_body.identity.principal_id)
    new = world.new_version().rsplit("/", 1)[-1]
    refused = world.new_version().rsplit("/", 1)[-1]
    world.keys.update_key_properties(world.key_name, refused, enabled=False)
    cosmos = f"/subscriptions/{uuid.uuid4()}/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/c"
    world.arm_admin.put_generic_resource(cosmos, {"keyVaultKeyUri": key.uri})
    rest = ArmRest(world.arm_url, LocalDevelopmentCredential("arm-tester"), {"connection_verify": world.ca})
    rest_polling = ArmRest(
        world.arm_url, LocalDevelopmentCredential("arm-tester"), {"connection_verify": world.ca}, polling_interval=0.05
    )
    return Estate(
        key,
        old,
        new,
        registry_id(world, pinned),
        registry_id(world, follows),
        des_id(world, des),
        cosmos,
        ArmContainerRegistries(rest_polling),
        ArmDiskEncryptionSets(rest_polling),
        ArmKeyReferences(rest, reuse_s=0),
        refused,
        world.arm_url,
    )


@pytest.fixture(params=BOTH)
def estate(request: pytest.FixtureRequest) -> Estate:
    return fake_estate() if request.param == "fake" else real_estate(request.getfixturevalue("world"))


class TestContainerRegistries:
    """Reads give the configured identifier and the version in use; re-points are absolute and read back."""

    def test_reads(self, estate: Estate) -> None:
        pinned = estate.registries.get_registry(estate.pinned_registry)
        follows = estate.registries.get_registry(estate.versionless_registry)

        assert (pinned.key_identifier, pinned.versioned_key_identifier, pinned.versionless) == (
            estate.key.version_uri(estate.old),
            estate.key.version_uri(estate.old),
            False,
        )
        assert (follows.key_identifier, follows.versionless) == (estate.key.uri, True)
        assert follows.versioned_key_identifier == estate.key.version_uri(estate.old)

    def test_repoint_reads_back_and_repeats(self, estate: Estate) -> None:
        target = estate.key.version_uri(estate.new)

        first = estate.registries.set_key_identifier(estate.pinned_registry, target)
        again = estate.registries.set_key_identifier(estate.pinned_registry, target)

        assert first.versioned_key_identifier == again.versioned_key_identifier == target
        assert estate.registries.get_registry(estate.pinned_registry).key_identifier == target

    def test_refused_version_and_unknown_registry(self, estate: Estate) -> None:
        with pytest.raises(VerificationFailed):
            estate.registries.set_key_identifier(estate.pinned_registry, estate.key.version_uri(estate.refused))
        missing = estate.pinned_registry.rsplit("/", 1)[0] + "/acrmissing1"

        with pytest.raises(PreconditionFailed) as caught:
            estate.registries.get_registry(missing)

        assert caught.value.code == "NotFound"
        read = estate.registries.get_registry(estate.pinned_registry)
        assert read.versioned_key_identifier == estate.key.version_uri(estate.old)


class TestDiskEncryptionSets:
    """The active key is re-pointed to a version, never to a versionless URL; a refusal changes nothing."""

    def test_repoint_reads_back_and_repeats(self, estate: Estate) -> None:
        target = estate.key.version_uri(estate.new)

        first = estate.sets.set_active_key(estate.disk_encryption_set, target)
        again = estate.sets.set_active_key(estate.disk_encryption_set, target)

        assert first.key_url == again.key_url == target
        assert estate.sets.get_set(estate.disk_encryption_set).key_urls_in_use == (target,)

    def test_versionless_and_refused(self, estate: Estate) -> None:
        with pytest.raises(InputError):
            estate.sets.set_active_key(estate.disk_encryption_set, estate.key.uri)
        with pytest.raises(VerificationFailed):
            estate.sets.set_active_key(estate.disk_encryption_set, estate.key.version_uri(estate.refused))

        assert estate.sets.get_set(estate.disk_encryption_set).key_url == estate.key.version_uri(estate.old)


def _to_the_end(operation: Operation | None, poll: Callable[[Operation], OperationPoll], arm: str, rid: str) -> None:
    """Poll an accepted operation (whose URL the service may poll) until it is no longer running."""
    if operation is None:
        return  # answered at once
    assert polling_url_problem(operation.url, arm, rid) is None
    for _ in range(50):
        if poll(operation).status != "running":
            return
    raise AssertionError("still running after 50 polls")


class _KeyUpdate(NamedTuple):
    """One resource's key update through its port: the resource, begin, poll, and the key it reads back."""

    resource_id: str
    begin: Callable[[str, str], Operation | None]
    poll: Callable[[str, Operation], OperationPoll]
    key_in_use: Callable[[str], str]


def _registry(e: Estate) -> _KeyUpdate:
    ports = e.registries
    return _KeyUpdate(
        e.pinned_registry,
        ports.begin_key_identifier,
        ports.poll_key_update,
        lambda r: ports.get_registry(r).key_identifier,
    )


def _disk_encryption_set(e: Estate) -> _KeyUpdate:
    ports = e.sets
    return _KeyUpdate(
        e.disk_encryption_set, ports.begin_active_key, ports.poll_key_update, lambda r: ports.get_set(r).key_url
    )


class TestKeyUpdatesAsOperations:
    """The same PATCH sent alone answers with nothing to poll or an operation on the ARM endpoint under the
    resource's provider, polled one request at a time until done; then the resource reads back the key."""

    @pytest.mark.parametrize("updated", [_registry, _disk_encryption_set], ids=["a registry", "a disk encryption set"])
    def test_a_key_update(self, estate: Estate, updated: Callable[[Estate], _KeyUpdate]) -> None:
        target = estate.key.version_uri(estate.new)
        rid, begin, poll, key_in_use = updated(estate)

        operation = begin(rid, target)
        _to_the_end(operation, lambda o: poll(rid, o), estate.arm_endpoint, rid)

        assert key_in_use(rid) == target

    def test_refusals_come_with_the_patch(self, estate: Estate) -> None:
        refused = estate.key.version_uri(estate.refused)

        with pytest.raises(VerificationFailed):
            estate.registries.begin_key_identifier(estate.pinned_registry, refused)
        with pytest.raises(InputError):
            estate.sets.begin_active_key(estate.disk_encryption_set, estate.key.uri)


class TestKeyReferences:
    """Every resource naming the key is found, in any subscription, with property path and version."""

    def test_references_of_every_resource(self, estate: Estate) -> None:
        found = estate.references.find(estate.key)

        by_resource: dict[str, set[tuple[str, str | None]]] = {}
        for ref in found:
            by_resource.setdefault(ref.resource_id.lower(), set()).add((ref.property_path, ref.version))
        assert by_resource[estate.pinned_registry.lower()] == {
            ("properties.encryption.keyVaultProperties.keyIdentifier", estate.old),
            ("properties.encryption.keyVaultProperties.versionedKeyIdentifier", estate.old),
        }
        assert by_resource[estate.versionless_registry.lower()] == {
            ("properties.encryption.keyVaultProperties.keyIdentifier", None),
            ("properties.encryption.keyVaultProperties.versionedKeyIdentifier", estate.old),
        }
        assert by_resource[estate.disk_encryption_set.lower()] == {("properties.activeKey.keyUrl", estate.old)}
        assert by_resource[estate.cosmos.lower()] == {("properties.keyVaultKeyUri", None)}

    def test_another_key_finds_none_of_them(self, estate: Estate) -> None:
        other = KeyRef(estate.key.vault_url, f"{estate.key.name}x")

        assert estate.references.find(other) == []
