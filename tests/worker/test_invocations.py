"""One invocation per trigger kind through the real worker library, with the logs it sends over gRPC."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.eventgrid_payloads import key_event
from tests.worker import triggers
from tests.worker.host import Invocation, WorkerHost


def _events(invocation: Invocation, level: str | None = None) -> list[dict[str, Any]]:
    """The app's structured log lines of one invocation (JSON messages), optionally at one RpcLog level."""
    lines = []
    for message in invocation.messages(level):
        if message.startswith("{"):
            lines.append(json.loads(message))
    return lines


class TestEventGrid:
    """Key Vault events in both schemas reach on_key_vault_event decoded by the worker's binding."""

    @pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
    def test_event_of_an_unmanaged_key_is_ignored(self, worker: WorkerHost, schema: str) -> None:
        event = key_event("KeyNearExpiry", schema=schema, vault="othervault", name="not-managed")

        invocation = triggers.event_grid(worker, "on_key_vault_event", event)

        assert invocation.succeeded, invocation.error
        [line] = [e for e in _events(invocation, "Information") if e["event"] == "key_event_ignored"]
        assert line["event_type"] == "Microsoft.KeyVault.KeyNearExpiry"  # read from either envelope
        assert line["event_id"] == event["id"]
        assert line["vault"] == "https://othervault.vault.azure.net"

    def test_secret_event_is_ignored(self, worker: WorkerHost) -> None:
        event = key_event("KeyNearExpiry", schema="cloudevents")
        event["type"] = "Microsoft.KeyVault.SecretNewVersionCreated"
        event["data"]["ObjectType"] = "Secret"

        invocation = triggers.event_grid(worker, "on_key_vault_event", event)

        assert invocation.succeeded, invocation.error
        assert [e["event_type"] for e in _events(invocation) if e["event"] == "key_event_ignored"] == [
            "Microsoft.KeyVault.SecretNewVersionCreated"
        ]


class TestTimer:
    """The reconcile timer, ticked with the timer monitor's schedule status."""

    def test_tick_sweeps_and_logs_a_summary(self, worker: WorkerHost) -> None:
        invocation = triggers.timer(worker, "reconcile", past_due=True)

        assert invocation.succeeded, invocation.error
        events = {e["event"]: e for e in _events(invocation)}
        assert events["reconcile_past_due"]["level"] == "warning"
        assert events["reconcile_finished"]["items"] == 0  # no managed keys in these settings


class TestQueue:
    """Queue messages with the host's trigger metadata."""

    def test_malformed_run_message_is_logged_as_an_error_and_completes(self, worker: WorkerHost) -> None:
        now = datetime.now(UTC)
        message_id = str(uuid.uuid4())

        invocation = triggers.queue_message(
            worker,
            "run_rotation",
            text="{not json",
            message_id=message_id,
            dequeue_count=1,
            pop_receipt="AgAAAAMAAAAAAAAA",
            inserted_on=now,
            expires_on=now + timedelta(days=7),
            next_visible_on=now + timedelta(seconds=30),
        )

        assert invocation.succeeded, invocation.error
        [line] = _events(invocation, "Error")
        assert (line["event"], line["message_id"]) == ("run_message_malformed", message_id)


class TestHttp:
    """HTTP requests as RpcHttp through the ASGI app."""

    def test_health_answers_with_storage_reachable(self, worker: WorkerHost) -> None:
        response = triggers.http(worker, "GET", "/api/health")

        assert response.status_code == 200, response.body
        assert response.json()["storage"] == "reachable"

    def test_bad_body_is_a_400_naming_the_field(self, worker: WorkerHost) -> None:
        response = triggers.http(
            worker, "POST", "/api/rotations", body=b'{"key": 5}', headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 400
        assert "key" in response.json()["error"]["message"]


class TestLogging:
    """The app logs once, through the worker's channel, at the record's own level; nothing on the console."""

    def test_lines_arrive_once_over_grpc_and_never_on_stderr(self, worker: WorkerHost) -> None:
        event = key_event("KeyNearExpiry", vault="othervault", name="failed-and-error-in-the-name")

        invocation = triggers.event_grid(worker, "on_key_vault_event", event)

        ignored = [e for e in _events(invocation) if e["event"] == "key_event_ignored"]
        assert len(ignored) == 1
        assert [e["event"] for e in _events(invocation, "Information")].count("key_event_ignored") == 1
        console = worker.stderr + worker.stdout
        assert not [line for line in console if "key_event_ignored" in line], console[-5:]
