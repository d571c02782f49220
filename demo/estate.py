"""Seed a realistic estate in local Azure, through the official SDKs and the emulators' admin APIs.

One vault holding a CMK close to expiry, a storage account pinned to its current version, one
following it versionless, an AML workspace using it, and a container of client-side-encrypted
blobs whose data keys it wraps. Every identity has only the roles it needs. Used by ``make demo``
and by the end-to-end tests of the triggers and the HTTP API.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest
from azure.keyvault.keys import KeyClient, KeyRotationLifetimeAction, KeyRotationPolicy, KeyRotationPolicyAction
from azure.mgmt.core import ARMPipelineClient
from azure.storage.blob import BlobServiceClient

from emulators.arm.admin_client import ArmAdmin
from emulators.keyvault.admin_client import KeyVaultAdmin
from emulators.keyvault.kek import VaultKek
from rotation.adapters.local_credential import LocalDevelopmentCredential

ML_API_VERSION = "2025-06-01"
SIGNING_KEY = "rotation-audit-signing"
STORAGE_API_VERSION = "2025-01-01"


@dataclass
class Estate:
    """What was seeded: enough to configure the service and to look at every consumer."""

    endpoints: dict[str, Any]
    principal: str
    subscription_id: str
    resource_group: str
    vault_name: str
    vault_url: str
    vault_arm_id: str
    key_name: str
    first_version: str
    pinned_account_id: str
    versionless_account_id: str
    workspace_id: str
    container: str
    blob_names: list[str] = field(default_factory=list)

    @property
    def key_uri(self) -> str:
        return f"{self.vault_url}/keys/{self.key_name}"

    @property
    def signing_key_uri(self) -> str:
        """The key that signs audit checkpoints (``ROTATION_AUDIT_SIGNING_KEY``)."""
        return f"{self.vault_url}/keys/{SIGNING_KEY}"

    @property
    def data_location(self) -> str:
        return f"{self.endpoints['storage']['blob'].rstrip('/')}/{self.container}"

    def settings(self, **overrides: str) -> dict[str, str]:
        """The app settings that point the service at this estate."""
        values = {
            "AzureWebJobsStorage": self.endpoints["storage"]["connection_string"],
            "ROTATION_MANAGED_KEYS": self.key_uri,
            "ROTATION_SUBSCRIPTIONS": self.subscription_id,
            "ROTATION_DATA_LOCATIONS": self.data_location,
            "ROTATION_ARM_ENDPOINT": self.endpoints["arm"]["url"],
            "ROTATION_CA_BUNDLE": self.endpoints["ca_bundle"],
            "ROTATION_LOCAL_PRINCIPAL": self.principal,
            "ROTATION_VERIFY_CHALLENGE_RESOURCE": "false",
            "ROTATION_JOURNAL_TABLE": f"journal{self.container.replace('-', '')[:20]}",
            "ROTATION_AUDIT_TABLE": f"audit{self.container.replace('-', '')[:20]}",
            "ROTATION_REWRAP_QUEUE": f"rewrap-{self.container}"[:63],
        }
        values.update(overrides)
        return values

    def apply(self, **overrides: str) -> None:
        """Put :meth:`settings` into the process environment."""
        os.environ.update(self.settings(**overrides))

    # -- looking at consumers ------------------------------------------------------------------

    def arm(self) -> ARMPipelineClient:
        return _arm_client(self.endpoints, self.principal)

    def consumers(self) -> list[dict[str, str]]:
        """Each consumer and the key version it uses, read back through ARM and Blob storage."""
        client = self.arm()
        rows = []
        for account_id in (self.pinned_account_id, self.versionless_account_id):
            props = _arm(client, "GET", account_id, STORAGE_API_VERSION)["properties"]["encryption"]
            kv = props.get("keyvaultproperties") or {}
            in_use = (kv.get("currentVersionedKeyIdentifier") or "").rsplit("/", 1)[-1]
            rows.append(
                {
                    "consumer": "storage " + account_id.rsplit("/", 1)[-1],
                    "configured": kv.get("keyversion") or "(versionless)",
                    "in use": in_use,
                }
            )
        workspace = _arm(client, "GET", self.workspace_id, ML_API_VERSION)
        key_id = workspace["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"]
        rows.append(
            {
                "consumer": "workspace " + self.workspace_id.rsplit("/", 1)[-1],
                "configured": key_id.rsplit("/", 1)[-1],
                "in use": key_id.rsplit("/", 1)[-1],
            }
        )
        counts: dict[str, int] = {}
        service = BlobServiceClient.from_connection_string(self.endpoints["storage"]["connection_string"])
        for blob in service.get_container_client(self.container).list_blobs(include=["metadata"]):
            metadata = {k.lower(): v for k, v in (blob.metadata or {}).items()}
            import json

            kid = json.loads(metadata.get("encryptiondata", "{}")).get("WrappedContentKey", {}).get("KeyId", "")
            version = kid.rsplit("/", 1)[-1]
            counts[version] = counts.get(version, 0) + 1
        for version, count in sorted(counts.items()):
            rows.append({"consumer": f"blobs in {self.container} ({count})", "configured": version, "in use": version})
        return rows

    def read_blob(self, name: str) -> bytes:
        """Download and decrypt one blob, resolving its key-encryption key from Key Vault by KeyId."""
        ca = self.endpoints["ca_bundle"]

        def resolve(kid: str) -> Any:
            return VaultKek(kid, ca, self.principal)

        service = BlobServiceClient.from_connection_string(self.endpoints["storage"]["connection_string"])
        blob = service.get_blob_client(self.container, name)
        blob.key_resolver_function = resolve
        blob.require_encryption = True
        data: bytes = blob.download_blob().readall()
        return data


def _arm_client(endpoints: dict[str, Any], principal: str) -> ARMPipelineClient:
    credential = LocalDevelopmentCredential(principal)
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    return ARMPipelineClient(
        base_url=endpoints["arm"]["url"],
        policies=[
            RetryPolicy(retry_total=2),
            ARMChallengeAuthenticationPolicy(credential, "https://management.azure.com/.default"),
        ],
        connection_verify=endpoints["ca_bundle"],
    )


def _arm(client: ARMPipelineClient, method: str, resource_id: str, api_version: str, body: Any = None) -> Any:
    request = HttpRequest(method, client.format_url(f"{resource_id}?api-version={api_version}"), json=body)
    response = client.send_request(request)
    if response.status_code >= 400:
        raise RuntimeError(f"ARM {method} {resource_id}: {response.status_code} {response.text()[:300]}")
    return response.json() if response.content else None


def _put_and_wait(
    client: ARMPipelineClient, resource_id: str, api_version: str, body: Any, timeout_s: float = 60
) -> None:
    """PUT a resource and follow the long-running operation's Location to the end (ARM async contract)."""
    request = HttpRequest("PUT", client.format_url(f"{resource_id}?api-version={api_version}"), json=body)
    response = client.send_request(request)
    if response.status_code >= 400:
        raise RuntimeError(f"ARM PUT {resource_id}: {response.status_code} {response.text()[:300]}")
    location = response.headers.get("Location")
    deadline = time.monotonic() + timeout_s
    while location and response.status_code == 202:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{resource_id} not provisioned after {timeout_s}s")
        time.sleep(min(float(response.headers.get("Retry-After", "0") or 0), 0.2))
        response = client.send_request(HttpRequest("GET", location))
        if response.status_code >= 400:
            raise RuntimeError(f"ARM operation for {resource_id}: {response.status_code} {response.text()[:300]}")
    state = _arm(client, "GET", resource_id, api_version)
    provisioning = (state.get("properties") or {}).get("provisioningState")
    if provisioning not in (None, "Succeeded"):
        raise RuntimeError(f"{resource_id} is {provisioning}")


