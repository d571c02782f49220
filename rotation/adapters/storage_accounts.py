"""The ``StorageAccounts`` port over azure-mgmt-storage (``StorageManagementClient``), unmodified.

Permissions: ``Microsoft.Storage/storageAccounts/read`` to list and read, ``.../write`` to re-point.
The PATCH of ``encryption`` is synchronous and absolute, so repeating it is safe; Azure checks that
the account's identity can use the key version before it accepts it (a refusal is reported as
``VerificationFailed``: the account stays on the key it had; Storage failing to reach Key Vault for
that check is ``ProviderKeyVaultUnavailable``, which may pass). Requests are paced from ARM's
rate-limit headers (``arm_pacing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import StorageAccountUpdateParameters

from rotation.adapters.arm_common import client_kwargs, parse_resource_id
from rotation.adapters.arm_pacing import ArmPacer
from rotation.adapters.azure_errors import translated
from rotation.adapters.client_cache import ClientCache
from rotation.adapters.http_session import direct_session_kwargs, pool_for
from rotation.domain.model import KeyRef, StorageAccountKey, StorageEncryptionKept
from rotation.errors import InputError, PreconditionFailed

_READ = "Microsoft.Storage/storageAccounts/read"
_WRITE = "Microsoft.Storage/storageAccounts/write"

#: The ARM actions each method needs: read on the subscriptions (to list), read and write on the consumers.
ACTIONS: Mapping[str, frozenset[str]] = {
    "list_accounts": frozenset({_READ}),
    "get_account": frozenset({_READ}),
    "set_key_version": frozenset({_READ, _WRITE}),
}
KEY_SOURCE = "Microsoft.Keyvault"
# EncryptionIdentity (storage.json 2025-01-01): wire name, azure-mgmt-storage attribute.
_ENCRYPTION_IDENTITY_FIELDS = (
    ("userAssignedIdentity", "encryption_user_assigned_identity"),
    ("federatedIdentityClientId", "encryption_federated_identity_client_id"),
)


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


def _kept(account: Any) -> StorageEncryptionKept:
    """What a re-point of ``account`` (an SDK ``StorageAccount``) sends back as it was read."""
    encryption = _get(account, "encryption") or _get(account, "properties", "encryption")
    identity = _get(encryption, "encryption_identity")
    services = _get(encryption, "services")
    return StorageEncryptionKept(
        identity=tuple(
            (wire, str(value))
            for wire, attr in _ENCRYPTION_IDENTITY_FIELDS
            if (value := _get(identity, attr)) is not None
        ),
        services=tuple(
            (service, str(getattr(key_type, "value", key_type)))
            for service in ("blob", "file", "table", "queue")
            if (found := _get(services, service)) is not None and (key_type := _get(found, "key_type")) is not None
        ),
    )


def _account(account: Any) -> StorageAccountKey | None:
    """The CMK settings of an account, or None when it does not use a customer-managed key."""
    encryption = _get(account, "encryption") or _get(account, "properties", "encryption")
    source = _get(encryption, "key_source")
    if encryption is None or str(getattr(source, "value", source) or "").lower() != KEY_SOURCE.lower():
        return None
    kvp = _get(encryption, "key_vault_properties")
    vault_uri = str(_get(kvp, "key_vault_uri") or "")
    try:
        vault_url = KeyRef.parse(f"{vault_uri.rstrip('/')}/keys/x")[0].vault_url if vault_uri else ""
    except InputError:
        vault_url = vault_uri.rstrip("/").lower()
    rotated = _get(kvp, "last_key_rotation_timestamp")
    if isinstance(rotated, datetime) and rotated.tzinfo is None:
        rotated = rotated.replace(tzinfo=UTC)
    return StorageAccountKey(
        account_id=str(account.id),
        name=str(account.name),
        vault_url=vault_url,
        key_name=str(_get(kvp, "key_name") or ""),
        key_version=str(_get(kvp, "key_version") or ""),
        current_versioned_key_id=_get(kvp, "current_versioned_key_identifier") or None,
        last_key_rotation=rotated if isinstance(rotated, datetime) else None,
        identity_principal_id=_get(account, "identity", "principal_id"),
        kept=_kept(account),
    )


class ArmStorageAccounts:
    """Implements ``rotation.ports.StorageAccounts``."""

    def __init__(
        self,
        arm_endpoint: str,
        credential: TokenCredential,
        transport_kwargs: dict[str, Any],
        *,
        pacer: ArmPacer | None = None,
        callers: int = 1,
    ) -> None:
        """``callers``: threads that may call at once (a re-point step's bound): each subscription's client keeps
        that many connections (``pool_for``), so none opens and discards a TLS connection per request."""
        self._credential = credential
        self._kwargs = client_kwargs(arm_endpoint, transport_kwargs, pacer)
        pool = pool_for(callers)
        self._client: ClientCache[str, StorageManagementClient] = ClientCache(
            lambda sub: StorageManagementClient(self._credential, sub, **direct_session_kwargs(self._kwargs, pool))
        )

    def list_accounts(self, subscription_id: str) -> list[StorageAccountKey]:
        with translated(f"list storage accounts in subscription {subscription_id}", _READ):
            accounts = list(self._client(subscription_id).storage_accounts.list())
        return [a for a in (_account(x) for x in accounts) if a is not None]

    def get_account(self, account_id: str) -> StorageAccountKey:
        sub, group, name = parse_resource_id(account_id)
        with translated(f"read storage account {name}", _READ):
            account = self._client(sub).storage_accounts.get_properties(group, name)
        found = _account(account)
        if found is None:
            raise PreconditionFailed(f"storage account {name} no longer uses a customer-managed key")
        return found

    def set_key_version(
        self,
        account_id: str,
        vault_url: str,
        key_name: str,
        key_version: str,
        *,
        based_on: StorageAccountKey | None = None,
    ) -> StorageAccountKey:
        """Re-point the account; the encryption identity and services go back as read (``based_on``'s when
        it carries them, else from a read made here: one read per re-point, not two)."""
        sub, group, name = parse_resource_id(account_id)
        client = self._client(sub)
        kept = based_on.kept if based_on is not None and based_on.account_id.lower() == account_id.lower() else None
        if kept is None:
            with translated(f"read storage account {name}", _READ):
                kept = _kept(client.storage_accounts.get_properties(group, name))
        encryption: dict[str, Any] = {
            "keySource": KEY_SOURCE,
            "keyvaultproperties": {"keyvaulturi": vault_url, "keyname": key_name, "keyversion": key_version},
        }
        if kept.identity:
            # Every field of the encryption identity is sent back as it was (the user-assigned identity and
            # the multi-tenant application's federatedIdentityClientId): only the key changes.
            encryption["identity"] = dict(kept.identity)
        if kept.services:
            # As Microsoft's example sends it: the encryption block keeps its services.
            encryption["services"] = {
                service: {"keyType": key_type, "enabled": True} for service, key_type in kept.services
            }
        with translated(f"re-point storage account {name} to {key_name}/{key_version or '(versionless)'}", _WRITE):
            patch = StorageAccountUpdateParameters({"properties": {"encryption": encryption}})
            updated = client.storage_accounts.update(group, name, patch)
        result = _account(updated)
        assert result is not None
        return result
