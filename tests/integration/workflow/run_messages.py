"""Deliver ``rotation-run`` messages from Azurite to the ``run_rotation`` trigger, as the Functions host would.

Shared by the integration tests of continuations and the estate benchmark's ``budget`` section.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import azure.functions as func
from azure.storage.queue import QueueClient

from rotation import bootstrap
from rotation.service.deps import Dependencies
from rotation.settings import RUN_QUEUE
from rotation.triggers.runner import run_rotation_message


def run_queue(connection_string: str) -> QueueClient:
    return QueueClient.from_connection_string(connection_string, RUN_QUEUE)


def next_message(queue: QueueClient, rotation_id: str, wait_s: float) -> Any:
    """The next visible message naming ``rotation_id`` (deleted from the queue), or None after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for message in queue.receive_messages(max_messages=32, visibility_timeout=1):
            if rotation_id in decode(message.content):
                queue.delete_message(message)
                return message
        time.sleep(0.2)
    return None


def invoke(deps: Dependencies, message: Any) -> None:
    """One invocation of the ``run_rotation`` trigger on ``message``, with ``deps`` as the app's dependencies."""
    bootstrap.override_dependencies(deps)
    try:
        run_rotation_message(func.QueueMessage(body=decode(message.content).encode()))
    finally:
        bootstrap.override_dependencies(None)


def deliver_until_settled(
    queue: QueueClient, deps: Dependencies, rotation_id: str, *, limit: int = 30, wait_s: float = 15
) -> int:
    """Run the trigger on each of the rotation's messages once visible, until none comes within ``wait_s``
    (no continuation was enqueued); the invocations used."""
    invocations = 0
    while invocations < limit:
        message = next_message(queue, rotation_id, wait_s)
        if message is None:
            return invocations
        invoke(deps, message)
        invocations += 1
    raise AssertionError(f"still continuing after {limit} invocations")


def decode(content: str) -> str:
    try:
        return base64.b64decode(content).decode()
    except ValueError:
        return content
