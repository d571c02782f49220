"""The ``SweepMemoryStore`` port on Azure Table storage, in ``AzureWebJobsStorage`` (``ROTATION_SWEEP_TABLE``).

Layout: one partition per vault (``PartitionKey`` = a hash of the vault URL), one entity per record
(``RowKey`` = a hash of its name) holding ``Name`` and ``Record`` (a small JSON text:
``rotation.domain.sweep_record``). A vault's records are read with one query and written with one
entity-group transaction per 100 records (upserts). An entity without string ``Name`` and ``Record`` is
left out (logged by row, never its content): rows are input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import AzureError
from azure.data.tables import TableClient, UpdateMode

from rotation.adapters.azure_errors import translate, translated
from rotation.adapters.host_storage import StorageConnection
from rotation.adapters.tables import LazyTable
from rotation.logs import get_logger

_log = get_logger("rotation.reconciler")

_PERMISSION = "Microsoft.Storage/storageAccounts/tableServices/tables/entities/write"
_BATCH = 100  # entities per entity-group transaction (Table storage's limit)


def _hash(prefix: str, text: str) -> str:
    return prefix + hashlib.sha256(text.rstrip("/").lower().encode()).hexdigest()[:40]


class TableSweepMemory:
    """Implements ``rotation.ports.SweepMemoryStore``."""

    def __init__(self, connection: StorageConnection, table_name: str, **client_kwargs: Any) -> None:
        self._table = LazyTable(connection, table_name, _PERMISSION, **client_kwargs)

    def _ensure(self) -> TableClient:
        return self._table.client()

    def read(self, vault_url: str) -> dict[str, str]:
        table = self._ensure()
        partition = _hash("v", vault_url)
        with translated(f"read the sweep memory of {vault_url}", _PERMISSION):
            entities = list(table.query_entities(f"PartitionKey eq '{partition}'"))
        records: dict[str, str] = {}
        for entity in entities:
            name, record = entity.get("Name"), entity.get("Record")
            if isinstance(name, str) and isinstance(record, str):
                records[name] = record
            else:
                _log.warning("sweep_memory_row_unreadable", partition=partition, row=str(entity.get("RowKey")))
        return records

    def write(self, vault_url: str, records: Mapping[str, str]) -> None:
        table = self._ensure()
        partition = _hash("v", vault_url)
        operations: list[Any] = [
            (
                "upsert",
                {"PartitionKey": partition, "RowKey": _hash("r", name), "Name": name, "Record": record},
                {"mode": UpdateMode.REPLACE},
            )
            for name, record in sorted(records.items())
        ]
        for start in range(0, len(operations), _BATCH):
            try:
                table.submit_transaction(operations[start : start + _BATCH])
            except AzureError as exc:
                raise translate(exc, f"write the sweep memory of {vault_url}", _PERMISSION) from None
