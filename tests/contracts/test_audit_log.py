"""The ``AuditLog`` contract: ``FakeAuditLog`` and ``TableAuditLog`` (Azurite) keep the same records.

Append returns the record's id and stores it as given (``recorded_at`` stamped when unset); a repeated
record id writes nothing and returns the id (a crash-repeated append is harmless); reads come back in
chain order, filtered by key (case-insensitive) and ``recorded_at >= since``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.ports import AuditLog
from tests.contracts.conftest import BOTH
from tests.fakes.audit import make_record

NOW = datetime(2026, 11, 27, 10, tzinfo=UTC)


@pytest.fixture(params=BOTH)
def log(request: pytest.FixtureRequest) -> Iterator[AuditLog]:
    if request.param == "fake":
        from tests.fakes.audit import FakeAuditLog

        yield FakeAuditLog(now=lambda: NOW)
        return
    from rotation.audit.store import TableAuditLog

    local_azure: dict[str, Any] = request.getfixturevalue("local_azure")
    store = TableAuditLog(local_azure["storage"]["connection_string"], f"audit{uuid.uuid4().hex[:12]}", now=lambda: NOW)
    yield store
    store.close()


class TestAppend:
    """Records are stored as appended, in order, and never written twice."""

    def test_records_keep_append_order_and_read_back_unchanged(self, log: AuditLog) -> None:
        records = [
            make_record("succeeded", recorded_at=NOW - timedelta(days=2)),
            make_record("failed"),
            make_record("refused", caller=None, recorded_at=NOW - timedelta(days=1)),
        ]

        ids = [log.append(r) for r in records]

        assert ids == [r.record_id for r in records]
        assert list(log.records()) == [*records[:1], replace(records[1], recorded_at=NOW), records[2]]

    def test_append_is_idempotent_by_record_id(self, log: AuditLog) -> None:
        record = make_record()

        first, second = log.append(record), log.append(replace(record, reason="a repeat after a crash"))

        assert first == second == record.record_id
        assert [r.reason for r in log.records()] == [record.reason]

    def test_a_record_without_an_id_is_given_one(self, log: AuditLog) -> None:
        record = replace(make_record(), record_id="")

        record_id = log.append(record)

        assert record_id
        assert [r.record_id for r in log.records()] == [record_id]


class TestReads:
    """``records`` filters by key (case-insensitive, trailing slash ignored) and by ``recorded_at >= since``."""

    def test_filters_apply(self, log: AuditLog) -> None:
        first = make_record(
            "succeeded", key_uri="https://kv1.vault.azure.net/keys/a", recorded_at=NOW - timedelta(days=9)
        )
        second = make_record("failed", key_uri="https://kv1.vault.azure.net/keys/b")
        third = make_record("refused", key_uri="https://kv1.vault.azure.net/keys/a")
        ids = [log.append(r) for r in (first, second, third)]

        by_key = [r.record_id for r in log.records(key_uri="https://KV1.vault.azure.net/keys/a/")]
        recent = [r.record_id for r in log.records(since=NOW - timedelta(days=1))]
        both = [r.record_id for r in log.records(key_uri=third.key_uri, since=NOW)]

        assert by_key == [ids[0], ids[2]]
        assert recent == ids[1:]
        assert both == [ids[2]]
