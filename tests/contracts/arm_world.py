"""One small estate for the ARM contract suites, in memory or on the local ARM and Key Vault emulators.

A subscription holding a vault with a managed key (two versions, ``old`` and ``new``), a storage
account pinned to ``old``, one following the key versionless, a storage account on an unrelated key,
and an ML workspace whose key identifier names ``old``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rotation.domain.model import KeyRef
from rotation.ports import StorageAccounts, Workspaces


@dataclass
class ArmWorld:
    subscription: str
    vault_arm_id: str
    key: KeyRef
    other_key: KeyRef
    old: str
    new: str
    pinned: str  # storage account ids
    versionless: str
    unrelated: str
    workspace: str
    storage: StorageAccounts
    workspaces: Workspaces
    refusing_version: Callable[[], str]  # a version of ``key`` the resource provider refuses
    arm_endpoint: str = "https://management.azure.com"

    def missing_id(self, resource_type: str) -> str:
        name = f"missing{uuid.uuid4().hex[:8]}"
        return self.pinned.rsplit("/providers/", 1)[0] + f"/providers/{resource_type}/{name}"


def fake_world() -> ArmWorld:
    import secrets

    from tests.fakes.arm import SUBSCRIPTION, FakeStorageAccounts, FakeVaults, FakeWorkspaces

    vault_url = "https://kv-contract.vault.azure.net"
    vaults = FakeVaults()
    vault = vaults.add(vault_url)
    storage, workspaces = FakeStorageAccounts(), FakeWorkspaces(vaults)
    workspaces.lro_polls = 2  # as the emulator: a key update is an operation
    key, other = KeyRef(vault_url, "cmk"), KeyRef(vault_url, "other")
    old, new, other_version = (secrets.token_hex(16) for _ in range(3))

    def refusing_version() -> str:
        version = secrets.token_hex(16)
        storage.refuse_versions.add(version)
        workspaces.refuse_versions.add(version)
        return version

    return ArmWorld(
        subscription=SUBSCRIPTION,
        vault_arm_id=vault.arm_id,
        key=key,
        other_key=other,
        old=old,
        new=new,
        pinned=storage.add("pinned", key, old).account_id,
        versionless=storage.add("follows", key, "", in_use=old).account_id,
        unrelated=storage.add("unrelated", other, other_version).account_id,
        workspace=workspaces.add("ws1", key, old).workspace_id,
        storage=storage,
        workspaces=workspaces,
        refusing_version=refusing_version,
    )


def real_world(local_azure: dict[str, Any]) -> ArmWorld:
    from rotation.adapters.local_credential import LocalDevelopmentCredential
    from rotation.adapters.storage_accounts import ArmStorageAccounts
    from rotation.adapters.workspaces import ArmWorkspaces
    from tests.integration.workflow.estate import OPERATOR, build_estate

    estate = build_estate(local_azure, pinned=1, versionless=1, workspaces=1)
    keys = estate.keys()
    old = estate.versions()[0].version
    new = str(keys.create_rsa_key(estate.key.name, size=2048).properties.version)
    keys.close()
    transport = {"connection_verify": estate.ca}
    credential = LocalDevelopmentCredential(OPERATOR)
    return ArmWorld(
        subscription=estate.subscription_id,
        vault_arm_id=str(estate.vault["arm_id"]),
        key=estate.key,
        other_key=estate.other_key,
        old=old,
        new=new,
        pinned=estate.pinned[0],
        versionless=estate.versionless[0],
        unrelated=estate.unrelated[0],
        workspace=estate.workspaces[0],
        storage=ArmStorageAccounts(estate.arm_url, credential, transport),
        workspaces=ArmWorkspaces(estate.arm_url, credential, transport, polling_interval=0.05),
        refusing_version=lambda: uuid.uuid4().hex,  # no such version: the provider refuses it (400)
        arm_endpoint=estate.arm_url,
    )
