"""In-memory ARM: vaults, storage accounts and AML workspaces with their CMK settings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from rotation.adapters.azure_errors import NotFound
from rotation.domain.model import KeyRef, StorageAccountKey, VaultProperties, WorkspaceKey
from rotation.domain.operations import Operation, OperationPoll
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

    kind: str  # as errors name the resources, e.g. "storage account"

    def _read(self, operation: str, resources: Mapping[str, ResourceT], arm_id: str) -> ResourceT:
        """``operation``'s faults, then the resource filed under ``arm_id`` (``NotFound`` naming the kind)."""
        self.faults.check(operation)
        return read(resources, arm_id, self.kind)

    def _listed(self, operation: str, resources: Mapping[str, ResourceT], subscription_id: str) -> list[ResourceT]:
        """``operation``'s faults, then the resources in ``subscription_id`` (filed under lower-case ids)."""
        self.faults.check(operation)
        return [r for arm_id, r in resources.items() if _sub(arm_id) == subscription_id.lower()]

    def _check_refused(self, version: str | None, refusal: str) -> None:
        """``VerificationFailed`` saying ``refusal`` when Azure refuses ``version`` for this resource."""
        if version in self.refuse_versions:
            raise VerificationFailed(refusal)

    def _written(self, resources: dict[str, ResourceT], arm_id: str, updated: ResourceT, key: str) -> ResourceT:
        """File ``updated`` under ``arm_id`` and record the write of ``key`` (a version or key id)."""
        resources[arm_id.lower()] = updated
        self.writes.append((arm_id, key))
        return updated


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

    kind = "storage account"

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
        return self._listed("list_accounts", self.accounts, subscription_id)

    def get_account(self, account_id: str) -> StorageAccountKey:
        return self._read("get_account", self.accounts, account_id)

    def refuse_nth_key_write(self, n: int, *, unless: str) -> None:
        """Azure refuses the ``n``-th ``set_key_version`` from now, unless it writes ``unless`` (e.g. a rollback)."""
        self._refused_write = (self._key_writes + n, unless)

    def set_key_version(
        self,
        account_id: str,
        vault_url: str,
        key_name: str,
        key_version: str,
        *,
        based_on: StorageAccountKey | None = None,  # the fake keeps no encryption identity to send back
    ) -> StorageAccountKey:
        self._key_writes += 1
        self.faults.check("set_key_version")
        refused = self._refused_write
        if key_version in self.refuse_versions or (
            refused is not None and self._key_writes == refused[0] and key_version != refused[1]
        ):
            raise VerificationFailed(f"the account identity cannot use key version {key_version}")
        account = read(self.accounts, account_id, self.kind)
        current = f"{vault_url}/keys/{key_name}/{key_version}" if key_version else account.current_versioned_key_id
        updated = replace(
            account, vault_url=vault_url, key_name=key_name, key_version=key_version, current_versioned_key_id=current
        )
        self._written(self.accounts, account_id, updated, key_version)
        self.faults.check("set_key_version:after")
        return updated


