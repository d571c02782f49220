"""An in-memory ``SweepMemoryStore``: records by vault (case-insensitive) and name, as the Table adapter keeps them."""

from __future__ import annotations

import threading
from collections.abc import Mapping


class FakeSweepMemory:
    """Implements ``rotation.ports.SweepMemoryStore``; ``reads`` and ``writes`` count calls, ``rows`` is open to
    tests (to corrupt a record, as a stray writer could)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, str]] = {}
        self.reads = 0
        self.writes = 0
        self._lock = threading.Lock()

    def read(self, vault_url: str) -> dict[str, str]:
        with self._lock:
            self.reads += 1
            return dict(self.rows.get(vault_url.rstrip("/").lower(), {}))

    def write(self, vault_url: str, records: Mapping[str, str]) -> None:
        with self._lock:
            self.writes += 1
            self.rows.setdefault(vault_url.rstrip("/").lower(), {}).update(records)
