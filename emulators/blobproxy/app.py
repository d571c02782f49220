"""The proxy's ASGI app: its own three operations, the refusals, and everything else forwarded to Azurite.

Own operations (Azurite answers 501 for them), as the Blob REST API defines them:

- ``PUT {blob}?comp=legalhold`` with ``x-ms-legal-hold: true|false`` (Set Blob Legal Hold);
- ``PUT {blob}?comp=immutabilityPolicies`` with ``x-ms-immutability-policy-until-date`` (RFC 1123) and
  ``x-ms-immutability-policy-mode`` ``Unlocked|Locked`` (Set Blob Immutability Policy);
- ``DELETE {blob}?comp=immutabilityPolicies`` (Delete Blob Immutability Policy).

They answer 200 with the headers the SDK reads, or 404 ``BlobNotFound`` for a blob Azurite does not have.
Get Blob Properties of a protected blob carries ``x-ms-legal-hold`` and the policy headers.

Blob versioning and soft delete (off until ``PUT /admin/blob-service`` turns them on) are ``versions.py``;
transient faults (``/admin/faults``: the next N matching requests answer 503 ``ServerBusy`` or 500) are
``faults.py``; the admin API (``/admin/blob-service``, ``/admin/clock``, ``/admin/faults``) is answered here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode
from xml.sax.saxutils import escape

import httpx

from emulators.asgi import Receive, Scope, Send, read_body
from emulators.blobproxy.faults import Faults
from emulators.blobproxy.history import BlobService, History
from emulators.blobproxy.state import ARCHIVE_REFUSED, ARCHIVED, POLICY_MODES, Protections, Refusal, parse_until
from emulators.blobproxy.versions import BlobRequest, Response, VersionedBlobs

T = TypeVar("T")

#: (container, blob) -> the blob's access tier upstream, or None when the blob does not exist.
TierLookup = Callable[[str, str], Awaitable[str | None]]

_HOP_BY_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})
DEFAULT_VERSION = "2025-11-05"  # answered when a request names none (Azurite 3.35's latest)


class BlobProxy:
    def __init__(
        self,
        upstream: str,
        protections: Protections,
        tier_of: TierLookup,
        history: History | None = None,
        connection_string: str | None = None,
    ) -> None:
        self.protections = protections
        self.faults = Faults()
        self.tier_of = tier_of
        self.client = httpx.AsyncClient(base_url=upstream, timeout=60.0)
        self.history = history
        self.versions: VersionedBlobs | None = None
        if history is not None and connection_string is not None:
            azurite = SdkUpstream(connection_string, self.client)
            self.versions = VersionedBlobs(
                history, azurite, lambda r: _error(r, {}), lambda status: (status, _common({}), b"")
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        query = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        comp = query.get("comp", [None])[0]
        parts = scope["path"].lstrip("/").split("/", 2)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = await read_body(receive)
        if parts[0] == "admin":
            await _respond(send, *self._admin(method, scope["path"], body))
            return
        fault = self.faults.answer(method, parts, query)
        if fault is not None:
            await _respond(send, *_error(fault, headers), method == "HEAD")
            return
        versioned = "snapshot" in query or "versionid" in query
        if len(parts) == 3 and parts[2] and not versioned:
            handled = await self._blob_request(method, comp, (parts[0], parts[1], parts[2]), headers)
            if handled is not None:
                await _respond(send, *handled)
                return
        answer = await self._versioned(scope, parts, query, headers, body)
        if answer is not None:
            await _respond(send, *answer, method == "HEAD")
            return
        status, out_headers, content = await self._forward(scope, headers, body)
        deleted_container = len(parts) == 2 and method == "DELETE" and query.get("restype") == ["container"]
        if deleted_container and status < 300 and self.versions is not None:
            self.versions.forget_container(parts[0], parts[1])
        if len(parts) == 3 and parts[2] and not versioned and status < 300:
            blob_id = "/".join(parts)
            protection = self.protections.get(blob_id)
            if method in ("HEAD", "GET") and comp is None and protection is not None:
                out_headers += protection.headers()
            if method == "DELETE" and comp is None:
                self.protections.forget(blob_id)
        await _respond(send, status, out_headers, content, method == "HEAD")

    async def _versioned(
        self, scope: Scope, parts: list[str], query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response | None:
        """Versioning and soft delete's answer, or None to forward the request unchanged."""
        if self.versions is None:
            return None
        method: str = scope["method"]
        comp = query.get("comp", [None])[0]
        path = scope["raw_path"].decode() if scope.get("raw_path") else scope["path"]
        if len(parts) == 2 and method == "GET" and comp == "list" and query.get("restype") == ["container"]:
            return await self.versions.list_request(parts[0], parts[1], query, path, headers)
        if len(parts) == 3 and parts[2]:
            name = (parts[0], parts[1], parts[2])
            forward = lambda: self._forward(scope, headers, body)  # noqa: E731
            request = BlobRequest(method, comp, name, query, path, headers, body, forward)
            return await self.versions.blob_request(request)
        return None

    def _admin(self, method: str, path: str, body: bytes) -> Response:
        """``GET|PUT /admin/blob-service`` (``{"versioning": bool, "soft_delete_days": int | null}``) and
        ``GET|PUT /admin/clock`` (``{"now": epoch}`` or ``{"advance_seconds": n}``), as the other emulators';
        ``GET|PUT|DELETE /admin/faults`` (``{"rules": [...]}``, ``faults.py``)."""
        if path == "/admin/faults":
            return self._admin_faults(method, body)
        if self.history is None:
            return _json(404, {"error": {"message": "this proxy keeps no blob history"}})
        try:
            raw: Any = json.loads(body) if body else {}
            if path == "/admin/blob-service" and method == "PUT":
                return _json(200, self.history.set_service(BlobService.from_json(raw)).to_json())
            if path == "/admin/blob-service" and method == "GET":
                return _json(200, self.history.service.to_json())
            if path == "/admin/clock" and method == "PUT":
                if "advance_seconds" in raw:
                    return _json(200, {"now": self.history.advance(float(raw["advance_seconds"]))})
                return _json(200, {"now": self.history.advance(float(raw["now"]) - self.history.now())})
            if path == "/admin/clock" and method == "GET":
                return _json(200, {"now": self.history.now()})
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": {"message": str(exc) or type(exc).__name__}})
        return _json(404, {"error": {"message": f"no admin operation {method} {path}"}})

    def _admin_faults(self, method: str, body: bytes) -> Response:
        try:
            if method == "PUT":
                return _json(200, {"rules": self.faults.set(json.loads(body) if body else None)})
        except ValueError as exc:
            return _json(400, {"error": {"message": str(exc)}})
        if method == "DELETE":
            self.faults.clear()
        elif method != "GET":
            return _json(404, {"error": {"message": f"no admin operation {method} /admin/faults"}})
        return _json(200, {"rules": self.faults.rules()})

    async def _blob_request(
        self, method: str, comp: str | None, name: tuple[str, str, str], headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The proxy's own answer to a request for blob ``name`` (account, container, blob), or None to
        forward it."""
        _, container, blob = name
        blob_id = "/".join(name)
        if comp == "legalhold" and method == "PUT":
            if await self.tier_of(container, blob) is None:
                return _error(NOT_FOUND, headers)
            hold = headers.get("x-ms-legal-hold", "").lower()
            if hold not in ("true", "false"):
                return _error(_invalid_header("x-ms-legal-hold"), headers)
            self.protections.set_legal_hold(blob_id, hold == "true")
            return 200, [*_common(headers), ("x-ms-legal-hold", hold)], b""
        if comp == "immutabilityPolicies" and method in ("PUT", "DELETE"):
            if await self.tier_of(container, blob) is None:
                return _error(NOT_FOUND, headers)
            if method == "DELETE":
                self.protections.set_policy(blob_id, None, None)
                return 200, _common(headers), b""
            mode = headers.get("x-ms-immutability-policy-mode", "Unlocked")
            try:
                until = parse_until(headers.get("x-ms-immutability-policy-until-date"))
            except ValueError:
                return _error(_invalid_header("x-ms-immutability-policy-until-date"), headers)
            canonical = {m.lower(): m for m in POLICY_MODES}.get(mode.lower())
            if canonical is None:
                return _error(_invalid_header("x-ms-immutability-policy-mode"), headers)
            self.protections.set_policy(blob_id, until, canonical)
            policy_headers = [
                ("x-ms-immutability-policy-until-date", format_datetime(until.astimezone(UTC), usegmt=True)),
                ("x-ms-immutability-policy-mode", canonical.lower()),
            ]
            return 200, [*_common(headers), *policy_headers], b""
        refusal = self.protections.refusal(blob_id, comp, method, datetime.now(UTC))
        archive_checked = refusal is None and method == "PUT" and comp in ARCHIVE_REFUSED
        if archive_checked and (await self.tier_of(container, blob) or "").lower() == "archive":
            refusal = ARCHIVED
        return _error(refusal, headers) if refusal is not None else None

    async def _forward(
        self, scope: Scope, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        target = scope["raw_path"].decode() if scope.get("raw_path") else scope["path"]
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode()
        sent = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP or k == "content-length"}
        response = await self.client.request(scope["method"], target, headers=sent, content=body)
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
        if scope["method"] == "HEAD" and "content-length" in response.headers:
            kept.append(("content-length", response.headers["content-length"]))
        return response.status_code, kept, response.content

    async def close(self) -> None:
        await self.client.aclose()


def _json(status: int, body: Any) -> Response:
    return status, [("content-type", "application/json")], json.dumps(body).encode()


NOT_FOUND = Refusal(404, "BlobNotFound", "The specified blob does not exist.")


def _invalid_header(name: str) -> Refusal:
    message = f"The value for one of the HTTP headers is not in the correct format: {name}."
    return Refusal(400, "InvalidHeaderValue", message)


def _common(headers: dict[str, str]) -> list[tuple[str, str]]:
    found = [
        ("x-ms-request-id", str(uuid.uuid4())),
        ("x-ms-version", headers.get("x-ms-version", DEFAULT_VERSION)),
        ("date", format_datetime(datetime.now(UTC), usegmt=True)),
        ("server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"),
    ]
    if "x-ms-client-request-id" in headers:
        found.append(("x-ms-client-request-id", headers["x-ms-client-request-id"]))
    return found


def _error(refusal: Refusal, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Azure's storage error shape: status, ``x-ms-error-code``, and the XML ``Error`` body."""
    common = _common(headers)
    request_id = common[0][1]
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    body = (
        '<?xml version="1.0" encoding="utf-8"?><Error>'
        f"<Code>{refusal.code}</Code><Message>{escape(refusal.message)}\nRequestId:{request_id}\nTime:{when}</Message>"
        "</Error>"
    ).encode()
    return refusal.status, [*common, ("x-ms-error-code", refusal.code), ("content-type", "application/xml")], body


async def _respond(send: Send, status: int, headers: list[tuple[str, str]], body: bytes, head: bool = False) -> None:
    if not head:
        headers = [*headers, ("content-length", str(len(body)))]
    raw = [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else body})