class FakeWorkspaces(FakeConsumerProvider):
    """Implements ``rotation.ports.Workspaces``.

    ``lro_polls`` > 0 makes ``begin_key_identifier`` answer with an operation that needs that many polls
    (0: ARM answers at once); ``apply_at_completion`` keeps the old key until the operation ends;
    ``fail_versions`` makes the operations setting those versions end ``Failed`` (the workspace keeps its key
    unless ``keep_key_on_failure``). ``patches`` counts every
    key PATCH by workspace (lower-case id), ``polls`` every poll.

    While an operation runs the workspace reads ``provisioningState`` ``Updating``; when it ends, its terminal
    status (ARM RPC async-api-reference.md, as the emulator). Given a clock (``now``), an operation nobody
    polls ends by itself ``lro_polls`` times ``retry_after_s`` after it was accepted, as Azure's do: a read then
    shows its outcome (polls still answer by their count).
    """

    kind = "workspace"

    def __init__(self, vaults: FakeVaults, now: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self.vaults = vaults
        self._now = now
        self.workspaces: dict[str, WorkspaceKey] = {}
        self.lro_polls = 0
        self.retry_after_s = 30.0
        self.apply_at_completion = False
        self.fail_versions: set[str] = set()
        #: A failed update leaves the key it set (ARM RPC: a failed update's properties "should be reverted" only
        #: "if that best represents the end state"): then a roll-back has something to undo.
        self.keep_key_on_failure = False
        self.operations: dict[str, dict[str, Any]] = {}  # polling URL -> the operation
        self.patches: Counter[str] = Counter()
        self.polls: list[str] = []  # polled URLs, in order

    def add(self, name: str, key: KeyRef, version: str, *, vault_arm_id: str | None = None) -> WorkspaceKey:
        workspace_id = arm_id_of("Microsoft.MachineLearningServices/workspaces", name)
        arm_id = vault_arm_id or self.vaults.vaults[key.vault_url.lower()].arm_id
        workspace = WorkspaceKey(workspace_id, name, arm_id, key.version_uri(version) if version else key.uri)
        self.workspaces[workspace_id.lower()] = workspace
        return workspace

    def list_workspaces(self, subscription_id: str) -> list[WorkspaceKey]:
        self._end_unpolled()
        return self._listed("list_workspaces", self.workspaces, subscription_id)

    def get_workspace(self, workspace_id: str) -> WorkspaceKey:
        self._end_unpolled()
        return self._read("get_workspace", self.workspaces, workspace_id)

    def begin_key_identifier(self, workspace_id: str, key_identifier: str) -> Operation | None:
        self.faults.check("begin_key_identifier")
        if self.lro_polls <= 0:
            self.set_key_identifier(workspace_id, key_identifier)
            return None
        self._check_key(key_identifier)
        workspace = read(self.workspaces, workspace_id, self.kind)
        self.patches[workspace_id.lower()] += 1
        url = (
            f"https://management.azure.com/subscriptions/{SUBSCRIPTION}/providers/Microsoft.MachineLearningServices/"
            f"locations/eastus/workspaceOperationsStatus/op{len(self.operations) + sum(self.patches.values())}"
            "?api-version=2025-06-01"
        )
        ends_at = self._now() + timedelta(seconds=self.lro_polls * self.retry_after_s) if self._now else None
        self.operations[url] = {
            "workspace": workspace,
            "workspace_id": workspace_id,
            "key": key_identifier,
            "polls_left": self.lro_polls,
            "ends_at": ends_at,
        }
        self.workspaces[workspace_id.lower()] = replace(workspace, provisioning_state="Updating")
        if not self.apply_at_completion:
            self._apply(workspace_id, key_identifier)
        self.faults.check("begin_key_identifier:after")
        return Operation(url, "Azure-AsyncOperation", self.retry_after_s)

    def poll_key_update(self, workspace_id: str, operation: Operation) -> OperationPoll:
        self.faults.check("poll_key_update")
        self.polls.append(operation.url)
        self._end_unpolled()
        found = self.operations.get(operation.url)
        if found is None:
            return OperationPoll("gone")
        found["polls_left"] -= 1
        if found["polls_left"] > 0:
            # Polls answer by their count alone, ended by time or not, so concurrent re-points sharing the one
            # fake clock (each sleep moves it) make the same calls in every run.
            return OperationPoll("running", self.retry_after_s)
        del self.operations[operation.url]
        ended = found["ended"] if "ended" in found else self._end(found)
        if not ended:
            raise VerificationFailed(f"could not update workspace {workspace_id}: the operation failed")
        return OperationPoll("done")

    def _end(self, found: dict[str, Any]) -> bool:
        """End an operation: the workspace takes its outcome and terminal ``provisioningState``; True on success."""
        workspace_id, key = found["workspace_id"], found["key"]
        if key.rstrip("/").rsplit("/", 1)[-1] in self.fail_versions:
            # The workspace keeps its key, unless ``keep_key_on_failure``.
            kept = read(self.workspaces, workspace_id, self.kind) if self.keep_key_on_failure else found["workspace"]
            self.workspaces[workspace_id.lower()] = replace(kept, provisioning_state="Failed")
            return False
        if self.apply_at_completion:
            self._apply(workspace_id, key)
        current = read(self.workspaces, workspace_id, self.kind)
        self.workspaces[workspace_id.lower()] = replace(current, provisioning_state="Succeeded")
        return True

    def _end_unpolled(self) -> None:
        """Operations past their end that nobody polled end now (kept, so a later poll answers their outcome)."""
        if self._now is None:
            return
        now = self._now()
        for found in self.operations.values():
            if "ended" not in found and found["ends_at"] is not None and found["ends_at"] <= now:
                found["ended"] = self._end(found)

    def _check_key(self, key_identifier: str) -> None:
        version = key_identifier.rstrip("/").rsplit("/", 1)[-1]
        self._check_refused(version, f"the workspace identity cannot use key {key_identifier}")

    def _apply(self, workspace_id: str, key_identifier: str) -> WorkspaceKey:
        updated = replace(read(self.workspaces, workspace_id, self.kind), key_identifier=key_identifier)
        return self._written(self.workspaces, workspace_id, updated, key_identifier)

    def set_key_identifier(self, workspace_id: str, key_identifier: str) -> WorkspaceKey:
        self.patches[workspace_id.lower()] += 1
        self.faults.check("set_key_identifier")
        self._check_key(key_identifier)
        updated = self._apply(workspace_id, key_identifier)
        self.faults.check("set_key_identifier:after")
        return updated
