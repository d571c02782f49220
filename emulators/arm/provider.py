"""What the emulator's resource providers (storage accounts, ML workspaces, registries, ...) do alike.

A resource is a dict kept in ``State`` under its lower-cased ARM id. A provider looks one up from the
call's path, lists them by resource group or subscription, deletes one, and answers the polls of its
long-running creates and updates; its create and update start with the same checks (below).
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

from starlette.responses import Response

from emulators.arm import errors
from emulators.arm.core import Call, Emulator, arm_json, iso

#: How an operation of each outcome mode ends (``state.ML_UPDATE_MODES``); any other ends ``Succeeded``.
_ENDS = {"async-failed": "Failed", "async-canceled": "Canceled"}


class ResourceProvider:
    #: The ARM resource type, e.g. ``Microsoft.Storage/storageAccounts``.
    TYPE: ClassVar[str]
    #: How a resource is named in messages, e.g. ``storage account``.
    NOUN: ClassVar[str]
    #: The names the type allows (checked on create).
    NAME: ClassVar[re.Pattern[str]]

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def resources(self) -> dict[str, dict[str, Any]]:
        """This type's resources by lower-cased ARM id."""
        raise NotImplementedError

    def resource_id(self, call: Call) -> str:
        """The ARM id the call's path names."""
        p = call.params
        return f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}/providers/{self.TYPE}/{p['name']}"

    def render(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The resource as ARM returns it."""
        raise NotImplementedError

    def _tracked(self, resource: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """The envelope of a tracked resource as ARM renders it: id, name, type, location, tags, then the
        type's ``fields`` (sku, properties, ...), and the managed identity when it has one."""
        body: dict[str, Any] = {
            "id": resource["id"],
            "name": resource["name"],
            "type": self.TYPE,
            "location": resource["location"],
            "tags": resource.get("tags", {}),
            **fields,
        }
        if resource.get("identity"):
            body["identity"] = resource["identity"]
        return body

    async def refresh(self, resource: dict[str, Any]) -> None:
        """Bring a resource up to date with the emulator's clock before it is read (nothing by default)."""

    def invalid_name(self, name: str) -> errors.ArmError:
        """The resource provider's refusal of a name that ``NAME`` does not match."""
        raise NotImplementedError

    async def create(self, call: Call) -> Response:
        """PUT: create the resource or replace it."""
        raise NotImplementedError

    async def update(self, call: Call) -> Response:
        """PATCH: change some of the resource's properties."""
        raise NotImplementedError

    # -- what a create and an update check first ---------------------------------------------

    async def _create_request(self, call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
        """A create's body and resource group, once the body parses, the name is one the type allows and
        the group exists (in that order)."""
        body = call.json()
        name = call.params["name"]
        if not self.NAME.match(name):
            raise self.invalid_name(name)
        group = await self.emulator.resource_group(call.params["sub"], call.params["rg"])
        return body, group

    def _draft(self, call: Call, existing: dict[str, Any] | None, location: str, **fresh: Any) -> dict[str, Any]:
        """What a create changes (write lock held): a copy of the resource it replaces, or a new resource with
        its id, name, location and ``fresh`` fields."""
        if existing:
            return copy.deepcopy(existing)
        return {"id": self.resource_id(call), "name": call.params["name"], "location": location, **fresh}

    async def _update_request(self, call: Call, members: set[str], type_name: str) -> dict[str, Any]:
        """An update's body, once it parses, the group exists and it names only ``members`` of ``type_name``
        (ARM's deserialiser refuses an unknown member)."""
        body = call.json()
        await self.emulator.resource_group(call.params["sub"], call.params["rg"])
        unknown = set(body) - members
        if unknown:
            raise errors.invalid_request_content(
                f"Could not find member '{sorted(unknown)[0]}' on object of type '{type_name}'"
            )
        return body

    def _find(self, call: Call) -> dict[str, Any]:
        resource = self.resources().get(self.resource_id(call).lower())
        if resource is None:
            raise errors.resource_not_found(self.TYPE, call.params["name"], call.params["rg"])
        return resource

    async def get(self, call: Call) -> Response:
        await self.emulator.resource_group(call.params["sub"], call.params["rg"])
        resource = self._find(call)
        self._end_unpolled(resource)
        await self.refresh(resource)
        return arm_json(self.render(resource))

    async def list_by_resource_group(self, call: Call) -> Response:
        await self.emulator.resource_group(call.params["sub"], call.params["rg"])
        prefix = f"/subscriptions/{call.params['sub']}/resourcegroups/{call.params['rg']}/".lower()
        return await self._list(call, prefix)

    async def list(self, call: Call) -> Response:
        return await self._list(call, f"/subscriptions/{call.params['sub']}/".lower())

    async def _list(self, call: Call, prefix: str) -> Response:
        found = [r for key, r in sorted(self.resources().items()) if key.startswith(prefix)]
        for resource in found:
            self._end_unpolled(resource)
            await self.refresh(resource)
        return self.emulator.page(call, [self.render(r) for r in found])

    async def delete(self, call: Call) -> Response:
        await self.emulator.resource_group(call.params["sub"], call.params["rg"])
        async with self.emulator.write_lock, self.emulator.resource_lock(self.resource_id(call)):
            removed = self.resources().pop(self.resource_id(call).lower(), None)
            self.emulator.store.save()
        return Response(status_code=200 if removed else 204)

    async def operation_status(self, call: Call) -> Response:
        done, operation = self.emulator.poll_operation(call.params["op"])
        mode = str(operation.get("mode", "location"))
        if mode.startswith("async-"):
            return self._operation_resource(call, done, operation, mode)
        if not done:
            return Response(
                status_code=202,
                headers={
                    "Location": f"{call.base_url}{call.path}?api-version={call.api_version}",
                    "Retry-After": str(int(self.emulator.state.lro.retry_after_s)),
                },
            )
        self._finish(operation, "Succeeded")
        # Location polling ends with what the synchronous operation would answer (ARM RPC async-api-reference):
        # the resource, or, as azure-core also accepts, 204 / an empty 200 (then the client reads the resource).
        if mode == "location-204":
            return Response(status_code=204)
        if mode == "location-empty-200":
            return Response(status_code=200)
        return arm_json(self.render(self._operation_target(operation)))

    def _operation_resource(self, call: Call, done: bool, operation: dict[str, Any], mode: str) -> Response:
        """The Azure-AsyncOperation resource: always HTTP 200, ``status`` InProgress until a terminal value."""
        body: dict[str, Any] = {
            "id": f"{call.base_url}{call.path}?api-version={call.api_version}",
            "name": call.params["op"],
            "status": "InProgress",
            "startTime": iso(float(operation.get("started") or self.emulator.store.now())),
        }
        if not done:
            return arm_json(body, headers={"Retry-After": str(int(self.emulator.state.lro.retry_after_s))})
        status = {"async-succeeded": "Succeeded", "async-failed": "Failed", "async-canceled": "Canceled"}[mode]
        self._finish(operation, status)
        body.update({"status": status, "endTime": iso(self.emulator.store.now()), "percentComplete": 100.0})
        if status == "Failed":
            body["error"] = operation["error"]
        return arm_json(body)

    def _end_unpolled(self, resource: dict[str, Any]) -> None:
        """End the operations on ``resource`` that nobody polled to their end: ARM RPC async-api-reference.md has
        GETs of the resource show a non-terminal ``provisioningState`` "as long as the provisioning is in
        progress", then a terminal one; the operation itself does not wait for a poll."""
        for operation in self.emulator.ended_unpolled(resource["id"]):
            self._finish(operation, _ENDS.get(str(operation.get("mode")), "Succeeded"))

    def _operation_target(self, operation: dict[str, Any]) -> dict[str, Any]:
        resource = self.resources().get(operation["resource_id"])
        if resource is None:
            raise errors.ArmError(404, "ResourceNotFound", f"The {self.NOUN} of this operation no longer exists.")
        return resource

    def _finish(self, operation: dict[str, Any], status: str) -> None:
        """The resource's provisioningState takes the operation's terminal status (ARM RPC); a change shown only
        on success (``applies``) is applied then."""
        target = self._operation_target(operation)
        if status == "Succeeded" and operation.get("applies"):
            target.clear()
            target.update(operation["applies"])
        target["provisioningState"] = status
        self.emulator.store.save()
