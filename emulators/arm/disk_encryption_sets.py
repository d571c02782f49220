"""Microsoft.Compute/diskEncryptionSets: create and update (LROs), get, list, delete; the active key.

Wire shapes from azure-rest-api-specs
``specification/compute/resource-manager/Microsoft.Compute/DiskRP/stable/2025-01-02/diskEncryptionSet.json``
and its examples (``DiskEncryptionSets_CreateOrUpdate`` / ``DiskEncryptionSets_Update``: 200, or 202
with ``Location``; ``DiskEncryptionSet_Update_WithRotationToLatestKeyVersionEnabledInProgress.json``
shows ``previousKeys`` listing the old key while the change is in progress). ``properties.activeKey``
is ``{keyUrl, sourceVault: {id}}``; ``keyUrl`` is "Fully versioned ... Version segment of the Url is
required regardless of rotationToLatestKeyVersionEnabled value" (KeyForDiskEncryptionSet).

Rules: the key must be usable by the set's identity (get, wrapKey, unwrapKey: the same check the
storage and ML providers make). As Microsoft's documented flow creates the set first and grants its
new system-assigned identity afterwards, a *create* records the key without the usability check; every
*update* that changes the key checks it. With ``rotationToLatestKeyVersionEnabled`` the set moves to the
newest version of its key on its own schedule (``cmk.AUTO_ROTATION_S``, the emulator's clock). While a
change of key is in progress (until its operation completes, or until the next automatic check), the
old key stays in ``previousKeys`` and counts as in use.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from starlette.responses import Response

from emulators.arm import cmk, errors
from emulators.arm.core import Call, iso, obj, opt_str, required_location, tags
from emulators.arm.keyvault import KeyProblem, KeyRef

TYPE = "Microsoft.Compute/diskEncryptionSets"
_ENCRYPTION_TYPES = (
    "EncryptionAtRestWithCustomerKey",
    "EncryptionAtRestWithPlatformAndCustomerKeys",
    "ConfidentialVmEncryptedWithCustomerKey",
)


def invalid_parameter(message: str, target: str) -> errors.ArmError:
    """Compute's error shape for a bad request property: ``InvalidParameter`` with the property as target."""
    return errors.ArmError(400, "InvalidParameter", message, target=target)


