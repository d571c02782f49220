"""What the container-registry and disk-encryption-set providers share about customer-managed keys.

Both resource providers check a key *as the resource's identity* through the Key Vault emulator
(``KeyVaultGateway.check_key``, the same check the storage and ML providers make), follow the newest
version of a key on their own schedule ("within one hour", see ``AUTO_ROTATION_S``), and report
whether the versions they use are still usable (the admin access query): ``KeyFollowingProvider``.
"""

from __future__ import annotations

from typing import Any

from emulators.arm import errors
from emulators.arm.core import Emulator
from emulators.arm.keyvault import KeyInfo, KeyProblem, KeyRef
from emulators.arm.provider import ResourceProvider

#: ACR: "Azure Container Registry regularly checks the key vault for a new key version and updates the
#: customer-managed key within 1 hour" (learn.microsoft.com, container-registry-customer-managed-keys,
#: "Automatic or manual update of key versions"). DES: "the system will automatically update all managed
#: disks, snapshots, and images referencing the disk encryption set to use the new version of the key
#: within one hour" (azure-resourcemanager-compute DiskEncryptionSet.UpdateStages.withAutomaticKeyRotation).
AUTO_ROTATION_S = 3600

# Neither resource provider's key error codes were found in a Microsoft capture: these names are
# best-effort (docs/emulators/arm.md). The HTTP status (400) and "nothing changes" are what matters.
_CODES = {
    KeyProblem.VAULT_NOT_FOUND: "KeyVaultNotFound",
    KeyProblem.FORBIDDEN: "KeyVaultAccessForbidden",
    KeyProblem.KEY_NOT_FOUND: "KeyVaultKeyNotFound",
    KeyProblem.VERSION_NOT_FOUND: "KeyVaultKeyVersionNotFound",
    KeyProblem.DISABLED: "KeyVaultKeyDisabled",
    KeyProblem.EXPIRED: "KeyVaultKeyExpired",
    KeyProblem.NOT_YET_VALID: "KeyVaultKeyNotYetValid",
    KeyProblem.UNSUPPORTED_KEY: "KeyVaultKeyTypeNotSupported",
    KeyProblem.OPERATION_NOT_ALLOWED: "KeyVaultKeyOperationNotPermitted",
    KeyProblem.WRAP_FAILED: "KeyVaultKeyWrapUnwrapFailure",
    KeyProblem.UNAVAILABLE: "KeyVaultServiceUnavailable",
}


def key_error(problem: KeyProblem, noun: str, target: str | None = None) -> errors.ArmError:
    """A resource provider's refusal of a key its resource cannot use (400, nothing changed)."""
    return errors.ArmError(
        400,
        _CODES.get(problem.kind, "KeyVaultKeyNotUsable"),
        f"The {noun}'s identity cannot use the key: {problem.message}",
        target=target,
    )


def code_of(problem: KeyProblem) -> str:
    return _CODES.get(problem.kind, "KeyVaultKeyNotUsable")


async def parse_key(emulator: Emulator, key_id: str, noun: str, target: str) -> tuple[dict[str, Any], KeyRef]:
    """The vault and key a key identifier names, or 400 naming the property."""
    try:
        return await emulator.kv.parse_key_id(key_id)
    except KeyProblem as problem:
        raise key_error(problem, noun, target) from None


async def check_key(emulator: Emulator, ref: KeyRef, principal: str, noun: str, target: str) -> KeyInfo:
    """``KeyVaultGateway.check_key`` as the resource's identity, a refusal shaped as the RP's 400."""
    try:
        return await emulator.kv.check_key(ref, principal)
    except KeyProblem as problem:
        raise key_error(problem, noun, target) from None


async def usable(emulator: Emulator, key_id: str, principal: str) -> str | None:
    """None when the key version ``key_id`` is usable by ``principal`` now, else the reason."""
    try:
        _, ref = await emulator.kv.parse_key_id(key_id)
        await emulator.kv.check_key(ref, principal)
    except KeyProblem as problem:
        return f"{code_of(problem)}: {problem.message}"
    return None


def identity_principal(emulator: Emulator, identity: dict[str, Any] | None, client_or_principal: str | None) -> str:
    """The principal id of the identity the resource uses for its key.

    ``client_or_principal`` names a user-assigned identity by client id (ACR's
    ``keyVaultProperties.identity``) or the system identity by principal id; None means the
    system-assigned identity.
    """
    if client_or_principal:
        for entry in ((identity or {}).get("userAssignedIdentities") or {}).values():
            names = (str(entry.get("clientId", "")).lower(), str(entry.get("principalId", "")).lower())
            if client_or_principal.lower() in names:
                return str(entry["principalId"])
        if identity and str(identity.get("principalId", "")).lower() == client_or_principal.lower():
            return str(identity["principalId"])
        raise errors.ArmError(
            400,
            "InvalidIdentity",
            f"The identity '{client_or_principal}' set for encryption is not assigned to the resource.",
        )
    if identity and identity.get("principalId"):
        return str(identity["principalId"])
    raise errors.ArmError(400, "IdentityRequired", "The resource has no managed identity to access the key vault with.")


class KeyFollowingProvider(ResourceProvider):
    """A provider whose resources may follow their key's newest version by themselves (registries, sets).

    A resource is brought up to date (its automatic check, if due) before every read; the admin API
    asks whether what it protects is readable now and can run its check at once.
    """

    async def refresh(self, resource: dict[str, Any]) -> None:
        await self.auto_rotate(resource)

    async def auto_rotate(self, resource: dict[str, Any], *, now_due: bool = False) -> bool:
        """Adopt the newest usable version when the automatic check is due (or ``now_due``); True if it did."""
        raise NotImplementedError

    def principal_for(self, resource: dict[str, Any]) -> str:
        """The principal the resource uses its key as."""
        raise NotImplementedError

    def keys_in_use(self, resource: dict[str, Any]) -> list[str]:
        """The versioned key ids the resource's data is protected with now (none without a CMK)."""
        raise NotImplementedError

    async def access(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Whether what the resource protects is readable now: every key version in use must be usable."""
        await self.auto_rotate(resource)
        in_use = self.keys_in_use(resource)
        reason = None
        for key_id in in_use:
            try:
                reason = await usable(self.emulator, key_id, self.principal_for(resource))
            except errors.ArmError as error:
                reason = f"{error.code}: {error.message}"
            if reason:
                break
        return {"accessible": reason is None, "reason": reason, "keys_in_use": in_use}
