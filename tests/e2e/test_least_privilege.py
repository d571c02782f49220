"""The service runs with exactly the documented roles, and stops naming the permission when one is gone.

The roles come from the step-to-permission table in docs/permissions.md (the same table tests/unit/test_infra.py
checks the templates against). Each row the local emulators enforce is turned into a role assignment
in the Key Vault or ARM emulator; the service's identity then gets those and nothing else. Rows the
emulators cannot enforce are listed in ``NOT_ENFORCED_LOCALLY`` with the reason, so a new row in the
table fails here until it is mapped or explained.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.machinelearningservices import MachineLearningServicesMgmtClient
from azure.mgmt.storage import StorageManagementClient

from emulators.arm.admin_client import ArmAdmin
from rotation.adapters.azure_errors import CONSUMER_KEY_ROLE
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.errors import RotationError
from rotation.service import Dependencies, start_rotation, sweep
from tests.integration.workflow.estate import OPERATOR, RealEstate, build_estate

REPO = Path(__file__).resolve().parents[2]
ADMIN = "least-privilege-test-admin"  # the test's own principal: sets up and reads back, never the service
CLI = Trigger(TriggerKind.CLI, caller="least-privilege-test")
TIMER = Trigger(TriggerKind.TIMER)

KEY_VAULT_PREFIX = "Microsoft.KeyVault/vaults/"
# A consumer's own identity is refused by Storage/ML, not by Key Vault towards the service: Azure reports
# it as this error code (the emulator does too), and the service passes it on naming the consumer.
CONSUMER_KEY_REFUSED = "KeyVaultAuthenticationFailure"

# (identity, role, scope) rows of the permissions table that have no local enforcement, and why.
NOT_ENFORCED_LOCALLY = {
    ("function app", "Storage Blob Data Contributor", "data container"): "Azurite authorises by shared key, not RBAC",
    ("function app", "Storage Table Data Contributor", "function storage account"): "Azurite: shared key only",
    ("function app", "Storage Queue Data Contributor", "function storage account"): "Azurite: shared key only",
    ("function app", "Storage Blob Data Owner", "function storage account"): "Azurite: shared key only",
    ("function app", "Monitoring Metrics Publisher", "application insights"): "no Application Insights locally",
    ("event grid system topic", "Storage Blob Data Contributor", "dead-letter container"): "no Event Grid locally",
    ("audit retention deployment script", "CMK Rotation Audit Retention Locker", "audit container"): (
        "acts only during a deployment (infra/scripts/audit-retention.sh), never while rotating"
    ),
}


@dataclass(frozen=True)
class Row:
    """One (identity, role, scope) of the permissions table and every permission the table lists for it."""

    identity: str
    role: str
    scope: str
    permissions: frozenset[str]

    @property
    def label(self) -> str:
        return f"{self.role} on {self.scope} ({self.identity})"


def documented_rows() -> list[Row]:
    lines = (REPO / "docs" / "permissions.md").read_text().splitlines()
    start = lines.index("| step | identity | role | scope | permissions | why |") + 2
    merged: dict[tuple[str, str, str], set[str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        _step, identity, role, scope, permissions, _why = (c.strip() for c in line.strip("|").split("|"))
        merged.setdefault((identity, role, scope), set()).update(re.findall(r"`([^`]+)`", permissions))
    return [Row(i, r, s, frozenset(p)) for (i, r, s), p in merged.items()]


ROWS = documented_rows()
ENFORCED = [r for r in ROWS if (r.identity, r.role, r.scope) not in NOT_ENFORCED_LOCALLY]


@dataclass
class World:
    """A real estate on local Azure plus what the role assignments need to name."""

    estate: RealEstate
    signing_key: str
    consumer_principals: list[str]

    def assignments(self, row: Row) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The (Key Vault, ARM) emulator assignments that grant ``row``."""
        estate = self.estate
        key_scope = f"/keys/{estate.key.name}"
        subscription = f"/subscriptions/{estate.subscription_id}"
        grants: dict[tuple[str, str, str], Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]]] = {
            ("function app", "CMK Rotation Key Operator", "managed key"): lambda: (
                [{"principal_id": OPERATOR, "role": row.role, "scope": key_scope}],
                [],
            ),
            ("function app", "CMK Rotation Audit Signer", "audit signing key"): lambda: (
                [{"principal_id": OPERATOR, "role": row.role, "scope": f"/keys/{self.signing_key}"}],
                [],
            ),
            ("function app", "CMK Rotation Reader", "consumer subscription"): lambda: (
                [],
                [{"principal_id": OPERATOR, "role": row.role, "scope": subscription}],
            ),
            ("function app", "CMK Rotation Consumer Operator", "consumer resource group"): lambda: (
                [],
                [
                    {
                        "principal_id": OPERATOR,
                        "role": row.role,
                        "scope": f"{subscription}/resourceGroups/{estate.resource_group}",
                    }
                ],
            ),
            ("consumer identity", "Key Vault Crypto Service Encryption User", "managed key"): lambda: (
                [{"principal_id": p, "role": row.role, "scope": key_scope} for p in self.consumer_principals],
                [],
            ),
        }
        return grants[(row.identity, row.role, row.scope)]()

    def grant(self, rows: list[Row]) -> None:
        """Assign exactly ``rows`` (plus the test's own admin principal) in both emulators."""
        keyvault: list[dict[str, Any]] = [{"principal_id": ADMIN, "role": "Key Vault Administrator", "scope": "/"}]
        arm: list[dict[str, Any]] = [{"principal_id": ADMIN, "role": "Owner", "scope": "/"}]
        for row in rows:
            kv_part, arm_part = self.assignments(row)
            keyvault += kv_part
            arm += arm_part
        self.estate.kv_admin.set_role_assignments(self.estate.vault["name"], keyvault)
        self.estate.arm_admin.set_role_assignments(arm)


