"""The ``SweepMemoryStore`` contract: ``FakeSweepMemory`` and ``TableSweepMemory`` (Azurite) keep the same records.

Records are stored by vault (case-insensitive) and name; a write replaces the records it names and leaves
the others; a vault never written reads as empty; another vault's records are never mixed in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rotation.ports import SweepMemoryStore
from tests.contracts.conftest import BOTH, fake_or_real

VAULT = "https://kv-main.vault.azure.net"
KEY = f"{VAULT}/keys/cmk"


def _real(local_azure: dict[str, Any]) -> Iterator[SweepMemoryStore]:
    from rotation.adapters.sweep_memory import TableSweepMemory

    yield TableSweepMemory(local_azure["storage"]["connection_string"], f"sweep{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BOTH)
def store(request: pytest.FixtureRequest) -> Iterator[SweepMemoryStore]:
    from tests.fakes.sweep_memory import FakeSweepMemory

    yield from fake_or_real(request, FakeSweepMemory, _real)


def test_a_vault_never_written_reads_as_empty(store: SweepMemoryStore) -> None:
    assert store.read(VAULT) == {}


def test_records_read_back_as_written_whatever_the_vault_url_case(store: SweepMemoryStore) -> None:
    records = {"~size": '{"complete":true,"keys":100,"pages":4}', KEY: '{"seen_at":"2026-12-06T00:00:00+00:00"}'}

    store.write(VAULT, records)

    assert store.read(VAULT.upper() + "/") == records


def test_a_write_replaces_the_records_it_names_and_keeps_the_others(store: SweepMemoryStore) -> None:
    store.write(VAULT, {"~size": "a", KEY: "b"})

    store.write(VAULT, {KEY: "c", f"{VAULT}/keys/other": "d"})

    assert store.read(VAULT) == {"~size": "a", KEY: "c", f"{VAULT}/keys/other": "d"}


def test_vaults_are_kept_apart(store: SweepMemoryStore) -> None:
    store.write(VAULT, {"~size": "a"})
    store.write("https://kv-other.vault.azure.net", {"~size": "b"})

    assert store.read(VAULT) == {"~size": "a"}
    assert store.read("https://kv-third.vault.azure.net") == {}


def test_more_records_than_one_transaction_holds(store: SweepMemoryStore) -> None:
    records = {f"{VAULT}/keys/k{i:03d}": str(i) for i in range(130)}

    store.write(VAULT, records)

    assert store.read(VAULT) == records


@pytest.mark.integration
def test_a_table_row_without_its_name_or_record_text_is_left_out(local_azure: dict[str, Any]) -> None:
    """Rows are input: one a stray writer left without ``Name`` or ``Record`` text is not read back."""
    from azure.data.tables import TableClient, UpdateMode

    from rotation.adapters.sweep_memory import TableSweepMemory

    connection, table = local_azure["storage"]["connection_string"], f"sweep{uuid.uuid4().hex[:12]}"
    store = TableSweepMemory(connection, table)
    store.write(VAULT, {"~size": "a", KEY: "b"})
    raw = TableClient.from_connection_string(connection, table)
    rows = {row["Name"]: row for row in raw.list_entities()}
    row = {"PartitionKey": rows[KEY]["PartitionKey"], "RowKey": rows[KEY]["RowKey"], "Name": KEY}
    raw.upsert_entity(row, mode=UpdateMode.REPLACE)  # its Record gone
    raw.upsert_entity({"PartitionKey": rows[KEY]["PartitionKey"], "RowKey": "stray", "Name": 3, "Record": "c"})

    assert store.read(VAULT) == {"~size": "a"}
