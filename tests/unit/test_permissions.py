"""One source of truth for permissions: the Azure actions each adapter declares beside its calls.

Every module that calls Azure declares ``ACTIONS``: for each of its operations, the control-plane
actions and Key Vault (or blob) data actions it needs. The custom roles in ``infra/`` (Bicep and its
ARM JSON), the step-to-permission table in the docs and the plan's per-step list are checked against
those declarations here, both ways: every action granted or listed is one an adapter uses, and every
action an adapter uses is granted and listed.

The app's own storage (AzureWebJobsStorage: journal, locks, audit records, queues, host blobs) is
reached through built-in data roles and is not part of these declarations.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import pytest

import rotation
from rotation.consumers.registry import REGISTRY
from rotation.domain.plan import WORKFLOW_PERMISSIONS, step_permissions
from tests.unit.test_infra import custom_roles_arm, custom_roles_bicep

REPO = Path(__file__).resolve().parents[2]
TABLE_HEADER = ["step", "identity", "role", "scope", "permissions", "why"]
CUSTOM_ROLE_PREFIX = "CMK Rotation "
#: An Azure action as written in code: provider, resource type path, and the operation.
ACTION = re.compile(r"\bMicrosoft\.[A-Za-z]+(?:/[A-Za-z]+)+/(?:read|write|delete|action)\b")
#: Modules that call Azure for the rotation (a new adapter adds itself by declaring ACTIONS).
EXPECTED_DECLARERS = {
    "rotation.adapters.keyvault",
    "rotation.adapters.vaults",
    "rotation.adapters.storage_accounts",
    "rotation.adapters.aml_client",
    "rotation.rewrap.keys",
    "rotation.rewrap.scan",
    "rotation.rewrap.worker",
    "rotation.audit.signing",
    "rotation.adapters.registries",
    "rotation.adapters.disk_encryption_sets",
    "rotation.adapters.resource_graph",
}

#: Modules that name Azure actions in code but are outside the declarations, and why.
UNDECLARED = {
    "rotation.domain.plan": "the workflow's part of the plan's per-step list, checked below",
    "rotation.consumers.storage_accounts": "a consumer kind's part of the plan's per-step list, checked below",
    "rotation.consumers.ml_workspaces": "a consumer kind's part of the plan's per-step list, checked below",
    "rotation.consumers.data_locations": "a consumer kind's part of the plan's per-step list, checked below",
    "rotation.adapters.journal": "AzureWebJobsStorage (built-in data role), outside the check",
    "rotation.adapters.run_queue": "AzureWebJobsStorage (built-in data role), outside the check",
    "rotation.adapters.sweep_memory": "AzureWebJobsStorage (built-in data role), outside the check",
    "rotation.consumers.container_registries": "a consumer kind's part of the plan's per-step list, checked below",
    "rotation.consumers.disk_encryption_sets": "a consumer kind's part of the plan's per-step list, checked below",
    "rotation.consumers.unknown_references": "a consumer kind's part of the plan's per-step list, checked below",
}


def actions_in_code(module_name: str) -> set[str]:
    """The Azure actions written in a module's string literals (docstrings and comments left out)."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        action
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        for action in ACTION.findall(node.value)
    }


def rotation_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(rotation.__path__, "rotation.")
        if info.name.rsplit(".", 1)[-1] != "__main__"  # runs the CLI or the server when imported
    ]


@cache
def declarations() -> dict[str, Mapping[str, frozenset[str]]]:
    """``ACTIONS`` of every module in ``rotation`` that declares it, by module name."""
    found: dict[str, Mapping[str, frozenset[str]]] = {}
    for name in rotation_modules():
        actions = getattr(importlib.import_module(name), "ACTIONS", None)
        if actions is not None:
            found[name] = actions
    return found


def declared() -> set[str]:
    return {a for ops in declarations().values() for acts in ops.values() for a in acts}


def is_storage_data_action(action: str) -> bool:
    return action.startswith("Microsoft.Storage/storageAccounts/") and "Services/" in action


@cache
def permission_table() -> tuple[dict[str, str], ...]:
    """The step-to-permission table, wherever the docs keep it (README.md or docs/*.md)."""
    sources = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    tables = []
    for path in sources:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if [c.strip() for c in line.strip().strip("|").split("|")] != TABLE_HEADER:
                continue
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(
                    dict(zip(TABLE_HEADER, (c.strip() for c in row.strip().strip("|").split("|")), strict=True))
                )
            tables.append((path, tuple(rows)))
    assert len(tables) == 1, f"expected one step-to-permission table, found {[str(p) for p, _ in tables]}"
    return tables[0][1]


def listed(rows: tuple[dict[str, str], ...]) -> set[str]:
    return {a for row in rows for a in re.findall(r"`([^`]+)`", row["permissions"])}


def app_rows() -> tuple[dict[str, str], ...]:
    return tuple(r for r in permission_table() if r["identity"] == "function app")


