"""The Azure path: a POST or a Key Vault event only enqueues the rotation; the queue triggers carry it on.

The app runs as deployed (queued dispatch): ``POST /api/rotations`` records the rotation and puts it
on ``rotation-run``; a second POST meets the per-key lock (409 with the first rotation's id). The
messages are then handed to the ``run_rotation`` and ``rewrap_worker`` functions as the Functions
host would (``func.QueueMessage``, base64 decoded per host.json), and the ``reconcile`` timer resumes
the rotation once its re-wrap is done, until the rotation is cut over.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import httpx
import pytest
import uvicorn
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from demo.estate import Estate, seed_estate
from emulators.arm.admin_client import ArmAdmin
from emulators.keyvault.admin_client import KeyVaultAdmin
from emulators.localazure import free_port
from rotation import bootstrap
from rotation.api.app import create_app
from tests.functions_host import invoke

RUN_QUEUE = "rotation-run"


@pytest.fixture
def estate(local_azure: dict[str, Any]) -> Iterator[Estate]:
    arm = ArmAdmin(local_azure["arm"]["admin"], local_azure["ca_bundle"])
    saved = arm.role_assignments()
    seeded = seed_estate(local_azure, blobs=4)
    seeded.apply(ROTATION_LOG_FORMAT="console", ROTATION_LOG_LEVEL="WARNING")
    bootstrap.override_dependencies(None)
    bootstrap.use_inline_dispatch(False)
    bootstrap.reset_rewrap_data_keys()
    yield seeded
    bootstrap.reset_rewrap_data_keys()
    arm.set_role_assignments(saved)


def _drain(connection: str, queue: str, function: str) -> int:
    """Hand every visible message of ``queue`` to ``function`` and delete it, as the host does on success."""
    client = QueueClient.from_connection_string(connection, queue, message_decode_policy=TextBase64DecodePolicy())
    handled = 0
    try:
        for message in client.receive_messages(max_messages=32, visibility_timeout=30):
            invoke(function, func.QueueMessage(id=message.id, body=message.content.encode()))
            client.delete_message(message)
            handled += 1
    finally:
        client.close()
    return handled


class TestQueuedRotationOverHttp:
    """POST -> 202 running; POST again -> 409 with its id; queue and timer triggers finish it."""

    def test_post_conflict_then_queue_triggers_finish_it(self, estate: Estate) -> None:
        connection = estate.endpoints["storage"]["connection_string"]
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_config=None, access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                first = client.post("/api/rotations", json={"key": estate.key_uri, "reason": "queued"})
                second = client.post("/api/rotations", json={"key": estate.key_uri})
                handled = 0
                status: dict[str, Any] = {}
                for _ in range(20):
                    handled += _drain(connection, RUN_QUEUE, "run_rotation")
                    handled += _drain(connection, estate.settings()["ROTATION_REWRAP_QUEUE"], "rewrap_worker")
                    invoke("reconcile", TimerRequest())  # resumes a rotation waiting on its re-wrap
                    status = client.get(first.json()["status_url"]).json()
                    if status["status"] not in ("running", "waiting"):
                        break
        finally:
            server.should_exit = True
            thread.join(timeout=10)

        assert first.status_code == 202
        assert first.json()["status"] == "running"
        assert second.status_code == 409
        assert second.json()["error"]["rotation_id"] == first.json()["rotation_id"]
        assert handled >= 2  # the run message and at least one re-wrap work item
        assert status["status"] == "awaiting_retirement", [(s["name"], s["detail"]) for s in status["steps"]]
        assert status["rewrap"]["rewrapped"] == 4
        assert [row["in use"] for row in estate.consumers() if row["consumer"].startswith("blobs")] == [
            status["new_version"]
        ]


class TestQueuedEvent:
    """In Azure the Event Grid function only records and enqueues: it answers well inside Event Grid's 30 s."""

    def test_event_enqueues_then_queue_triggers_finish_it(self, estate: Estate) -> None:
        connection = estate.endpoints["storage"]["connection_string"]
        admin = KeyVaultAdmin(estate.endpoints["keyvault"]["admin"], estate.endpoints["ca_bundle"])
        admin.run_lifecycle()
        event = next(
            e
            for e in reversed(admin.events()["recent"])
            if e["eventType"] == "Microsoft.KeyVault.KeyNearExpiry" and e["topic"].endswith(f"/{estate.vault_name}")
        )
        decoded = EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
        started = time.monotonic()

        invoke("on_key_vault_event", decoded)
        answered_in = time.monotonic() - started
        before_the_queue_ran = estate.consumers()
        after = before_the_queue_ran
        for _ in range(20):
            _drain(connection, RUN_QUEUE, "run_rotation")
            _drain(connection, estate.settings()["ROTATION_REWRAP_QUEUE"], "rewrap_worker")
            invoke("reconcile", TimerRequest())
            after = estate.consumers()
            if _moved(after, estate.first_version):
                break

        assert answered_in < 10
        assert all(row["in use"] == estate.first_version for row in before_the_queue_ran)  # nothing ran inline
        assert _moved(after, estate.first_version)


def _moved(rows: list[dict[str, str]], old_version: str) -> bool:
    """Every consumer the rotation moves itself is off the old version (the versionless account moves daily)."""
    return all(row["in use"] != old_version for row in rows if not row["consumer"].startswith("storage stvl"))
