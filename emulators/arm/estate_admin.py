"""Admin routes for the wider estate: generic resources, key access and auto-rotation of container
registries and disk encryption sets, and the Resource Graph quota.

``POST /admin/generic-resources`` seeds a resource of a type the emulator does not model (e.g. a
Cosmos DB account whose ``properties.keyVaultKeyUri`` names a key) in any subscription; Resource
Graph returns it like any other resource. Deleting it is how a test "resolves" such a reference.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulators.arm import errors
from emulators.arm.cmk import KeyFollowingProvider
from emulators.arm.core import Emulator
from emulators.arm.disk_encryption_sets import DiskEncryptionSetProvider
from emulators.arm.registries import RegistryProvider

Handler = Callable[[Request, Any], Awaitable[Response]]
_ID = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[^/]+)/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)"
    r"/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


def _bad(message: str) -> errors.ArmError:
    return errors.ArmError(400, "InvalidAdminRequest", message)


class EstateAdmin:
    def __init__(
        self, emulator: Emulator, registries: RegistryProvider, disk_encryption_sets: DiskEncryptionSetProvider
    ) -> None:
        self.emulator = emulator
        self.registries = registries
        self.disk_encryption_sets = disk_encryption_sets

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "/admin/generic-resources"): self._list_generic,
            ("POST", "/admin/generic-resources"): self._put_generic,
            ("DELETE", "/admin/generic-resources"): self._delete_generic,
            ("GET", "/admin/key-access"): self._key_access,
            ("POST", "/admin/auto-rotate"): self._auto_rotate,
            ("GET", "/admin/resource-graph"): self._get_graph,
            ("PUT", "/admin/resource-graph"): self._put_graph,
        }

    # -- generic resources ------------------------------------------------------------------

    async def _list_generic(self, _request: Request, _body: Any) -> Response:
        return JSONResponse({"value": [r for _, r in sorted(self.emulator.state.generic_resources.items())]})

    async def _put_generic(self, _request: Request, body: dict[str, Any]) -> Response:
        resource_id = body.get("id")
        match = _ID.match(str(resource_id or ""))
        if match is None:
            raise _bad('"id" must be /subscriptions/<guid>/resourceGroups/<group>/providers/<ns>/<type>/<name>')
        resource_type = f"{match['ns']}/{match['type']}"
        if body.get("type") and str(body["type"]).lower() != resource_type.lower():
            raise _bad(f'"type" {body["type"]!r} does not match the id\'s type {resource_type!r}')
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise _bad('"properties" must be an object')
        resource = {
            "id": resource_id,
            "name": match["name"],
            "type": body.get("type") or resource_type,
            "location": str(body.get("location") or "eastus"),
            "kind": str(body.get("kind") or ""),
            "tags": dict(body.get("tags") or {}),
            "properties": properties,
        }
        if body.get("identity"):
            resource["identity"] = body["identity"]
        async with self.emulator.write_lock:
            self.emulator.state.generic_resources[str(resource_id).lower()] = resource
        return JSONResponse(resource, status_code=201)

    async def _delete_generic(self, request: Request, _body: Any) -> Response:
        resource_id = request.query_params.get("id", "")
        async with self.emulator.write_lock:
            removed = self.emulator.state.generic_resources.pop(resource_id.lower(), None)
        if removed is None:
            raise errors.ArmError(404, "ResourceNotFound", f"no generic resource {resource_id!r}")
        return JSONResponse({}, status_code=200)

    # -- registries and disk encryption sets --------------------------------------------------

    def _owner(self, resource_id: str) -> tuple[KeyFollowingProvider, dict[str, Any]]:
        for provider in (self.registries, self.disk_encryption_sets):
            found = provider.resources().get(resource_id.lower())
            if found is not None:
                return provider, found
        raise errors.ArmError(404, "ResourceNotFound", f"no container registry or disk encryption set {resource_id!r}")

    async def _key_access(self, request: Request, _body: Any) -> Response:
        """``{"accessible", "reason", "keys_in_use"}``: judged live, as the resource's identity."""
        provider, resource = self._owner(request.query_params.get("id", ""))
        async with self.emulator.write_lock:
            return JSONResponse(await provider.access(resource))

    async def _auto_rotate(self, _request: Request, body: dict[str, Any]) -> Response:
        """Run the resource's automatic key-version check now, as if its hourly schedule came round."""
        provider, resource = self._owner(str(body.get("id") or ""))
        async with self.emulator.write_lock:
            changed = await provider.auto_rotate(resource, now_due=True)
        return JSONResponse({"changed": changed, "resource": provider.render(resource)})

    # -- Resource Graph quota -----------------------------------------------------------------

    async def _get_graph(self, _request: Request, _body: Any) -> Response:
        return JSONResponse(dict(self.emulator.state.graph_quota))

    async def _put_graph(self, request: Request, body: dict[str, Any]) -> Response:
        queries, window = body.get("queries", 15), body.get("window_s", 5)
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
            raise _bad("queries must be a positive integer")
        if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
            raise _bad("window_s must be a positive number of seconds")
        self.emulator.state.graph_quota = {"queries": queries, "window_s": float(window)}
        return await self._get_graph(request, None)
