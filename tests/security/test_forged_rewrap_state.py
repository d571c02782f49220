"""Finding 1: forged re-wrap rows and queue messages make the service call no host the settings do not name.

The attacker can write AzureWebJobsStorage (tables and queues) but not the app settings. Each test writes
a forged run row and work item into the re-wrap table, hands the worker a message for it, and asserts that
a loopback trap server the forged state points at saw zero requests, and that the worker consumed the
message without acting (nothing escapes the per-item boundary).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient

from rotation.domain.model import KeyRef
from rotation.rewrap.adapter import BlobDataKeys
from rotation.rewrap.checkpoint import TABLE, item_id
from rotation.rewrap.queue import WorkMessage
from rotation.rewrap.scope import OutOfScope
from rotation.settings import HostStorageSettings, Settings
from tests.integration.rewrap_helpers import (
    location_of,
)
from tests.security.trap import RecordingCredential, Trap, trap_server

pytestmark = pytest.mark.integration
KEY = KeyRef("https://kv.vault.azure.net", "cmk")
VERSION = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def trap(local_azure: dict[str, Any]) -> Iterator[Trap]:
    with trap_server(Path(local_azure["ca_bundle"]).parent) as running:
        yield running


@pytest.fixture
def worker(local_azure: dict[str, Any], container: ContainerClient) -> Iterator[BlobDataKeys]:
    """A queued re-wrap worker whose settings name KEY and the test's container only, trusting the local
    CA and skipping the challenge-resource check, so that a request the forged state causes would succeed."""
    settings = Settings(
        storage=HostStorageSettings(connection_string=local_azure["storage"]["connection_string"]),
        managed_keys=(KEY.uri,),
        data_locations=(location_of(container),),
        verify_challenge_resource=False,
        rewrap_concurrency=2,
        rewrap_queue=f"rewrap-{uuid.uuid4().hex[:8]}",
    )
    adapter = BlobDataKeys(
        settings,
        RecordingCredential(),
        {"connection_verify": local_azure["ca_bundle"]},
        inline=False,  # type: ignore[arg-type]
    )
    adapter.store.ensure_table()
    yield adapter
    adapter.close()


def forge(local_azure: dict[str, Any], rotation_id: str, key_uri: str, locations: list[list[str]], **item: Any) -> str:
    """Write a run row and its first work item straight into the re-wrap table; return the message body."""
    table = TableClient.from_connection_string(local_azure["storage"]["connection_string"], TABLE)
    table.upsert_entity({
        "PartitionKey": rotation_id, "RowKey": "run", "KeyUri": key_uri, "NewVersion": VERSION,
        "Locations": json.dumps(locations), "Pass": 1, "Done": False, "Remaining": -1,
    })  # fmt: skip
    row = item_id(1, 0, 0)
    table.upsert_entity({
        "PartitionKey": rotation_id, "RowKey": row, "Pass": 1, "Location": 0, "Seq": 0, "Marker": "",
        "Status": "pending", "HasNext": "unknown", "Enqueued": True, "LastName": "", "Rewrapped": 0,
        "AlreadyCurrent": 0, "SkippedDeleted": 0, "Races": 0, "Owner": "", "LeaseUntil": 0.0, **item,
    })  # fmt: skip
    table.close()
    return WorkMessage(rotation_id, row).to_json()


def blob_naming(container: ContainerClient, kid: str) -> None:
    """A blob whose encryptiondata names ``kid`` (what an attacker with data-plane write access can plant)."""
    document = {
        "WrappedContentKey": {"KeyId": kid, "EncryptedKey": "AAAA", "Algorithm": "RSA-OAEP-256"},
        "EncryptionAgent": {"Protocol": "2.0", "EncryptionAlgorithm": "AES_GCM_256"},
        "EncryptedRegionInfo": {"DataLength": 4194304, "NonceLength": 12},
    }
    container.upload_blob(f"planted-{uuid.uuid4().hex[:6]}", b"x", metadata={"encryptiondata": json.dumps(document)})


class TestForgedRunRows:
    """A run row naming a foreign data location or a foreign vault is refused before any request is made."""

    def test_foreign_data_location_gets_no_storage_token(
        self, local_azure: dict[str, Any], worker: BlobDataKeys, trap: Trap
    ) -> None:
        body = forge(local_azure, f"forged-{uuid.uuid4().hex[:8]}", KEY.uri, [[f"{trap.url}/acct", "data", ""]])

        worker.handle_message(body)

        assert trap.requests == []

    def test_foreign_vault_gets_no_key_vault_request(
        self, local_azure: dict[str, Any], worker: BlobDataKeys, trap: Trap, container: ContainerClient
    ) -> None:
        foreign = KeyRef(trap.url, "cmk")
        blob_naming(container, foreign.version_uri("1" * 32))
        loc = location_of(container)
        body = forge(local_azure, f"forged-{uuid.uuid4().hex[:8]}", foreign.uri, [[loc.account_url, loc.container, ""]])

        worker.handle_message(body)

        assert trap.requests == []

    def test_progress_of_a_rewritten_run_stops_before_listing(
        self, local_azure: dict[str, Any], worker: BlobDataKeys, trap: Trap
    ) -> None:
        rotation_id = f"forged-{uuid.uuid4().hex[:8]}"
        forge(local_azure, rotation_id, KEY.uri, [[f"{trap.url}/acct", "data", ""]], Status="done", HasNext="no")

        with pytest.raises(OutOfScope):
            worker.rewrap_progress(rotation_id)

        assert trap.requests == []


class TestForgedWorkItems:
    """An in-scope run with a forged item (a location index it does not have) is consumed, not crashed on."""

    def test_item_naming_no_location(
        self, local_azure: dict[str, Any], worker: BlobDataKeys, trap: Trap, container: ContainerClient
    ) -> None:
        loc = location_of(container)
        body = forge(
            local_azure, f"forged-{uuid.uuid4().hex[:8]}", KEY.uri, [[loc.account_url, loc.container, ""]], Location=7
        )

        worker.handle_message(body)

        assert trap.requests == []
