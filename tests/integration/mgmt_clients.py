"""The official ARM management clients pointed at the local ARM emulator: one constructor for every test;
and the ARM shapes the tests write (resource ids, customer-managed-key storage accounts)."""

from __future__ import annotations

from typing import Any, TypeVar

from rotation.adapters.local_credential import LocalDevelopmentCredential

ARM_SCOPE = "https://management.azure.com/.default"

ClientT = TypeVar("ClientT")


def mgmt_client(
    client_class: type[ClientT],
    *,
    arm_url: str,
    ca: str,
    principal: str,
    subscription_id: str | None = None,
    **kwargs: Any,
) -> ClientT:
    """``client_class`` (an azure-mgmt-* client) acting as ``principal``, unmodified, against the emulator.

    ``subscription_id`` None is for tenant-level clients (Resource Graph). LROs poll every 50 ms unless
    ``polling_interval`` says otherwise.
    """
    kwargs.setdefault("polling_interval", 0.05)
    scoped = () if subscription_id is None else (subscription_id,)
    return client_class(  # type: ignore[call-arg]
        LocalDevelopmentCredential(principal),
        *scoped,
        base_url=arm_url,
        connection_verify=ca,
        credential_scopes=[ARM_SCOPE],
        **kwargs,
    )


def cmk_encryption(vault_url: str, key_name: str, version: str, identity_id: str) -> dict[str, Any]:
    """A storage account's ``encryption`` on a customer-managed key reached through the user-assigned identity
    ``identity_id``; ``version`` "" follows the key's latest version (versionless)."""
    return {
        "keySource": "Microsoft.Keyvault",
        "keyvaultproperties": {"keyvaulturi": vault_url, "keyname": key_name, "keyversion": version},
        "identity": {"userAssignedIdentity": identity_id},
    }


def cmk_storage_account(
    vault_url: str, key_name: str, version: str, identity_id: str, identity: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The PUT body of a StorageV2 account encrypted as :func:`cmk_encryption` says; ``identity`` is the
    account's ``identity`` block (by default ``identity_id`` alone, user-assigned)."""
    return {
        "location": "eastus",
        "sku": {"name": "Standard_LRS"},
        "kind": "StorageV2",
        "identity": identity or {"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}},
        "properties": {"encryption": cmk_encryption(vault_url, key_name, version, identity_id)},
    }


def resource_id(subscription_id: str, resource_group: str, resource_type: str, name: str) -> str:
    """``/subscriptions/…/resourceGroups/…/providers/{resource_type}/{name}``."""
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{resource_type}/{name}"
