"""The ASGI app: routing (case-insensitive, as ARM), then faults, auth, api-version, throttle, RBAC.

Every ARM request runs through the same steps, in the order ARM applies them:
count -> injected fault -> bearer token -> route + api-version -> token bucket -> RBAC -> provider.
Every answer from the token bucket on carries the bucket's remaining-requests header.
Anything unexpected becomes an ARM-shaped 500 and the emulator keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators.arm import errors, versions
from emulators.arm.admin import AdminApi
from emulators.arm.core import Call, Emulator, arm_json
from emulators.arm.disk_encryption_sets import DiskEncryptionSetProvider
from emulators.arm.graph import ResourceGraph, rendered
from emulators.arm.ml import MlProvider
from emulators.arm.provider import ResourceProvider
from emulators.arm.rbac import is_allowed
from emulators.arm.registries import RegistryProvider
from emulators.arm.resources import ResourcesProvider
from emulators.arm.storage import StorageProvider
from emulators.arm.throttle import TokenBuckets, kind_of
from emulators.auth import TokenError, principal_from_authorization

log = logging.getLogger("emulators.arm")

Handler = Callable[[Call], Awaitable[Response]]
_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_KNOWN_NAMESPACES = {
    "microsoft.storage": "Microsoft.Storage",
    "microsoft.machinelearningservices": "Microsoft.MachineLearningServices",
    "microsoft.keyvault": "Microsoft.KeyVault",
    "microsoft.resources": "Microsoft.Resources",
    "microsoft.containerregistry": "Microsoft.ContainerRegistry",
    "microsoft.compute": "Microsoft.Compute",
    "microsoft.resourcegraph": "Microsoft.ResourceGraph",
}


@dataclass(frozen=True)
class Operation:
    """One ARM operation: its name for counters/faults, the RBAC action, and which api-versions it accepts."""

    name: str
    action: str
    handler: Handler
    api_versions: tuple[str, ...]
    resource_type: str
    write: bool = False
    # "resource": the request path is the scope; "operation": the resource the polled operation is about;
    # "none": no RBAC check on the call itself (Resource Graph filters its rows by the caller's RBAC)
    scope: str = "resource"


@dataclass(frozen=True)
class RouteSpec:
    pattern: re.Pattern[str]
    operations: dict[str, Operation]


class ArmApp:
    """Builds the Starlette app around an :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        storage = self.storage = StorageProvider(emulator)
        ml = MlProvider(emulator)
        res = ResourcesProvider(emulator)
        acr = self.registries = RegistryProvider(emulator)
        des = self.disk_encryption_sets = DiskEncryptionSetProvider(emulator)
        self.graph = ResourceGraph(emulator, [rendered(p) for p in (storage, ml, acr, des)] + [self._generic_resources])
        rg_type, kv_type = "resourceGroups", "Microsoft.KeyVault/vaults"
        rg_read = "Microsoft.Resources/subscriptions/resourceGroups/read"
        self.routes: list[RouteSpec] = [
            self._route(
                _RG,
                GET=Operation("ResourceGroups_Get", rg_read, res.get_group, versions.RESOURCES, rg_type),
                PUT=Operation(
                    "ResourceGroups_CreateOrUpdate",
                    "Microsoft.Resources/subscriptions/resourceGroups/write",
                    res.put_group,
                    versions.RESOURCES,
                    rg_type,
                    write=True,
                ),
            ),
            self._route(
                _SUB + r"/resourcegroups",
                GET=Operation("ResourceGroups_List", rg_read, res.list_groups, versions.RESOURCES, rg_type),
            ),
            *self._resource_routes(storage, versions.STORAGE, "StorageAccounts", get="GetProperties", create="Create"),
            self._location_operation_route(storage, versions.STORAGE, "StorageAccounts", "asyncoperations"),
            *self._resource_routes(ml, versions.ML, "Workspaces", list_all="ListBySubscription"),
            self._location_operation_route(
                ml,
                versions.ML,
                "Workspaces",
                "workspaceoperationsstatus",
                action="Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read",
            ),
            self._route(
                _RG + r"/providers/microsoft\.keyvault/vaults/(?P<name>[^/]+)",
                GET=Operation("Vaults_Get", f"{kv_type}/read", res.get_vault, versions.KEYVAULT, kv_type),
            ),
            self._route(
                _RG + r"/providers/microsoft\.keyvault/vaults",
                GET=Operation(
                    "Vaults_ListByResourceGroup", f"{kv_type}/read", res.list_vaults, versions.KEYVAULT, kv_type
                ),
            ),
            self._route(
                _SUB + r"/providers/microsoft\.keyvault/vaults",
                GET=Operation(
                    "Vaults_ListBySubscription", f"{kv_type}/read", res.list_vaults, versions.KEYVAULT, kv_type
                ),
            ),
            *self._resource_routes(acr, versions.CONTAINER_REGISTRY, "Registries", create="Create"),
            self._route(
                # ACR's status monitor hangs under the registry (RegistryUpdate.json), not under a location.
                _RG
                + r"/providers/microsoft\.containerregistry/registries/(?P<name>[^/]+)"
                + r"/operationstatuses/(?P<op>[^/]+)",
                GET=Operation(
                    "Registries_OperationStatus",
                    f"{acr.TYPE}/read",
                    acr.operation_status,
                    versions.CONTAINER_REGISTRY,
                    acr.TYPE,
                ),
            ),
            *self._resource_routes(des, versions.DISK, "DiskEncryptionSets"),
            self._location_operation_route(des, versions.DISK, "DiskEncryptionSets", "diskoperations"),
            self._route(
                r"/providers/microsoft\.resourcegraph/resources",
                POST=Operation(
                    "ResourceGraph_Resources",
                    "Microsoft.ResourceGraph/resources/read",
                    self.graph.resources,
                    versions.RESOURCE_GRAPH,
                    "Microsoft.ResourceGraph/resources",
                    scope="none",
                ),
            ),
        ]
        self.buckets = TokenBuckets()
        self.admin = AdminApi(emulator, storage, acr, des, self.buckets)

    def _resource_routes(
        self,
        provider: ResourceProvider,
        api_versions: tuple[str, ...],
        operations: str,
        *,
        get: str = "Get",
        create: str = "CreateOrUpdate",
        list_all: str = "List",
    ) -> list[RouteSpec]:
        """A resource type's routes: one resource (get, create, update, delete), and the lists of a resource
        group and of a subscription. Operation names are ``{operations}_{name}`` as in the type's REST spec;
        ``get``, ``create`` and ``list_all`` are the names that differ between types."""
        arm_type = provider.TYPE
        path = r"/providers/" + re.escape(arm_type.lower())

        def op(name: str, verb: str, handler: Handler, write: bool = False) -> Operation:
            return Operation(f"{operations}_{name}", f"{arm_type}/{verb}", handler, api_versions, arm_type, write)

        return [
            self._route(
                _RG + path + r"/(?P<name>[^/]+)",
                GET=op(get, "read", provider.get),
                PUT=op(create, "write", provider.create, write=True),
                PATCH=op("Update", "write", provider.update, write=True),
                DELETE=op("Delete", "delete", provider.delete, write=True),
            ),
            self._route(_RG + path, GET=op("ListByResourceGroup", "read", provider.list_by_resource_group)),
            self._route(_SUB + path, GET=op(list_all, "read", provider.list)),
        ]

    def _location_operation_route(
        self,
        provider: ResourceProvider,
        api_versions: tuple[str, ...],
        operations: str,
        segment: str,
        *,
        action: str | None = None,
    ) -> RouteSpec:
        """The poll of a type's long-running operations, ``.../locations/{loc}/{segment}/{op}`` in its namespace,
        authorised on the resource the operation changes; ``action`` is the type's read unless given."""
        namespace = re.escape(provider.TYPE.split("/")[0].lower())
        return self._route(
            _SUB + r"/providers/" + namespace + r"/locations/(?P<loc>[^/]+)/" + segment + r"/(?P<op>[^/]+)",
            GET=Operation(
                f"{operations}_OperationStatus",
                action or f"{provider.TYPE}/read",
                provider.operation_status,
                api_versions,
                provider.TYPE,
                scope="operation",
            ),
        )

    async def _generic_resources(self) -> list[dict[str, Any]]:
        return [dict(r) for _, r in sorted(self.emulator.state.generic_resources.items())]

    @staticmethod
    def _route(pattern: str, **operations: Operation) -> RouteSpec:
        return RouteSpec(re.compile(pattern + r"/?", re.IGNORECASE), operations)

    def starlette(self) -> Starlette:
        methods = ["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS"]
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        try:
            if path.lower().startswith("/admin/"):
                return await self.admin.handle(request)
            return await self._arm(request)
        except errors.ArmError as error:
            return arm_json(error.body(), status=error.status, headers=error.headers)
        except _Drop:
            return DroppedResponse()
        except Exception:  # the emulator must keep serving; the failure is logged and shaped like ARM's
            log.exception("unexpected error serving %s %s", request.method, path)
            internal = errors.ArmError(
                500, "InternalServerError", "Encountered internal server error. Please try again."
            )
            return arm_json(internal.body(), status=500)

    # -- the ARM pipeline -------------------------------------------------------------------

    async def _arm(self, request: Request) -> Response:
        path = request.url.path
        route, operation, match = self._resolve(request.method, path)
        self.emulator.store.count(operation.name if operation else "Unknown")
        if operation:
            await self._inject_fault(operation.name)
        try:
            principal = principal_from_authorization(request.headers.get("authorization"))
        except TokenError as exc:
            raise errors.authentication_failed(str(exc)) from None
        if route is None or match is None:
            raise self._unknown_route(path, request.query_params.get("api-version"))
        if operation is None:
            raise errors.method_not_allowed(request.method, path)
        params = {k: v for k, v in match.groupdict().items() if v is not None}
        if "sub" in params and not _GUID.match(params["sub"]):
            raise errors.ArmError(
                400,
                "InvalidSubscriptionId",
                f"The provided subscription identifier '{params['sub']}' is malformed or invalid.",
            )
        api_version = self._api_version(request, operation)
        rate_limit: dict[str, str] = {}
        if "sub" in params:  # subscription buckets; tenant-level requests are not throttled here
            kind = kind_of(request.method)
            rate_limit = self.buckets.take(self.emulator.state.throttle, params["sub"], principal, kind)
        try:
            response = await self._authorised(request, operation, params, principal, api_version)
        except errors.ArmError as error:
            error.headers.update(rate_limit)
            raise
        response.headers.update(rate_limit)
        return response

    async def _authorised(
        self, request: Request, operation: Operation, params: dict[str, str], principal: str, api_version: str
    ) -> Response:
        path = request.url.path
        scope = path.rstrip("/")
        if operation.scope == "operation":
            # The poll is authorised on the resource the operation changes (see docs/emulators/arm.md).
            polled = self.emulator.state.operations.get(params.get("op", ""))
            scope = polled["resource_id"] if polled else f"/subscriptions/{params['sub']}"
        if operation.scope != "none" and not is_allowed(
            self.emulator.state.role_assignments, principal, operation.action, scope
        ):
            raise errors.authorization_failed(principal, operation.action, scope)
        call = Call(
            method=request.method,
            path=path,
            params=params,
            query=dict(request.query_params),
            api_version=api_version,
            principal=principal,
            base_url=f"{request.url.scheme}://{request.url.netloc}",
            body=await request.body(),
        )
        return await operation.handler(call)

    def _resolve(self, method: str, path: str) -> tuple[RouteSpec | None, Operation | None, re.Match[str] | None]:
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match:
                return route, route.operations.get(method.upper()), match
        return None, None, None

    @staticmethod
    def _api_version(request: Request, operation: Operation) -> str:
        api_version = request.query_params.get("api-version")
        if not api_version:
            raise errors.missing_api_version()
        if api_version in operation.api_versions:
            return api_version
        supported = list(operation.api_versions)
        if not versions.well_formed(api_version):
            raise errors.invalid_api_version(api_version, supported)
        raise errors.no_registered_provider(api_version, operation.resource_type.split("/")[-1], supported, "global")

    @staticmethod
    def _unknown_route(path: str, api_version: str | None) -> errors.ArmError:
        segments = [s for s in path.split("/") if s]
        lowered = [s.lower() for s in segments]
        if "providers" in lowered:
            index = lowered.index("providers")
            if index + 1 < len(segments):
                namespace = segments[index + 1]
                if namespace.lower() not in _KNOWN_NAMESPACES:
                    return errors.ArmError(
                        400,
                        "InvalidResourceNamespace",
                        f"The resource namespace '{namespace}' is invalid.",
                    )
                types = "/".join(segments[index + 2 :: 2]) or "(none)"
                return errors.ArmError(
                    400,
                    "InvalidResourceType",
                    f"The resource type '{types}' could not be found in the namespace "
                    f"'{_KNOWN_NAMESPACES[namespace.lower()]}' for api version '{api_version}'.",
                )
        return errors.invalid_resource_id(path)

    async def _inject_fault(self, operation: str) -> None:
        for fault in list(self.emulator.state.faults):
            names = fault.get("operations")
            if names and operation.lower() not in {str(n).lower() for n in names}:
                continue
            if random.random() >= float(fault.get("rate", 1.0)):  # noqa: S311 - fault injection, not crypto
                continue
            if fault.get("count") is not None:
                fault["count"] = int(fault["count"]) - 1
                if fault["count"] <= 0:
                    self.emulator.state.faults.remove(fault)
            kind = fault.get("kind", "status")
            if kind == "latency":
                await asyncio.sleep(float(fault.get("latency_ms") or 0) / 1000)
                continue
            if kind == "drop":
                raise _Drop
            error = _fault_error(int(fault.get("status") or 503))
            if fault.get("retry_after") is not None:
                error.headers["Retry-After"] = str(fault["retry_after"])
            raise error


class _Drop(Exception):
    """Answer with :class:`DroppedResponse`."""


class DroppedResponse(Response):
    """Headers promising a body that never comes, then the connection closes.

    The client sees the connection drop mid-response, which is how a lost connection looks to
    azure-core (a ServiceResponseError / IncompleteRead), and is retried like one.
    """

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ConnectionAbortedError("fault injection: connection dropped")


def _fault_error(status: int) -> errors.ArmError:
    if status == 429:
        return errors.ArmError(
            429,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type - "
            "Write_ObservationWindow_00:05:00. For more information, see - https://aka.ms/srpthrottlinglimits",
            headers={"Retry-After": "1"},
        )
    if status == 503:
        return errors.ArmError(503, "ServiceUnavailable", "The service is currently unavailable. Please retry.")
    if status == 504:
        return errors.ArmError(
            504, "GatewayTimeout", "The gateway did not receive a response within the specified time period."
        )
    if status >= 500:
        return errors.ArmError(status, "InternalServerError", "Encountered internal server error. Please try again.")
    return errors.ArmError(status, "InjectedFault", f"Fault injected with status {status}.")
