"""A real estate on local Azure for workflow tests: vault + key, storage accounts, AML workspaces.

Everything is created through the official SDKs against the emulators, with random names per test:
a subscription, a resource group, a vault (soft delete + purge protection), the managed key and an
unrelated key, pinned and versionless storage accounts, CMK workspaces, and unrelated consumers.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from azure.keyvault.keys import KeyClient
from azure.mgmt.machinelearningservices import MachineLearningServicesMgmtClient
from azure.mgmt.machinelearningservices.models import EncryptionProperty, Identity, KeyVaultProperties, Workspace
from azure.mgmt.storage import StorageManagementClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from emulators.arm.admin_client import ArmAdmin
from emulators.keyvault.admin_client import KeyVaultAdmin
from emulators.keyvault.kek import VaultKek
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.bootstrap import Bootstrap, build_dependencies
from rotation.domain.model import KeyRef, RotationStatus, Trigger
from rotation.service import RotationView, run_rotation, start_rotation
from rotation.service.deps import Dependencies
from rotation.settings import Settings, load_settings
from tests.integration.endpoints import LocalEndpoints
from tests.integration.mgmt_clients import ClientT, cmk_storage_account, mgmt_client
from tests.integration.rewrap_helpers import encrypted_client
from tests.integration.vaults import key_client

OPERATOR = "rotation-operator"  # the principal the service acts as


@dataclass
class RealEstate(LocalEndpoints):
    subscription_id: str
    resource_group: str
    vault: dict[str, Any]
    key: KeyRef
    other_key: KeyRef
    pinned: list[str] = field(default_factory=list)  # storage account ids pinned to the key
    versionless: list[str] = field(default_factory=list)
    workspaces: list[str] = field(default_factory=list)
    unrelated: list[str] = field(default_factory=list)  # consumers of the other key
    identity_id: str = ""  # the user-assigned identity the storage accounts use
    identity_principal: str = ""
    journal_table: str = field(default_factory=lambda: f"j{uuid.uuid4().hex[:12]}")
    audit_table: str = field(default_factory=lambda: f"a{uuid.uuid4().hex[:12]}")
    sweep_table: str = field(default_factory=lambda: f"s{uuid.uuid4().hex[:12]}")

    def keys(self, principal: str = OPERATOR) -> KeyClient:
        """A key client for the estate's vault, acting as ``principal`` (the service's own by default)."""
        return key_client(self.vault["url"], principal, self.ca, api_version="7.6")

    def mgmt(self, client_class: type[ClientT], principal: str = OPERATOR) -> ClientT:
        """An official management client for the estate's subscription, acting as ``principal``."""
        return mgmt_client(
            client_class, arm_url=self.arm_url, ca=self.ca, principal=principal, subscription_id=self.subscription_id
        )

    def storage(self) -> StorageManagementClient:
        return self.mgmt(StorageManagementClient)

    def env(self, **extra: str) -> dict[str, str]:
        """App settings pointing the service at this estate."""
        return {
            "AzureWebJobsStorage": self.endpoints["storage"]["connection_string"],
            "ROTATION_MANAGED_KEYS": self.key.uri,
            "ROTATION_SUBSCRIPTIONS": self.subscription_id,
            "ROTATION_ARM_ENDPOINT": self.arm_url,
            "ROTATION_CA_BUNDLE": self.ca,
            "ROTATION_LOCAL_PRINCIPAL": OPERATOR,
            "ROTATION_VERIFY_CHALLENGE_RESOURCE": "false",
            "ROTATION_JOURNAL_TABLE": self.journal_table,
            "ROTATION_AUDIT_TABLE": self.audit_table,
            "ROTATION_SWEEP_TABLE": self.sweep_table,
            "ROTATION_LOG_FORMAT": "json",
            **extra,
        }

    def settings(self, **extra: str) -> Settings:
        return load_settings(self.env(**extra))

    def deps(self, *, owner: str | None = None, **extra: str) -> Dependencies:
        deps = build_dependencies(Bootstrap(self.settings(**extra)), inline=True)
        deps.sleep = lambda seconds: time.sleep(min(seconds, 0.2))  # step retries wait, briefly
        if owner:
            deps.owner = owner
        return deps

    # -- driving it --------------------------------------------------------------------------

    def container_of_old_version_blobs(
        self, connection_string: str, prefix: str, sizes: range
    ) -> tuple[ContainerClient, dict[str, bytes]]:
        """A new container of blobs ``blob-0``... (random bytes of each size) written with client-side
        encryption (protocol 2.0) under the key's current version, and what each blob holds."""
        container = BlobServiceClient.from_connection_string(connection_string).get_container_client(
            f"{prefix}{uuid.uuid4().hex[:12]}"
        )
        container.create_container()
        old_kid = str(self.keys().get_key(self.key.name).id)
        writer = encrypted_client(container, VaultKek(old_kid, self.ca, OPERATOR), "2.0")
        payloads = {f"blob-{i}": os.urandom(size) for i, size in enumerate(sizes)}
        for name, data in payloads.items():
            writer.upload_blob(name, data)
        return container, payloads

    # -- reading the world back -------------------------------------------------------------

    def account_version(self, account_id: str) -> tuple[str, str | None]:
        """(keyversion, version in currentVersionedKeyIdentifier) of an account."""
        _, _, _, _, group, _, _, _, name = account_id.split("/")
        account = self.storage().storage_accounts.get_properties(group, name)
        kvp = account.encryption.key_vault_properties
        current = kvp.current_versioned_key_identifier
        return kvp.key_version or "", current.rsplit("/", 1)[-1] if current else None

    def workspace_key(self, workspace_id: str) -> str:
        from rotation.adapters.aml_client import AmlWorkspaceClient

        with AmlWorkspaceClient(LocalDevelopmentCredential(OPERATOR), self.arm_url, connection_verify=self.ca) as c:
            return c.get_workspace(workspace_id).key_identifier

    def versions(self, key: KeyRef | None = None) -> list[Any]:
        """Every version's properties, oldest first.

        ``created`` is whole seconds (Key Vault's Unix time), so a version made in the same second as the one
        before ties with it: the sort is stable and the emulator lists a key's versions in creation order
        (``emulators/keyvault/store.py``), which settles the tie (by version id, the newest came first half
        the time)."""
        key = key or self.key
        client = self.keys()
        props = list(client.list_properties_of_key_versions(key.name))
        return sorted(props, key=lambda p: p.created_on)


