"""Retirement on complete evidence, on local Azure: registries, disk encryption sets, unknown references,
a storage account whose in-use version is unknown, and a versioned container with snapshots.

Besides the standard estate (a pinned and a versionless storage account, two ML workspaces) the key is
used by a second versionless storage account that does not report the version it uses (an empty
``currentVersionedKeyIdentifier``: the ARM emulator's key-report mode), a pinned and a versionless
container registry, a pinned and an auto-rotating disk encryption set, a Cosmos DB account (a generic
resource: no unit rotates it) naming the key without a version, a storage account pinned to the old
version in a subscription outside ``ROTATION_SUBSCRIPTIONS``, and client-side-encrypted blobs in a
container with blob versioning on (the blob proxy's mode) and snapshots. A rotation moves what it can
move; retirement waits for, and names, each of the others; once they are resolved it retires; and no
version is disabled while anything uses it: every consumer keeps access (the emulators' access checks,
judged live as each resource's identity) and every blob, blob version and snapshot reads with the SDK's
client-side decryption throughout.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
from azure.storage.blob import ContainerClient

from emulators.keyvault.kek import VaultKek
from rotation.domain.model import RotationStatus
from rotation.service import get_rotation, plan, start_rotation, sweep
from rotation.service.deps import Dependencies
from tests.integration.mgmt_clients import mgmt_client
from tests.integration.rewrap_helpers import read_every_entry
from tests.integration.workflow.estate import (
    OPERATOR,
    RealEstate,
    account_body,
    build_estate,
    new_identity,
)
from tests.triggers import CLI, TIMER


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
    unknown: str  # a versionless storage account whose in-use version Storage does not report
    container: ContainerClient  # client-side-encrypted blobs, versioning on, through the blob proxy
    payloads: dict[str, bytes]
    snapshots: dict[str, str]  # blob -> its snapshot, taken before the rotation
    settings: dict[str, str]

    def deps(self, *, late: bool = False) -> Dependencies:
        deps = self.estate.deps(**self.settings)
        if late:
            deps.clock = _Ahead()
        return deps

    def read_everything(self) -> dict[tuple[str, str], bytes]:
        """Every blob, version and snapshot, decrypted with whichever key version wraps it (raises if one
        cannot be: a version it needs is disabled)."""
        return read_every_entry(self.container, lambda kid: VaultKek(kid, self.estate.ca, OPERATOR))

    def old_enabled(self) -> bool:
        return next(bool(v.enabled) for v in self.estate.versions() if v.version == self.old)

    def access(self) -> dict[str, bool]:
        """Whether each consumer can use the version it uses, now, as its own identity (workspaces, which
        the emulator has no access check for: whether the version their keyIdentifier names is enabled)."""
        admin = self.estate.arm_admin
        result = {i: bool(admin.key_access(i)["accessible"]) for i in (self.acr_pinned, self.acr_follows)}
        result |= {i: bool(admin.key_access(i)["accessible"]) for i in (self.des_pinned, self.des_auto)}
        accounts = (*self.estate.pinned, *self.estate.versionless, self.far_account)
        enabled = {str(v.version): bool(v.enabled) for v in self.estate.versions()}
        workspaces = {w: enabled[self.estate.workspace_key(w).rsplit("/", 1)[-1]] for w in self.estate.workspaces}
        return result | workspaces | {a: bool(admin.account_access(a)["accessible"]) for a in accounts}


def _client(estate: RealEstate, cls: Any, subscription: str) -> Any:
    return mgmt_client(cls, arm_url=estate.arm_url, ca=estate.ca, principal=OPERATOR, subscription_id=subscription)


def build_wider(local_azure: dict[str, Any]) -> Wider:
    estate = build_estate(local_azure, pinned=1, versionless=2, workspaces=2)
    unknown = estate.versionless[1]
    estate.arm_admin.set_key_report(unknown, "empty")  # currentVersionedKeyIdentifier: ""
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
    proxied = local_azure["storage"]["proxy_connection_string"]
    container, payloads = estate.container_of_old_version_blobs(proxied, "wider", range(900, 903))
    snapshots = {n: str(container.get_blob_client(n).create_snapshot()["snapshot"]) for n in ("blob-0", "blob-2")}
    location = f"{local_azure['storage']['blob_proxy']}/{container.container_name}"
    return Wider(
        estate,
        old,
        registry(estate.key.version_uri(old)),
        registry(estate.key.uri),
        disk_encryption_set(auto=False),
        disk_encryption_set(auto=True),
        cosmos,
        str(far.id),
        unknown,
        container,
        payloads,
        snapshots,
        {"AzureWebJobsStorage": proxied, "ROTATION_DATA_LOCATIONS": location},
    )


@pytest.fixture
def wider(local_azure: dict[str, Any], blob_proxy_admin: Any) -> Iterator[Wider]:
    blob_proxy_admin.set_blob_service(versioning=True)  # before the blobs are written: each is a version
    built = build_wider(local_azure)
    yield built
    built.container.delete_container()


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
        assert kinds[wider.unknown.lower()] == ("storage_account", "versionless")
        in_use = {r.resource_id.lower(): (r.kind, r.version_in_use) for r in result.references}
        follows = wider.estate.versionless[0]
        assert in_use[follows.lower()] == ("storage_account", wider.old)
        assert in_use[wider.unknown.lower()] == ("storage_account", None)  # Storage reports none: unknown
        assert in_use[wider.estate.pinned[0].lower()] == ("storage_account", wider.old)
        blobs = [c for c in result.consumers if c.kind == "data_location"]
        assert [c.before for c in blobs] == [f"{wider.old}:{len(wider.payloads)}"]
        history = {(h.blob, h.entry, h.key_version) for h in result.blob_history}
        assert history == {(n, f"snapshot {s}", wider.old) for n, s in wider.snapshots.items()}
        assert result.ok, result.problems

    def test_rotation_waits_for_and_names_each_then_retires(self, wider: Wider) -> None:
        estate, key = wider.estate, wider.estate.key
        compute = _client(estate, ComputeManagementClient, estate.subscription_id)

        view = start_rotation(wider.deps(), key.uri, CLI, reason="complete evidence")
        new = str(view.new_version)
        versions = {b.name: str(b.version_id) for b in wider.container.list_blobs(include=["versions"])
                    if not b.is_current_version}  # fmt: skip
        first = sweep(wider.deps(late=True), TIMER)
        first_evidence = _references(wider, view.rotation_id)
        checks = [(wider.old_enabled(), wider.access(), wider.read_everything())]
        estate.arm_admin.advance_clock(86400 * 2)  # storage adopts daily, registries and sets hourly
        second = sweep(wider.deps(late=True), TIMER)
        second_evidence = _references(wider, view.rotation_id)
        checks.append((wider.old_enabled(), wider.access(), wider.read_everything()))
        previous_keys = compute.disk_encryption_sets.get(estate.resource_group, wider.des_auto.rsplit("/", 1)[-1])
        estate.arm_admin.advance_clock(3600)  # the set's next check: its previous key is done
        third = sweep(wider.deps(late=True), TIMER)
        third_evidence = _references(wider, view.rotation_id)
        checks.append((wider.old_enabled(), wider.access(), wider.read_everything()))
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
        fourth = sweep(wider.deps(late=True), TIMER)
        fourth_evidence = _references(wider, view.rotation_id)
        checks.append((wider.old_enabled(), wider.access(), wider.read_everything()))
        # Resolved: Storage reports the version the account uses (it adopted the new one at its daily
        # check); the snapshots and the blob versions the re-wrap left on the old version are deleted.
        estate.arm_admin.set_key_report(wider.unknown, "versioned")
        for name in wider.snapshots:
            wider.container.get_blob_client(name).delete_blob(delete_snapshots="only")
        for name, version_id in versions.items():
            wider.container.get_blob_client(name).delete_blob(version_id=version_id)
        retired = sweep(wider.deps(late=True), TIMER)
        after = (wider.old_enabled(), wider.access(), wider.read_everything())

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        statuses = {c.resource_id.lower(): c.status for c in view.consumers}
        assert statuses[wider.acr_pinned.lower()] == statuses[wider.des_pinned.lower()] == "changed"
        assert statuses[wider.acr_follows.lower()] == statuses[wider.des_auto.lower()] == "tracking"
        assert sorted(versions) == sorted(wider.payloads)  # the re-wrap's own write: one old version per blob
        assert first.count("retired") == second.count("retired") == third.count("retired") == 0
        for name in (wider.acr_follows, wider.des_auto, wider.cosmos, wider.far_account):
            assert name.rsplit("/", 1)[-1] in first_evidence, name
        unknown_name = wider.unknown.rsplit("/", 1)[-1]
        assert f"storage account {unknown_name} is versionless and its in-use version is unknown" in first_evidence
        for name, snapshot in wider.snapshots.items():
            assert f"{name} (snapshot {snapshot})" in first_evidence
        for name, version_id in versions.items():
            assert f"{name} (version {version_id})" in first_evidence
        assert [k.key_url for k in previous_keys.properties.previous_keys] == [key.version_uri(wider.old)]
        assert "still uses it (previous key" in second_evidence
        assert wider.cosmos in third_evidence
        assert wider.far_account in third_evidence
        assert wider.acr_follows.rsplit("/", 1)[-1] not in third_evidence
        # After the others are resolved, the unknown account and the blob history still hold it, by name.
        assert fourth.count("retired") == 0
        assert wider.cosmos not in fourth_evidence
        assert f"storage account {unknown_name} is versionless and its in-use version is unknown" in fourth_evidence
        assert f"{len(versions) + len(wider.snapshots)} blob versions, snapshots or soft-deleted blobs" in (
            fourth_evidence
        )
        both = {(n, "current"): d for n, d in wider.payloads.items()}
        history = {(n, f"version {v}"): wider.payloads[n] for n, v in versions.items()}
        history |= {(n, f"snapshot {s}"): wider.payloads[n] for n, s in wider.snapshots.items()}
        for enabled, access, read in checks:
            assert enabled is True
            assert all(access.values()), access
            assert read == both | history
        assert retired.count("retired") == 1, retired.items
        old_enabled, access, read = after
        assert old_enabled is False
        assert all(access.values()), access
        assert read == both
        final = get_rotation(wider.deps(), view.rotation_id).evidence
        assert final is not None
        assert final.references == ()
        blob_kind = next(k for k in final.kinds if k.kind == "data_location")
        assert blob_kind.blobs is not None
        assert (blob_kind.blobs.surveyed, blob_kind.blobs.by_version) == (len(wider.payloads), ((new, 3),))
        assert (blob_kind.blobs.versions, blob_kind.blobs.snapshots) == (0, 0)


def _references(wider: Wider, rotation_id: str) -> str:
    """The references the latest retirement check found (complete: the step's detail is cut at 1,000)."""
    evidence = get_rotation(wider.deps(), rotation_id).evidence
    assert evidence is not None
    return "\n".join(evidence.references)
