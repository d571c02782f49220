"""Ports: each external system behind a narrow Protocol in domain terms.

Adapters over the Azure SDK live in ``rotation/adapters``; in-memory fakes that keep real state
live in ``tests/fakes``. Every method documents whether it is safe to repeat. Adapters raise only
``rotation.errors`` types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from rotation.domain.model import (
    AuditRecord,
    HeldBlob,
    KeyListPage,
    KeyRef,
    KeyVersion,
    RewrapSummary,
    RotationPolicy,
    RotationStatus,
    StorageAccountKey,
    VaultProperties,
    WorkspaceKey,
)
from rotation.domain.operations import Operation, OperationPoll
from rotation.domain.references import DiskEncryptionSetKey, KeyReference, RegistryKey
from rotation.domain.steps import RotationState
from rotation.settings import DataLocation


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class KeyStore(Protocol):
    """Key Vault keys (data plane). Permissions named per method are Key Vault data actions."""

    def get_key(self, key: KeyRef, version: str | None = None) -> KeyVersion:
        """Latest (``version=None``) or one version. keys/read. Safe to repeat."""
        ...

    def list_versions(self, key: KeyRef) -> list[KeyVersion]:
        """Every version of the key (paged by the SDK). keys/read. Safe to repeat."""
        ...

    def list_key_pages(self, vault_url: str) -> Iterator[KeyListPage]:
        """The current attributes of every key in a vault, a page (up to 25 keys) per list call, fetched as
        the caller asks for it. keys/read. Safe to repeat."""
        ...

    def get_rotation_policy(self, key: KeyRef) -> RotationPolicy | None:
        """keyrotationpolicies/read. Safe to repeat."""
        ...

    def create_version(
        self, key: KeyRef, like: KeyVersion, tags: dict[str, str], expires: datetime | None
    ) -> KeyVersion:
        """A new version with the same type/size/ops as ``like``. keys/create/action. NOT idempotent."""
        ...

    def update_version(
        self, key: KeyRef, version: str, *, enabled: bool | None = None, tags: dict[str, str] | None = None
    ) -> KeyVersion:
        """Enable/disable or re-tag one version. keys/update/action. Safe to repeat."""
        ...

    def wrap_unwrap_probe(self, key: KeyRef, version: str) -> None:
        """Wrap random bytes with ``version`` and unwrap them again; raise VerificationFailed if they differ.

        keys/wrap/action + keys/unwrap/action. Safe to repeat; no key material leaves the adapter.
        """
        ...


class Vaults(Protocol):
    """Vault resources through ARM (Microsoft.KeyVault/vaults/read)."""

    def get_vault(self, vault_url: str, subscriptions: Sequence[str]) -> VaultProperties:
        """Find the vault whose vaultUri is ``vault_url``. Raises PreconditionFailed when not found."""
        ...


class StorageAccounts(Protocol):
    """Storage accounts' encryption settings through ARM (Microsoft.Storage)."""

    def list_accounts(self, subscription_id: str) -> list[StorageAccountKey]:
        """Accounts using customer-managed keys in a subscription. storageAccounts/read. Safe to repeat."""
        ...

    def get_account(self, account_id: str) -> StorageAccountKey:
        """storageAccounts/read. Safe to repeat."""
        ...

    def set_key_version(
        self,
        account_id: str,
        vault_url: str,
        key_name: str,
        key_version: str,
        *,
        based_on: StorageAccountKey | None = None,
    ) -> StorageAccountKey:
        """PATCH encryption.keyvaultproperties (``key_version=""`` = versionless). storageAccounts/write.

        Safe to repeat (the PATCH is absolute). Azure itself checks the account identity can use the key.
        ``based_on``: the account as the caller just read it; what its reading kept (``kept``) is sent back
        unchanged instead of reading the account again. Without it the account is read first.
        """
        ...


class Workspaces(Protocol):
    """AML workspaces' encryption settings through ARM (Microsoft.MachineLearningServices)."""

    def list_workspaces(self, subscription_id: str) -> list[WorkspaceKey]:
        """Workspaces with customer-managed keys. workspaces/read. Safe to repeat."""
        ...

    def get_workspace(self, workspace_id: str) -> WorkspaceKey:
        """workspaces/read. Safe to repeat."""
        ...

    def set_key_identifier(self, workspace_id: str, key_identifier: str) -> WorkspaceKey:
        """PATCH encryption.keyVaultProperties.keyIdentifier, a long-running operation polled to the end.

        workspaces/write. Safe to repeat (absolute value).
        """
        ...

    def begin_key_identifier(self, workspace_id: str, key_identifier: str) -> Operation | None:
        """Send the same PATCH and return the operation ARM accepted (polling URL, ``Retry-After``), or None
        when ARM answered it at once. workspaces/write. Not to be repeated while its operation runs: poll it.

        Raises:
            VerificationFailed: ARM refused the key (the workspace keeps its key).
        """
        ...

    def poll_key_update(self, workspace_id: str, operation: Operation) -> OperationPoll:
        """One poll of an accepted update. workspaces operation-status read. Safe to repeat.

        Raises:
            VerificationFailed: the operation ended ``Failed`` (the workspace normally keeps its key; a roll-back
                reads it first).
            TransientError: it ended ``Canceled``, or the poll failed in a way that may pass.
        """
        ...


