"""The Key Vault keys REST API for one vault, as a raw ASGI app (fast path: no framework per request).

Per request: route -> authenticate (401 challenge) -> injected faults -> api-version -> body -> throttle
(429) -> RBAC (403 ForbiddenByRbac) -> operation. Every failure is the service's error shape; nothing
escapes as a stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from emulators.auth import TokenError, principal_from_authorization
from emulators.keyvault import rbac
from emulators.keyvault.errors import (
    SUPPORTED_API_VERSIONS,
    KeyVaultError,
    bad_parameter,
    throttled,
    unauthorized,
    unsupported_api_version,
)
from emulators.keyvault.service import KeyVaultService
from emulators.keyvault.store import Key, Vault
from emulators.keyvault.throttle import create_weight, weight

log = logging.getLogger("emulators.keyvault")

MAX_BODY = 1024 * 1024
SERVICE_VERSION = b"1.9.2100.1"
AUDIENCES = ("https://vault.azure.net", "https://vault.azure.net/")
CHALLENGE = b'Bearer authorization="https://login.microsoftonline.com/local", resource="https://vault.azure.net"'
MISSING_TOKEN = "AKV10000: Request is missing a Bearer or PoP token."  # noqa: S105 - an error message
CRYPTO_PATHS = {
    "wrapkey": "wrapKey",
    "unwrapkey": "unwrapKey",
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "sign": "sign",
    "verify": "verify",
}
CREATE_OPERATIONS = ("createKey", "rotateKey", "importKey")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Route:
    __slots__ = ("key_name", "operation", "version")

    def __init__(self, operation: str, key_name: str | None = None, version: str = "") -> None:
        self.operation = operation
        self.key_name = key_name
        self.version = version


def route(method: str, path: str) -> Route:
    """Map method + path to a REST operation name; 404/405 in the service's shape otherwise."""
    parts = path.split("/")[1:]  # ASGI paths arrive percent-decoded
    if parts and parts[-1] == "" and len(parts) in (2, 5):
        parts.pop()  # "/keys/" and "/keys/{name}/{version}/wrapkey/" alike
    found: Route | None = None
    allowed = True
    if parts[:1] == ["keys"]:
        n = len(parts)
        if n == 1:
            found, allowed = Route("getKeys"), method == "GET"
        elif n == 2:
            op = {"DELETE": "deleteKey", "GET": "getKey", "PUT": "importKey"}.get(method)
            found, allowed = Route(op or "", parts[1]), op is not None
        elif n == 3:
            name, tail = parts[1], parts[2]
            if tail == "create":
                found, allowed = Route("createKey", name), method == "POST"
            elif tail == "rotate":
                found, allowed = Route("rotateKey", name), method == "POST"
            elif tail == "versions":
                found, allowed = Route("getKeyVersions", name), method == "GET"
            elif tail == "rotationpolicy":
                op = {"GET": "getKeyRotationPolicy", "PUT": "updateKeyRotationPolicy"}.get(method)
                found, allowed = Route(op or "", name), op is not None
            else:
                op = {"GET": "getKey", "PATCH": "updateKey"}.get(method)
                found, allowed = Route(op or "", name, tail), op is not None
        elif n == 4 and parts[3].lower() in CRYPTO_PATHS:
            found = Route(CRYPTO_PATHS[parts[3].lower()], parts[1], parts[2])
            allowed = method == "POST"
    elif parts[:1] == ["deletedkeys"]:
        n = len(parts)
        if n == 1:
            found, allowed = Route("getDeletedKeys"), method == "GET"
        elif n == 2:
            op = {"GET": "getDeletedKey", "DELETE": "purgeDeletedKey"}.get(method)
            found, allowed = Route(op or "", parts[1]), op is not None
        elif n == 3 and parts[2] == "recover":
            found, allowed = Route("recoverDeletedKey", parts[1]), method == "POST"
    if found is None:
        raise KeyVaultError(404, "NotFound", f"The requested path {path} was not found.")
    if not allowed:
        raise KeyVaultError(405, "MethodNotAllowed", f"The method {method} is not allowed on {path}.")
    return found


def parse_query(raw: bytes) -> dict[str, str]:
    result: dict[str, str] = {}
    if raw:
        for pair in raw.decode("latin-1").split("&"):
            name, _, value = pair.partition("=")
            result[unquote(name)] = unquote(value.replace("+", " "))
    return result