def custom_role_rows() -> tuple[dict[str, str], ...]:
    return tuple(r for r in app_rows() if r["role"].startswith(CUSTOM_ROLE_PREFIX))


class TestAdaptersDeclareTheirActions:
    def test_every_module_that_calls_azure_declares_actions(self) -> None:
        assert sorted(EXPECTED_DECLARERS - set(declarations())) == []

    def test_every_module_that_names_an_action_declares_it(self) -> None:
        """A new adapter cannot name the permission it needs in an error without declaring it."""
        naming = {name for name in rotation_modules() if actions_in_code(name)}

        assert sorted(naming - set(declarations()) - set(UNDECLARED)) == []
        assert sorted(set(UNDECLARED) - naming) == []  # the list shrinks when a module starts declaring

    @pytest.mark.parametrize("module_name", sorted(EXPECTED_DECLARERS))
    def test_declarations_match_the_actions_named_beside_the_calls(self, module_name: str) -> None:
        """Each action written in the module's code is declared, and each declared one is written there."""
        in_code = actions_in_code(module_name)
        in_declaration = {a for acts in declarations()[module_name].values() for a in acts}

        assert in_declaration
        assert all(isinstance(acts, frozenset) for acts in declarations()[module_name].values())
        assert in_code == in_declaration

    def test_key_store_has_no_rotate(self) -> None:
        """Rotation creates versions itself; Key Vault's rotate is not used, so it is neither declared nor granted."""
        from rotation.ports import KeyStore

        assert not hasattr(KeyStore, "rotate")
        assert "Microsoft.KeyVault/vaults/keys/rotate/action" not in declared()


#: Custom roles no adapter uses: their identity acts only while the templates deploy, and what it may do.
DEPLOYMENT_ONLY_ROLES = {
    # infra/scripts/audit-retention.sh creates, locks and extends the audit container's retention policy.
    "CMK Rotation Audit Retention Locker": (
        "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/"
    ),
}


class TestInfraGrantsWhatTheAdaptersUse:
    @pytest.mark.parametrize("template", ["bicep", "arm"])
    def test_every_action_a_custom_role_grants_is_declared_by_an_adapter(self, template: str) -> None:
        roles = custom_roles_bicep() if template == "bicep" else custom_roles_arm()
        runtime = {role: granted for role, granted in roles.items() if role not in DEPLOYMENT_ONLY_ROLES}

        unused = {role: sorted(granted - declared()) for role, granted in runtime.items() if granted - declared()}

        assert runtime
        assert unused == {}
        for role, prefix in DEPLOYMENT_ONLY_ROLES.items():
            assert roles[role]
            assert all(action.startswith(prefix) for action in roles[role])

    @pytest.mark.parametrize("template", ["bicep", "arm"])
    def test_every_key_vault_and_arm_action_an_adapter_declares_is_granted(self, template: str) -> None:
        roles = custom_roles_bicep() if template == "bicep" else custom_roles_arm()
        granted = set().union(*roles.values())

        missing = sorted(a for a in declared() if not is_storage_data_action(a) and a not in granted)

        assert missing == []


class TestDocsListWhatTheAdaptersUse:
    def test_every_action_of_a_custom_role_row_is_declared(self) -> None:
        assert custom_role_rows()
        assert sorted(listed(custom_role_rows()) - declared()) == []

    def test_every_declared_action_is_listed_for_the_function_app(self) -> None:
        assert sorted(declared() - listed(app_rows())) == []

    def test_storage_data_actions_are_granted_on_the_data_containers(self) -> None:
        data_rows = tuple(r for r in app_rows() if r["scope"] == "data container")
        used = {a for a in declared() if is_storage_data_action(a)}

        assert used
        assert sorted(used - listed(data_rows)) == []


def plan_permissions() -> dict[str, tuple[str, ...]]:
    """The per-step list a plan shows: the workflow's steps and every registered consumer kind's."""
    return step_permissions(REGISTRY.run_steps(), REGISTRY.units)


class TestThePlanListsWhatTheStepsUse:
    """The plan's per-step list (shown by ``plan``) names real actions, and all the rotation's adapters use."""

    def test_every_action_the_plan_lists_is_declared(self) -> None:
        in_plan = {a for actions in plan_permissions().values() for a in actions}

        assert sorted(in_plan - declared()) == []

    def test_every_action_the_rotation_uses_is_in_the_plan(self) -> None:
        in_plan = {a for actions in plan_permissions().values() for a in actions}
        rotation_uses = {  # the audit signer is not a rotation step
            a
            for name, ops in declarations().items()
            if not name.startswith("rotation.audit.")
            for acts in ops.values()
            for a in acts
        }

        assert sorted(rotation_uses - in_plan) == []

    def test_retire_names_the_data_action_that_disables_a_version(self) -> None:
        assert "Microsoft.KeyVault/vaults/keys/update/action" in plan_permissions()["retire"]
        assert "Microsoft.KeyVault/vaults/keys/write" not in plan_permissions()["retire"]
        assert WORKFLOW_PERMISSIONS["retire"] == plan_permissions()["retire"]