def seed_estate(endpoints: dict[str, Any], *, blobs: int = 12, expires_in_days: float = 20) -> Estate:
    """Create the estate under fresh random names and return what was made."""
    suffix = secrets.token_hex(3)
    principal = str(uuid.uuid4())
    storage_identity = str(uuid.uuid4())
    workspace_identity = str(uuid.uuid4())
    subscription_id = str(uuid.uuid4())
    resource_group = f"rg-cmk-{suffix}"
    ca = endpoints["ca_bundle"]
    credential = LocalDevelopmentCredential(principal)

    # Key Vault: the vault, who may do what, and the CMK (expiring soon, so Key Vault notifies).
    kv_admin = KeyVaultAdmin(endpoints["keyvault"]["admin"], ca)
    vault = kv_admin.create_vault(f"kv-cmk-{suffix}", subscription_id=subscription_id, resource_group=resource_group)
    vault_name = str(vault["name"])
    kv_admin.set_role_assignments(
        vault_name,
        [
            {"principal_id": principal, "role": "Key Vault Crypto Officer"},
            {"principal_id": storage_identity, "role": "Key Vault Crypto Service Encryption User"},
            {"principal_id": workspace_identity, "role": "Key Vault Crypto Service Encryption User"},
        ],
    )
    keys = KeyClient(str(vault["url"]), credential, connection_verify=ca, verify_challenge_resource=False)
    key_name = "aml-cmk"
    expires = datetime.now(UTC) + timedelta(days=expires_in_days)
    key = keys.create_rsa_key(key_name, size=2048, expires_on=expires, tags={"purpose": "aml-cmk"})
    keys.update_key_rotation_policy(
        key_name,
        KeyRotationPolicy(
            lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry="P30D")],
            expires_in="P90D",
        ),
    )
    first_version = str(key.properties.version)
    keys.create_rsa_key(SIGNING_KEY, size=2048, key_operations=["sign", "verify"])

    # ARM: the resource group, the consumers' identities, the rotation service's own permissions.
    arm_admin = ArmAdmin(endpoints["arm"]["admin"], ca)
    arm_admin.create_resource_group(subscription_id, resource_group)
    rg_id = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
    identity_ids = {}
    for name, oid in (("id-storage", storage_identity), ("id-workspace", workspace_identity)):
        identity_id = f"{rg_id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}-{suffix}"
        arm_admin.register_user_assigned_identity(identity_id, principal_id=oid, client_id=str(uuid.uuid4()))
        identity_ids[name] = identity_id
    arm_admin.add_role_assignment(principal, "Contributor", f"/subscriptions/{subscription_id}")

    client = _arm_client(endpoints, principal)
    vault_url = str(vault["url"]).rstrip("/")
    accounts = {}
    for label, version in (("pin", first_version), ("vl", "")):
        account_id = f"{rg_id}/providers/Microsoft.Storage/storageAccounts/st{label}{suffix}"
        body = {
            "location": "eastus",
            "kind": "StorageV2",
            "sku": {"name": "Standard_LRS"},
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity_ids["id-storage"]: {}}},
            "properties": {
                "encryption": {
                    "keySource": "Microsoft.Keyvault",
                    "services": {"blob": {"enabled": True, "keyType": "Account"}},
                    "identity": {"userAssignedIdentity": identity_ids["id-storage"]},
                    "keyvaultproperties": {"keyname": key_name, "keyversion": version, "keyvaulturi": vault_url},
                }
            },
        }
        _put_and_wait(client, account_id, STORAGE_API_VERSION, body)
        accounts[label] = account_id

    workspace_id = f"{rg_id}/providers/Microsoft.MachineLearningServices/workspaces/mlw-cmk-{suffix}"
    _put_and_wait(
        client,
        workspace_id,
        ML_API_VERSION,
        {
            "location": "eastus",
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity_ids["id-workspace"]: {}}},
            "properties": {
                "friendlyName": "CMK demo workspace",
                "encryption": {
                    "status": "Enabled",
                    "identity": {"userAssignedIdentity": identity_ids["id-workspace"]},
                    "keyVaultProperties": {
                        "keyVaultArmId": str(vault["arm_id"]),
                        "keyIdentifier": f"{vault_url}/keys/{key_name}/{first_version}",
                    },
                },
            },
        },
    )

    # Blob storage: client-side-encrypted blobs (protocol 2.0) whose data keys the CMK wraps.
    container = f"cse-{suffix}"
    service = BlobServiceClient.from_connection_string(endpoints["storage"]["connection_string"])
    container_client = service.create_container(container)
    container_client.key_encryption_key = VaultKek(f"{vault_url}/keys/{key_name}/{first_version}", ca, principal)
    container_client.encryption_version = "2.0"
    container_client.require_encryption = True
    names = []
    for index in range(blobs):
        name = f"datasets/part-{index:04d}.parquet"
        container_client.upload_blob(name, f"row {index}: confidential training data\n".encode() * 64)
        names.append(name)

    return Estate(
        endpoints=endpoints,
        principal=principal,
        subscription_id=subscription_id,
        resource_group=resource_group,
        vault_name=vault_name,
        vault_url=vault_url,
        vault_arm_id=str(vault["arm_id"]),
        key_name=key_name,
        first_version=first_version,
        pinned_account_id=accounts["pin"],
        versionless_account_id=accounts["vl"],
        workspace_id=workspace_id,
        container=container,
        blob_names=names,
    )