class VaultApp:
    """ASGI app serving one vault's keys API."""

    def __init__(self, service: KeyVaultService, vault_name: str) -> None:
        self.service = service
        self.vault_name = vault_name
        self._principals: dict[bytes, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        service = self.service
        vault = service.vaults[self.vault_name]
        counters = service.counters[vault.name]
        try:
            found = route(scope["method"], scope["path"])
            principal, problem = self._authenticate(scope)
            if principal is None:
                counters["unauthorized"] += 1
                await _respond(send, 401, unauthorized(problem).body(), vault, challenge=True)
                return
            if service.faults and await self._inject_fault(vault, found.operation, send):
                return
            query = parse_query(scope["query_string"])
            api_version = query.get("api-version")
            if api_version is None:
                raise bad_parameter("The 'api-version' query parameter is missing.")
            if api_version not in SUPPORTED_API_VERSIONS:
                raise unsupported_api_version(api_version)
            body = await _read_json(receive) if scope["method"] in ("POST", "PUT", "PATCH") else None
            retry_after = vault.throttle.charge(*self._cost(vault, found, body))
            if retry_after is not None:
                counters["throttled"] += 1
                raise throttled(retry_after)
            counters[found.operation] += 1
            if vault.roles and not rbac.is_allowed(vault.roles, principal, found.operation, found.key_name):
                raise _rbac_denied(vault, principal, found)
            status, result = await self._dispatch(vault, found, body, query, api_version)
            await _respond(send, status, None if result is None else _dumps(result), vault)
        except KeyVaultError as exc:
            await _respond(send, exc.status, exc.body(), vault, extra=exc.headers)
        except Exception:
            log.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            error = KeyVaultError(500, "InternalServerError", "The emulator failed to process the request.")
            await _respond(send, 500, error.body(), vault)

    # -- request pipeline -------------------------------------------------------------------------

    def _authenticate(self, scope: Scope) -> tuple[str | None, str]:
        """The caller's oid, or None and the 401 message (AKV codes as the service words them)."""
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        if header is None:
            return None, MISSING_TOKEN
        principal = self._principals.get(header)
        if principal is not None:
            return principal, ""
        text = header.decode("latin-1")
        try:
            principal = principal_from_authorization(text)
        except TokenError:
            return None, MISSING_TOKEN
        audience = _claims(text).get("aud")
        if audience is not None and audience not in AUDIENCES:
            return None, f"AKV10022: Invalid audience. Expected https://vault.azure.net, found: {audience}."
        if len(self._principals) > 10000:
            self._principals.clear()
        self._principals[header] = principal
        return principal, ""

    async def _inject_fault(self, vault: Vault, operation: str, send: Send) -> bool:
        for rule in list(self.service.faults):
            if not rule.matches(vault.name, operation):
                continue
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    self.service.faults.remove(rule)
            self.service.counters[vault.name]["faults"] += 1
            if rule.kind == "latency":
                await asyncio.sleep(rule.latency_ms / 1000)
                return False
            if rule.kind == "drop":
                await _drop_connection(send)
                return True
            headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
            error = KeyVaultError(rule.status, _STATUS_CODES.get(rule.status, "ServiceError"), "Injected fault.")
            await _respond(send, rule.status, error.body(), vault, extra=headers)
            return True
        return False

    def _cost(self, vault: Vault, found: Route, body: Any) -> tuple[float, bool]:
        if found.operation in CREATE_OPERATIONS:
            if found.operation == "rotateKey":
                key = vault.keys.get((found.key_name or "").lower())
                hsm = key is not None and key.latest.material.hsm
            else:
                hsm = isinstance(body, dict) and str(body.get("kty", "")).endswith("-HSM")
            return create_weight(hsm), True
        key = vault.keys.get(found.key_name.lower()) if found.key_name else None
        if key is None:
            return 1.0, False
        material = key.latest.material
        return weight(material.family, material.size, material.hsm), False

    async def _dispatch(
        self, vault: Vault, found: Route, body: Any, query: dict[str, str], api_version: str
    ) -> tuple[int, Any]:
        service = self.service
        op = found.operation
        name = found.key_name or ""
        if op in ("wrapKey", "unwrapKey", "encrypt", "decrypt", "sign", "verify"):
            return 200, service.crypto_operation(vault, name, found.version, op, body)
        if op == "getKey":
            key, version = service.readable_version(vault, name, found.version)
            return 200, service.bundle(vault, key, version)
        if op == "createKey":
            return 200, await service.create_key(vault, name, body)
        if op == "rotateKey":
            return 200, await service.rotate_key(vault, name)
        if op == "importKey":
            return 200, await service.import_key(vault, name, body)
        if op == "updateKey":
            return 200, service.update_key(vault, name, found.version, body)
        if op == "getKeyRotationPolicy":
            return 200, service.get_policy(vault, name)
        if op == "updateKeyRotationPolicy":
            return 200, service.put_policy(vault, name, body)
        if op == "getKeys":
            keys = sorted(vault.keys.values(), key=lambda k: k.name.lower())
            items = [service.item(vault, k, k.latest, versioned=False) for k in keys]
            return 200, _page(items, query, f"{vault.url}/keys", api_version)
        if op == "getKeyVersions":
            key = service.find_key(vault, name)
            items = [service.item(vault, key, v, versioned=True) for v in key.versions.values()]
            return 200, _page(items, query, f"{vault.url}/keys/{key.name}/versions", api_version)
        if op == "deleteKey":
            return 200, service.delete_key(vault, name)
        if op == "getDeletedKey":
            return 200, service.get_deleted(vault, name)
        if op == "getDeletedKeys":
            deleted: list[Key] = sorted(vault.deleted.values(), key=lambda k: k.name.lower())
            items = [service.deleted_bundle(vault, k, full=False) for k in deleted]
            return 200, _page(items, query, f"{vault.url}/deletedkeys", api_version)
        if op == "recoverDeletedKey":
            return 200, service.recover(vault, name)
        if op == "purgeDeletedKey":
            service.purge(vault, name)
            return 204, None
        raise KeyVaultError(405, "MethodNotAllowed", f"The operation {op} is not supported by this emulator.")


_STATUS_CODES = {
    400: "BadParameter",
    408: "RequestTimeout",
    429: "Throttled",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def _claims(header: str) -> dict[str, Any]:
    try:
        payload = header.split(" ", 1)[1].strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _rbac_denied(vault: Vault, principal: str, found: Route) -> KeyVaultError:
    resource = vault.arm_id.lower() + (f"/keys/{found.key_name}" if found.key_name else "")
    message = (
        "Caller is not authorized to perform action on resource.\r\n"
        "If role assignments, deny assignments or role definitions were changed recently, please observe "
        "propagation time.\r\n"
        f"Caller: oid={principal}\r\n"
        f"Action: '{rbac.full_action(found.operation)}'\r\n"
        f"Resource: '{resource}'\r\n"
        "Assignment: (not found)\r\n"
        "DenyAssignmentId: null\r\n"
        "DecisionReason: null \r\n"
        f"Vault: {vault.name};location={vault.location}\r\n"
    )
    return KeyVaultError(403, "Forbidden", message, "ForbiddenByRbac")


def _page(items: list[dict[str, Any]], query: dict[str, str], base: str, api_version: str) -> dict[str, Any]:
    raw_max = query.get("maxresults")
    size = 25
    if raw_max is not None:
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= 25:
            raise bad_parameter("The value of 'maxresults' must be an integer from 1 to 25.")
        size = int(raw_max)
    start = 0
    token = query.get("$skiptoken")
    if token:
        try:
            marker = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            start = int(marker["NextMarker"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise bad_parameter("The value of '$skiptoken' is invalid.") from exc
    end = start + size
    result: dict[str, Any] = {"value": items[start:end]}
    if end < len(items):
        marker_json = json.dumps({"NextMarker": str(end), "TargetLocation": 0}, separators=(",", ":"))
        next_token = base64.urlsafe_b64encode(marker_json.encode()).rstrip(b"=").decode()
        link = f"{base}?api-version={api_version}&$skiptoken={next_token}"
        if raw_max is not None:
            link += f"&maxresults={size}"
        result["nextLink"] = link
    else:
        result["nextLink"] = None
    return result


async def _read_json(receive: Receive) -> Any:
    chunks: list[bytes] = []
    total = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise bad_parameter("The request body was not received.")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > MAX_BODY:
            raise bad_parameter(f"The request body is larger than {MAX_BODY} bytes.")
        chunks.append(chunk)
        more = message.get("more_body", False)
    raw = b"".join(chunks)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_parameter("The request body is not valid JSON.") from exc


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def _respond(
    send: Send,
    status: int,
    body: bytes | None,
    vault: Vault,
    *,
    challenge: bool = False,
    extra: dict[str, str] | None = None,
) -> None:
    headers = [
        (b"cache-control", b"no-cache"),
        (b"x-ms-keyvault-service-version", SERVICE_VERSION),
        (b"x-ms-keyvault-region", vault.location.encode()),
        (b"x-ms-request-id", str(uuid.uuid4()).encode()),
    ]
    if body is not None:
        headers.append((b"content-type", b"application/json; charset=utf-8"))
    headers.append((b"content-length", str(len(body or b"")).encode()))
    if challenge:
        headers.append((b"www-authenticate", CHALLENGE))
    for name, value in (extra or {}).items():
        headers.append((name.lower().encode(), value.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body or b""})


async def _drop_connection(send: Send) -> None:
    """Close the connection without a response (uvicorn's cycle object owns the transport)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise KeyVaultError(503, "ServiceUnavailable", "Injected fault (connection drop unsupported).")
    transport.abort()
    for _ in range(50):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0.01)
