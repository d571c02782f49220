"""Real Azurite queue messages delivered through the worker with the host's dequeue and poison rules."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from tests.worker.conftest import local_settings
from tests.worker.host import REPO, WorkerHost
from tests.worker.queues import QueueListener


def _host_json(**queues: Any) -> dict[str, Any]:
    """The app's host.json, with its queue settings overridden (a 0 s visibility timeout keeps tests quick)."""
    host_json: dict[str, Any] = json.loads((REPO / "host.json").read_text())
    host_json["extensions"]["queues"].update(queues)
    return host_json


@pytest.fixture(scope="module")
def rewrap_queue() -> str:
    return f"rw-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def listener(local_azure: dict[str, Any], rewrap_queue: str) -> Iterator[QueueListener]:
    settings = local_settings(local_azure, ROTATION_REWRAP_QUEUE=rewrap_queue)
    with WorkerHost(settings, host_json=_host_json(visibilityTimeout="00:00:00")) as host, QueueListener(host) as qs:
        yield qs


def _queue(local_azure: dict[str, Any], name: str) -> QueueClient:
    return QueueClient.from_connection_string(local_azure["storage"]["connection_string"], name)


def _send(local_azure: dict[str, Any], name: str, text: str, *, encode: bool = True) -> None:
    client = _queue(local_azure, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.send_message(base64.b64encode(text.encode()).decode() if encode else text)
    client.close()


def _peek_all(local_azure: dict[str, Any], name: str) -> list[str]:
    client = _queue(local_azure, name)
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    finally:
        client.close()


class TestPoisonQueue:
    """A message the function keeps failing is tried maxDequeueCount times, then moved to <queue>-poison."""

    def test_failing_rewrap_message_lands_in_poison_after_five_tries(
        self, listener: QueueListener, local_azure: dict[str, Any], rewrap_queue: str
    ) -> None:
        _send(local_azure, rewrap_queue, "this is not a work item")

        deliveries = listener.run_until_idle(["rewrap_worker"])

        assert [(d.dequeue_count, d.outcome) for d in deliveries] == [
            (1, "released"),
            (2, "released"),
            (3, "released"),
            (4, "released"),
            (5, "poisoned"),
        ]
        assert all(d.invocation is not None and not d.invocation.succeeded for d in deliveries)
        errors = [m for d in deliveries if d.invocation for m in d.invocation.messages("Error")]
        assert len(errors) == 5
        assert all('"event": "rewrap_message_malformed"' in m for m in errors)
        assert _peek_all(local_azure, rewrap_queue) == []
        assert _peek_all(local_azure, f"{rewrap_queue}-poison") == [
            base64.b64encode(b"this is not a work item").decode()
        ]

    def test_message_that_is_not_base64_is_poisoned_without_an_invocation(
        self, listener: QueueListener, local_azure: dict[str, Any], rewrap_queue: str
    ) -> None:
        _send(local_azure, rewrap_queue, "not base64 at all!", encode=False)

        deliveries = listener.run_until_idle(["rewrap_worker"])

        assert [d.outcome for d in deliveries] == ["released"] * 4 + ["poisoned"]
        assert all(d.invocation is None and "base64" in d.problem for d in deliveries)
        assert "not base64 at all!" in _peek_all(local_azure, f"{rewrap_queue}-poison")


class TestCompletedMessage:
    """A message the function handles is deleted after one delivery."""

    def test_run_message_for_an_unknown_rotation_completes_once(
        self, listener: QueueListener, local_azure: dict[str, Any]
    ) -> None:
        text = json.dumps({"rotation_id": f"r-{uuid.uuid4().hex}"})
        _send(local_azure, "rotation-run", text)

        ours = [d for d in listener.run_until_idle(["run_rotation"]) if base64.b64decode(d.content).decode() == text]

        assert [(d.dequeue_count, d.outcome) for d in ours] == [(1, "completed")]
        assert ours[0].invocation is not None
        assert any('"event": "run_unknown_rotation"' in m for m in ours[0].invocation.messages("Error"))
        assert base64.b64encode(text.encode()).decode() not in _peek_all(local_azure, "rotation-run")
