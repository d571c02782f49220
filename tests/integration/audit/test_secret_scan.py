"""No audit record written during the test session holds key material, data keys or tokens."""

from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import replace
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from rotation.audit.store import TableAuditLog
from rotation.domain.model import StepRecord
from tests.fakes.audit import make_record
from tests.integration.audit.conftest import session_end
from tests.integration.audit.secret_scan import find_secrets, scan_archive, scan_audit_tables

DRAW = random.Random(7).randbytes


class TestDetector:
    """The detector finds each kind of secret and passes the identifiers records are made of."""

    @pytest.mark.parametrize(
        "secret",
        [
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJvaWQiOiJ4In0.local",
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + base64.b64encode(DRAW(64)).decode(),
            "https://a.blob.core.windows.net/c/b?sv=2024-01-01&sig=abcdEFGH%2B123",
            base64.b64encode(DRAW(32)).decode(),
            base64.urlsafe_b64encode(DRAW(32)).decode().rstrip("="),
            base64.b64encode(DRAW(256)).decode(),
            "-----BEGIN " + "RSA PRIVATE KEY-----",  # split so no committed file carries a PEM header
        ],
    )
    def test_finds_secrets(self, secret: str) -> None:
        found = find_secrets(f"reason: step failed with {secret} (retrying)")

        assert found

    def test_passes_a_real_record(self) -> None:
        from rotation.audit.codec import canonical_json, record_to_dict

        text = canonical_json(record_to_dict(make_record("rolled_back")))

        assert find_secrets(text) == []
        assert find_secrets("0" * 64 + " 7f3a9c2e4b1d4e6f8a0b1c2d3e4f5a6b 1c0f9a62-8e0b-4f7e-9d55-2f6e4a1b3c7d") == []


class TestScanOfStoredEntities:
    """The table scan finds a secret planted in an audit table (so the session-end scan can fail)."""

    def test_planted_secret_is_found(self, storage_connection: str) -> None:
        name = f"audit{uuid.uuid4().hex[:12]}"
        log = TableAuditLog(storage_connection, name)
        log.append(make_record())
        raw = TableClient.from_connection_string(storage_connection, name)
        planted = make_record("failed")
        planted_entity = {
            "PartitionKey": "record",
            "RowKey": "000000000099",
            "prev_hash": "0" * 64,
            "hash": "0" * 64,
            "body": json.dumps({"reason": "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "id": planted.record_id}),
        }
        raw.create_entity(planted_entity)
        try:
            tables, entities, findings = scan_audit_tables(storage_connection)
        finally:
            TableServiceClient.from_connection_string(storage_connection).delete_table(name)

        assert tables >= 1
        assert entities >= 3
        assert [(f.table, f.row, f.prop) for f in findings if f.table == name] == [(name, "000000000099", "body")]

    def test_store_scrubs_a_token_a_caller_passed_by_mistake(self, storage_connection: str) -> None:
        name = f"audit{uuid.uuid4().hex[:12]}"
        log = TableAuditLog(storage_connection, name)
        key = base64.b64encode(DRAW(32)).decode()
        leaky = make_record("failed", reason=f"unwrap returned {key}")
        leaky = replace(
            leaky,
            steps=(
                *leaky.steps,
                StepRecord("probe", "failed", leaky.steps[0].started_at, detail="Bearer eyJhbGciOi.eyJv.x"),
            ),
        )

        log.append(leaky)

        raw = TableClient.from_connection_string(storage_connection, name)
        stored_text = json.dumps([dict(e) for e in raw.list_entities()], default=str)
        assert key not in stored_text
        assert "eyJ" not in stored_text


class TestSessionScan:
    """Runs last: every audit entity and archive line any test wrote to Azurite this session is free of secrets."""

    @session_end
    def test_every_audit_entity_written_this_session(self, local_azure: dict[str, Any]) -> None:
        connection = local_azure["storage"]["connection_string"]
        log = TableAuditLog(connection, f"audit{uuid.uuid4().hex[:12]}")
        log.append(make_record())  # so the scan is never vacuous, even when run alone

        tables, entities, findings = scan_audit_tables(connection)
        lines, archive_findings = scan_archive(connection)

        assert tables >= 1
        assert entities >= 2
        assert findings == []
        assert lines >= 1
        assert archive_findings == []
