"""Microsoft.MachineLearningServices/workspaces: create (LRO), get, list, delete, update (LRO PATCH).

After creation the only encryption field that may change is
``encryption.keyVaultProperties.keyIdentifier``, and only to a key in the workspace's original
vault that the workspace's identity can use. api-version 2020-08-01 cannot express that update;
a 2020-08-01 PATCH carrying ``encryption`` is refused, never silently dropped.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from starlette.responses import Response

from emulators.arm import errors
from emulators.arm.core import Call, arm_json, iso, obj, opt_str, required_location, tags
from emulators.arm.keyvault import KeyProblem, KeyVaultOutage
from emulators.arm.provider import ResourceProvider
from emulators.arm.versions import ML_LEGACY

TYPE = "Microsoft.MachineLearningServices/workspaces"
_UPDATABLE = {
    "description",
    "friendlyName",
    "imageBuildCompute",
    "primaryUserAssignedIdentity",
    "publicNetworkAccess",
    "applicationInsights",
    "containerRegistry",
    "encryption",
    "enableDataIsolation",
    "v1LegacyMode",
    "softDeleteRetentionInDays",
    "allowRoleAssignmentOnRG",
    "systemDatastoresAuthMode",
    "enableSoftwareBillOfMaterials",
    "serverlessComputeSettings",
    "managedNetwork",
    "featureStoreSettings",
    "serviceManagedResourcesSettings",
    "ipAllowlist",
}
_UPDATABLE_LEGACY = {"description", "friendlyName"}


def user_error(message: str, inner_code: str) -> errors.ArmError:
    """The Machine Learning resource provider's error shape: code UserError, a BadArgument inner error."""
    return errors.ArmError(
        400, "UserError", message, details=[], inner={"code": "BadArgument", "innerError": {"code": inner_code}}
    )


