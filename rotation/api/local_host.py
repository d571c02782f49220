"""The local server answers only requests addressed to a loopback name (a DNS-rebinding guard).

``python -m rotation.api`` listens on loopback with no function key and acts with the developer's own
Azure login. A web page on ``evil.example`` whose name is re-pointed to 127.0.0.1 (DNS rebinding) can
reach that port from the developer's browser, but its requests carry ``Host: evil.example``: refusing
every Host that is not a loopback name (``localhost``, 127.0.0.0/8, ``[::1]``) closes that door.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from rotation.api.errors import error_response
from rotation.settings import is_loopback


def host_name(header: str) -> str:
    """The name part of a Host header value: ``[::1]:7071`` -> ``::1``, ``localhost:7071`` -> ``localhost``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class LoopbackHostOnly:
    """ASGI middleware: 421 for any request whose Host is missing or not a loopback name."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if is_loopback(host_name(host)):
            await self.app(scope, receive, send)
            return
        response = error_response(
            421, "MisdirectedRequest", "the local server answers only requests addressed to a loopback name"
        )
        await response(scope, receive, send)
