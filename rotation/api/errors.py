"""Every failure the HTTP API reports, as one JSON shape: ``{"error": {"code", "message", "request_id"}}``.

Mapping from the service's error tree (``rotation.errors``):

=====================================  ======  ==========================================
error                                  status  notes
=====================================  ======  ==========================================
InputError (and request validation)    400     the reason; at most a short escaped excerpt of the input
UnknownKeyError, RotationNotFound      404
RotationInProgress                     409     carries the id of the rotation holding the key
body larger than the cap               413
SettingsError                          503     names the setting (configuration, not a secret)
TransientError / ThrottledError        503     ``Retry-After`` (the service's hint, else 30 s)
any other RotationError                500     its code and message
anything else                          500     ``InternalError``; the stack trace goes to the log only
=====================================  ======  ==========================================
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rotation.errors import (
    InputError,
    RotationError,
    RotationInProgress,
    SettingsError,
    ThrottledError,
    TransientError,
    UnknownKeyError,
)
from rotation.logs import bound, get_logger

log = get_logger("rotation.api")

MAX_BODY_BYTES = 64 * 1024
MAX_CLIENT_MESSAGE = 300
DEFAULT_RETRY_AFTER_S = 30
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})
_NOT_FOUND_CODES = frozenset({"UnknownKey", "RotationNotFound", "AuditRecordNotFound"})


def error_response(status: int, code: str, message: str, request: Request | None = None, **extra: Any) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    detail: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    detail.update({k: v for k, v in extra.items() if k != "headers"})
    headers: dict[str, str] = dict(extra.get("headers") or {})
    if request_id:
        headers["x-request-id"] = request_id
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


def status_for(exc: RotationError) -> int:
    """The HTTP status a service error maps to (see the module docstring)."""
    if isinstance(exc, UnknownKeyError) or exc.code in _NOT_FOUND_CODES:
        return 404
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, RotationInProgress):
        return 409
    if isinstance(exc, SettingsError | TransientError):
        return 503
    return 500


def rotation_error_response(exc: RotationError, request: Request | None = None) -> JSONResponse:
    status = status_for(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, RotationInProgress):
        extra["rotation_id"] = exc.rotation_id
    if isinstance(exc, TransientError):
        hint = exc.retry_after if isinstance(exc, ThrottledError) else None
        seconds = DEFAULT_RETRY_AFTER_S if hint is None or not math.isfinite(hint) else max(1, math.ceil(hint))
        extra["headers"] = {"Retry-After": str(seconds)}
    level = "warning" if status < 500 else "error"
    message = exc.message if status >= 500 else client_message(exc.message)
    getattr(log, level)("api_request_failed", status=status, code=exc.code, message=message)
    return error_response(status, exc.code, message, request, **extra)


def client_message(message: str) -> str:
    """A 4xx message as sent: printable characters only and at most ``MAX_CLIENT_MESSAGE`` characters, so
    no path that puts caller input into an error can echo more than a short excerpt of it."""
    printable = "".join(c if c.isprintable() else "?" for c in message)
    return printable if len(printable) <= MAX_CLIENT_MESSAGE else printable[: MAX_CLIENT_MESSAGE - 3] + "..."


def _validation_message(errors: Sequence[Any]) -> str:
    """``body.key: Field required; body.dry_run: Input should be a valid boolean`` (never the input value)."""
    parts = []
    for error in list(errors)[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__") or "request"
        if error.get("type") == "json_invalid":
            parts.append("body: is not valid JSON")
            continue
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") in _NOT_AN_OBJECT:
            parts.append("body: must be a JSON object, sent with Content-Type: application/json")
            continue
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)[:1000]


def install_error_handlers(api: FastAPI) -> None:
    """Route every failure through :func:`error_response`; no stack trace reaches a caller."""

    @api.exception_handler(RotationError)
    async def _rotation_error(request: Request, exc: RotationError) -> JSONResponse:
        return rotation_error_response(exc, request)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = _validation_message(exc.errors())
        log.info("api_request_invalid", message=message)
        return error_response(400, "InputError", message, request)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
        code = codes.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, code, str(exc.detail), request, headers=exc.headers)

    @api.middleware("http")
    async def _request_id(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        # Handled here, not by an ``Exception`` handler: Starlette re-raises after such a handler has
        # answered, which the Functions host would turn into its own bare 500.
        request.state.request_id = uuid.uuid4().hex
        with bound(request_id=request.state.request_id):
            try:
                response = await call_next(request)
            except Exception as exc:  # the last line of defence: no stack trace reaches a caller
                log.exception("api_unhandled_exception", error_type=type(exc).__name__)
                return error_response(
                    500, "InternalError", "internal error; the request id is in the service's logs", request
                )
        response.headers.setdefault("x-request-id", request.state.request_id)
        return response


class BodyLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` with 413 before anything parses it.

    The declared ``Content-Length`` is checked first; the body is then read (at most ``max_bytes``
    plus one chunk) and replayed to the app, so a client that lies about its length is stopped too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._too_large(send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        log.warning("api_request_too_large", limit_bytes=self.max_bytes)
        response = error_response(413, "PayloadTooLarge", f"request body is larger than {self.max_bytes} bytes", None)
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})
