"""The Key Vault emulator over time: its clock, Event Grid events, auto-rotation, persistence, ``emulators up``.

These tests move the emulator's clock, so they run against a private emulator (not the session's shared one).
Events go to the session's Azurite queue or to a local HTTP endpoint.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.keys import KeyClient, KeyRotationLifetimeAction, KeyRotationPolicy, KeyRotationPolicyAction
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from azure.storage.queue import QueueClient

from emulators.keyvault.admin_client import KeyVaultAdmin
from emulators.localazure import REPO, LocalAzure
from rotation.adapters.local_credential import LocalDevelopmentCredential
from tests.integration.vaults import key_client
from tests.local_http import serving

DAY = 86400
SAMPLES = Path(__file__).parent / "test_keyvault_samples"


@pytest.fixture(scope="module")
def kv_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A private emulator: these tests move its clock."""
    with LocalAzure(Path(tmp_path_factory.mktemp("kv-private")), services=["keyvault"]) as local:
        yield local.endpoints


def emulator_time(admin: KeyVaultAdmin, offset_seconds: float = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(admin.now() + offset_seconds), dt.UTC)


def wait_for(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], Any]]
    failures: list[int]  # answer 503 while this holds a positive count

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.failures[0] > 0:
            self.failures[0] -= 1
            self.send_response(503)
            self.end_headers()
            return
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def failures() -> list[int]:
    return [0]


@pytest.fixture
def http_sink(failures: list[int]) -> Iterator[tuple[str, list[tuple[dict[str, str], Any]]]]:
    received: list[tuple[dict[str, str], Any]] = []
    with serving(type("Collector", (_Collector,), {"received": received, "failures": failures})) as url:
        yield f"{url}/events", received


class TestEventsToQueue:
    """New versions, near expiry (Notify action) and expiry arrive on an Azurite queue, once per version."""

    def test_new_version_near_expiry_and_expired(
        self, admin: KeyVaultAdmin, vault: dict[str, Any], keys: KeyClient, storage_connection: str
    ) -> None:
        queue_name = f"kvevents{uuid.uuid4().hex[:10]}"
        queue = QueueClient.from_connection_string(storage_connection, queue_name)
        queue.create_queue()
        admin.set_event_sink({"type": "queue", "connection_string": storage_connection, "queue": queue_name})
        key = keys.create_rsa_key("cmk", expires_on=emulator_time(admin, 40 * DAY))

        admin.advance_clock(11 * DAY)  # inside the default Notify window (30 days before expiry)
        admin.advance_clock(30 * DAY)  # past expiry
        admin.advance_clock(1 * DAY)  # nothing new: once per version
        received: list[dict[str, Any]] = []

        def three_events() -> bool:
            for message in queue.receive_messages():
                received.append(json.loads(base64.b64decode(message.content)))
                queue.delete_message(message)
            return len(received) >= 3

        wait_for(three_events)
        time.sleep(0.3)
        three_events()
        admin.set_event_sink(None)

        mine = [e for e in received if e["topic"] == vault["arm_id"]]
        assert [e["eventType"] for e in mine] == [
            "Microsoft.KeyVault.KeyNewVersionCreated",
            "Microsoft.KeyVault.KeyNearExpiry",
            "Microsoft.KeyVault.KeyExpired",
        ]
        for event in mine:
            assert event["subject"] == "cmk"
            assert event["data"] == {
                "Id": key.id,
                "VaultName": vault["name"],
                "ObjectType": "Key",
                "ObjectName": "cmk",
                "Version": key.properties.version,
                "NBF": None,
                "EXP": int(key.properties.expires_on.timestamp()),
            }
            assert event["dataVersion"] == "1"
            assert event["metadataVersion"] == "1"


class TestEventsToHttp:
    """The HTTP sink gets Event Grid arrays with aeg-event-type: Notification, shaped like Microsoft's sample."""

    def test_rotation_posts_key_new_version_created(
        self,
        admin: KeyVaultAdmin,
        keys: KeyClient,
        http_sink: tuple[str, list[tuple[dict[str, str], Any]]],
    ) -> None:
        url, received = http_sink
        keys.create_ec_key("signing")
        admin.set_event_sink({"type": "http", "url": url})

        rotated = keys.rotate_key("signing")
        wait_for(lambda: received)
        admin.set_event_sink(None)

        headers, events = received[0]
        assert headers["aeg-event-type"] == "Notification"
        assert isinstance(events, list)
        assert len(events) == 1
        event = events[0]
        example = json.loads((SAMPLES / "eventgrid.SecretNewVersionCreated.json").read_text())
        assert set(event) == set(example)
        assert set(event["data"]) == set(example["data"])
        assert event["eventType"] == "Microsoft.KeyVault.KeyNewVersionCreated"
        assert event["data"]["Id"] == rotated.id
        assert event["data"]["Version"] == rotated.properties.version
        assert event["eventTime"].endswith("Z")


