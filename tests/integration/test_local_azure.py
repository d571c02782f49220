"""The local Azure fixture really serves blobs, queues and tables, and the health route sees it."""

from __future__ import annotations

import json
import uuid

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from tests.functions_host import http


class TestAzurite:
    """Azurite started by the session fixture answers the official SDKs."""

    def test_blob_round_trip(self, storage_connection: str) -> None:
        service = BlobServiceClient.from_connection_string(storage_connection)
        container = service.create_container(f"c{uuid.uuid4().hex[:12]}")

        container.upload_blob("hello.txt", b"hello")

        assert container.download_blob("hello.txt").readall() == b"hello"

    def test_queue_round_trip(self, storage_connection: str) -> None:
        service = QueueServiceClient.from_connection_string(storage_connection)
        queue = service.create_queue(f"q{uuid.uuid4().hex[:12]}")

        queue.send_message("work")

        assert [m.content for m in queue.receive_messages()] == ["work"]

    def test_table_round_trip(self, storage_connection: str) -> None:
        service = TableServiceClient.from_connection_string(storage_connection)
        table = service.create_table(f"t{uuid.uuid4().hex[:12]}")

        table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "value": 7})

        assert table.get_entity("p", "r")["value"] == 7


class TestHealthAgainstAzurite:
    """The health route reports reachable storage when AzureWebJobsStorage is Azurite."""

    def test_healthy(self, storage_connection: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        monkeypatch.setenv("AzureWebJobsStorage", storage_connection)

        resp = http("GET", "/api/health")

        assert resp.status_code == 200
        assert json.loads(resp.get_body()) | {"version": "x"} == {
            "version": "x",
            "status": "healthy",
            "storage": "reachable",
        }
