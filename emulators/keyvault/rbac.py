"""Azure RBAC for the keys data plane: built-in roles by name, enforced per data action.

Role definitions follow the built-in roles' data actions (learn.microsoft.com "Azure built-in roles for
Security", Key Vault section). With no assignment in a vault, every caller may do everything.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "Microsoft.KeyVault/vaults/"

# operation name -> data action
DATA_ACTIONS = {
    "createKey": "keys/create/action",
    "importKey": "keys/import/action",
    "getKey": "keys/read",
    "getKeys": "keys/read",
    "getKeyVersions": "keys/read",
    "updateKey": "keys/update/action",
    "deleteKey": "keys/delete",
    "rotateKey": "keys/rotate/action",
    "getKeyRotationPolicy": "keyrotationpolicies/read",
    "updateKeyRotationPolicy": "keyrotationpolicies/write",
    "encrypt": "keys/encrypt/action",
    "decrypt": "keys/decrypt/action",
    "wrapKey": "keys/wrap/action",
    "unwrapKey": "keys/unwrap/action",
    "sign": "keys/sign/action",
    "verify": "keys/verify/action",
    "getDeletedKey": "deletedKeys/read",
    "getDeletedKeys": "deletedKeys/read",
    "recoverDeletedKey": "deletedKeys/recover/action",
    "purgeDeletedKey": "deletedKeys/delete",
}

ROLES: dict[str, tuple[str, ...]] = {
    "Key Vault Administrator": ("*",),
    "Key Vault Crypto Officer": ("keys/*", "keyrotationpolicies/*", "deletedKeys/*"),
    "Key Vault Crypto User": (
        "keys/read",
        "keys/update/action",
        "keys/backup/action",
        "keys/encrypt/action",
        "keys/decrypt/action",
        "keys/wrap/action",
        "keys/unwrap/action",
        "keys/sign/action",
        "keys/verify/action",
    ),
    "Key Vault Crypto Service Encryption User": ("keys/read", "keys/wrap/action", "keys/unwrap/action"),
    "Key Vault Reader": ("keys/read", "keyrotationpolicies/read", "deletedKeys/read"),
    # The rotation service's own custom roles (infra/modules/roleDefinitions.bicep), by their base names;
    # tests/unit/test_infra.py keeps these in step with the template.
    "CMK Rotation Key Operator": (
        "keys/read",
        "keyrotationpolicies/read",
        "keys/create/action",
        "keys/update/action",
        "keys/wrap/action",
        "keys/unwrap/action",
    ),
    "CMK Rotation Audit Signer": ("keys/read", "keys/sign/action", "keys/verify/action"),
}


@dataclass(frozen=True)
class RoleAssignment:
    principal_id: str
    role: str
    scope: str = "/"

    def to_json(self) -> dict[str, str]:
        return {"principal_id": self.principal_id, "role": self.role, "scope": self.scope}


def parse_assignments(value: object) -> list[RoleAssignment]:
    """Validate ``[{"principal_id", "role", "scope"?}]``; raises ValueError naming the problem."""
    if not isinstance(value, list):
        raise ValueError("'value' must be a list of role assignments")
    result = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("principal_id"), str) or not item["principal_id"]:
            raise ValueError("each role assignment needs a 'principal_id' string")
        role = item.get("role")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; built-in roles: {sorted(ROLES)}")
        scope = item.get("scope") or "/"
        if not isinstance(scope, str) or not (scope == "/" or scope.startswith("/keys/")):
            raise ValueError("scope must be '/' (the vault) or '/keys/{name}'")
        result.append(RoleAssignment(item["principal_id"], str(role), scope.rstrip("/") or "/"))
    return result


def _grants(patterns: tuple[str, ...], action: str) -> bool:
    for pattern in patterns:
        if pattern in ("*", action):
            return True
        if pattern.endswith("/*") and action.startswith(pattern[:-1]):
            return True
    return False


def is_allowed(assignments: list[RoleAssignment], principal: str, operation: str, key_name: str | None) -> bool:
    if not assignments:
        return True
    action = DATA_ACTIONS[operation]
    for assignment in assignments:
        if assignment.principal_id != principal:
            continue
        if assignment.scope != "/" and (key_name is None or assignment.scope.lower() != f"/keys/{key_name.lower()}"):
            continue
        if _grants(ROLES[assignment.role], action):
            return True
    return False


def full_action(operation: str) -> str:
    return PREFIX + DATA_ACTIONS[operation]
