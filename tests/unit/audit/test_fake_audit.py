"""The in-memory audit log other engineers' tests use keeps every record, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.audit import FakeAuditLog, make_record


class TestFakeAuditLog:
    """Append keeps order and refuses rewrites; reads filter like the Table store."""

    def test_records_keep_append_order_and_filters_apply(self) -> None:
        now = datetime(2026, 11, 27, 10, tzinfo=UTC)
        log = FakeAuditLog(now=lambda: now)
        first = make_record(
            "succeeded", key_uri="https://kv1.vault.azure.net/keys/a", recorded_at=now - timedelta(days=9)
        )
        second = make_record("failed", key_uri="https://kv1.vault.azure.net/keys/b")
        third = make_record("refused", key_uri="https://kv1.vault.azure.net/keys/a")

        ids = [log.append(r) for r in (first, second, third)]

        assert ids == [first.record_id, second.record_id, third.record_id]
        assert [r.record_id for r in log.all] == ids
        assert [r.record_id for r in log.records(key_uri="https://KV1.vault.azure.net/keys/a")] == [ids[0], ids[2]]
        assert [r.record_id for r in log.records(since=now - timedelta(days=1))] == ids[1:]
        assert log.all[1].recorded_at == now

    def test_a_record_id_cannot_be_written_twice(self) -> None:
        log = FakeAuditLog()
        record = make_record()
        log.append(record)

        with pytest.raises(ValueError, match="never updated"):
            log.append(record)
