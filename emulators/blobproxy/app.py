"""The proxy's ASGI app: its own three operations, the refusals, and everything else forwarded to Azurite.

Own operations (Azurite answers 501 for them), as the Blob REST API defines them:

- ``PUT {blob}?comp=legalhold`` with ``x-ms-legal-hold: true|false`` (Set Blob Legal Hold);
- ``PUT {blob}?comp=immutabilityPolicies`` with ``x-ms-immutability-policy-until-date`` (RFC 1123) and
  ``x-ms-immutability-policy-mode`` ``Unlocked|Locked`` (Set Blob Immutability Policy);
- ``DELETE {blob}?comp=immutabilityPolicies`` (Delete Blob Immutability Policy).

They answer 200 with the headers the SDK reads, or 404 ``BlobNotFound`` for a blob Azurite does not have.
Get Blob Properties of a protected blob carries ``x-ms-legal-hold`` and the policy headers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import httpx

from emulators.asgi import Receive, Scope, Send, read_body
from emulators.blobproxy.state import ARCHIVE_REFUSED, ARCHIVED, POLICY_MODES, Protections, Refusal, parse_until

#: (container, blob) -> the blob's access tier upstream, or None when the blob does not exist.
TierLookup = Callable[[str, str], Awaitable[str | None]]

_HOP_BY_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})
DEFAULT_VERSION = "2025-11-05"  # answered when a request names none (Azurite 3.35's latest)


class BlobProxy:
    def __init__(self, upstream: str, protections: Protections, tier_of: TierLookup) -> None:
        self.protections = protections
        self.tier_of = tier_of
        self.client = httpx.AsyncClient(base_url=upstream, timeout=60.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        query = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        comp = query.get("comp", [None])[0]
        parts = scope["path"].lstrip("/").split("/", 2)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = await read_body(receive)
        versioned = "snapshot" in query or "versionid" in query
        if len(parts) == 3 and parts[2] and not versioned:
            handled = await self._blob_request(method, comp, (parts[0], parts[1], parts[2]), headers)
            if handled is not None:
                await _respond(send, *handled)
                return
        status, out_headers, content = await self._forward(scope, headers, body)
        if len(parts) == 3 and parts[2] and not versioned and status < 300:
            blob_id = "/".join(parts)
            protection = self.protections.get(blob_id)
            if method in ("HEAD", "GET") and comp is None and protection is not None:
                out_headers += protection.headers()
            if method == "DELETE" and comp is None:
                self.protections.forget(blob_id)
        await _respond(send, status, out_headers, content, method == "HEAD")

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