def sdk_tier_lookup(connection_string: str) -> TierLookup:
    """Read a blob's tier upstream with the official SDK (its shared key), in a worker thread."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)

    def lookup(container: str, blob: str) -> str | None:
        try:
            props = service.get_blob_client(container, blob).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return str(props.blob_tier or "")

    async def tier_of(container: str, blob: str) -> str | None:
        return await asyncio.to_thread(lookup, container, blob)

    return tier_of


class SdkUpstream:
    """What the proxy asks Azurite itself, with the official SDK and the account key (in worker threads),
    and requests it re-sends with its own account SAS (the client's signature covers the query it changed).
    Implements ``versions.Upstream``."""

    def __init__(self, connection_string: str, client: httpx.AsyncClient) -> None:
        from azure.storage.blob import AccountSasPermissions, BlobServiceClient, ResourceTypes, generate_account_sas

        self.service = BlobServiceClient.from_connection_string(connection_string)
        self.client = client
        self._last_snapshot: dict[str, float] = {}
        credential = self.service.credential
        self.sas = generate_account_sas(
            credential.account_name,
            credential.account_key,
            ResourceTypes(service=True, container=True, object=True),
            AccountSasPermissions(read=True, write=True, delete=True, list=True, delete_previous_version=True),
            expiry=datetime.now(UTC) + timedelta(days=3650),
        )

    async def snapshot(self, container: str, blob: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        def take() -> str | None:
            try:
                return str(self.service.get_blob_client(container, blob).create_snapshot()["snapshot"])
            except ResourceNotFoundError:
                return None

        return await self.spaced(container, blob, lambda: asyncio.to_thread(take))

    async def spaced(self, container: str, blob: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` (a Snapshot Blob) at least 2 ms after the blob's previous snapshot was answered.

        Azurite names a snapshot by its request's start time in milliseconds (LokiBlobMetadataStore
        createSnapshot: convertDateTimeStringMsTo7Digital(context.startTime)): two snapshots of one blob
        in the same millisecond would share an id.
        """
        key = f"{container}/{blob}"
        wait = self._last_snapshot.get(key, 0.0) + 0.002 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            return await call()
        finally:
            self._last_snapshot[key] = time.monotonic()  # after Azurite answered: later than its start time

    async def delete_snapshot(self, container: str, blob: str, snapshot: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        def delete() -> None:
            with contextlib.suppress(ResourceNotFoundError):
                self.service.get_blob_client(container, blob, snapshot=snapshot).delete_blob()

        await asyncio.to_thread(delete)

    async def delete_all(self, container: str, blob: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        def delete() -> None:
            with contextlib.suppress(ResourceNotFoundError):
                self.service.get_blob_client(container, blob).delete_blob(delete_snapshots="include")

        await asyncio.to_thread(delete)

    async def snapshots(self, container: str, blob: str) -> list[str] | None:
        def listed() -> list[str] | None:
            listing = self.service.get_container_client(container)
            found = [b for b in listing.list_blobs(name_starts_with=blob, include=["snapshots"]) if b.name == blob]
            if not any(not b.snapshot for b in found):
                return None
            return [str(b.snapshot) for b in found if b.snapshot]

        return await asyncio.to_thread(listed)

    async def send(
        self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
    ) -> Response:
        target = path + "?" + urlencode(query) + ("&" if query else "") + self.sas
        sent = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP and k != "authorization"}
        response = await self.client.request(method, target, headers=sent, content=body)
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
        if method == "HEAD" and "content-length" in response.headers:
            kept.append(("content-length", response.headers["content-length"]))
        return response.status_code, kept, response.content
