"""The Event Grid, timer and HTTP entry points against local Azure with the real adapters (official SDKs).

Each test seeds its own estate under random names (``demo/estate.py``: vault, CMK, pinned and
versionless storage accounts, an AML workspace, client-side-encrypted blobs) in the session's
local Azure and points the app's settings at it. Key Vault events go through the real worker
(``tests/worker``: host stand-in over gRPC, queued dispatch as deployed, queue listener and timer
ticks); the HTTP API is also served locally (uvicorn), the way ``python -m rotation`` serves it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from azure.keyvault.keys import KeyClient

from bench.reconcile_cost import measure_sweep
from demo.estate import Estate, seed_estate
from emulators.arm.admin_client import ArmAdmin
from emulators.keyvault.admin_client import KeyVaultAdmin
from emulators.localazure import free_port
from rotation import bootstrap
from rotation.api.app import create_app
from tests.integration.vaults import key_client
from tests.worker import triggers
from tests.worker.host import WorkerHost
from tests.worker.queues import QueueListener, settle


@pytest.fixture
def arm_roles_restored(local_azure: dict[str, Any]) -> Iterator[None]:
    """The ARM emulator's role assignments are shared by the session: leave them as they were found."""
    arm = ArmAdmin(local_azure["arm"]["admin"], local_azure["ca_bundle"])
    saved = arm.role_assignments()
    yield
    arm.set_role_assignments(saved)


@pytest.fixture
def estate(local_azure: dict[str, Any], arm_roles_restored: None) -> Iterator[Estate]:
    seeded = seed_estate(local_azure, blobs=6)
    seeded.apply(ROTATION_LOG_FORMAT="console", ROTATION_LOG_LEVEL="WARNING")
    bootstrap.override_dependencies(None)
    bootstrap.use_inline_dispatch(True)
    yield seeded
    bootstrap.use_inline_dispatch(False)


def _keys(estate: Estate) -> KeyClient:
    return key_client(estate.vault_url, estate.principal, estate.endpoints["ca_bundle"])


def _versions(estate: Estate) -> list[str]:
    listed = sorted(_keys(estate).list_properties_of_key_versions(estate.key_name), key=lambda p: p.created_on)
    return [str(p.version) for p in listed]


def _kv_event(estate: Estate, event_type: str) -> dict[str, Any]:
    """The newest event of ``event_type`` the Key Vault emulator emitted for the estate's key."""
    admin = KeyVaultAdmin(estate.endpoints["keyvault"]["admin"], estate.endpoints["ca_bundle"])
    admin.run_lifecycle()
    return next(
        e
        for e in reversed(admin.events()["recent"])
        if e["eventType"] == f"Microsoft.KeyVault.{event_type}" and e["topic"].endswith(f"/vaults/{estate.vault_name}")
    )


def _deliver(host: WorkerHost, payload: dict[str, Any], *, cloud_events: bool = False) -> None:
    """Deliver one event through the worker, in Event Grid schema or as a CloudEvent."""
    if cloud_events:
        payload = {
            "specversion": "1.0",
            "id": payload["id"],
            "source": payload["topic"],
            "subject": payload["subject"],
            "type": payload["eventType"],
            "time": payload["eventTime"],
            "data": payload["data"],
        }
    delivery = triggers.event_grid(host, "on_key_vault_event", payload)
    assert delivery.succeeded, delivery.error


def _moved(estate: Estate) -> bool:
    """Every consumer the rotation moves itself is off the first version (the versionless one moves daily)."""
    rows = estate.consumers()
    return all(row["in use"] != estate.first_version for row in rows if not row["consumer"].startswith("storage stvl"))