class TestEventRetry:
    """A sink that fails once still gets the event, on the second attempt."""

    def test_retried_after_a_503(
        self,
        admin: KeyVaultAdmin,
        keys: KeyClient,
        http_sink: tuple[str, list[tuple[dict[str, str], Any]]],
        failures: list[int],
    ) -> None:
        url, received = http_sink
        failures[0] = 1
        admin.set_event_sink({"type": "http", "url": url})

        created = keys.create_ec_key("retried")
        wait_for(lambda: received)
        admin.set_event_sink(None)

        headers, events = received[0]
        assert failures[0] == 0
        assert headers["aeg-delivery-count"] == "1"
        assert events[0]["data"]["Id"] == created.id


class TestAutoRotation:
    """A policy's Rotate action rotates the key when the clock passes its trigger; expiry follows expiryTime."""

    def test_time_after_create(self, admin: KeyVaultAdmin, keys: KeyClient) -> None:
        first = keys.create_rsa_key("auto")
        keys.update_key_rotation_policy(
            "auto",
            KeyRotationPolicy(
                lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D")]
            ),
            expires_in="P90D",
        )

        admin.advance_clock(29 * DAY)
        before = [v.version for v in keys.list_properties_of_key_versions("auto")]
        admin.advance_clock(2 * DAY)
        latest = keys.get_key("auto")

        assert before == [first.properties.version]
        assert latest.properties.version != first.properties.version
        assert latest.properties.expires_on is not None
        assert latest.properties.created_on is not None
        assert latest.properties.expires_on - latest.properties.created_on == dt.timedelta(days=90)

    def test_clock_drives_created_stamps(self, admin: KeyVaultAdmin, keys: KeyClient) -> None:
        target = emulator_time(admin, 365 * DAY)
        admin.set_clock(target.timestamp())

        key = keys.create_ec_key("dated")

        assert key.properties.created_on is not None
        assert abs((key.properties.created_on - target).total_seconds()) < 5


class TestPersistence:
    """Keys, versions, roles and the clock survive a restart of the emulator on the same state directory."""

    def test_restart(self, tmp_path: Path) -> None:
        with LocalAzure(tmp_path, services=["keyvault"]) as first:
            ca = first.endpoints["ca_bundle"]
            admin = KeyVaultAdmin(first.endpoints["keyvault"]["admin"], ca)
            vault = admin.create_vault("kv-persist")
            credential = LocalDevelopmentCredential("owner")
            keys = KeyClient(vault["url"], credential, connection_verify=ca, verify_challenge_resource=False)
            key = keys.create_rsa_key("cmk")
            data_key = os.urandom(32)
            wrapped = CryptographyClient(key, credential).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, data_key)
            admin.set_role_assignments("kv-persist", [{"principal_id": "owner", "role": "Key Vault Administrator"}])
            clock = admin.advance_clock(5 * DAY)

        with LocalAzure(tmp_path, services=["keyvault"]) as second:
            admin = KeyVaultAdmin(second.endpoints["keyvault"]["admin"], ca)
            url = second.endpoints["keyvault"]["vaults"]["kv-persist"]
            keys = KeyClient(url, credential, connection_verify=ca, verify_challenge_resource=False)
            found = keys.get_key("cmk")
            unwrapped = CryptographyClient(
                found.id, credential, connection_verify=ca, verify_challenge_resource=False
            ).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
            roles = admin.role_assignments("kv-persist")
            now = admin.now()

        assert found.properties.version == key.properties.version
        assert unwrapped.key == data_key
        assert roles == [{"principal_id": "owner", "role": "Key Vault Administrator", "scope": "/"}]
        assert now >= clock


class TestEmulatorsUp:
    """``python -m emulators up`` starts the emulator, writes endpoints.json, and stops cleanly on SIGTERM."""

    def test_up_and_sigterm(self, tmp_path: Path) -> None:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emulators",
                "up",
                "--dir",
                str(tmp_path),
                "--services",
                "keyvault",
                "--vault",
                "kv-up",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            endpoints_file = tmp_path / "endpoints.json"
            wait_for(endpoints_file.exists, timeout=60)
            endpoints = json.loads(endpoints_file.read_text())
            admin = KeyVaultAdmin(endpoints["keyvault"]["admin"], endpoints["ca_bundle"])
            vaults = [v["name"] for v in admin.list_vaults()]
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)

        assert endpoints["keyvault"]["vaults"]["kv-up"].startswith("https://127.0.0.1:")
        assert vaults == ["kv-up"]
        assert code == 0


class TestStandalone:
    """Started alone without TLS files, the emulator makes its own CA and names it in the ready file."""

    def test_generated_ca(self, tmp_path: Path) -> None:
        ready_file = tmp_path / "ready.json"
        argv = [sys.executable, "-m", "emulators.keyvault", "--dir", str(tmp_path / "state")]
        argv += ["--ready-file", str(ready_file), "--vault", "kv-solo"]
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(ready_file.exists, timeout=60)
            ready = json.loads(ready_file.read_text())
            keys = key_client(ready["vaults"]["kv-solo"], "solo", ready["ca_bundle"])
            key = keys.create_ec_key("solo")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)

        assert Path(ready["ca_bundle"]).is_file()
        assert key.id.startswith(ready["vaults"]["kv-solo"] + "/keys/solo/")
        assert code == 0