def _account_key_version(estate: RealEstate, account_id: str) -> str:
    storage = estate.mgmt(StorageManagementClient, ADMIN)
    account = storage.storage_accounts.get_properties(estate.resource_group, account_id.rsplit("/", 1)[-1])
    return str(account.encryption.key_vault_properties.key_version)


def _consumer_principals(estate: RealEstate) -> list[str]:
    """The consumers' own identities (what Storage and ML use to reach the key)."""
    storage = estate.mgmt(StorageManagementClient)
    ml = estate.mgmt(MachineLearningServicesMgmtClient)
    principals = set()
    for account_id in estate.pinned + estate.versionless:
        name = account_id.rsplit("/", 1)[-1]
        account = storage.storage_accounts.get_properties(estate.resource_group, name)
        principals |= {u.principal_id for u in (account.identity.user_assigned_identities or {}).values()}
    for workspace_id in estate.workspaces:
        workspace = ml.workspaces.get(estate.resource_group, workspace_id.rsplit("/", 1)[-1])
        principals.add(workspace.identity.principal_id)
    return sorted(p for p in principals if p)


@pytest.fixture
def world(local_azure: dict[str, Any]) -> Iterator[World]:
    """A fresh estate; the ARM emulator's assignments (shared by the whole session) are cleared after."""
    arm = ArmAdmin(local_azure["arm"]["admin"], local_azure["ca_bundle"])
    arm.set_role_assignments([])
    try:
        estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=1)
        signing_key = f"audit-sign-{uuid.uuid4().hex[:6]}"
        estate.keys().create_rsa_key(signing_key, size=2048)
        yield World(estate, signing_key, _consumer_principals(estate))
    finally:
        arm.set_role_assignments([])


class _Later:
    """A clock past the retirement grace period."""

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(hours=25)


def rotate_retire_and_sign(world: World) -> tuple[Dependencies, str]:
    """Every step the documented roles cover: plan, rotate, verify, re-point, retire, sign the audit.

    Returns the service's dependencies and the rotation id. Raises the first error the service reports.
    """
    estate = world.estate
    signing_key_uri = f"{estate.key.vault_url}/keys/{world.signing_key}"
    deps = estate.deps(ROTATION_AUDIT_SIGNING_KEY=signing_key_uri)

    view = start_rotation(deps, estate.key.uri, CLI, reason="least privilege")
    if view.status != RotationStatus.AWAITING_RETIREMENT:
        raise AssertionError(f"rotation ended {view.status.value}: {view.error}")
    deps.clock = _Later()
    report = sweep(deps, TIMER)
    if report.count("retired") != 1:
        raise AssertionError(f"retirement did not happen: {report.items}")
    checkpoint = deps.audit.checkpoint()  # type: ignore[attr-defined]
    assert checkpoint is not None
    return deps, view.rotation_id


class TestTheTableCoversTheEmulators:
    """Every row of the table is either granted in the emulators below or explained as not enforced locally."""

    def test_rows_are_mapped_or_explained(self) -> None:
        keys = {(r.identity, r.role, r.scope) for r in ROWS}

        unexplained = keys - set(NOT_ENFORCED_LOCALLY)
        stale = set(NOT_ENFORCED_LOCALLY) - keys

        assert len(unexplained) == len(ENFORCED) >= 5
        assert stale == set()


class TestExactlyTheDocumentedRoles:
    """With exactly the documented roles the service rotates, moves every consumer, retires and signs."""

    def test_full_rotation_succeeds(self, world: World) -> None:
        world.grant(ENFORCED)
        before = [p.version for p in world.estate.keys(ADMIN).list_properties_of_key_versions(world.estate.key.name)]

        deps, rotation_id = rotate_retire_and_sign(world)

        versions = list(world.estate.keys(ADMIN).list_properties_of_key_versions(world.estate.key.name))
        new = next(v.version for v in versions if v.version not in before)
        assert len(versions) == len(before) + 1
        assert [v.enabled for v in versions if v.version in before] == [False]
        assert _account_key_version(world.estate, world.estate.pinned[0]) == new
        assert world.estate.workspace_key(world.estate.workspaces[0]).endswith(f"/{new}")
        assert rotation_id in {r.rotation_id for r in deps.audit.records()}  # type: ignore[attr-defined]


class TestEachRoleIsNeeded:
    """With any one documented role missing, the service stops with an error naming a permission of that role."""

    @pytest.mark.parametrize("missing", ENFORCED, ids=lambda r: r.label)
    def test_missing_role_is_named(self, world: World, missing: Row) -> None:
        world.grant([r for r in ENFORCED if r != missing])

        with pytest.raises((RotationError, AssertionError)) as stopped:
            rotate_retire_and_sign(world)

        message = str(stopped.value).lower()
        named = {
            p
            for p in missing.permissions
            if p.lower() in message or p.lower().removeprefix(KEY_VAULT_PREFIX.lower()) in message
        }
        if missing.identity == "consumer identity":
            assert CONSUMER_KEY_REFUSED.lower() in message, f"{missing.label}: {message}"
            assert CONSUMER_KEY_ROLE.lower() in message, f"{missing.label}: {message}"
            assert "storage account" in message or "workspace" in message, message
        else:
            assert named, f"{missing.label}: {message}"
