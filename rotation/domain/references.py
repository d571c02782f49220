"""What the wider estate looks like through ARM: references to a key, registries, disk encryption sets.

Plain values read by the adapters (``rotation/adapters/resource_graph.py``, ``registries.py``,
``disk_encryption_sets.py``); the consumer units decide what they mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rotation.domain.model import KeyRef


@dataclass(frozen=True)
class KeyReference:
    """One property of one resource that names a managed key, as Resource Graph found it."""

    resource_id: str  # ARM id as Resource Graph returns it
    resource_type: str  # lower-case, e.g. "microsoft.documentdb/databaseaccounts"
    subscription_id: str
    property_path: str  # e.g. "properties.keyVaultKeyUri", "properties.activeKey.keyUrl"
    key_id: str  # the key identifier as the resource states it (any case, with or without :443)
    version: str | None  # None: versionless (the resource follows the key's newest version itself)


@dataclass(frozen=True)
class RegistryKey:
    """A container registry's customer-managed key (``properties.encryption``) as read through ARM."""

    registry_id: str
    name: str
    key_identifier: str  # as configured: versioned (pinned) or versionless (auto-rotating)
    versioned_key_identifier: str | None  # read-only: the version in use
    identity_client_id: str | None  # keyVaultProperties.identity
    last_key_rotation: datetime | None = None
    provisioning_state: str = "Succeeded"  # non-terminal ("Updating") while an operation on it runs

    @property
    def versionless(self) -> bool:
        return KeyRef.parse(self.key_identifier)[1] is None


@dataclass(frozen=True)
class DiskEncryptionSetKey:
    """A disk encryption set's active key as read through ARM."""

    set_id: str
    name: str
    key_url: str  # activeKey.keyUrl: always versioned
    source_vault_id: str | None
    previous_key_urls: tuple[str, ...]  # still in use while a change of key is in progress
    auto_rotation: bool  # rotationToLatestKeyVersionEnabled
    identity_principal_id: str | None = None
    last_key_rotation: datetime | None = None
    auto_rotation_error: str | None = None
    provisioning_state: str = "Succeeded"  # non-terminal ("Updating") while an operation on it runs

    @property
    def key_urls_in_use(self) -> tuple[str, ...]:
        return (self.key_url, *self.previous_key_urls)