def start_and_run_past_waiting(deps: Dependencies, key_uri: str, trigger: Trigger) -> RotationView:
    """Start a rotation of ``key_uri`` and run it again while it waits (on its re-wrap), at most ten times."""
    view = start_rotation(deps, key_uri, trigger)
    for _ in range(10):
        if view.status != RotationStatus.WAITING:
            break
        view = run_rotation(deps, view.rotation_id)
    return view


def new_identity(arm: ArmAdmin, subscription_id: str, group: str) -> tuple[str, str]:
    """A registered user-assigned identity: (ARM id, principal id)."""
    identity_id = (
        f"/subscriptions/{subscription_id}/resourceGroups/{group}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uai-{uuid.uuid4().hex[:6]}"
    )
    registered = arm.register_user_assigned_identity(identity_id)
    return identity_id, str(registered["principal_id"])


def account_body(vault_url: str, key_name: str, version: str, identity_id: str) -> dict[str, Any]:
    """A storage account on ``key_name`` (``version`` "" : versionless) used through ``identity_id``."""
    return cmk_storage_account(vault_url, key_name, version, identity_id)


def build_estate(
    endpoints: dict[str, Any], *, pinned: int = 2, versionless: int = 1, workspaces: int = 2
) -> RealEstate:
    """A fresh estate: the managed key's consumers plus an unrelated key's consumers."""
    arm = ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"])
    kv = KeyVaultAdmin(endpoints["keyvault"]["admin"], endpoints["ca_bundle"])
    subscription_id = str(uuid.uuid4())
    group = f"rg-{uuid.uuid4().hex[:8]}"
    arm.create_resource_group(subscription_id, group)
    vault = kv.create_vault(
        f"kv{uuid.uuid4().hex[:10]}",
        subscription_id=subscription_id,
        resource_group=group,
        location="eastus",
        enable_purge_protection=True,
    )
    vault_url = KeyRef.parse(vault["url"].rstrip("/") + "/keys/x")[0].vault_url
    key = KeyRef(vault_url, f"cmk-{uuid.uuid4().hex[:6]}")
    other = KeyRef(vault_url, f"other-{uuid.uuid4().hex[:6]}")
    estate = RealEstate(endpoints, subscription_id, group, vault, key, other)
    client = estate.keys()
    first = client.create_rsa_key(key.name, size=2048).properties.version or ""
    other_version = client.create_rsa_key(other.name, size=2048).properties.version or ""
    identity_id, principal = new_identity(arm, subscription_id, group)
    estate.identity_id, estate.identity_principal = identity_id, principal
    storage = estate.storage()

    def account(version: str, key_name: str) -> str:
        name = f"sa{uuid.uuid4().hex[:12]}"
        body = account_body(vault["url"], key_name, version, identity_id)
        return str(storage.storage_accounts.begin_create(group, name, body).result().id)

    estate.pinned = [account(first, key.name) for _ in range(pinned)]
    estate.versionless = [account("", key.name) for _ in range(versionless)]
    estate.unrelated = [account(other_version, other.name)]

    ml = estate.mgmt(MachineLearningServicesMgmtClient)

    def workspace(key_id: str) -> str:
        name = f"ws-{uuid.uuid4().hex[:10]}"
        body = Workspace(
            location="eastus",
            identity=Identity(type="SystemAssigned"),
            encryption=EncryptionProperty(
                status="Enabled",
                key_vault_properties=KeyVaultProperties(key_vault_arm_id=vault["arm_id"], key_identifier=key_id),
            ),
        )
        created = ml.workspaces.begin_create_or_update(group, name, body).result()
        return str(created.id)

    estate.workspaces = [workspace(key.version_uri(first)) for _ in range(workspaces)]
    estate.unrelated.append(workspace(other.version_uri(other_version)))
    return estate


