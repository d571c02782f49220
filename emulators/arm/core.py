"""What every provider handler shares: the parsed call, the store, the Key Vault gateway, LROs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response

from emulators.arm import errors
from emulators.arm.keyvault import KeyInfo, KeyRef, KeyVaultGateway, KeyVaultOutage
from emulators.arm.state import LOCAL_TENANT_ID, State, Store


@dataclass
class Call:
    """One ARM request, parsed: route parameters keep the caller's casing."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    api_version: str
    principal: str
    base_url: str
    body: bytes = b""
    _json: Any = field(default=None, repr=False)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or InvalidRequestContent as ARM answers a malformed body."""
        if self._json is None:
            if not self.body.strip():
                raise errors.invalid_request_content("The request body is empty. Path '', line 0, position 0.")
            try:
                parsed = json.loads(self.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise errors.invalid_request_content(f"{exc}. Path '', line 1, position 0.") from None
            if not isinstance(parsed, dict):
                raise errors.invalid_request_content(
                    f"Error converting value to type 'ResourceDefinition'. Path '', got {type(parsed).__name__}."
                )
            self._json = parsed
        return dict(self._json)


def obj(value: Any, path: str, type_name: str) -> dict[str, Any]:
    """``value`` as a JSON object (None as {}), or InvalidRequestContent naming the path, as ARM does."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.invalid_request_content(
            f"Error converting value {json.dumps(value)[:40]} to type '{type_name}'. Path '{path}'"
        )
    return dict(value)


def required_location(body: dict[str, Any]) -> str:
    """The request body's required ``location``, or InvalidRequestContent as ARM answers when it is missing."""
    value = body.get("location")
    if not isinstance(value, str) or not value:
        raise errors.invalid_request_content("Required property 'location' not found in JSON. Path ''")
    return value


