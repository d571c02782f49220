"""Microsoft.ContainerRegistry/registries: create and update (LROs), get, list, delete; CMK encryption.

Wire shapes from azure-rest-api-specs
``specification/containerregistry/resource-manager/Microsoft.ContainerRegistry/Registry/stable/2025-11-01/containerregistry.json``
(``Registries_Create`` / ``Registries_Update``: 200, or 201 with ``Azure-AsyncOperation`` and
``Retry-After``; example ``RegistryUpdate.json`` shows the status monitor under
``.../registries/{name}/operationStatuses/registries-{id}``). ``properties.encryption`` is
``{status: enabled|disabled, keyVaultProperties: {keyIdentifier, identity (a client id),
versionedKeyIdentifier (RO), keyRotationEnabled (RO), lastKeyRotationTimestamp (RO)}}``.

Rules (learn.microsoft.com, container-registry-customer-managed-keys): CMK is a Premium feature;
encryption cannot be disabled once enabled; the key must be usable by the registry's identity (get,
wrapKey, unwrapKey); a key identifier *without* a version enables automatic rotation, checked on the
registry's own schedule (``cmk.AUTO_ROTATION_S``, driven by the emulator's clock), while a versioned
one stays until the key is changed by an update.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from starlette.responses import Response

from emulators.arm import cmk, errors
from emulators.arm.core import Call, arm_json, iso, obj, opt_str, required_location, tags
from emulators.arm.keyvault import KeyProblem, KeyRef

TYPE = "Microsoft.ContainerRegistry/registries"
_SKUS = {"basic": "Basic", "standard": "Standard", "premium": "Premium"}
_WRITABLE = ("adminUserEnabled", "publicNetworkAccess", "zoneRedundancy", "anonymousPullEnabled", "policies")


class RegistryProvider(cmk.KeyFollowingProvider):
    TYPE = TYPE
    NOUN = "container registry"
    NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")

    def resources(self) -> dict[str, dict[str, Any]]:
        return self.emulator.state.registries

    def invalid_name(self, name: str) -> errors.ArmError:
        return errors.ArmError(
            400,
            "RegistryNameInvalid",
            f"The registry name '{name}' is invalid: 5-50 alphanumeric characters.",
            target="registryName",
        )

    # -- operations -------------------------------------------------------------------------

    async def create(self, call: Call) -> Response:
        body, _group = await self._create_request(call)
        location = required_location(body)
        sku = obj(body.get("sku"), "sku", "Sku")
        if str(sku.get("name", "")).lower() not in _SKUS:
            raise errors.ArmError(
                400, "InvalidSku", f"The sku '{sku.get('name')}' is invalid. Valid values: Basic, Standard, Premium."
            )
        properties = obj(body.get("properties"), "properties", "RegistryProperties")
        key = self.resource_id(call).lower()
        async with self.emulator.write_lock, self.emulator.resource_lock(key):
            existing = self.resources().get(key)
            now = self.emulator.store.now()
            registry = self._draft(call, existing, location, creationDate=now, cmk=None)
            registry["sku"] = {"name": _SKUS[sku["name"].lower()], "tier": _SKUS[sku["name"].lower()]}
            registry["tags"] = tags(body)
            registry["identity"] = self.emulator.build_identity(body.get("identity"), registry.get("identity"))
            registry["properties"] = {k: properties[k] for k in _WRITABLE if k in properties}
            if "encryption" in properties:
                await self._apply_encryption(registry, properties["encryption"], now)
            return self._accepted(call, registry, 201 if existing is None else 200)

    async def update(self, call: Call) -> Response:
        body = await self._update_request(call, {"identity", "tags", "sku", "properties"}, "RegistryUpdateParameters")
        properties = obj(body.get("properties"), "properties", "RegistryPropertiesUpdateParameters")
        async with self.emulator.resource_lock(self.resource_id(call)):
            registry = copy.deepcopy(self._find(call))
            now = self.emulator.store.now()
            if "tags" in body:
                registry["tags"] = tags(body)
            if body.get("sku"):
                sku = obj(body["sku"], "sku", "Sku")
                if str(sku.get("name", "")).lower() not in _SKUS:
                    raise errors.ArmError(400, "InvalidSku", f"The sku '{sku.get('name')}' is invalid.")
                registry["sku"] = {"name": _SKUS[sku["name"].lower()], "tier": _SKUS[sku["name"].lower()]}
            if "identity" in body:
                registry["identity"] = self.emulator.build_identity(body["identity"], registry.get("identity"))
            for name in _WRITABLE:
                if name in properties:
                    registry["properties"][name] = properties[name]
            if "encryption" in properties:
                await self._apply_encryption(registry, properties["encryption"], now)
            elif registry.get("cmk"):
                # The identity the key is used through must stay assigned (the troubleshooting section of
                # the CMK article: removing it is refused).
                cmk.identity_principal(self.emulator, registry.get("identity"), registry["encryption"].get("identity"))
            return self._accepted(call, registry, 201)

    def _accepted(self, call: Call, registry: dict[str, Any], status: int) -> Response:
        """Store ``registry`` and answer ``status``; 201 carries the Azure-AsyncOperation monitor (lock held)."""
        if status == 201:
            registry["provisioningState"] = "Creating" if call.method == "PUT" else "Updating"
        else:
            registry["provisioningState"] = "Succeeded"
        self.resources()[self.resource_id(call).lower()] = registry
        headers: dict[str, str] = {}
        if status == 201:
            op_id = f"registries-{uuid.uuid4()}"
            settings = self.emulator.state.lro
            self.emulator.state.operations[op_id] = {
                "resource_id": registry["id"].lower(),
                "kind": "acr",
                "api_version": call.api_version,
                "polls_remaining": max(1, int(settings.polls_until_done)),
                "deadline": self.emulator.operation_deadline(),
            }
            headers = {
                "Azure-AsyncOperation": f"{call.base_url}{registry['id']}/operationStatuses/{op_id}"
                f"?api-version={call.api_version}",
                "Retry-After": str(int(settings.retry_after_s)),
            }
        self.emulator.store.save()
        return arm_json(self.render(registry), status=status, headers=headers)

    async def operation_status(self, call: Call) -> Response:
        """The Azure-AsyncOperation monitor: always HTTP 200, ``status`` InProgress until done (RPC async API)."""
        op_id = call.params["op"]
        done, operation = self.emulator.poll_operation(op_id)
        body: dict[str, Any] = {"id": f"{call.path}", "name": op_id, "status": "InProgress"}
        if done:
            if operation["resource_id"] in self.resources():
                self._finish(operation, "Succeeded")
            body["status"] = "Succeeded"
        return arm_json(body)

    # -- encryption -------------------------------------------------------------------------

    async def _apply_encryption(self, registry: dict[str, Any], requested: Any, now: float) -> None:
        target = "properties.encryption"
        encryption = obj(requested, target, "EncryptionProperty")
        status = str(encryption.get("status") or "").lower()
        kvp = obj(encryption.get("keyVaultProperties"), f"{target}.keyVaultProperties", "KeyVaultProperties")
        for field in ("keyIdentifier", "identity"):
            opt_str(kvp.get(field), f"{target}.keyVaultProperties.{field}")
        if status not in ("enabled", "disabled"):
            raise errors.ArmError(
                400, "InvalidEncryptionStatus", "encryption.status must be 'enabled' or 'disabled'.", target=target
            )
        if status == "disabled":
            if registry.get("cmk"):
                raise errors.ArmError(
                    400,
                    "EncryptionCannotBeDisabled",
                    "Encryption with a customer-managed key cannot be disabled once enabled.",
                    target=target,
                )
            registry["encryption"] = {"status": "disabled"}
            return
        if registry["sku"]["name"] != "Premium":
            raise errors.ArmError(
                400,
                "CMKNotSupportedForSku",
                "Encryption with a customer-managed key is available in the Premium service tier only.",
                target=target,
            )
        key_id = kvp.get("keyIdentifier")
        if not key_id:
            raise errors.ArmError(
                400, "KeyIdentifierRequired", "encryption.keyVaultProperties.keyIdentifier is required.", target=target
            )
        identity_ref = kvp.get("identity") or (registry.get("encryption") or {}).get("identity")
        principal = cmk.identity_principal(self.emulator, registry.get("identity"), identity_ref)
        key_target = f"{target}.keyVaultProperties.keyIdentifier"
        _, ref = await cmk.parse_key(self.emulator, key_id, self.NOUN, key_target)
        info = await cmk.check_key(self.emulator, ref, principal, self.NOUN, key_target)
        registry["encryption"] = {"status": "enabled", "keyIdentifier": key_id, "identity": identity_ref}
        state = registry.get("cmk") or {}
        if state.get("current_kid") != info.kid:
            state["last_rotation"] = now
        state["current_kid"] = info.kid
        state["next_check"] = now + cmk.AUTO_ROTATION_S if not ref.version else None
        registry["cmk"] = state

    def principal_for(self, registry: dict[str, Any]) -> str:
        return cmk.identity_principal(
            self.emulator, registry.get("identity"), (registry.get("encryption") or {}).get("identity")
        )

    async def auto_rotate(self, registry: dict[str, Any], *, now_due: bool = False) -> bool:
        """Adopt the newest usable version of a versionless key when its hourly check is due (or forced)."""
        state = registry.get("cmk")
        now = self.emulator.store.now()
        if not state or state.get("next_check") is None or (not now_due and now < state["next_check"]):
            return False
        check_time = min(now, state["next_check"]) if not now_due else now
        while state["next_check"] <= now:
            state["next_check"] += cmk.AUTO_ROTATION_S
        changed = False
        try:
            vault, ref = await self.emulator.kv.parse_key_id(registry["encryption"]["keyIdentifier"])
            info = await self.emulator.kv.check_key(
                KeyRef(str(vault["url"]).rstrip("/"), ref.name), self.principal_for(registry)
            )
            if info.kid != state["current_kid"]:
                state["current_kid"], state["last_rotation"] = info.kid, check_time
                changed = True
        except (KeyProblem, errors.ArmError):
            pass  # the registry keeps the version it has; access is judged separately
        self.emulator.store.save()
        return changed

    def keys_in_use(self, registry: dict[str, Any]) -> list[str]:
        state = registry.get("cmk")
        return [state["current_kid"]] if state else []

    # -- rendering --------------------------------------------------------------------------

    def render(self, registry: dict[str, Any]) -> dict[str, Any]:
        stored = registry["properties"]
        encryption: dict[str, Any] = {"status": "disabled"}
        state = registry.get("cmk")
        if state:
            chosen = registry["encryption"]
            kvp: dict[str, Any] = {
                "keyIdentifier": chosen["keyIdentifier"],
                "versionedKeyIdentifier": state["current_kid"],
                "keyRotationEnabled": state.get("next_check") is not None,
                "lastKeyRotationTimestamp": iso(state["last_rotation"]),
            }
            if chosen.get("identity"):
                kvp["identity"] = chosen["identity"]
            encryption = {"status": "enabled", "keyVaultProperties": kvp}
        properties: dict[str, Any] = {
            "loginServer": f"{registry['name'].lower()}.azurecr.io",
            "creationDate": iso(registry["creationDate"]),
            "provisioningState": registry.get("provisioningState", "Succeeded"),
            "adminUserEnabled": stored.get("adminUserEnabled", False),
            "publicNetworkAccess": stored.get("publicNetworkAccess", "Enabled"),
            "zoneRedundancy": stored.get("zoneRedundancy", "Disabled"),
            "anonymousPullEnabled": stored.get("anonymousPullEnabled", False),
            "encryption": encryption,
            "dataEndpointEnabled": False,
            "dataEndpointHostNames": [],
            "privateEndpointConnections": [],
            "networkRuleBypassOptions": "AzureServices",
        }
        if "policies" in stored:
            properties["policies"] = stored["policies"]
        return self._tracked(registry, sku=registry["sku"], properties=properties)
