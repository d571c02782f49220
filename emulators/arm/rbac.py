"""Azure RBAC as ARM enforces it: built-in roles as action patterns, assignments on scopes.

With no role assignment configured every caller may do everything (a fresh emulator behaves
like a subscription owner's sandbox); once any assignment exists, each request's action must be
granted to its caller at the resource's scope or a parent scope.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RoleDefinition:
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()

    def allows(self, action: str) -> bool:
        lowered = action.lower()
        granted = any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.actions)
        return granted and not any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.not_actions)


# Control-plane actions and notActions of the built-in roles (learn.microsoft.com, built-in roles reference).
BUILT_IN_ROLES: dict[str, RoleDefinition] = {
    "Owner": RoleDefinition(("*",)),
    "Contributor": RoleDefinition(
        ("*",),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ),
    ),
    "Reader": RoleDefinition(("*/read",)),
    "User Access Administrator": RoleDefinition(("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*")),
    "Storage Account Contributor": RoleDefinition(
        (
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Insights/diagnosticSettings/*",
            "Microsoft.Network/virtualNetworks/subnets/joinViaServiceEndpoint/action",
            "Microsoft.ResourceHealth/availabilityStatuses/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Storage/storageAccounts/*",
            "Microsoft.Support/*",
        )
    ),
    "AzureML Data Scientist": RoleDefinition(
        (
            "Microsoft.MachineLearningServices/workspaces/*/read",
            "Microsoft.MachineLearningServices/workspaces/*/action",
            "Microsoft.MachineLearningServices/workspaces/*/delete",
            "Microsoft.MachineLearningServices/workspaces/*/write",
        ),
        (
            "Microsoft.MachineLearningServices/workspaces/delete",
            "Microsoft.MachineLearningServices/workspaces/write",
            "Microsoft.MachineLearningServices/workspaces/computes/*/write",
            "Microsoft.MachineLearningServices/workspaces/computes/*/delete",
            "Microsoft.MachineLearningServices/workspaces/computes/listKeys/action",
            "Microsoft.MachineLearningServices/workspaces/listKeys/action",
            "Microsoft.MachineLearningServices/workspaces/hubs/write",
            "Microsoft.MachineLearningServices/workspaces/hubs/delete",
            "Microsoft.MachineLearningServices/workspaces/featurestores/write",
            "Microsoft.MachineLearningServices/workspaces/featurestores/delete",
        ),
    ),
    "AzureML Compute Operator": RoleDefinition(
        (
            "Microsoft.MachineLearningServices/workspaces/computes/*",
            "Microsoft.MachineLearningServices/workspaces/notebooks/vm/*",
        )
    ),
    "Key Vault Contributor": RoleDefinition(
        (
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.KeyVault/*",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
        ),
        ("Microsoft.KeyVault/locations/deletedVaults/purge/action", "Microsoft.KeyVault/hsmPools/*"),
    ),
    "Key Vault Reader": RoleDefinition(
        (
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
            "Microsoft.KeyVault/checkNameAvailability/read",
            "Microsoft.KeyVault/deletedVaults/read",
            "Microsoft.KeyVault/locations/*/read",
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/operations/read",
        )
    ),
    "Managed Identity Operator": RoleDefinition(
        (
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Support/*",
        )
    ),
    # The rotation service's own custom roles (infra/modules/roleDefinitions.bicep), by their base names.
    "CMK Rotation Reader": RoleDefinition(
        (
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.MachineLearningServices/workspaces/read",
            "Microsoft.KeyVault/vaults/read",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.Compute/diskEncryptionSets/read",
            "Microsoft.ResourceGraph/resources/read",
        )
    ),
    "CMK Rotation Consumer Operator": RoleDefinition(
        (
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.Storage/storageAccounts/write",
            "Microsoft.MachineLearningServices/workspaces/read",
            "Microsoft.MachineLearningServices/workspaces/write",
            "Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/write",
            "Microsoft.Compute/diskEncryptionSets/read",
            "Microsoft.Compute/diskEncryptionSets/write",
        )
    ),
}


class UnknownRole(ValueError):
    """A role assignment names a role that is neither built in nor given as actions."""


def role_of(assignment: dict[str, Any]) -> RoleDefinition:
    """The role an assignment grants: a built-in name (case-insensitive) or explicit actions/not_actions."""
    if "actions" in assignment:
        return RoleDefinition(tuple(assignment["actions"]), tuple(assignment.get("not_actions", ())))
    name = str(assignment.get("role", ""))
    for known, definition in BUILT_IN_ROLES.items():
        if known.lower() == name.lower():
            return definition
    raise UnknownRole(f"unknown role {name!r}; built in: {', '.join(BUILT_IN_ROLES)}")


def _within(scope: str, resource: str) -> bool:
    scope = scope.rstrip("/").lower()
    resource = resource.rstrip("/").lower()
    return scope in ("", resource) or resource.startswith(scope + "/")


def is_allowed(assignments: list[dict[str, Any]], principal: str, action: str, scope: str) -> bool:
    """True when no assignment exists at all, or one of ``principal``'s grants ``action`` at ``scope``."""
    if not assignments:
        return True
    for assignment in assignments:
        if str(assignment.get("principal_id", "")).lower() != principal.lower():
            continue
        if _within(str(assignment.get("scope", "/")), scope) and role_of(assignment).allows(action):
            return True
    return False