def opt_str(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise errors.invalid_request_content(
        f"Error converting value {json.dumps(value)[:40]} to type 'String'. Path '{path}'"
    )


def tags(body: dict[str, Any]) -> dict[str, str]:
    """The ``tags`` of a request: an object of strings."""
    value = obj(body.get("tags"), "tags", "Dictionary`2[String,String]")
    for key, item in value.items():
        opt_str(item, f"tags.{key}")
    return value


def iso(ts: float) -> str:
    """ARM's timestamp form: ISO 8601 UTC with seven fractional digits and Z."""
    moment = dt.datetime.fromtimestamp(ts, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def arm_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


class Emulator:
    """State and collaborators shared by the providers."""

    def __init__(self, store: Store, kv: KeyVaultGateway) -> None:
        self.store = store
        self.kv = kv
        # Writes that look across resources (a create checks names that are unique across Azure, admin
        # edits) hold ``write_lock``; every write to one resource holds that resource's lock (after
        # ``write_lock`` when it takes both). An update of one resource takes only its own lock, so updates
        # of different resources overlap while each awaits its key check, as they do in Azure, where the
        # only limit across resources is ARM's throttling (see ``throttle``), not one write at a time.
        self.write_lock = asyncio.Lock()
        self._resource_locks: dict[str, asyncio.Lock] = {}

    @property
    def state(self) -> State:
        return self.store.state

    def resource_lock(self, resource_id: str) -> asyncio.Lock:
        """The lock every write to ``resource_id`` holds (ids compared case-insensitively)."""
        return self._resource_locks.setdefault(resource_id.lower(), asyncio.Lock())

    # -- resource groups --------------------------------------------------------------------

    async def resource_group(self, subscription_id: str, name: str) -> dict[str, Any]:
        """The resource group, or ResourceGroupNotFound. Groups of Key Vault emulator vaults exist too."""
        key = f"/subscriptions/{subscription_id}/resourcegroups/{name}".lower()
        group = self.state.resource_groups.get(key)
        if group:
            return dict(group)
        for vault in await self._vaults_quietly():
            if (
                str(vault.get("subscription_id", "")).lower() == subscription_id.lower()
                and str(vault.get("resource_group", "")).lower() == name.lower()
            ):
                return {
                    "id": f"/subscriptions/{subscription_id}/resourceGroups/{vault['resource_group']}",
                    "name": vault["resource_group"],
                    "location": vault.get("location", "eastus"),
                    "tags": {},
                }
        raise errors.resource_group_not_found(name)

    def put_resource_group(self, subscription_id: str, name: str, location: str, tags: dict[str, str]) -> bool:
        key = f"/subscriptions/{subscription_id}/resourcegroups/{name}".lower()
        created = key not in self.state.resource_groups
        existing = self.state.resource_groups.get(key, {})
        self.state.resource_groups[key] = {
            "id": existing.get("id", f"/subscriptions/{subscription_id}/resourceGroups/{name}"),
            "name": existing.get("name", name),
            "location": existing.get("location", location),
            "tags": tags,
        }
        self.store.save()
        return created

    async def _vaults_quietly(self) -> list[dict[str, Any]]:
        try:
            return await self.kv.vaults()
        except Exception:  # noqa: BLE001 - a missing Key Vault emulator only means no vault-derived groups
            return []

    # -- the resource providers' own key checks ----------------------------------------------

    async def consumer_key_check(self, provider: str, ref: KeyRef, principal_id: str) -> KeyInfo:
        """A write's check, by ``provider`` ("storage" or "ml"), that ``principal_id`` can use the key.

        While the Key Vault outage mode is on for that provider (``/admin/keyvault-outage``) the check
        fails with :class:`KeyVaultOutage` (one failure spent per check when the outage is a count).
        """
        outage = self.state.keyvault_outage
        if provider in outage.providers and outage.active(self.store.real_now()):
            if outage.failures_left is not None:
                outage.failures_left -= 1
            self.store.save()
            raise KeyVaultOutage(outage.status, outage.ml_delivery)
        return await self.kv.check_key(ref, principal_id)

    # -- identities -------------------------------------------------------------------------

    def build_identity(self, requested: Any, existing: dict[str, Any] | None) -> dict[str, Any] | None:
        """The stored identity block for a request's ``identity``: system principal kept across writes."""
        if requested is None:
            return existing
        if not isinstance(requested, dict) or not isinstance(requested.get("type", ""), str):
            raise errors.ArmError(400, "InvalidIdentity", "The identity block must be an object with a 'type'.")
        kinds = {k.strip().lower() for k in str(requested.get("type", "None")).split(",") if k.strip()}
        if not kinds <= {"none", "systemassigned", "userassigned"}:
            raise errors.ArmError(
                400,
                "InvalidIdentityType",
                f"The identity type '{requested.get('type')}' is not valid. Valid values are 'None', "
                "'SystemAssigned', 'UserAssigned', 'SystemAssigned,UserAssigned'.",
            )
        if kinds <= {"none"}:
            return None
        identity: dict[str, Any] = {}
        names = []
        if "systemassigned" in kinds:
            names.append("SystemAssigned")
            old = existing or {}
            identity["principalId"] = old.get("principalId") or str(uuid.uuid4())
            identity["tenantId"] = LOCAL_TENANT_ID
        if "userassigned" in kinds:
            names.append("UserAssigned")
            requested_ids = requested.get("userAssignedIdentities") or {}
            if not isinstance(requested_ids, dict) or not requested_ids:
                raise errors.ArmError(
                    400,
                    "BadRequest",
                    "The identity type 'UserAssigned' requires at least one entry in 'userAssignedIdentities'.",
                )
            identity["userAssignedIdentities"] = {
                uai: self.store.user_identity(uai) for uai in requested_ids if requested_ids[uai] is not None
            }
        identity["type"] = ",".join(names)
        return identity

    @staticmethod
    def user_identity_entry(identity: dict[str, Any] | None, identity_id: str) -> dict[str, str] | None:
        for uai, entry in ((identity or {}).get("userAssignedIdentities") or {}).items():
            if uai.lower() == identity_id.lower():
                return dict(entry)
        return None

    # -- paging -----------------------------------------------------------------------------

    def page(self, call: Call, items: list[dict[str, Any]]) -> Response:
        """A list response; with ``/admin/paging`` set, one page plus an absolute ``nextLink``."""
        size = self.state.page_size
        try:
            start = max(0, int(call.query.get("$skiptoken", "0")))
        except ValueError:
            raise errors.ArmError(400, "InvalidSkipToken", "The skip token is not valid.") from None
        if not size:
            return arm_json({"value": items[start:]})
        body: dict[str, Any] = {"value": items[start : start + size]}
        if start + size < len(items):
            body["nextLink"] = f"{call.base_url}{call.path}?api-version={call.api_version}&$skiptoken={start + size}"
        return arm_json(body)

    # -- long-running operations ------------------------------------------------------------

    def start_operation(
        self,
        call: Call,
        provider_path: str,
        resource_id: str,
        kind: str,
        *,
        mode: str = "location",
        error: dict[str, Any] | None = None,
        applies: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """Record an operation and return the 202 headers that point at it (``applies``: the resource as the
        operation leaves it when it succeeds, for a provider that shows the change only then).

        ``location`` modes answer ``Location`` + ``Retry-After`` (the ARM async contract for PATCH/DELETE);
        ``async-*`` modes answer ``Azure-AsyncOperation`` + ``Retry-After`` and the operation resource is
        polled (see docs/emulators/arm.md).
        """
        op_id = uuid.uuid4().hex
        settings = self.state.lro
        self.state.operations[op_id] = {
            "resource_id": resource_id.lower(),
            "kind": kind,
            "mode": mode,
            "error": error or dict(settings.error),
            "started": self.store.now(),
            "api_version": call.api_version,
            "polls_remaining": max(1, int(settings.polls_until_done)),
            "deadline": self.operation_deadline(),
        }
        if applies is not None:
            self.state.operations[op_id]["applies"] = applies
        url = (
            f"{call.base_url}/subscriptions/{call.params['sub']}/providers/{provider_path}/{op_id}"
            f"?api-version={call.api_version}"
        )
        header = "Azure-AsyncOperation" if mode.startswith("async-") else "Location"
        return {header: url, "Retry-After": str(int(settings.retry_after_s))}

    def poll_operation(self, op_id: str) -> tuple[bool, dict[str, Any]]:
        """Count one poll; True when the operation is done (then it is removed)."""
        operation = self.state.operations.get(op_id)
        if operation is None:
            raise errors.ArmError(
                404, "OperationNotFound", f"The operation '{op_id}' could not be found or has expired."
            )
        operation["polls_remaining"] -= 1
        done = operation["polls_remaining"] <= 0 or time.time() > operation["deadline"]
        if done:
            del self.state.operations[op_id]
        self.store.save()
        return done, operation

    def operation_deadline(self) -> float:
        """When an operation started now ends whether or not anyone polls it (unix time, real)."""
        settings = self.state.lro
        expected = max(1, settings.retry_after_s) * max(1, settings.polls_until_done)
        return time.time() + expected + max(0, settings.unpolled_grace_s)

    def ended_unpolled(self, resource_id: str) -> list[dict[str, Any]]:
        """The operations on ``resource_id`` past their deadline, removed (their records expire with them): an
        Azure operation runs to its end whether or not anyone polls it; the caller shows their outcome."""
        lowered = resource_id.lower()
        ended = [
            (op_id, operation)
            for op_id, operation in self.state.operations.items()
            if operation["resource_id"] == lowered and time.time() > operation["deadline"]
        ]
        for op_id, _ in ended:
            del self.state.operations[op_id]
        return [operation for _, operation in ended]
