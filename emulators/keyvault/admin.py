"""The admin API (its own loopback port, JSON, no auth): vaults, modes, clock, roles, throttling, faults, counters,
events.

Documented in ``docs/emulators/keyvault.md``; used by tests, the demo and the ARM emulator.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from emulators.asgi import read_body
from emulators.keyvault import events, rbac
from emulators.keyvault.dataplane import Receive, Scope, Send
from emulators.keyvault.faults import FaultRule
from emulators.keyvault.service import KeyVaultService
from emulators.keyvault.store import MODES, Vault, set_modes
from emulators.keyvault.throttle import Throttle

log = logging.getLogger("emulators.keyvault.admin")


_ERROR_CODES = {400: "BadRequest", 404: "NotFound", 409: "Conflict"}


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminApp:
    """ASGI app for ``/admin/...``. ``start_vault`` opens the listener of a newly registered vault."""

    def __init__(self, service: KeyVaultService, start_vault: Callable[[Vault], Awaitable[None]]) -> None:
        self.service = service
        self.start_vault = start_vault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        parts = [p for p in scope["path"].split("/") if p]
        try:
            body = await _read_body(receive) if method in ("POST", "PUT") else None
            status, result = await self._handle(method, parts, body)
        except AdminError as exc:
            status, result = (
                exc.status,
                {"error": {"code": _ERROR_CODES.get(exc.status, "BadRequest"), "message": exc.message}},
            )
        except Exception:
            log.exception("admin request failed: %s %s", method, scope["path"])
            status, result = 500, {"error": {"code": "InternalServerError", "message": "admin request failed"}}
        payload = b"" if result is None else json.dumps(result).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _handle(self, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
        service = self.service
        if parts[:1] != ["admin"]:
            raise AdminError(404, "admin paths start with /admin/")
        path = parts[1:]
        if path == ["health"] and method == "GET":
            return 200, {"status": "ok", "vaults": sorted(service.vaults)}
        if path == ["vaults"]:
            if method == "GET":
                return 200, {"value": [v.describe() for v in service.vaults.values()]}
            if method == "POST":
                name = _object(body).get("name")
                if isinstance(name, str) and name in service.vaults:
                    raise AdminError(409, f"vault {name!r} already exists")
                vault = _checked(lambda: service.new_vault(_object(body)))
                service.vaults[vault.name] = vault
                await self.start_vault(vault)
                service.changed()
                return 201, vault.describe()
        if len(path) == 2 and path[0] == "vaults" and method == "GET":
            return 200, self._vault(path[1]).describe()
        if len(path) == 3 and path[0] == "vaults" and path[2] == "modes":
            vault = self._vault(path[1])
            if method == "PUT":
                _checked(lambda: set_modes(vault, _object(body)))
                service.changed()
            if method in ("GET", "PUT"):
                return 200, {name: getattr(vault, name) for name in MODES}
        if len(path) == 3 and path[0] == "vaults" and path[2] == "role-assignments":
            vault = self._vault(path[1])
            if method == "PUT":
                vault.roles = _checked(lambda: rbac.parse_assignments(_object(body).get("value")))
                service.changed()
            if method in ("GET", "PUT"):
                return 200, {"value": [r.to_json() for r in vault.roles]}
        if path == ["clock"]:
            if method == "PUT":
                request = _object(body)
                if isinstance(request.get("now"), int | float) and not isinstance(request["now"], bool):
                    service.clock.set(float(request["now"]))
                elif isinstance(request.get("advance_seconds"), int | float):
                    service.clock.advance(float(request["advance_seconds"]))
                else:
                    raise AdminError(400, "send {'now': unix seconds} or {'advance_seconds': n}")
                service.changed()
                await service.evaluate_lifecycle()
            if method in ("GET", "PUT"):
                return 200, {"now": service.clock.now(), "offset_seconds": service.clock.offset}
        if path == ["lifecycle"] and method == "POST":
            await service.evaluate_lifecycle()
            return 200, {"now": service.clock.now()}
        if path == ["throttle"]:
            if method == "PUT":
                request = _object(body)
                targets = (
                    [self._vault(request["vault"]).throttle]
                    if request.get("vault")
                    else [
                        service.default_throttle,
                        *(v.throttle for v in service.vaults.values()),
                    ]
                )
                for throttle in targets:
                    _apply_throttle(throttle, request)
                service.changed()
            if method in ("GET", "PUT"):
                return 200, {
                    "default": service.default_throttle.to_json(),
                    "vaults": {name: v.throttle.to_json() for name, v in service.vaults.items()},
                }
        if path == ["faults"]:
            if method == "PUT":
                request = _object(body)
                raw_rules = request["rules"] if isinstance(request.get("rules"), list) else [request]
                service.faults = _checked(lambda: [FaultRule.parse(r) for r in raw_rules])
            if method == "DELETE":
                service.faults = []
            if method in ("GET", "PUT", "DELETE"):
                return 200, {"rules": [r.to_json() for r in service.faults]}
        if path == ["counters"]:
            if method == "DELETE":
                service.counters.clear()
            if method in ("GET", "DELETE"):
                return 200, {vault: dict(counts) for vault, counts in service.counters.items()}
        if path == ["events"]:
            if method == "PUT":
                service.events.sink = _checked(lambda: events.validate_sink(_object(body).get("sink")))
                service.changed()
            if method in ("GET", "PUT"):
                return 200, service.events.status()
        raise AdminError(404, f"no admin operation {method} /{'/'.join(parts)}")

    def _vault(self, name: str) -> Vault:
        vault = self.service.vaults.get(name)
        if vault is None:
            raise AdminError(404, f"no vault named {name!r}")
        return vault


def _apply_throttle(throttle: Throttle, request: dict[str, Any]) -> None:
    for field_name, kind in (("limit_per_10s", int), ("create_limit_per_10s", int), ("enabled", bool)):
        value = request.get(field_name)
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 1)):
            raise AdminError(400, f"{field_name!r} must be a {'positive integer' if kind is int else 'boolean'}")
        setattr(throttle, field_name, value)


def _checked(build: Callable[[], Any]) -> Any:
    try:
        return build()
    except ValueError as exc:
        raise AdminError(400, str(exc)) from exc


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AdminError(400, "the request body must be a JSON object")
    return body


async def _read_body(receive: Receive) -> Any:
    raw = await read_body(receive)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise AdminError(400, "the request body is not valid JSON") from exc