class DiskEncryptionSetProvider(cmk.KeyFollowingProvider):
    TYPE = TYPE
    NOUN = "disk encryption set"
    NAME = re.compile(r"^[a-zA-Z0-9_-]{1,80}$")

    def resources(self) -> dict[str, dict[str, Any]]:
        return self.emulator.state.disk_encryption_sets

    def invalid_name(self, name: str) -> errors.ArmError:
        return invalid_parameter(f"The disk encryption set name '{name}' is invalid.", "diskEncryptionSetName")

    # -- operations -------------------------------------------------------------------------

    async def create(self, call: Call) -> Response:
        body, _group = await self._create_request(call)
        location = required_location(body)
        properties = obj(body.get("properties"), "properties", "EncryptionSetProperties")
        key = self.resource_id(call).lower()
        async with self.emulator.write_lock, self.emulator.resource_lock(key):
            existing = self.resources().get(key)
            now = self.emulator.store.now()
            des = self._draft(call, existing, location, previousKeys=[], next_check=None)
            des["tags"] = tags(body)
            des["identity"] = self.emulator.build_identity(body.get("identity"), des.get("identity"))
            if des["identity"] is None:
                raise invalid_parameter("A disk encryption set needs a managed identity.", "identity")
            des["encryptionType"] = self._encryption_type(properties, des.get("encryptionType"))
            des["rotationToLatestKeyVersionEnabled"] = bool(properties.get("rotationToLatestKeyVersionEnabled", False))
            if "activeKey" not in properties and existing is None:
                raise invalid_parameter("properties.activeKey is required.", "activeKey")
            if "activeKey" in properties:
                active = await self._active_key(call, properties["activeKey"])
                if existing is not None:
                    await self._check_usable(des, active["keyUrl"])
                self._switch_key(des, active, now)
            self._schedule(des, now)
            return self._accepted(call, des)

    async def update(self, call: Call) -> Response:
        body = await self._update_request(call, {"identity", "tags", "properties"}, "DiskEncryptionSetUpdate")
        properties = obj(body.get("properties"), "properties", "DiskEncryptionSetUpdateProperties")
        async with self.emulator.resource_lock(self.resource_id(call)):
            des = copy.deepcopy(self._find(call))
            now = self.emulator.store.now()
            if "tags" in body:
                des["tags"] = tags(body)
            if "identity" in body:
                des["identity"] = self.emulator.build_identity(body["identity"], des.get("identity"))
            if "encryptionType" in properties:
                des["encryptionType"] = self._encryption_type(properties, des.get("encryptionType"))
            if "rotationToLatestKeyVersionEnabled" in properties:
                des["rotationToLatestKeyVersionEnabled"] = bool(properties["rotationToLatestKeyVersionEnabled"])
            if "activeKey" in properties:
                active = await self._active_key(call, properties["activeKey"])
                await self._check_usable(des, active["keyUrl"])
                self._switch_key(des, active, now)
            self._schedule(des, now)
            return self._accepted(call, des)

    def _accepted(self, call: Call, des: dict[str, Any]) -> Response:
        """Store ``des`` as Updating and answer 202 with the Location clients poll (lock held)."""
        des["provisioningState"] = "Updating"
        self.resources()[des["id"].lower()] = des
        headers = self.emulator.start_operation(
            call, f"Microsoft.Compute/locations/{des['location']}/DiskOperations", des["id"], "des"
        )
        self.emulator.store.save()
        return Response(status_code=202, headers=headers)

    def _finish(self, operation: dict[str, Any], status: str) -> None:
        """The end of the operation ends the change of key (no previousKeys), polled or not."""
        self._operation_target(operation)["previousKeys"] = []
        super()._finish(operation, status)

    # -- keys -------------------------------------------------------------------------------

    @staticmethod
    def _encryption_type(properties: dict[str, Any], current: Any) -> str:
        value = properties.get("encryptionType", current or "EncryptionAtRestWithCustomerKey")
        if value not in _ENCRYPTION_TYPES:
            raise invalid_parameter(
                f"The value '{value}' of encryptionType is invalid. Valid values: {', '.join(_ENCRYPTION_TYPES)}.",
                "encryptionType",
            )
        return str(value)

    async def _active_key(self, call: Call, requested: Any) -> dict[str, Any]:
        """The validated ``activeKey``: a versioned key URL, and the vault it is in as ``sourceVault``."""
        active = obj(requested, "properties.activeKey", "KeyForDiskEncryptionSet")
        key_url = opt_str(active.get("keyUrl"), "properties.activeKey.keyUrl")
        if not key_url:
            raise invalid_parameter("properties.activeKey.keyUrl is required.", "activeKey.keyUrl")
        vault, ref = await cmk.parse_key(self.emulator, key_url, self.NOUN, "activeKey.keyUrl")
        if not ref.version:
            raise invalid_parameter(
                f"The key URL '{key_url}' has no version. A disk encryption set needs a fully versioned key URL "
                "(set rotationToLatestKeyVersionEnabled to follow newer versions).",
                "activeKey.keyUrl",
            )
        source = obj(active.get("sourceVault"), "properties.activeKey.sourceVault", "SourceVault")
        source_id = opt_str(source.get("id"), "properties.activeKey.sourceVault.id")
        if source_id and source_id.lower() != str(vault.get("arm_id", "")).lower():
            raise invalid_parameter(
                f"The key URL '{key_url}' is not in the key vault '{source_id}' named by sourceVault.",
                "activeKey.sourceVault.id",
            )
        if source_id and source_id.split("/")[2].lower() != call.params["sub"].lower():
            raise invalid_parameter(
                "sourceVault cannot be used when the key vault is in another subscription than the disk encryption "
                "set.",
                "activeKey.sourceVault.id",
            )
        result: dict[str, Any] = {"keyUrl": key_url}
        if source_id:
            result["sourceVault"] = {"id": source_id}
        return result

    def principal_for(self, des: dict[str, Any]) -> str:
        """The set's identity: system-assigned if it has one, else its (first) user-assigned identity."""
        identity = des.get("identity") or {}
        if identity.get("principalId"):
            return str(identity["principalId"])
        for entry in (identity.get("userAssignedIdentities") or {}).values():
            return str(entry["principalId"])
        raise invalid_parameter("The disk encryption set has no managed identity.", "identity")

    async def _check_usable(self, des: dict[str, Any], key_url: str) -> None:
        _, ref = await cmk.parse_key(self.emulator, key_url, self.NOUN, "activeKey.keyUrl")
        await cmk.check_key(self.emulator, ref, self.principal_for(des), self.NOUN, "activeKey.keyUrl")

    @staticmethod
    def _switch_key(des: dict[str, Any], active: dict[str, Any], now: float) -> None:
        old = des.get("activeKey")
        if old and old["keyUrl"].lower() != active["keyUrl"].lower():
            des["previousKeys"] = [old]
            des["lastKeyRotationTimestamp"] = now
        des["activeKey"] = active
        des.setdefault("lastKeyRotationTimestamp", now)

    @staticmethod
    def _schedule(des: dict[str, Any], now: float) -> None:
        if not des["rotationToLatestKeyVersionEnabled"]:
            des["next_check"] = None
        elif des.get("next_check") is None:
            des["next_check"] = now + cmk.AUTO_ROTATION_S

    async def auto_rotate(self, des: dict[str, Any], *, now_due: bool = False) -> bool:
        """With rotationToLatestKeyVersionEnabled, adopt the newest usable version when the check is due."""
        now = self.emulator.store.now()
        if des.get("next_check") is None or (not now_due and now < des["next_check"]):
            return False
        while des["next_check"] <= now:
            des["next_check"] += cmk.AUTO_ROTATION_S
        des["previousKeys"] = []  # the previous change finished before this check
        changed = False
        try:
            vault, ref = await self.emulator.kv.parse_key_id(des["activeKey"]["keyUrl"])
            latest = KeyRef(str(vault["url"]).rstrip("/"), ref.name)
            info = await self.emulator.kv.check_key(latest, self.principal_for(des))
            if info.kid.lower() != des["activeKey"]["keyUrl"].lower():
                self._switch_key(des, {**des["activeKey"], "keyUrl": info.kid}, now)
                changed = True
            des.pop("autoKeyRotationError", None)
        except KeyProblem as problem:
            # "If an error is present, then auto-key rotation will not be attempted until the error ... is fixed."
            des["autoKeyRotationError"] = {"code": cmk.code_of(problem), "message": problem.message}
        except errors.ArmError as error:
            des["autoKeyRotationError"] = {"code": error.code, "message": error.message}
        self.emulator.store.save()
        return changed

    def keys_in_use(self, des: dict[str, Any]) -> list[str]:
        return [des["activeKey"]["keyUrl"], *(k["keyUrl"] for k in des.get("previousKeys") or [])]

    # -- rendering --------------------------------------------------------------------------

    def render(self, des: dict[str, Any]) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "activeKey": copy.deepcopy(des["activeKey"]),
            "encryptionType": des["encryptionType"],
            "previousKeys": copy.deepcopy(des.get("previousKeys") or []),
            "provisioningState": des.get("provisioningState", "Succeeded"),
            "rotationToLatestKeyVersionEnabled": des["rotationToLatestKeyVersionEnabled"],
            "lastKeyRotationTimestamp": iso(des["lastKeyRotationTimestamp"]),
        }
        if des.get("autoKeyRotationError"):
            properties["autoKeyRotationError"] = des["autoKeyRotationError"]
        return self._tracked(des, properties=properties)
