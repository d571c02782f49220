"""Trigger data shaped as the Functions host's extensions send it to a worker.

- Event Grid: the event's JSON (either schema) as ``json`` TypedData, one invocation per event.
- Timer: ``{"Schedule": ..., "ScheduleStatus": ..., "IsPastDue": ...}`` as ``json``.
- Queue: the message text as ``string`` (base64-decoded first when host.json's
  ``extensions.queues.messageEncoding`` is ``base64``, the default), with the trigger metadata
  ``Id``, ``PopReceipt``, ``QueueTrigger`` (strings), ``DequeueCount`` (a JSON number) and
  ``InsertionTime``, ``ExpirationTime``, ``NextVisibleTime`` (JSON dates).
- HTTP: an ``RpcHttp`` with the raw body as bytes (the worker announced ``RawHttpBodyBytes``).

Source: protocol facts (functions-worker notes) and the azure-functions converters that decode them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.worker.host import Invocation, WorkerHost


def event_grid(host: WorkerHost, function: str, event: Mapping[str, Any]) -> Invocation:
    """Deliver one Event Grid event (Event Grid schema or CloudEvents 1.0) to ``function``."""
    name = host.functions[function].trigger["name"]
    return host.invoke(function, {name: host.pb2.TypedData(json=json.dumps(event))})


def timer(host: WorkerHost, function: str, *, past_due: bool = False) -> Invocation:
    """One tick of a timer function, with the schedule status the timer monitor keeps."""
    now = datetime.now(UTC)
    info = {
        "Schedule": {"AdjustForDST": True},
        "ScheduleStatus": {
            "Last": (now - timedelta(minutes=15)).isoformat(),
            "Next": (now + timedelta(minutes=15)).isoformat(),
            "LastUpdated": now.isoformat(),
        },
        "IsPastDue": past_due,
    }
    name = host.functions[function].trigger["name"]
    return host.invoke(function, {name: host.pb2.TypedData(json=json.dumps(info))})


def queue_text(host: WorkerHost, raw: str) -> str:
    """The message text the function sees: base64-decoded when host.json says the queue is base64.

    Raises:
        ValueError: a base64 queue holds a message that is not base64 (the host fails it too).
    """
    encoding = host.host_json.get("extensions", {}).get("queues", {}).get("messageEncoding", "base64")
    if str(encoding).lower() != "base64":
        return raw
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"message is not valid base64: {exc}") from exc


def queue_message(
    host: WorkerHost,
    function: str,
    *,
    text: str,
    message_id: str,
    dequeue_count: int,
    pop_receipt: str,
    inserted_on: datetime,
    expires_on: datetime,
    next_visible_on: datetime,
) -> Invocation:
    """Deliver one queue message (already decoded) with the host's trigger metadata."""
    td = host.pb2.TypedData
    metadata = {
        "Id": td(string=message_id),
        "PopReceipt": td(string=pop_receipt),
        "QueueTrigger": td(string=text),
        "DequeueCount": td(json=json.dumps(dequeue_count)),
        "InsertionTime": td(json=json.dumps(inserted_on.isoformat())),
        "ExpirationTime": td(json=json.dumps(expires_on.isoformat())),
        "NextVisibleTime": td(json=json.dumps(next_visible_on.isoformat())),
    }
    name = host.functions[function].trigger["name"]
    return host.invoke(function, {name: td(string=text)}, metadata, retry_count=max(dequeue_count - 1, 0))


def http(
    host: WorkerHost,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    function: str = "http_app_func",
) -> HttpResult:
    """One HTTP request through ``function`` (the ASGI app), as the host's HTTP trigger sends it."""
    query = dict(params or {})
    base = path if path.startswith(("http://", "https://")) else f"http://localhost{path}"  # a Location as given
    url = base + (f"?{urlencode(query)}" if query else "")
    request = host.pb2.RpcHttp(
        method=method,
        url=url,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        body=host.pb2.TypedData(bytes=body),
        query=query,
    )
    name = host.functions[function].trigger["name"]
    return HttpResult(host.invoke(function, {name: host.pb2.TypedData(http=request)}))


class HttpResult:
    """The HTTP response the worker returned (``$return``), and the invocation behind it."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation
        http = invocation.response.return_value.http
        self.status_code = int(http.status_code or 0)
        self.headers = dict(http.headers)
        kind = http.body.WhichOneof("data")
        self.body: bytes = (
            http.body.bytes if kind == "bytes" else str(getattr(http.body, kind) if kind else "").encode()
        )

    def json(self) -> Any:
        return json.loads(self.body)
