"""Key Vault events in Event Grid schema, delivered to an Azurite queue or an HTTP endpoint.

Shape (DOCS event-schema-key-vault.md; SPECS eventgrid KeyVault.json, PascalCase data):
``{id, topic (vault ARM id), subject (key name), eventType, eventTime, data {Id, VaultName, ObjectType,
ObjectName, Version, NBF, EXP}, dataVersion "1", metadataVersion "1"}``. The queue sink sends one message per
event, the event JSON base64-encoded, as Event Grid's storage-queue handler does; the HTTP sink POSTs a JSON
array with ``aeg-event-type: Notification`` (and the other ``aeg-*`` headers). A failed delivery is tried
twice more (after 0.5 s and 2 s), then counted as failed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime as dt
import json
import logging
import ssl
import urllib.request
import uuid
from typing import Any

log = logging.getLogger("emulators.keyvault.events")
# A short version of Event Grid's retry schedule (10 s, 30 s, 1 min, ...): enough for a sink that blips.
RETRY_DELAYS_S = (0.0, 0.5, 2.0)

NEW_VERSION = "Microsoft.KeyVault.KeyNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.KeyNearExpiry"
EXPIRED = "Microsoft.KeyVault.KeyExpired"


def _event_time(now: float) -> str:
    stamp = dt.datetime.fromtimestamp(now, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}0Z"


def key_event(
    event_type: str,
    *,
    arm_id: str,
    vault_name: str,
    kid: str,
    name: str,
    version: str,
    nbf: int | None,
    exp: int | None,
    now: float,
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": arm_id,
        "subject": name,
        "eventType": event_type,
        "eventTime": _event_time(now),
        "data": {
            "Id": kid,
            "VaultName": vault_name,
            "ObjectType": "Key",
            "ObjectName": name,
            "Version": version,
            "NBF": nbf,
            "EXP": exp,
        },
        "dataVersion": "1",
        "metadataVersion": "1",
    }


def validate_sink(sink: object) -> dict[str, Any] | None:
    """Check an admin ``sink`` value; raises ValueError naming the problem."""
    if sink is None:
        return None
    if not isinstance(sink, dict):
        raise ValueError("'sink' must be an object or null")
    if sink.get("type") == "queue":
        if not isinstance(sink.get("connection_string"), str) or not isinstance(sink.get("queue"), str):
            raise ValueError("a queue sink needs 'connection_string' and 'queue'")
        return {"type": "queue", "connection_string": sink["connection_string"], "queue": sink["queue"]}
    if sink.get("type") == "http":
        if not isinstance(sink.get("url"), str) or not sink["url"].startswith(("http://", "https://")):
            raise ValueError("an http sink needs an http(s) 'url'")
        return {"type": "http", "url": sink["url"], "ca_bundle": sink.get("ca_bundle")}
    raise ValueError("'sink.type' must be 'queue' or 'http'")


class EventBus:
    """Queues events in order and delivers them one by one off the event loop."""

    def __init__(self) -> None:
        self.sink: dict[str, Any] | None = None
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self.delivered = 0
        self.failed = 0
        self.last_error: str | None = None
        self._queue: asyncio.Queue[tuple[dict[str, Any], dict[str, Any] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def emit(self, event: dict[str, Any]) -> None:
        self.recent.append(event)
        self._queue.put_nowait((event, self.sink))

    def status(self) -> dict[str, Any]:
        public_sink = None
        if self.sink:
            public_sink = {"type": self.sink["type"]}
            public_sink.update(
                {"queue": self.sink["queue"]} if self.sink["type"] == "queue" else {"url": self.sink["url"]}
            )
        return {
            "sink": public_sink,
            "pending": self._queue.qsize(),
            "delivered": self.delivered,
            "failed": self.failed,
            "last_error": self.last_error,
            "recent": list(self.recent),
        }

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            event, sink = await self._queue.get()
            if sink is None:
                continue
            for attempt, delay in enumerate(RETRY_DELAYS_S):
                await asyncio.sleep(delay)
                try:
                    await loop.run_in_executor(None, _deliver, sink, event, attempt)
                except Exception as exc:  # noqa: BLE001 - a sink failure must not stop the emulator
                    self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    log.warning("event delivery to %s sink failed (attempt %d): %s", sink["type"], attempt + 1, exc)
                    continue
                self.delivered += 1
                break
            else:
                self.failed += 1


_queue_clients: dict[tuple[str, str], Any] = {}


def _deliver(sink: dict[str, Any], event: dict[str, Any], attempt: int = 0) -> None:
    if sink["type"] == "queue":
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import QueueClient

        cache_key = (sink["connection_string"], sink["queue"])
        client = _queue_clients.get(cache_key)
        if client is None:
            client = QueueClient.from_connection_string(sink["connection_string"], sink["queue"])
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            _queue_clients[cache_key] = client
        client.send_message(base64.b64encode(json.dumps(event).encode()).decode())
        return
    body = json.dumps([event]).encode()
    request = urllib.request.Request(  # noqa: S310 - URL scheme checked in validate_sink
        sink["url"],
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "aeg-event-type": "Notification",
            "aeg-subscription-name": "LOCAL-KEYVAULT-EVENTS",
            "aeg-delivery-count": str(attempt),
            "aeg-data-version": "1",
            "aeg-metadata-version": "1",
        },
    )
    context = ssl.create_default_context(cafile=sink.get("ca_bundle")) if sink["url"].startswith("https") else None
    with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
        if response.status not in (200, 201, 202, 203, 204):
            raise RuntimeError(f"HTTP sink answered {response.status}")