class TestKeyVaultEvents:
    """Key Vault's own events, delivered to on_key_vault_event, carry a rotation through every consumer."""

    def test_near_expiry_rotates_every_consumer(
        self, estate: Estate, worker_app: tuple[WorkerHost, QueueListener]
    ) -> None:
        host, listener = worker_app
        event = _kv_event(estate, "KeyNearExpiry")

        _deliver(host, event)
        _deliver(host, event)  # Event Grid delivers at least once
        settle(host, listener, lambda: _moved(estate))

        versions = _versions(estate)
        assert len(versions) == 2  # one new version, not one per delivery
        consumers = {row["consumer"]: row for row in estate.consumers()}
        pinned = next(row for name, row in consumers.items() if name.startswith("storage stpin"))
        workspace = next(row for name, row in consumers.items() if name.startswith("workspace"))
        blobs = [row for name, row in consumers.items() if name.startswith("blobs")]
        assert pinned["in use"] == versions[1]
        assert workspace["in use"] == versions[1]
        assert [row["in use"] for row in blobs] == [versions[1]]
        assert estate.read_blob(estate.blob_names[0]).startswith(b"row 0:")

    def test_auto_rotated_version_is_adopted_from_a_cloud_event(
        self, estate: Estate, worker_app: tuple[WorkerHost, QueueListener]
    ) -> None:
        host, listener = worker_app
        rotated = _keys(estate).rotate_key(estate.key_name)
        event = _kv_event(estate, "KeyNewVersionCreated")

        _deliver(host, event, cloud_events=True)
        settle(host, listener, lambda: _moved(estate))

        assert event["data"]["Version"] == rotated.properties.version
        assert _versions(estate) == [estate.first_version, rotated.properties.version]  # nothing else created
        rows = estate.consumers()
        pinned = next(row for row in rows if row["consumer"].startswith("storage stpin"))
        assert pinned["in use"] == rotated.properties.version


class _Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(), host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class TestHttpApi:
    """The locally served API over real HTTP, with the real adapters behind it."""

    def test_plan_dry_run_rotate_and_audit_caller(self, estate: Estate) -> None:
        estate.apply(ROTATION_TRUST_CLIENT_PRINCIPAL_HEADERS="true")
        caller = {"X-MS-CLIENT-PRINCIPAL-NAME": "oncall@contoso.com", "X-MS-CLIENT-PRINCIPAL-ID": "7f1c"}

        with _Server() as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
            plan = client.get("/api/keys/plan", params={"key": estate.key_uri})
            dry = client.post("/api/rotations", json={"key": estate.key_uri, "dry_run": True}, headers=caller)
            versions_after_dry_run = _versions(estate)
            accepted = client.post("/api/rotations", json={"key": estate.key_uri, "reason": "drill"}, headers=caller)
            status = client.get(accepted.json()["status_url"])
            audit = client.get("/api/audit", params={"key": estate.key_uri})

        assert plan.status_code == 200
        assert len(plan.json()["consumers"]) == 4
        assert dry.status_code == 202
        assert dry.json()["status"] == "dry_run"
        assert versions_after_dry_run == [estate.first_version]
        assert accepted.status_code == 202
        assert status.json()["status"] == "awaiting_retirement"
        assert len(_versions(estate)) == 2
        records = audit.json()["records"]
        assert {r["caller"] for r in records} == {"oncall@contoso.com (7f1c)"}
        assert {r["outcome"] for r in records} == {"dry_run", "succeeded"}


class TestReconciler:
    """The timer function over a big vault: cost grows with the keys it manages, not with the vault.

    ``python -m bench.reconcile_cost`` runs the same measurement with 5,000 keys (2 reads).
    """

    @pytest.mark.usefixtures("arm_roles_restored")
    def test_one_thousand_keys_two_managed_cost_two_reads(self, local_azure: dict[str, Any]) -> None:
        result = measure_sweep(local_azure, keys=1000)

        print(f"\nreconcile: {result}")
        first, second = result["ticks"]
        # A deployment's first tick: the vault's size unknown, a listing cut at M = 2 pages (not 40); the
        # managed keys sort after the pages it read, so both are deferred and nothing starts.
        assert first["survey_calls"] == {"list_calls": 2, "key_reads": 0}
        assert (first["deferred"], first["started"], first["action_calls"]) == (2, 0, 0)
        assert first["key_vault_calls"] == {"getKeys": 2}  # the emulator agrees
        # The next knows the vault is bigger: one version listing per managed key, and the rotation it starts.
        assert second["survey_calls"] == {"list_calls": 0, "key_reads": 2}
        assert (second["deferred"], second["started"]) == (0, 1)
        assert 0 < second["action_calls"] < 20
        assert result["versions"] == {"managed-near-expiry": 2, "managed-later": 1}