class MlProvider(ResourceProvider):
    TYPE = TYPE
    NOUN = "workspace"
    NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")

    @property
    def workspaces(self) -> dict[str, dict[str, Any]]:
        return self.emulator.state.workspaces

    def resources(self) -> dict[str, dict[str, Any]]:
        return self.workspaces

    def invalid_name(self, name: str) -> errors.ArmError:
        return user_error(
            f"Workspace name '{name}' is invalid: 3-33 characters, letters, digits, '-' and '_', starting with a "
            "letter or digit.",
            "InvalidWorkspaceName",
        )

    async def create(self, call: Call) -> Response:
        body, _group = await self._create_request(call)
        location = required_location(body)
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise errors.invalid_request_content(
                "Error converting value to type 'WorkspaceProperties'. Path 'properties'"
            )
        key = self.resource_id(call).lower()
        async with self.emulator.write_lock, self.emulator.resource_lock(key):
            existing = self.workspaces.get(key)
            identity = self.emulator.build_identity(body.get("identity"), (existing or {}).get("identity"))
            encryption = properties.get("encryption")
            if existing is not None:
                if encryption is not None and _normalised(encryption) != _normalised(
                    existing["properties"].get("encryption")
                ):
                    raise user_error(
                        "The encryption settings of an existing workspace cannot be changed by PUT; update "
                        "encryption.keyVaultProperties.keyIdentifier with PATCH.",
                        "EncryptionUpdateNotSupported",
                    )
            elif encryption is not None:
                await self._validate_new_encryption(call, encryption, identity)
            workspace = self._draft(
                call, existing, location, workspaceId=str(uuid.uuid4()), creationTime=self.emulator.store.now()
            )
            workspace["identity"] = identity
            workspace["tags"] = tags(body)
            workspace["sku"] = (
                obj(body.get("sku"), "sku", "Sku") or (existing or {}).get("sku") or {"name": "Basic", "tier": "Basic"}
            )
            kept = dict((existing or {}).get("properties", {}))
            kept.update({k: v for k, v in properties.items() if k != "encryption"})
            if existing is None and encryption is not None:
                kept["encryption"] = _stored_encryption(encryption)
            workspace["properties"] = kept
            workspace["provisioningState"] = "Creating" if existing is None else "Updating"
            return self._accepted(call, workspace, location)

    async def update(self, call: Call) -> Response:
        body = await self._update_request(call, {"tags", "sku", "identity", "properties"}, "WorkspaceUpdateParameters")
        legacy = call.api_version == ML_LEGACY
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise errors.invalid_request_content(
                "Error converting value to type 'WorkspacePropertiesUpdateParameters'. Path 'properties'"
            )
        allowed = _UPDATABLE_LEGACY if legacy else _UPDATABLE
        not_updatable = sorted(set(properties) - allowed)
        if not_updatable:
            if legacy and "encryption" in not_updatable:
                raise user_error(
                    f"api-version {ML_LEGACY} cannot update 'properties.encryption': WorkspaceUpdateParameters of this "
                    "api-version has no encryption. Use api-version 2025-06-01 or later.",
                    "PropertyNotSupportedInApiVersion",
                )
            raise user_error(
                f"The properties {not_updatable} cannot be updated with api-version {call.api_version}.",
                "PropertyNotUpdatable",
            )
        if legacy and "identity" in body:
            raise user_error(f"api-version {ML_LEGACY} cannot update the workspace identity.", "PropertyNotUpdatable")
        async with self.emulator.resource_lock(self.resource_id(call)):
            before = self._find(call)
            workspace = copy.deepcopy(before)
            if "encryption" in properties:
                try:
                    await self._validate_key_update(workspace, properties["encryption"])
                except _OutageInOperation as outage:
                    # Accepted, then the operation fails: the workspace keeps its settings.
                    kept = {**copy.deepcopy(before), "provisioningState": "Updating"}
                    return self._accepted(call, kept, before["location"], "async-failed", outage.error)
                workspace["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"] = properties["encryption"][
                    "keyVaultProperties"
                ]["keyIdentifier"]
            for name, value in properties.items():
                if name != "encryption":
                    workspace["properties"][name] = value
            if "tags" in body:
                workspace["tags"] = tags(body)
            if body.get("sku"):
                workspace["sku"] = obj(body["sku"], "sku", "Sku")
            if "identity" in body:
                workspace["identity"] = self.emulator.build_identity(body["identity"], workspace.get("identity"))
            key = self.resource_id(call).lower()
            if legacy:
                workspace["provisioningState"] = "Succeeded"
                self.workspaces[key] = workspace
                self.emulator.store.save()
                return arm_json(self.render(workspace))
            mode = self.emulator.state.lro.ml_update
            if mode == "sync":
                # Workspaces_Update may answer 200 with the workspace (workspaceRP.json 2025-06-01).
                workspace["provisioningState"] = "Succeeded"
                self.workspaces[key] = workspace
                self.emulator.store.save()
                return arm_json(self.render(workspace))
            if mode in ("async-failed", "async-canceled"):
                # The operation will end Failed/Canceled: nothing the PATCH asked for is kept, unless the mode
                # ml_update_failed_keeps is "requested" (the RPC's revert is a "should ... if that best represents").
                requested = self.emulator.state.lro.ml_update_failed_keeps == "requested"
                kept = {**copy.deepcopy(workspace if requested else before), "provisioningState": "Updating"}
                return self._accepted(call, kept, workspace["location"], mode)
            workspace["provisioningState"] = "Updating"
            if self.emulator.state.lro.ml_update_applies == "completed":
                # A mode (what a GET shows during Azure ML's update is not documented): the workspace keeps
                # its settings until the operation ends Succeeded.
                kept = {**copy.deepcopy(before), "provisioningState": "Updating"}
                return self._accepted(call, kept, workspace["location"], mode, applies=workspace)
            return self._accepted(call, workspace, workspace["location"], mode)

    def _accepted(
        self,
        call: Call,
        workspace: dict[str, Any],
        location: str,
        mode: str = "location",
        error: dict[str, Any] | None = None,
        *,
        applies: dict[str, Any] | None = None,
    ) -> Response:
        """Store the workspace and answer 202 with the URL clients poll (write lock held).

        ``mode`` is one of ``state.ML_UPDATE_MODES`` except ``sync``: how the operation is polled and ends;
        ``applies``: the workspace as the operation leaves it when it ends Succeeded (``ml_update_applies``).
        """
        self.workspaces[self.resource_id(call).lower()] = workspace
        headers = self.emulator.start_operation(
            call,
            f"Microsoft.MachineLearningServices/locations/{location}/workspaceOperationsStatus",
            workspace["id"],
            "ml",
            mode=mode,
            error=error,
            applies=applies,
        )
        self.emulator.store.save()
        return Response(status_code=202, headers=headers)

    # -- encryption -------------------------------------------------------------------------

    async def _validate_new_encryption(self, call: Call, encryption: Any, identity: dict[str, Any] | None) -> None:
        if not isinstance(encryption, dict):
            raise errors.invalid_request_content(
                "Error converting value to type 'EncryptionProperty'. Path 'properties.encryption'"
            )
        status = encryption.get("status")
        if status not in ("Enabled", "Disabled"):
            raise user_error(
                f"encryption.status must be 'Enabled' or 'Disabled', not {status!r}.", "InvalidEncryptionStatus"
            )
        identity_block = obj(encryption.get("identity"), "properties.encryption.identity", "IdentityForCmk")
        opt_str(identity_block.get("userAssignedIdentity"), "properties.encryption.identity.userAssignedIdentity")
        kvp = obj(
            encryption.get("keyVaultProperties"), "properties.encryption.keyVaultProperties", "KeyVaultProperties"
        )
        for field in ("keyVaultArmId", "keyIdentifier", "identityClientId"):
            opt_str(kvp.get(field), f"properties.encryption.keyVaultProperties.{field}")
        if not kvp.get("keyVaultArmId") or not kvp.get("keyIdentifier"):
            raise user_error(
                "encryption.keyVaultProperties.keyVaultArmId and keyIdentifier are required.",
                "MissingKeyVaultProperties",
            )
        if status == "Disabled":
            return
        vault = await self._vault_by_arm_id(kvp["keyVaultArmId"])
        if str(vault.get("subscription_id", "")).lower() != call.params["sub"].lower():
            raise user_error(
                "The key vault must be in the same subscription as the workspace.", "KeyVaultInDifferentSubscription"
            )
        if not (vault.get("enable_soft_delete") and vault.get("enable_purge_protection")):
            raise user_error(
                f"The key vault '{vault.get('name')}' must have soft delete and purge protection enabled.",
                "KeyVaultSoftDeleteOrPurgeProtectionDisabled",
            )
        principal = self._principal(identity, encryption)
        await self._check_key_in_vault(vault, str(kvp["keyIdentifier"]), principal)

    async def _validate_key_update(self, workspace: dict[str, Any], update: Any) -> None:
        shape_error = user_error(
            "Only encryption.keyVaultProperties.keyIdentifier can be updated after workspace creation.",
            "EncryptionPropertyNotUpdatable",
        )
        if not isinstance(update, dict) or set(update) != {"keyVaultProperties"}:
            raise shape_error
        kvp = update["keyVaultProperties"]
        if not isinstance(kvp, dict) or set(kvp) != {"keyIdentifier"}:
            raise shape_error
        key_identifier = kvp["keyIdentifier"]
        if not isinstance(key_identifier, str) or not key_identifier:
            raise user_error(
                "encryption.keyVaultProperties.keyIdentifier must be a non-empty string.", "InvalidKeyIdentifier"
            )
        current = workspace["properties"].get("encryption")
        if not current or current.get("status") != "Enabled":
            raise user_error(
                "Customer-managed key encryption can only be configured when the workspace is created.",
                "EncryptionNotEnabled",
            )
        vault = await self._vault_by_arm_id(current["keyVaultProperties"]["keyVaultArmId"])
        principal = self._principal(workspace.get("identity"), current)
        await self._check_key_in_vault(vault, key_identifier, principal)

    async def _check_key_in_vault(self, vault: dict[str, Any], key_identifier: str, principal: str) -> None:
        try:
            key_vault, ref = await self.emulator.kv.parse_key_id(key_identifier)
        except KeyProblem:
            key_vault, ref = None, None
        if (
            key_vault is None
            or ref is None
            or str(key_vault.get("arm_id", "")).lower() != str(vault.get("arm_id", "")).lower()
        ):
            raise user_error(
                f"The key '{key_identifier}' is not in the key vault '{vault.get('arm_id')}'. After workspace "
                "creation, the customer-managed key can only be updated to another key in the original Azure Key "
                "Vault resource.",
                "KeyNotInOriginalKeyVault",
            )
        try:
            await self.emulator.consumer_key_check("ml", ref, principal)
        except KeyVaultOutage as outage:
            raise _outage_error(outage, key_identifier) from None
        except KeyProblem as problem:
            raise user_error(
                f"The workspace identity cannot use the key '{key_identifier}': {problem.message}",
                f"KeyVault{problem.kind}",
            ) from None

    async def _vault_by_arm_id(self, arm_id: str) -> dict[str, Any]:
        try:
            vault = await self.emulator.kv.vault_by_arm_id(arm_id)
        except KeyProblem as problem:
            raise user_error(problem.message, "KeyVaultUnavailable") from None
        if vault is None:
            raise user_error(f"The key vault '{arm_id}' could not be found.", "KeyVaultNotFound")
        return vault

    def _principal(self, identity: dict[str, Any] | None, encryption: dict[str, Any]) -> str:
        """The identity ML uses for the key: encryption identity, identityClientId's identity, else system."""
        uai = (encryption.get("identity") or {}).get("userAssignedIdentity")
        if uai:
            entry = self.emulator.user_identity_entry(identity, uai)
            if entry is None:
                raise user_error(f"The identity '{uai}' is not assigned to the workspace.", "IdentityNotAssigned")
            return entry["principalId"]
        client_id = (encryption.get("keyVaultProperties") or {}).get("identityClientId")
        if client_id:
            for entry in ((identity or {}).get("userAssignedIdentities") or {}).values():
                if str(entry.get("clientId", "")).lower() == str(client_id).lower():
                    return str(entry["principalId"])
            raise user_error(
                f"No identity with client id '{client_id}' is assigned to the workspace.", "IdentityNotAssigned"
            )
        if identity and identity.get("principalId"):
            return str(identity["principalId"])
        raise user_error("The workspace has no managed identity to access the key vault.", "IdentityRequired")

    # -- rendering --------------------------------------------------------------------------

    def render(self, workspace: dict[str, Any]) -> dict[str, Any]:
        stored = workspace["properties"]
        properties: dict[str, Any] = {
            key: value for key, value in stored.items() if key not in ("encryption", "provisioningState")
        }
        properties.update(
            {
                "provisioningState": workspace.get("provisioningState", "Succeeded"),
                "workspaceId": workspace["workspaceId"],
                "creationTime": iso(workspace["creationTime"]),
                "discoveryUrl": f"https://{workspace['location']}.api.azureml.ms/discovery",
                "hbiWorkspace": stored.get("hbiWorkspace", False),
                "publicNetworkAccess": stored.get("publicNetworkAccess", "Enabled"),
                "allowPublicAccessWhenBehindVnet": stored.get("allowPublicAccessWhenBehindVnet", False),
                "enableDataIsolation": stored.get("enableDataIsolation", False),
            }
        )
        if stored.get("encryption"):
            properties["encryption"] = copy.deepcopy(stored["encryption"])
        return self._tracked(workspace, sku=workspace.get("sku"), properties=properties)


