"""The Azure path, through the real worker: a POST or a Key Vault event only enqueues the rotation;
the queue triggers carry it on.

The app runs under the Python worker library as deployed (queued dispatch), driven by the host
stand-in (``tests/worker``): ``POST /api/rotations`` arrives as ``RpcHttp`` at the HTTP function,
records the rotation and puts it on ``rotation-run``; a second POST meets the per-key lock (409 with
the first rotation's id). The stand-in's queue listener then delivers the real Azurite messages to
``run_rotation`` and ``rewrap_worker`` (base64 per host.json, with the host's trigger metadata), and
the ``reconcile`` timer resumes the rotation once its re-wrap is done, until it is cut over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from demo.estate import Estate, seed_estate
from emulators.arm.admin_client import ArmAdmin
from emulators.keyvault.admin_client import KeyVaultAdmin
from tests.worker import triggers
from tests.worker.host import WorkerHost
from tests.worker.queues import QueueListener, settle


@pytest.fixture
def estate(local_azure: dict[str, Any]) -> Iterator[Estate]:
    arm = ArmAdmin(local_azure["arm"]["admin"], local_azure["ca_bundle"])
    saved = arm.role_assignments()
    yield seed_estate(local_azure, blobs=4)
    arm.set_role_assignments(saved)


def _status(host: WorkerHost, url: str) -> dict[str, Any]:
    response = triggers.http(host, "GET", url)
    assert response.status_code == 200, response.body
    body: dict[str, Any] = response.json()
    return body


class TestQueuedRotationOverHttp:
    """POST -> 202 running; POST again -> 409 with its id; queue and timer triggers finish it."""

    def test_post_conflict_then_queue_triggers_finish_it(
        self, estate: Estate, worker_app: tuple[WorkerHost, QueueListener]
    ) -> None:
        host, listener = worker_app
        post = {"Content-Type": "application/json"}

        first = triggers.http(
            host,
            "POST",
            "/api/rotations",
            body=json.dumps({"key": estate.key_uri, "reason": "queued"}).encode(),
            headers=post,
        )
        second = triggers.http(
            host, "POST", "/api/rotations", body=json.dumps({"key": estate.key_uri}).encode(), headers=post
        )
        url = first.json()["status_url"]
        delivered = len(listener.run_until_idle())
        settle(host, listener, lambda: _status(host, url)["status"] not in ("running", "waiting"))
        status = _status(host, url)

        assert first.status_code == 202
        assert first.json()["status"] == "running"
        assert second.status_code == 409
        assert second.json()["error"]["rotation_id"] == first.json()["rotation_id"]
        assert delivered >= 2  # the run message and at least one re-wrap work item
        assert status["status"] == "awaiting_retirement", [(s["name"], s["detail"]) for s in status["steps"]]
        assert status["rewrap"]["rewrapped"] == 4
        assert [row["in use"] for row in estate.consumers() if row["consumer"].startswith("blobs")] == [
            status["new_version"]
        ]


class TestQueuedEvent:
    """In Azure the Event Grid function only records and enqueues: it answers well inside Event Grid's 30 s."""

    def test_event_enqueues_then_queue_triggers_finish_it(
        self, estate: Estate, worker_app: tuple[WorkerHost, QueueListener]
    ) -> None:
        host, listener = worker_app
        admin = KeyVaultAdmin(estate.endpoints["keyvault"]["admin"], estate.endpoints["ca_bundle"])
        admin.run_lifecycle()
        event = next(
            e
            for e in reversed(admin.events()["recent"])
            if e["eventType"] == "Microsoft.KeyVault.KeyNearExpiry" and e["topic"].endswith(f"/{estate.vault_name}")
        )
        started = time.monotonic()

        delivery = triggers.event_grid(host, "on_key_vault_event", event)
        answered_in = time.monotonic() - started
        before_the_queue_ran = estate.consumers()
        settle(host, listener, lambda: _moved(estate.consumers(), estate.first_version))
        after = estate.consumers()

        assert delivery.succeeded, delivery.error
        assert answered_in < 10
        assert all(row["in use"] == estate.first_version for row in before_the_queue_ran)  # nothing ran inline
        assert _moved(after, estate.first_version)


def _moved(rows: list[dict[str, str]], old_version: str) -> bool:
    """Every consumer the rotation moves itself is off the old version (the versionless account moves daily)."""
    return all(row["in use"] != old_version for row in rows if not row["consumer"].startswith("storage stvl"))
