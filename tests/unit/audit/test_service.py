"""The shared audit reads: input parsing, listing limits, lookups and the readable timeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rotation.audit.chain import VerifyReport
from rotation.audit.service import (
    list_records,
    parse_key,
    parse_since,
    parse_status,
    render_timeline,
    render_verify,
    show_record,
)
from rotation.audit.store import StoredRecord
from rotation.errors import AuditRecordNotFound, InputError
from tests.fakes.audit import make_record


class MemoryReader:
    """Keeps stored records in a list and filters like the Table store."""

    def __init__(self, records: list[StoredRecord]) -> None:
        self.items = records

    def stored(
        self,
        *,
        key_uri: str | None = None,
        since: datetime | None = None,
        outcome: str | None = None,
        rotation_id: str | None = None,
    ) -> list[StoredRecord]:
        return [
            s
            for s in self.items
            if (key_uri is None or s.record.key_uri == key_uri)
            and (since is None or (s.record.recorded_at or since) >= since)
            and (outcome is None or s.record.outcome == outcome)
            and (rotation_id is None or s.record.rotation_id == rotation_id)
        ]

    def get(self, reference: str) -> StoredRecord | None:
        return next((s for s in self.items if reference in (s.record.record_id, f"#{s.seq}")), None)

    def verify(self) -> VerifyReport:
        return VerifyReport(len(self.items), len(self.items), "0" * 64, 0, 0)


def stored(seq: int, outcome: str = "succeeded", **kwargs: object) -> StoredRecord:
    return StoredRecord(seq, f"{seq:064x}", f"{seq - 1:064x}", make_record(outcome, **kwargs))  # type: ignore[arg-type]


class TestParsing:
    """Caller input is validated once, for the CLI and the HTTP API alike."""

    def test_since_accepts_a_date_or_a_time(self) -> None:
        assert parse_since("2026-11-20") == datetime(2026, 11, 20, tzinfo=UTC)
        assert parse_since("2026-11-20T08:30:00Z") == datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
        assert parse_since("2026-11-20T08:30:00") == datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
        assert parse_since(None) is None

    def test_since_refuses_other_text(self) -> None:
        with pytest.raises(InputError, match="since"):
            parse_since("last tuesday")

    def test_status_names_an_outcome(self) -> None:
        assert parse_status("FAILED") == "failed"
        assert parse_status("dry-run") == "dry_run"
        with pytest.raises(InputError, match="status"):
            parse_status("exploded")

    def test_key_is_normalised_to_its_versionless_uri(self) -> None:
        assert parse_key("https://KV1.vault.azure.net/keys/cmk/0123abcd") == "https://kv1.vault.azure.net/keys/cmk"
        with pytest.raises(InputError):
            parse_key("kv1/keys/cmk")


class TestListAndShow:
    """Listing keeps chain order and the newest ``limit``; show finds by id or #seq, else says so."""

    def test_list_keeps_the_newest_within_the_limit(self) -> None:
        reader = MemoryReader([stored(i, "failed" if i % 2 else "succeeded") for i in range(1, 8)])

        result = list_records(reader, status="failed", limit=2)

        assert [r.seq for r in result.records] == [5, 7]
        assert result.matched == 4
        assert result.to_dict()["records"][0]["outcome"] == "failed"

    def test_list_refuses_a_silly_limit(self) -> None:
        with pytest.raises(InputError, match="limit"):
            list_records(MemoryReader([]), limit=0)

    def test_show_finds_by_id_and_by_sequence(self) -> None:
        reader = MemoryReader([stored(1), stored(2)])

        assert show_record(reader, reader.items[1].record.record_id).seq == 2
        assert show_record(reader, "#1").seq == 1
        with pytest.raises(AuditRecordNotFound):
            show_record(reader, "no-such-record")


class TestRendering:
    """The timeline tells on-call what happened, step by step, with durations and consumer changes."""

    def test_timeline_shows_steps_durations_and_consumers(self) -> None:
        record = stored(3, "rolled_back", caller="alice@example.com", recorded_at=datetime(2026, 11, 27, tzinfo=UTC))

        text = render_timeline(record)

        assert "audit record #3" in text
        assert "rolled_back" in text
        assert "http by alice@example.com" in text
        assert "repoint_storage_account" in text
        assert "3.2 s" in text  # 1 s -> 4.25 s
        assert "120 ms" in text
        assert f"{record.record.old_version} -> {record.record.new_version}" in text
        assert "[rolled_back]" in text
        assert "re-wrap: 40 re-wrapped" in text

    def test_verify_rendering_names_the_broken_record(self) -> None:
        from rotation.audit.chain import Problem

        report = VerifyReport(5, 5, "0" * 64, 0, 0, Problem("deleted", 3, "abc", "record #3 (abc) missing"))

        assert render_verify(report).startswith("audit chain BROKEN at record #3")
        assert "OK" in render_verify(VerifyReport(5, 5, "0" * 64, 1, 5))
