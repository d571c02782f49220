"""The audit record's log line reaches Application Insights as JSON the KQL in docs/audit.md can parse."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from rotation.audit.store import TableAuditLog
from rotation.logs import configure_logging
from tests.fakes.audit import make_record

# Never contacted: the log line is built without touching storage.
OFFLINE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;TableEndpoint=http://127.0.0.1:9/x;"
)


class WorkerHandler(logging.Handler):
    """Formats like the Azure Functions worker's handler: the default formatter, i.e. ``str(msg)``."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(self.format(record))


@pytest.fixture
def worker() -> Iterator[WorkerHandler]:
    configure_logging("json", "INFO", stream=io.StringIO())
    handler = WorkerHandler()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


class TestAuditLogLine:
    """One JSON object per record, with the fields the KQL queries read at the top level."""

    def test_the_worker_sees_parseable_json(self, worker: WorkerHandler) -> None:
        record = make_record("rolled_back", caller="alice@example.com")
        store = TableAuditLog(OFFLINE, "auditlogline")

        store._log(7, "a" * 64, "b" * 64, record)

        lines = [json.loads(m) for m in worker.messages if "audit_record" in m]
        assert len(lines) == 1
        line = lines[0]
        assert line["event"] == "audit_record"
        assert (line["key_uri"], line["outcome"], line["caller"], line["seq"]) == (
            record.key_uri,
            "rolled_back",
            "alice@example.com",
            7,
        )
        assert line["trigger_kind"] == "http"
        assert line["record"]["consumers"][0]["before"] == record.old_version
        assert line["record"]["steps"][2]["duration_ms"] == 3250
