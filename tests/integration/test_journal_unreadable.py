"""A journal row that fails to decode (hand-edited, truncated) is left out of listings and named when
loaded: it never stops the reconciler for the other rotations (Azurite, the real Tables SDK)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from structlog.testing import capture_logs

from rotation.adapters.journal import TableJournal, partition_of
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import RotationState
from rotation.errors import NeedsHuman

NOW = datetime(2026, 5, 1, tzinfo=UTC)
KEY = "https://kv.vault.azure.net/keys/cmk"


def test_an_unreadable_row_is_skipped_and_named(local_azure: dict[str, Any]) -> None:
    connection = local_azure["storage"]["connection_string"]
    table = f"j{uuid.uuid4().hex[:12]}"
    journal = TableJournal(connection, table)
    good = RotationState("rot-good", KEY, RotationStatus.RUNNING, Trigger(TriggerKind.CLI), NOW, NOW)
    journal.begin(good, None)
    client = TableServiceClient.from_connection_string(connection).get_table_client(table)
    client.upsert_entity(
        {
            "PartitionKey": partition_of(KEY),
            "RowKey": "rot-broken",
            "Kind": "rotation",
            "KeyUri": KEY,
            "Status": "running",
            "Chunks": 1,
            "State0": '{"rotation_id": "rot-broken", "status": "runn',  # truncated
        }
    )

    with capture_logs() as logs:
        listed = journal.list(None, (RotationStatus.RUNNING,))

    assert [s.rotation_id for s in listed] == ["rot-good"]
    assert [e["row"] for e in logs if e["event"] == "journal_entry_unreadable"] == ["rot-broken"]
    with pytest.raises(NeedsHuman, match="rot-broken cannot be read"):
        journal.load("rot-broken")
