"""Planning: from what was observed, which consumers use the key, what would change, and whether it is safe.

Pure: ``build_plan(observed)`` takes plain values gathered by the service and returns a ``Plan``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rotation.domain.model import (
    Consumer,
    ConsumerChange,
    ConsumerKind,
    KeyRef,
    KeyVersion,
    StorageAccountKey,
    VaultProperties,
    WorkspaceKey,
)
from rotation.domain.policy import version_of
from rotation.domain.steps import ROTATION_TAG

#: Key types and sizes both Azure Storage and Azure ML accept for customer-managed keys.
SUPPORTED_KTY = ("RSA", "RSA-HSM")
SUPPORTED_SIZES = (2048, 3072, 4096)
REQUIRED_OPS = ("wrapKey", "unwrapKey")

#: The permissions each step needs (Key Vault data actions and ARM actions), shown in the plan.
STEP_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "plan": (
        "Microsoft.KeyVault/vaults/keys/read",
        "Microsoft.KeyVault/vaults/read",
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.MachineLearningServices/workspaces/read",
    ),
    "new_version": ("Microsoft.KeyVault/vaults/keys/create/action",),
    "verify_version": ("Microsoft.KeyVault/vaults/keys/wrap/action", "Microsoft.KeyVault/vaults/keys/unwrap/action"),
    "repoint_storage": ("Microsoft.Storage/storageAccounts/write",),
    "repoint_workspaces": ("Microsoft.MachineLearningServices/workspaces/write",),
    "rewrap": ("Microsoft.KeyVault/vaults/keys/unwrap/action", "blob metadata write"),
    "retire": ("Microsoft.KeyVault/vaults/keys/write",),
}

VERSIONLESS = "versionless"


@dataclass(frozen=True)
class Observed:
    """What the service read about one key and its possible consumers."""

    key: KeyRef
    versions: tuple[KeyVersion, ...]
    vault: VaultProperties | None
    storage_accounts: tuple[StorageAccountKey, ...] = ()
    workspaces: tuple[WorkspaceKey, ...] = ()
    data_survey: Mapping[str, int] | None = None  # blob counts by version, None: no data locations
    data_locations: tuple[str, ...] = ()
    current: KeyVersion | None = None  # the latest version as Key Vault reports it (wins over creation order)


@dataclass(frozen=True)
class Plan:
    """The consumers of a key, what a rotation would change, and why it may not proceed."""

    key: KeyRef
    old_version: str | None
    latest: KeyVersion | None
    consumers: tuple[Consumer, ...]
    changes: tuple[ConsumerChange, ...]
    problems: tuple[str, ...]
    unrelated: int = 0  # CMK consumers of other keys, left alone
    adopt_version: str | None = None
    permissions: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(STEP_PERMISSIONS))

    @property
    def ok(self) -> bool:
        return not self.problems


def uses_key(account: StorageAccountKey, key: KeyRef) -> bool:
    same_vault = account.vault_url.rstrip("/").lower() == key.vault_url.lower()
    return same_vault and account.key_name.lower() == key.name.lower()


def workspace_uses_key(workspace: WorkspaceKey, key: KeyRef) -> bool:
    return version_of(workspace.key_identifier, key.uri) is not None


def _short(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def build_plan(observed: Observed, adopt_version: str | None = None) -> Plan:
    """Find the consumers of ``observed.key`` and check every precondition up front.

    ``adopt_version`` names a version that already exists (Key Vault's own auto-rotation) to move
    consumers to instead of creating one; it must be newer than the version it replaces.
    """
    key = observed.key
    problems: list[str] = []
    versions = sorted(observed.versions, key=lambda v: (v.created, v.version))
    if observed.current is not None:
        # Versions created within the same second sort arbitrarily; Key Vault knows which is latest.
        # Its full attributes (type, size, operations) also come from this read, not from the listing.
        versions = [v for v in versions if v.version != observed.current.version]
        versions.append(observed.current)
    latest = versions[-1] if versions else None
    old: KeyVersion | None = latest
    if latest is not None and not latest.enabled and ROTATION_TAG in latest.tags and adopt_version is None:
        # A version a stopped rotation of this service disabled (it failed its probe): replace the
        # newest enabled version instead.
        enabled = [v for v in versions if v.enabled]
        old = enabled[-1] if enabled else latest
    if not versions:
        problems.append(f"key {key.uri} has no versions")
    if adopt_version is not None and versions:
        adopted = next((v for v in versions if v.version == adopt_version), None)
        if adopted is None:
            problems.append(f"version {adopt_version} to adopt does not exist")
        else:
            position = versions.index(adopted)
            old = versions[position - 1] if position > 0 else None
            if old is None:
                problems.append(f"version {adopt_version} is the only version; nothing to replace")
            if not adopted.enabled:
                problems.append(f"version {adopt_version} to adopt is disabled")

    if observed.vault is None:
        problems.append(f"vault {key.vault_url} was not found in the configured subscriptions")
    else:
        if not observed.vault.soft_delete_enabled:
            problems.append("vault does not have soft delete enabled (required by Storage and Azure ML for CMKs)")
        if not observed.vault.purge_protection_enabled:
            problems.append("vault does not have purge protection enabled (required by Storage and Azure ML for CMKs)")

    if old is not None:
        if old.kty not in SUPPORTED_KTY:
            problems.append(f"key type {old.kty} is not supported for CMKs (RSA or RSA-HSM)")
        if old.key_size is not None and old.key_size not in SUPPORTED_SIZES:
            problems.append(f"key size {old.key_size} is not supported for CMKs (2048, 3072 or 4096)")
        missing = [op for op in REQUIRED_OPS if old.key_ops and op not in old.key_ops]
        if missing:
            problems.append(f"key operations lack {', '.join(missing)}")
        if not old.enabled and adopt_version is None:
            problems.append(f"latest version {old.version} is disabled; rotate it by hand")

    consumers: list[Consumer] = []
    changes: list[ConsumerChange] = []
    unrelated = 0
    old_version = old.version if old is not None else None
    target = adopt_version  # None: a version this rotation creates

    for account in sorted(observed.storage_accounts, key=lambda a: a.account_id.lower()):
        if not uses_key(account, key):
            unrelated += 1
            continue
        in_use = version_of(account.current_versioned_key_id, key.uri) or None
        consumers.append(
            Consumer(
                ConsumerKind.STORAGE_ACCOUNT,
                account.account_id,
                account.name,
                None if account.versionless else account.key_version,
                in_use if account.versionless else account.key_version,
                account.identity_principal_id,
            )
        )
        if account.versionless:
            changes.append(
                ConsumerChange(
                    ConsumerKind.STORAGE_ACCOUNT,
                    account.account_id,
                    VERSIONLESS,
                    VERSIONLESS,
                    "tracking",
                    f"{account.name}: versionless (in use: {in_use or 'unknown'}); tracked until it adopts",
                )
            )
        else:
            changes.append(
                ConsumerChange(
                    ConsumerKind.STORAGE_ACCOUNT,
                    account.account_id,
                    account.key_version,
                    target,
                    "planned",
                    f"{account.name}: keyversion {account.key_version} -> {target or 'the new version'}",
                )
            )

    for workspace in sorted(observed.workspaces, key=lambda w: w.workspace_id.lower()):
        if not workspace_uses_key(workspace, key):
            unrelated += 1
            continue
        pinned = version_of(workspace.key_identifier, key.uri) or None
        consumers.append(
            Consumer(
                ConsumerKind.ML_WORKSPACE,
                workspace.workspace_id,
                workspace.name,
                pinned,
                pinned,
                workspace.identity_principal_id,
            )
        )
        if observed.vault is not None and workspace.key_vault_arm_id.lower() != observed.vault.arm_id.lower():
            problems.append(
                f"workspace {workspace.name} is bound to vault {_short(workspace.key_vault_arm_id)}; Azure ML only "
                "allows keys in the original vault"
            )
        changes.append(
            ConsumerChange(
                ConsumerKind.ML_WORKSPACE,
                workspace.workspace_id,
                pinned or VERSIONLESS,
                target,
                "planned",
                f"{workspace.name}: keyIdentifier -> {target or 'the new version'}",
            )
        )

    if observed.data_survey is not None:
        survey = observed.data_survey
        on_key = {v: n for v, n in survey.items() if v}
        for location in observed.data_locations:
            consumers.append(Consumer(ConsumerKind.DATA_LOCATION, location, location, None, None))
        total_old = sum(n for v, n in on_key.items() if v != target)
        changes.append(
            ConsumerChange(
                ConsumerKind.DATA_LOCATION,
                ",".join(observed.data_locations) or "data locations",
                ",".join(f"{v}:{n}" for v, n in sorted(on_key.items())) or None,
                target,
                "planned",
                f"{total_old} blobs to re-wrap; {survey.get('', 0)} blobs with problems",
            )
        )

    return Plan(
        key=key,
        old_version=old_version,
        latest=latest,
        consumers=tuple(consumers),
        changes=tuple(changes),
        problems=tuple(problems),
        unrelated=unrelated,
        adopt_version=adopt_version,
    )
