"""An in-memory ``AuditLog`` that keeps every record, in append order.

Used by unit tests of the workflow and the triggers. It keeps real state: records are stored as
appended (stamped with ``recorded_at`` when the caller left it unset), never updated, and read
back in chain order with the same filters the Table-backed store applies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

from rotation.domain.model import AuditRecord


class FakeAuditLog:
    """Implements ``rotation.ports.AuditLog`` in memory."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self._records: list[AuditRecord] = []
        self._lock = threading.Lock()

    def append(self, record: AuditRecord) -> str:
        """Store ``record`` at the end of the chain; a repeated record id is refused (append-only)."""
        with self._lock:
            if any(r.record_id == record.record_id for r in self._records):
                raise ValueError(f"audit record {record.record_id} already exists; records are never updated")
            if record.recorded_at is None:
                record = replace(record, recorded_at=self._now())
            self._records.append(record)
            return record.record_id

    def records(self, key_uri: str | None = None, since: datetime | None = None) -> Iterable[AuditRecord]:
        """Records in append order, filtered by key (case-insensitive) and ``recorded_at >= since``."""
        with self._lock:
            snapshot = list(self._records)
        return [
            r
            for r in snapshot
            if (key_uri is None or r.key_uri.lower() == key_uri.rstrip("/").lower())
            and (since is None or (r.recorded_at is not None and r.recorded_at >= since))
        ]

    # -- test helpers --------------------------------------------------------------------------

    @property
    def all(self) -> list[AuditRecord]:
        """Every record appended, in order."""
        with self._lock:
            return list(self._records)

    def for_rotation(self, rotation_id: str) -> list[AuditRecord]:
        """Every record of one rotation, in order."""
        return [r for r in self.all if r.rotation_id == rotation_id]
