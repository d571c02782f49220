"""Work-item messages: on an Azure Storage queue (scale-out) or an in-process queue (inline).

A message is a pointer, ``{"rotation_id": ..., "item": "item-PP-LLL-SSSSSS"}``: the item's marker and
progress live in the checkpoint table, so a repeated message repeats nothing harmful. Messages are
base64 text, the Functions queue trigger's default encoding.

``drain`` consumes a storage queue the way the Functions host does (receive, run with the dequeue count,
delete on success, leave visible again on failure, move to ``<queue>-poison`` after ``max_dequeue``
tries). It is for
workers outside the Functions host: benchmarks, the local server and tests.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from rotation.adapters.host_storage import StorageConnection, host_storage
from rotation.logs import get_logger

log = get_logger(__name__)
MAX_DEQUEUE = 5  # host.json queues.maxDequeueCount default
MIN_POLL_S = 0.05
MAX_POLL_S = 2.0  # host.json queues.maxPollingInterval


@dataclass(frozen=True)
class WorkMessage:
    rotation_id: str
    item: str

    def to_json(self) -> str:
        return json.dumps({"rotation_id": self.rotation_id, "item": self.item})

    @classmethod
    def from_json(cls, body: str) -> WorkMessage:
        """Raises ValueError for a body that is not a work item."""
        try:
            data = json.loads(body)
        except RecursionError:
            raise ValueError("not a re-wrap work item") from None
        if not isinstance(data, dict) or not isinstance(data.get("rotation_id"), str):
            raise ValueError("not a re-wrap work item")
        item = data.get("item")
        if not isinstance(item, str) or not item.startswith("item-"):
            raise ValueError("not a re-wrap work item")
        return cls(data["rotation_id"], item)


class WorkQueue(Protocol):
    def send(self, message: WorkMessage) -> None: ...


class LocalWorkQueue:
    """In-process FIFO for inline mode."""

    def __init__(self) -> None:
        self.messages: deque[WorkMessage] = deque()

    def send(self, message: WorkMessage) -> None:
        self.messages.append(message)


def storage_queue(connection: StorageConnection, name: str, **kwargs: Any) -> QueueClient:
    return host_storage(connection).queue_client(
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
        **kwargs,
    )


class StorageWorkQueue:
    """The ``ROTATION_REWRAP_QUEUE`` queue (created on first send)."""

    def __init__(self, client: QueueClient) -> None:
        self.client = client
        self._ensured = False

    def send(self, message: WorkMessage) -> None:
        if not self._ensured:
            with contextlib.suppress(ResourceExistsError):
                self.client.create_queue()
            self._ensured = True
        self.client.send_message(message.to_json())


def drain(
    queue: QueueClient,
    poison: QueueClient,
    handle: Callable[[str, int], None],
    *,
    idle_s: float = 1.0,
    visibility_timeout: int = 60,
    retry_delay_s: int = 0,
    max_dequeue: int = MAX_DEQUEUE,
    stop: Callable[[], bool] = lambda: False,
    concurrency: int = 1,
    max_poll_s: float = MAX_POLL_S,
) -> int:
    """Consume ``queue`` until it has been empty for ``idle_s`` (or ``stop()``); return messages handled.

    ``concurrency`` messages are handled at once (each by its own receive loop), as the Functions host
    runs a batch of queue messages concurrently in one worker process. An empty queue is polled with
    exponential back-off from 50 ms up to ``max_poll_s`` (host.json ``maxPollingInterval``), as the host
    does, so idle loops cost little.
    """
    if concurrency > 1:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="drain") as loops:
            loop = partial(
                drain, queue, poison, handle, idle_s=idle_s, visibility_timeout=visibility_timeout,
                retry_delay_s=retry_delay_s, max_dequeue=max_dequeue, stop=stop, max_poll_s=max_poll_s,
            )  # fmt: skip
            futures = [loops.submit(loop) for _ in range(concurrency)]
            return sum(future.result() for future in futures)
    handled = 0
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()  # a worker may start before the first work item is sent
    idle_since = time.monotonic()
    poll_s = MIN_POLL_S
    while not stop():
        batch = list(queue.receive_messages(messages_per_page=1, max_messages=1, visibility_timeout=visibility_timeout))
        if not batch:
            idle_for = time.monotonic() - idle_since
            if idle_for >= idle_s:
                return handled
            time.sleep(min(poll_s, max(idle_s - idle_for, 0.0)))
            poll_s = min(max_poll_s, poll_s * 2)
            continue
        idle_since = time.monotonic()
        poll_s = MIN_POLL_S
        for msg in batch:
            body = str(msg.content)
            try:
                handle(body, int(msg.dequeue_count or 1))
            except Exception as exc:  # noqa: BLE001 - the host's contract: any failure leaves the message for retry
                log.warning("rewrap_item_failed", dequeue_count=msg.dequeue_count, error=type(exc).__name__)
                if int(msg.dequeue_count or 1) >= max_dequeue:
                    with contextlib.suppress(ResourceExistsError):
                        poison.create_queue()
                    poison.send_message(body)
                    queue.delete_message(msg)
                else:
                    queue.update_message(msg, visibility_timeout=retry_delay_s)
                continue
            queue.delete_message(msg)
            handled += 1
    return handled