def build_storage_estate(endpoints: dict[str, Any], *, accounts: int) -> RealEstate:
    """A fresh estate of ``accounts`` storage accounts pinned to the managed key, and nothing else.

    The accounts are seeded in one call to the ARM emulator's admin API (validated as a create is, the CMK
    checked), not created one by one through ARM: big estates build in seconds and spend no ARM budget.
    """
    arm = ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"])
    kv = KeyVaultAdmin(endpoints["keyvault"]["admin"], endpoints["ca_bundle"])
    subscription_id, group = str(uuid.uuid4()), f"rg-{uuid.uuid4().hex[:8]}"
    arm.create_resource_group(subscription_id, group)
    vault = kv.create_vault(
        f"kv{uuid.uuid4().hex[:10]}",
        subscription_id=subscription_id,
        resource_group=group,
        enable_purge_protection=True,
    )
    vault_url = KeyRef.parse(vault["url"].rstrip("/") + "/keys/x")[0].vault_url
    key = KeyRef(vault_url, f"cmk-{uuid.uuid4().hex[:6]}")
    estate = RealEstate(
        endpoints, subscription_id, group, vault, key, KeyRef(vault_url, f"other-{uuid.uuid4().hex[:6]}")
    )
    version = estate.keys().create_rsa_key(key.name, size=2048).properties.version or ""
    estate.identity_id, estate.identity_principal = new_identity(arm, subscription_id, group)
    bodies = [
        {
            "name": f"sa{i:05d}{uuid.uuid4().hex[:8]}",
            **account_body(vault["url"], key.name, version, estate.identity_id),
        }
        for i in range(accounts)
    ]
    estate.pinned = [str(a["id"]) for a in arm.seed_storage_accounts(subscription_id, group, bodies)]
    return estate
