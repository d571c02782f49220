"""A table of the app's own storage (AzureWebJobsStorage), created on its first use by this process."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient

from rotation.adapters.azure_errors import translated
from rotation.adapters.host_storage import StorageConnection, host_storage
from rotation.retry import TRANSPORT_RETRY


class LazyTable:
    """``client()`` is the table's client, the table created (if missing) the first time it is asked for."""

    def __init__(self, connection: StorageConnection, table_name: str, permission: str, **client_kwargs: Any) -> None:
        service = host_storage(connection).table_service(**{**TRANSPORT_RETRY, **client_kwargs})
        self._table: TableClient = service.get_table_client(table_name)
        self._table_name = table_name
        self._permission = permission
        self._ready = False
        self._lock = threading.Lock()

    def client(self) -> TableClient:
        if not self._ready:
            with self._lock, translated(f"create table {self._table_name}", self._permission):
                with contextlib.suppress(ResourceExistsError):
                    self._table.create_table()
                self._ready = True
        return self._table