class ContainerRegistries(Protocol):
    """Container registries' customer-managed keys through ARM (Microsoft.ContainerRegistry)."""

    def get_registry(self, registry_id: str) -> RegistryKey:
        """registries/read. Safe to repeat."""
        ...

    def set_key_identifier(self, registry_id: str, key_identifier: str) -> RegistryKey:
        """PATCH encryption.keyVaultProperties.keyIdentifier (keeping its identity), polled to the end.

        A versionless identifier makes the registry follow the key's newest version itself.
        registries/write. Safe to repeat (absolute value). Azure checks the registry identity can use the key.
        """
        ...

    def begin_key_identifier(self, registry_id: str, key_identifier: str) -> Operation | None:
        """Send the same PATCH; the operation ARM accepted, or None when its answer is final. registries/write.
        Not to be repeated while its operation runs: poll it."""
        ...

    def poll_key_update(self, registry_id: str, operation: Operation) -> OperationPoll:
        """One poll of an accepted update. registries/read. Safe to repeat."""
        ...


class DiskEncryptionSets(Protocol):
    """Disk encryption sets' active keys through ARM (Microsoft.Compute)."""

    def get_set(self, set_id: str) -> DiskEncryptionSetKey:
        """diskEncryptionSets/read. Safe to repeat."""
        ...

    def set_active_key(self, set_id: str, key_url: str) -> DiskEncryptionSetKey:
        """PATCH activeKey.keyUrl (a versioned key URL, keeping sourceVault), a long-running operation polled
        to the end. diskEncryptionSets/write. Safe to repeat (absolute value)."""
        ...

    def begin_active_key(self, set_id: str, key_url: str) -> Operation | None:
        """Send the same PATCH; the operation ARM accepted, or None when its answer is final.
        diskEncryptionSets/write. Not to be repeated while its operation runs: poll it."""
        ...

    def poll_key_update(self, set_id: str, operation: Operation) -> OperationPoll:
        """One poll of an accepted update. diskEncryptionSets/read. Safe to repeat."""
        ...


class KeyReferences(Protocol):
    """Every resource that names a key, across every subscription the identity can read (Resource Graph)."""

    def find(self, key: KeyRef) -> list[KeyReference]:
        """References to ``key`` (any version, any case, with or without :443), paged to the end.

        Needs read access on the resources (e.g. Reader); resources the identity cannot read are not
        seen. Safe to repeat.
        """
        ...


class DataKeys(Protocol):
    """Client-side-encrypted blobs whose data keys are wrapped by a managed key (re-wrap)."""

    def survey(self, key: KeyRef, locations: Sequence[DataLocation]) -> dict[str, int]:
        """Blob counts by key version (``""`` counts blobs with problems). Blob list. Safe to repeat."""
        ...

    def held_blobs(self, key: KeyRef, locations: Sequence[DataLocation]) -> tuple[HeldBlob, ...]:
        """Every blob version, snapshot and soft-deleted blob whose ``KeyId`` names a version of ``key``.

        The re-wrap cannot move them (Azure refuses metadata writes to versions and snapshots; a
        soft-deleted blob can be undeleted), so they keep their version from retiring. Blob list
        (include versions, snapshots, deleted where the service has them). Safe to repeat.
        """
        ...

    def begin_rewrap(self, rotation_id: str, key: KeyRef, new_version: str, locations: Sequence[DataLocation]) -> None:
        """Start re-wrapping every blob on an older version of ``key`` to ``new_version``. Idempotent."""
        ...

    def rewrap_progress(self, rotation_id: str) -> tuple[bool, RewrapSummary]:
        """(done, summary). Done means every work item finished and a verification scan found no blob
        on an old version other than the failures listed. Safe to repeat."""
        ...


class AuditLog(Protocol):
    """The tamper-evident audit trail."""

    def append(self, record: AuditRecord) -> str:
        """Append ``record`` to the chain and return its id. Never updates in place."""
        ...

    def records(self, key_uri: str | None = None, since: datetime | None = None) -> Iterable[AuditRecord]:
        """Records in chain order, optionally filtered."""
        ...


class Journal(Protocol):
    """The rotation journal and per-key lock (Azure Table storage: ``ROTATION_JOURNAL_TABLE``).

    Every write is guarded: ``begin`` creates the rotation and moves the key's lock to it in one
    transaction, ``save`` replaces the entry only if it is unchanged since it was read (ETag).
    """

    def lock_holder(self, key_uri: str) -> tuple[str | None, str | None]:
        """(rotation id named by the key's lock or None, the lock's etag or None). Safe to repeat."""
        ...

    def begin(self, state: RotationState, lock_etag: str | None) -> str:
        """Create ``state``'s entry and point the key's lock at it, atomically; return the entry's etag.

        ``lock_etag`` None means the lock must not exist yet. Raises JournalConflict when the lock
        changed since it was read. Not idempotent (a second call conflicts).
        """
        ...

    def load(self, rotation_id: str) -> tuple[RotationState, str]:
        """(state, etag). Raises RotationNotFound. Safe to repeat."""
        ...

    def save(self, state: RotationState, etag: str) -> str:
        """Replace the entry if its etag is still ``etag``; return the new etag. Raises JournalConflict."""
        ...

    def list(
        self, key_uri: str | None = None, statuses: Iterable[RotationStatus] | None = None, limit: int = 50
    ) -> list[RotationState]:
        """Rotations, newest first, optionally of one key and in the given statuses. Safe to repeat."""
        ...


class SweepMemoryStore(Protocol):
    """What the sweep learnt about each vault, kept in the app's storage so a new worker process starts
    from it (``rotation.domain.sweep_record``): per vault, small JSON records by name. Not Key Vault calls.

    Records are input when read back: the caller decodes and validates each one.
    """

    def read(self, vault_url: str) -> dict[str, str]:
        """The records stored for ``vault_url`` (case-insensitive), by name; {} when none. Safe to repeat."""
        ...

    def write(self, vault_url: str, records: Mapping[str, str]) -> None:
        """Store ``records`` for ``vault_url``, replacing those of the same names, leaving the others. Safe to
        repeat."""
        ...