class _OutageInOperation(errors.ArmError):
    """The key check failed in an outage whose failure is reported by the operation, not the PATCH."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(400, str(error["code"]), str(error["message"]))
        self.error = error


def _outage_error(outage: KeyVaultOutage, key_identifier: str) -> errors.ArmError:
    """The ML provider's answer when it cannot reach Key Vault to check a key (a mode: no capture was found).

    Same shape as its other key refusals (``UserError`` with the reason as the innermost code), with the
    configured HTTP status; with ``ml_delivery: operation`` the PATCH is accepted and its operation fails.
    """
    message = f"The workspace identity could not check the key '{key_identifier}': {outage.message}"
    if outage.delivery == "operation":
        return _OutageInOperation(
            {"code": "UserError", "message": message, "details": [{"code": "KeyVaultUnavailable", "message": message}]}
        )
    error = user_error(message, "KeyVaultUnavailable")
    error.status = outage.status
    return error


def _stored_encryption(encryption: dict[str, Any]) -> dict[str, Any]:
    kvp = encryption["keyVaultProperties"]
    stored: dict[str, Any] = {
        "status": encryption["status"],
        "keyVaultProperties": {
            "keyVaultArmId": kvp["keyVaultArmId"],
            "keyIdentifier": kvp["keyIdentifier"],
            "identityClientId": kvp.get("identityClientId") or "",
        },
    }
    if encryption.get("identity"):
        stored["identity"] = dict(encryption["identity"])
    return stored


def _normalised(encryption: Any) -> Any:
    if not isinstance(encryption, dict) or "keyVaultProperties" not in encryption:
        return encryption
    try:
        return _stored_encryption(encryption)
    except (KeyError, TypeError):
        return encryption
