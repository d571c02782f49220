"""Storage accounts with customer-managed keys (``Microsoft.Storage/storageAccounts``).

A pinned account (``keyversion`` set) is re-pointed by ``repoint_storage``; a versionless one
follows the key's latest version by itself within a day, so it is tracked (``track_versionless``)
until it reports the new version in use, and it blocks retirement until then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rotation.consumers.base import ConsumerRun, Reading, UnitPorts, in_subscriptions
from rotation.consumers.pinned_or_self_rotating import PinnedOrSelfRotating
from rotation.domain.model import Consumer, ConsumerChange, ConsumerKind, KeyRef, StorageAccountKey
from rotation.domain.policy import version_of

READ = "Microsoft.Storage/storageAccounts/read"
WRITE = "Microsoft.Storage/storageAccounts/write"


def uses_key(account: StorageAccountKey, key: KeyRef) -> bool:
    same_vault = account.vault_url.rstrip("/").lower() == key.vault_url.lower()
    return same_vault and account.key_name.lower() == key.name.lower()


class StorageAccountUnit(PinnedOrSelfRotating[StorageAccountKey]):
    """Implements ``ConsumerUnit[StorageAccountKey]``."""

    kind: str = ConsumerKind.STORAGE_ACCOUNT
    label = "storage accounts"
    repoint_step: str | None = "repoint_storage"
    settle_step: str | None = "track_versionless"
    set_action = "set_storage_version"
    rollback_action = "rollback_storage"
    property_label = "keyversion"
    self_rotating_noun = "versionless"
    follows_detail = "versionless"
    found_self_rotating = "became versionless; tracked"
    permissions: Mapping[str, tuple[str, ...]] = {"plan": (READ,), "repoint_storage": (READ, WRITE)}

    def discover(self, ports: UnitPorts, key: KeyRef) -> Sequence[StorageAccountKey]:
        return in_subscriptions(ports, ports.storage_accounts.list_accounts)

    def uses_key(self, item: StorageAccountKey, key: KeyRef) -> bool:
        return uses_key(item, key)

    def consumer(self, item: StorageAccountKey, key: KeyRef) -> Consumer:
        in_use = version_of(item.current_versioned_key_id, key.uri) or None
        pinned = None if item.versionless else item.key_version
        return Consumer(
            self.kind,
            item.account_id,
            item.name,
            pinned,
            in_use if item.versionless else pinned,
            item.identity_principal_id,
        )

    def references_to(self, items: Sequence[StorageAccountKey], key: KeyRef, version: str) -> tuple[str, ...]:
        found: list[str] = []
        for account in items:
            in_use = version_of(account.current_versioned_key_id, key.uri)
            if account.key_version == version:
                found.append(f"storage account {account.name} is pinned to it")
            elif account.versionless and not in_use:
                # Fail closed: Storage does not say which version it uses, so it may be this one.
                found.append(f"storage account {account.name} is versionless and its in-use version is unknown")
            elif in_use == version:
                found.append(f"storage account {account.name} still uses it (versionless, not yet adopted)")
        return tuple(found)

    def get(self, ports: UnitPorts, resource_id: str) -> StorageAccountKey:
        return ports.storage_accounts.get_account(resource_id)

    def reading(self, account: StorageAccountKey, key: KeyRef) -> Reading:
        # keyversion as configured ("" when versionless); the version in use as Storage reports it.
        return Reading(account.name, account.key_version, version_of(account.current_versioned_key_id, key.uri))

    def answered(self, answer: object, key: KeyRef) -> Reading | None:
        # Storage's PATCH is synchronous: its 200 is the account as stored.
        return self.reading(answer, key) if isinstance(answer, StorageAccountKey) else None

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        if reading.configured != new_version or reading.in_use not in (None, "", new_version):
            return f"{reading.name} is not using {new_version} (in use: {reading.in_use})"
        return None

    def read_before_write(
        self, ports: UnitPorts, key: KeyRef, change: ConsumerChange
    ) -> tuple[Reading, StorageAccountKey | None]:
        account = self.get(ports, change.resource_id)
        return self.reading(account, key), account

    def set_version(self, run: ConsumerRun, resource_id: str, version: str) -> object:
        """Set the account's keyversion (the PATCH is absolute: safe to repeat). storageAccounts/write."""
        return self.set_version_based_on(run, resource_id, version, None)

    def set_version_based_on(
        self, run: ConsumerRun, resource_id: str, version: str, item: StorageAccountKey | None
    ) -> object:
        """``set_version``; the account as just read (``item``) gives what the PATCH keeps, without a second read."""
        key = run.key
        return run.ports.storage_accounts.set_key_version(resource_id, key.vault_url, key.name, version, based_on=item)


STORAGE_ACCOUNTS = StorageAccountUnit()
