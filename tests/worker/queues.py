"""The host's storage-queue listener, for the stand-in: real Azurite messages delivered to queue functions.

As the WebJobs storage-queue extension does it (``QueueListener`` / ``QueueProcessor``, settings from
host.json ``extensions.queues``):

- messages are received in batches of ``batchSize`` and hidden while they run;
- a message already dequeued more than ``maxDequeueCount`` times goes to the poison queue unseen;
- the text is base64-decoded when ``messageEncoding`` is ``base64`` (a message that is not base64 fails
  like a failed invocation);
- success deletes the message; a failure on try ``maxDequeueCount`` moves it to ``<queue>-poison``
  (created on first use) and deletes it; an earlier failure makes it visible again after
  ``visibilityTimeout``.

Polling is driven by the caller (``poll``, ``run_until_idle``), so tests decide when messages move; the
host's back-off between empty polls (up to ``maxPollingInterval``) is not modelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from tests.worker import triggers
from tests.worker.host import Invocation, WorkerHost

RECEIVE_VISIBILITY_S = 600  # how long a received message stays hidden while its invocation runs


@dataclass(frozen=True)
class QueueSettings:
    """host.json ``extensions.queues`` as the extension reads it (with its documented defaults)."""

    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout_s: float = 0.0
    base64: bool = True

    @classmethod
    def from_host_json(cls, host_json: dict[str, Any]) -> QueueSettings:
        queues = host_json.get("extensions", {}).get("queues", {})
        return cls(
            batch_size=int(queues.get("batchSize", 16)),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout_s=_seconds(queues.get("visibilityTimeout", "00:00:00")),
            base64=str(queues.get("messageEncoding", "base64")).lower() == "base64",
        )


@dataclass(frozen=True)
class Delivery:
    """What happened to one received message."""

    function: str
    message_id: str
    dequeue_count: int
    outcome: str  # "completed" | "released" | "poisoned"
    invocation: Invocation | None  # None when the function was not invoked (poisoned unseen, not base64)
    problem: str = ""
    content: str = ""  # the message as stored (base64 on a base64 queue)


class QueueListener:
    """Delivers the messages of every queue-triggered function of ``host`` through the worker."""

    def __init__(self, host: WorkerHost) -> None:
        self.host = host
        self.settings = QueueSettings.from_host_json(host.host_json)
        self._clients: dict[str, QueueClient] = {}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> QueueListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def queue_functions(self) -> list[str]:
        return sorted(n for n, f in self.host.functions.items() if f.trigger["type"] == "queueTrigger")

    def queue_name(self, function: str) -> str:
        return str(self.host.functions[function].trigger["queueName"])

    def client(self, queue: str, function: str) -> QueueClient:
        """A client without encode/decode policies: message text is handled as the host handles it."""
        if queue not in self._clients:
            connection = self.host.settings[self.host.functions[function].trigger["connection"]]
            client = QueueClient.from_connection_string(connection, queue)
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            self._clients[queue] = client
        return self._clients[queue]

    def poll(self, functions: Iterable[str] | None = None) -> list[Delivery]:
        """Receive one batch per function's queue and deliver each message; return what happened."""
        deliveries: list[Delivery] = []
        for function in functions or self.queue_functions():
            queue = self.client(self.queue_name(function), function)
            batch = list(
                queue.receive_messages(
                    messages_per_page=self.settings.batch_size,
                    max_messages=self.settings.batch_size,
                    visibility_timeout=RECEIVE_VISIBILITY_S,
                )
            )
            deliveries.extend(self._deliver(function, queue, message) for message in batch)
        return deliveries

    def run_until_idle(self, functions: Iterable[str] | None = None, max_polls: int = 50) -> list[Delivery]:
        """Poll until a poll finds nothing (messages released with a delay may come back later)."""
        deliveries: list[Delivery] = []
        for _ in range(max_polls):
            batch = self.poll(functions)
            if not batch:
                break
            deliveries.extend(batch)
        return deliveries

    def _deliver(self, function: str, queue: QueueClient, message: Any) -> Delivery:
        count = int(message.dequeue_count)
        if count > self.settings.max_dequeue_count:
            self._poison(function, queue, message)
            return Delivery(function, message.id, count, "poisoned", None, "dequeued too often", message.content)
        try:
            text = triggers.queue_text(self.host, message.content) if self.settings.base64 else message.content
        except ValueError as exc:
            return self._fail(function, queue, message, None, str(exc))
        invocation = triggers.queue_message(
            self.host,
            function,
            text=text,
            message_id=message.id,
            dequeue_count=count,
            pop_receipt=message.pop_receipt,
            inserted_on=message.inserted_on,
            expires_on=message.expires_on,
            next_visible_on=message.next_visible_on,
        )
        if invocation.succeeded:
            queue.delete_message(message.id, message.pop_receipt)
            return Delivery(function, message.id, count, "completed", invocation, "", message.content)
        return self._fail(function, queue, message, invocation, invocation.error)

    def _fail(
        self, function: str, queue: QueueClient, message: Any, invocation: Invocation | None, problem: str
    ) -> Delivery:
        count = int(message.dequeue_count)
        if count >= self.settings.max_dequeue_count:
            self._poison(function, queue, message)
            return Delivery(function, message.id, count, "poisoned", invocation, problem, message.content)
        queue.update_message(
            message.id, message.pop_receipt, visibility_timeout=int(self.settings.visibility_timeout_s)
        )
        return Delivery(function, message.id, count, "released", invocation, problem, message.content)

    def _poison(self, function: str, queue: QueueClient, message: Any) -> None:
        poison = self.client(f"{queue.queue_name}-poison", function)
        poison.send_message(message.content)  # the stored text as it was (still base64)
        queue.delete_message(message.id, message.pop_receipt)


def _seconds(value: str) -> float:
    """An ``hh:mm:ss`` host.json duration in seconds."""
    hours, minutes, seconds = (float(part) for part in str(value).split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds).total_seconds()


def settle(
    host: WorkerHost, listener: QueueListener, done: Any, rounds: int = 20
) -> tuple[list[Delivery], list[Invocation]]:
    """Run the app as Azure would until ``done()``: deliver queued messages, then tick ``reconcile``
    (a rotation waiting on its re-wrap is resumed by the timer). Returns the deliveries and the ticks.
    """
    deliveries: list[Delivery] = []
    ticks: list[Invocation] = []
    for _ in range(rounds):
        deliveries.extend(listener.run_until_idle())
        ticks.append(triggers.timer(host, "reconcile"))
        if done():
            break
    return deliveries, ticks
