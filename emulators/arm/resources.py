"""Microsoft.Resources/resourceGroups (PUT, GET, list) and Microsoft.KeyVault/vaults (read-only).

Vaults are mirrored from the Key Vault emulator's ``/admin/vaults`` so the rotation service's
planner can check soft delete and purge protection through ARM, as it does in Azure.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from emulators.arm import errors
from emulators.arm.core import Call, Emulator, arm_json, required_location, tags
from emulators.arm.keyvault import KeyProblem
from emulators.arm.state import LOCAL_TENANT_ID


class ResourcesProvider:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def _render_group(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": group["id"],
            "name": group["name"],
            "type": "Microsoft.Resources/resourceGroups",
            "location": group["location"],
            "tags": group.get("tags", {}),
            "properties": {"provisioningState": "Succeeded"},
        }

    async def get_group(self, call: Call) -> Response:
        group = await self.emulator.resource_group(call.params["sub"], call.params["rg"])
        return arm_json(self._render_group(group))

    async def put_group(self, call: Call) -> Response:
        body = call.json()
        location = required_location(body)
        async with self.emulator.write_lock:
            created = self.emulator.put_resource_group(call.params["sub"], call.params["rg"], location, tags(body))
        group = await self.emulator.resource_group(call.params["sub"], call.params["rg"])
        return arm_json(self._render_group(group), status=201 if created else 200)

    async def list_groups(self, call: Call) -> Response:
        prefix = f"/subscriptions/{call.params['sub']}/".lower()
        groups = [g for key, g in sorted(self.emulator.state.resource_groups.items()) if key.startswith(prefix)]
        return self.emulator.page(call, [self._render_group(g) for g in groups])

    # -- vaults -----------------------------------------------------------------------------

    async def _vaults(self) -> list[dict[str, Any]]:
        try:
            return await self.emulator.kv.vaults()
        except KeyProblem as problem:
            raise errors.ArmError(503, "ServiceUnavailable", problem.message) from None

    @staticmethod
    def render_vault(vault: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": vault["arm_id"],
            "name": vault["name"],
            "type": "Microsoft.KeyVault/vaults",
            "location": vault.get("location", "eastus"),
            "tags": {},
            "properties": {
                "sku": {"family": "A", "name": "standard"},
                "tenantId": LOCAL_TENANT_ID,
                "accessPolicies": [],
                "vaultUri": str(vault["url"]).rstrip("/") + "/",
                "enabledForDeployment": False,
                "enabledForDiskEncryption": False,
                "enabledForTemplateDeployment": False,
                "enableSoftDelete": bool(vault.get("enable_soft_delete", True)),
                "softDeleteRetentionInDays": int(vault.get("soft_delete_retention_days", 90)),
                "enableRbacAuthorization": True,
                "enablePurgeProtection": bool(vault.get("enable_purge_protection", False)),
                "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled",
            },
        }

    async def get_vault(self, call: Call) -> Response:
        await self.emulator.resource_group(call.params["sub"], call.params["rg"])
        wanted = (
            f"/subscriptions/{call.params['sub']}/resourceGroups/{call.params['rg']}"
            f"/providers/Microsoft.KeyVault/vaults/{call.params['name']}"
        ).lower()
        for vault in await self._vaults():
            if str(vault.get("arm_id", "")).lower() == wanted:
                return arm_json(self.render_vault(vault))
        raise errors.resource_not_found("Microsoft.KeyVault/vaults", call.params["name"], call.params["rg"])

    async def list_vaults(self, call: Call) -> Response:
        prefix = f"/subscriptions/{call.params['sub']}/".lower()
        if "rg" in call.params:
            await self.emulator.resource_group(call.params["sub"], call.params["rg"])
            prefix += f"resourcegroups/{call.params['rg']}/".lower()
        found = [v for v in await self._vaults() if str(v.get("arm_id", "")).lower().startswith(prefix)]
        return self.emulator.page(call, [self.render_vault(v) for v in found])
