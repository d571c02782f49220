"""In-memory ARM: vaults, storage accounts and AML workspaces with their CMK settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from rotation.adapters.azure_errors import NotFound
from rotation.domain.model import KeyRef, StorageAccountKey, VaultProperties, WorkspaceKey
from rotation.errors import PreconditionFailed, VerificationFailed
from tests.fakes.faults import Faults

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"

ResourceT = TypeVar("ResourceT")


def arm_id_of(provider: str, name: str, subscription: str = SUBSCRIPTION) -> str:
    """The ARM id of ``name`` (a ``provider`` type such as ``Microsoft.Storage/storageAccounts``) in group ``rg``."""
    return f"/subscriptions/{subscription}/resourceGroups/rg/providers/{provider}/{name}"


def read(resources: Mapping[str, ResourceT], arm_id: str, kind: str) -> ResourceT:
    """The resource filed under ``arm_id`` (lower-cased: ARM ids ignore case); ``NotFound`` naming the ``kind``
    and the name, as the adapters report a 404."""
    found = resources.get(arm_id.lower())
    if found is None:
        raise NotFound(f"could not read {kind} {arm_id.rsplit('/', 1)[-1]}: not found")
    return found


class FakeConsumerProvider:
    """What each fake consumer provider keeps besides its resources: the versions Azure refuses (the
    resource's identity cannot use them), the key writes made as (resource id, version or key id), and
    injectable faults by operation name."""

    def __init__(self) -> None:
        self.refuse_versions: set[str] = set()
        self.writes: list[tuple[str, str]] = []
        self.faults = Faults()


def _vault_url(vault_url: str) -> str:
    """As ArmVaults compares vault URLs: Key Vault identifiers ignore case, a trailing slash and ":443"."""
    return KeyRef.parse(f"{vault_url.rstrip('/')}/keys/x")[0].vault_url


def _sub(resource_id: str) -> str:
    return resource_id.split("/")[2]


class FakeVaults:
    """Implements ``rotation.ports.Vaults``."""

    def __init__(self) -> None:
        self.vaults: dict[str, VaultProperties] = {}

    def add(self, vault_url: str, *, soft_delete: bool = True, purge_protection: bool = True) -> VaultProperties:
        name = vault_url.split("//", 1)[1].split(".", 1)[0].split(":", 1)[0]
        arm_id = arm_id_of("Microsoft.KeyVault/vaults", name)
        vault = VaultProperties(_vault_url(vault_url), arm_id, soft_delete, purge_protection)
        self.vaults[vault.vault_url] = vault
        return vault

    def get_vault(self, vault_url: str, subscriptions: Sequence[str]) -> VaultProperties:
        vault = self.vaults.get(_vault_url(vault_url))
        if vault is None or _sub(vault.arm_id) not in subscriptions:
            raise PreconditionFailed(f"vault {vault_url} not found in the configured subscriptions")
        return vault


class FakeStorageAccounts(FakeConsumerProvider):
    """Implements ``rotation.ports.StorageAccounts``. Versionless accounts adopt on ``adopt_latest``."""

    def __init__(self) -> None:
        super().__init__()
        self.accounts: dict[str, StorageAccountKey] = {}
        self._key_writes = 0  # calls of set_key_version
        self._refused_write: tuple[int, str] | None = None  # (call number, version it may still write)

    def add(self, name: str, key: KeyRef, version: str, *, in_use: str | None = None) -> StorageAccountKey:
        account_id = arm_id_of("Microsoft.Storage/storageAccounts", name)
        current = key.version_uri(in_use or version) if (in_use or version) else None
        account = StorageAccountKey(account_id, name, key.vault_url, key.name, version, current)
        self.accounts[account_id.lower()] = account
        return account

    def adopt_latest(self, account_id: str, key: KeyRef, version: str) -> None:
        """Storage's daily check: a versionless account starts using ``version``."""
        account = self.accounts[account_id.lower()]
        assert account.versionless
        self.accounts[account_id.lower()] = replace(account, current_versioned_key_id=key.version_uri(version))

    def list_accounts(self, subscription_id: str) -> list[StorageAccountKey]:
        self.faults.check("list_accounts")
        return [a for a in self.accounts.values() if _sub(a.account_id) == subscription_id]

    def get_account(self, account_id: str) -> StorageAccountKey:
        self.faults.check("get_account")
        return read(self.accounts, account_id, "storage account")

    def refuse_nth_key_write(self, n: int, *, unless: str) -> None:
        """Azure refuses the ``n``-th ``set_key_version`` from now, unless it writes ``unless`` (e.g. a rollback)."""
        self._refused_write = (self._key_writes + n, unless)

    def set_key_version(self, account_id: str, vault_url: str, key_name: str, key_version: str) -> StorageAccountKey:
        self._key_writes += 1
        self.faults.check("set_key_version")
        refused = self._refused_write
        if key_version in self.refuse_versions or (
            refused is not None and self._key_writes == refused[0] and key_version != refused[1]
        ):
            raise VerificationFailed(f"the account identity cannot use key version {key_version}")
        account = read(self.accounts, account_id, "storage account")
        current = f"{vault_url}/keys/{key_name}/{key_version}" if key_version else account.current_versioned_key_id
        updated = replace(
            account, vault_url=vault_url, key_name=key_name, key_version=key_version, current_versioned_key_id=current
        )
        self.accounts[account_id.lower()] = updated
        self.writes.append((account_id, key_version))
        self.faults.check("set_key_version:after")
        return updated


class FakeWorkspaces(FakeConsumerProvider):
    """Implements ``rotation.ports.Workspaces``."""

    def __init__(self, vaults: FakeVaults) -> None:
        super().__init__()
        self.vaults = vaults
        self.workspaces: dict[str, WorkspaceKey] = {}

    def add(self, name: str, key: KeyRef, version: str, *, vault_arm_id: str | None = None) -> WorkspaceKey:
        workspace_id = arm_id_of("Microsoft.MachineLearningServices/workspaces", name)
        arm_id = vault_arm_id or self.vaults.vaults[key.vault_url.lower()].arm_id
        workspace = WorkspaceKey(workspace_id, name, arm_id, key.version_uri(version) if version else key.uri)
        self.workspaces[workspace_id.lower()] = workspace
        return workspace

    def list_workspaces(self, subscription_id: str) -> list[WorkspaceKey]:
        self.faults.check("list_workspaces")
        return [w for w in self.workspaces.values() if _sub(w.workspace_id) == subscription_id]

    def get_workspace(self, workspace_id: str) -> WorkspaceKey:
        self.faults.check("get_workspace")
        return read(self.workspaces, workspace_id, "workspace")

    def set_key_identifier(self, workspace_id: str, key_identifier: str) -> WorkspaceKey:
        self.faults.check("set_key_identifier")
        if key_identifier.rstrip("/").rsplit("/", 1)[-1] in self.refuse_versions:
            raise VerificationFailed(f"the workspace identity cannot use key {key_identifier}")
        workspace = read(self.workspaces, workspace_id, "workspace")
        updated = replace(workspace, key_identifier=key_identifier)
        self.workspaces[workspace_id.lower()] = updated
        self.writes.append((workspace_id, key_identifier))
        self.faults.check("set_key_identifier:after")
        return updated
