"""Retirement on complete evidence, on local Azure: registries, disk encryption sets and unknown references.

Besides the standard estate (a pinned and a versionless storage account, an ML workspace) the key is
used by a pinned and a versionless container registry, a pinned and an auto-rotating disk encryption
set, a Cosmos DB account (a generic resource: no unit rotates it) naming the key without a version, and
a storage account pinned to the old version in a subscription outside ``ROTATION_SUBSCRIPTIONS``. A
rotation moves what it can move; retirement waits for, and names, each of the others; once they are
resolved it retires; and no consumer ever loses access to the version it uses (the emulators' access
checks, judged live as each resource's identity).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    DiskEncryptionSet,
    EncryptionSetIdentity,
    EncryptionSetProperties,
    KeyForDiskEncryptionSet,
    SourceVault,
)
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import (
    EncryptionProperty,
    IdentityProperties,
    KeyVaultProperties,
    Registry,
    Sku,
    UserIdentityProperties,
)
from azure.mgmt.storage import StorageManagementClient

from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import plan, start_rotation, sweep
from rotation.service.deps import Dependencies
from tests.integration.mgmt_clients import mgmt_client
from tests.integration.workflow.estate import (
    OPERATOR,
    RealEstate,
    account_body,
    build_estate,
    new_identity,
)

CLI = Trigger(TriggerKind.CLI, caller="integration-test")
TIMER = Trigger(TriggerKind.TIMER)


class _Ahead:
    """A clock a day ahead of real time: the grace period is over."""

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(hours=25)


@dataclass
class Wider:
    estate: RealEstate
    old: str
    acr_pinned: str
    acr_follows: str
    des_pinned: str
    des_auto: str
    cosmos: str
    far_account: str  # a storage account in a subscription the service was not told about

    def deps(self, *, late: bool = False) -> Dependencies:
        deps = self.estate.deps()
        if late:
            deps.clock = _Ahead()
        return deps

    def access(self) -> dict[str, bool]:
        """Whether each consumer can use the version it uses, now, as its own identity."""
        admin = self.estate.arm_admin
        result = {i: bool(admin.key_access(i)["accessible"]) for i in (self.acr_pinned, self.acr_follows)}
        result |= {i: bool(admin.key_access(i)["accessible"]) for i in (self.des_pinned, self.des_auto)}
        accounts = (*self.estate.pinned, *self.estate.versionless, self.far_account)
        return result | {a: bool(admin.account_access(a)["accessible"]) for a in accounts}


def _client(estate: RealEstate, cls: Any, subscription: str) -> Any:
    return mgmt_client(cls, arm_url=estate.arm_url, ca=estate.ca, principal=OPERATOR, subscription_id=subscription)


def build_wider(local_azure: dict[str, Any]) -> Wider:
    estate = build_estate(local_azure, pinned=1, versionless=1, workspaces=1)
    arm, sub, group, vault = estate.arm_admin, estate.subscription_id, estate.resource_group, estate.vault
    old = estate.versions()[0].version
    acr = _client(estate, ContainerRegistryManagementClient, sub)

    def registry(key_identifier: str) -> str:
        identity_id, _ = new_identity(arm, sub, group)
        client_id = arm.register_user_assigned_identity(identity_id)["client_id"]
        body = Registry(
            location="eastus",
            sku=Sku(name="Premium"),
            identity=IdentityProperties(
                type="UserAssigned", user_assigned_identities={identity_id: UserIdentityProperties()}
            ),
            encryption=EncryptionProperty(
                status="enabled",
                key_vault_properties=KeyVaultProperties(key_identifier=key_identifier, identity=client_id),
            ),
        )
        return str(acr.registries.begin_create(group, f"acr{uuid.uuid4().hex[:12]}", body).result().id)

    compute = _client(estate, ComputeManagementClient, sub)

    def disk_encryption_set(auto: bool) -> str:
        body = DiskEncryptionSet(
            location="eastus",
            identity=EncryptionSetIdentity(type="SystemAssigned"),
            properties=EncryptionSetProperties(
                active_key=KeyForDiskEncryptionSet(
                    key_url=estate.key.version_uri(old), source_vault=SourceVault(id=vault["arm_id"])
                ),
                rotation_to_latest_key_version_enabled=auto,
            ),
        )
        name = f"des-{uuid.uuid4().hex[:8]}"
        return str(compute.disk_encryption_sets.begin_create_or_update(group, name, body).result().id)

    elsewhere, far_group = str(uuid.uuid4()), f"rg-{uuid.uuid4().hex[:8]}"
    arm.create_resource_group(elsewhere, far_group)
    far_identity, _ = new_identity(arm, elsewhere, far_group)
    far_storage = _client(estate, StorageManagementClient, elsewhere)
    far = far_storage.storage_accounts.begin_create(
        far_group, f"sa{uuid.uuid4().hex[:12]}", account_body(vault["url"], estate.key.name, old, far_identity)
    ).result()
    cosmos = f"/subscriptions/{uuid.uuid4()}/resourceGroups/data/providers/Microsoft.DocumentDB/databaseAccounts/c1"
    arm.put_generic_resource(cosmos, {"keyVaultKeyUri": estate.key.uri}, kind="GlobalDocumentDB")
    return Wider(
        estate,
        old,
        registry(estate.key.version_uri(old)),
        registry(estate.key.uri),
        disk_encryption_set(auto=False),
        disk_encryption_set(auto=True),
        cosmos,
        str(far.id),
    )


@pytest.fixture
def wider(local_azure: dict[str, Any]) -> Wider:
    return build_wider(local_azure)


class TestRetirementOnCompleteEvidence:
    """Moves what it can; waits for and names the rest; retires once resolved; never cuts a consumer off."""

    def test_plan_lists_every_reference(self, wider: Wider) -> None:
        result = plan(wider.deps(), wider.estate.key.uri)

        kinds = {c.resource_id.lower(): (c.kind, c.before) for c in result.consumers}
        assert kinds[wider.acr_pinned.lower()] == ("container_registry", wider.old)
        assert kinds[wider.acr_follows.lower()] == ("container_registry", "versionless")
        assert kinds[wider.des_pinned.lower()] == ("disk_encryption_set", wider.old)
        assert kinds[wider.des_auto.lower()] == ("disk_encryption_set", "versionless")
        assert kinds[wider.cosmos.lower()] == ("unknown_reference", "versionless")
        assert kinds[wider.far_account.lower()] == ("unknown_reference", wider.old)
        assert result.ok, result.problems

    def test_rotation_waits_for_and_names_each_then_retires(self, wider: Wider) -> None:
        estate, key = wider.estate, wider.estate.key
        compute = _client(estate, ComputeManagementClient, estate.subscription_id)

        view = start_rotation(wider.deps(), key.uri, CLI, reason="complete evidence")
        new = str(view.new_version)
        first = sweep(wider.deps(late=True), TIMER)
        access_while_waiting = wider.access()
        estate.arm_admin.advance_clock(86400 * 2)  # storage adopts daily, registries and sets hourly
        second = sweep(wider.deps(late=True), TIMER)
        previous_keys = compute.disk_encryption_sets.get(estate.resource_group, wider.des_auto.rsplit("/", 1)[-1])
        estate.arm_admin.advance_clock(3600)  # the set's next check: its previous key is done
        third = sweep(wider.deps(late=True), TIMER)
        estate.arm_admin.delete_generic_resource(wider.cosmos)
        far_group, far_name = wider.far_account.split("/")[4], wider.far_account.rsplit("/", 1)[-1]
        far_storage = _client(estate, StorageManagementClient, wider.far_account.split("/")[2])
        far_identity = far_storage.storage_accounts.get_properties(far_group, far_name).encryption.encryption_identity
        repointed = {
            "keySource": "Microsoft.Keyvault",
            "keyvaultproperties": {"keyvaulturi": estate.vault["url"], "keyname": key.name, "keyversion": new},
            "identity": {"userAssignedIdentity": far_identity.encryption_user_assigned_identity},
        }
        far_storage.storage_accounts.update(far_group, far_name, {"properties": {"encryption": repointed}})
        retired = sweep(wider.deps(late=True), TIMER)

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        statuses = {c.resource_id.lower(): c.status for c in view.consumers}
        assert statuses[wider.acr_pinned.lower()] == statuses[wider.des_pinned.lower()] == "changed"
        assert statuses[wider.acr_follows.lower()] == statuses[wider.des_auto.lower()] == "tracking"
        blockers = first.items[0].detail
        for name in (wider.acr_follows, wider.des_auto, wider.cosmos, wider.far_account):
            assert name.rsplit("/", 1)[-1] in blockers, name
        assert all(access_while_waiting.values()), access_while_waiting
        assert [k.key_url for k in previous_keys.properties.previous_keys] == [key.version_uri(wider.old)]
        assert "still uses it (previous key" in second.items[0].detail
        assert wider.cosmos in third.items[0].detail
        assert wider.far_account in third.items[0].detail
        assert wider.acr_follows.rsplit("/", 1)[-1] not in third.items[0].detail
        assert retired.count("retired") == 1, retired.items
        old = next(v for v in estate.versions() if v.version == wider.old)
        assert old.enabled is False
        assert all(wider.access().values()), wider.access()
