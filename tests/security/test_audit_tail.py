"""Finding 3: the end of the audit chain is protected, with and without the archive.

Each test plays someone with write access to the app's storage account (tables) who rewrites, truncates
or forges audit state; ``audit verify`` must fail, naming the first missing or forged record, and the
service must not sign a checkpoint over a rewritten record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient, UpdateMode

from rotation.audit.codec import chain_hash
from rotation.audit.store import RECORDS, TableAuditLog, id_key, seq_key
from rotation.cli import main
from tests.fakes.audit import OUTCOMES, LocalCheckpointSigner, make_record

pytestmark = pytest.mark.integration


def truncate_tail(raw_table: TableClient, keep: int, *, drop_index: bool = True) -> None:
    """Delete every record after ``keep``, move the head back to it, and (by default) drop the id index."""
    for entity in list(raw_table.query_entities("PartitionKey eq 'record'")):
        if int(entity["seq"]) > keep:
            raw_table.delete_entity(entity)
    head = {
        "PartitionKey": "head",
        "RowKey": "head",
        "seq": keep,
        "hash": raw_table.get_entity(RECORDS, seq_key(keep))["hash"],
    }
    raw_table.upsert_entity(head, mode=UpdateMode.REPLACE)
    if drop_index:
        for entity in list(raw_table.query_entities("PartitionKey eq 'id'")):
            if int(entity["seq"]) > keep:
                raw_table.delete_entity(entity)


def rehash_record(raw_table: TableClient, seq: int) -> None:
    """Edit record ``seq``'s reason and recompute its hash (and the head), as a careful attacker would."""
    entity = raw_table.get_entity(RECORDS, seq_key(seq))
    entity["body"] = entity["body"].replace('"reason":"', '"reason":"approved; ', 1)
    entity["hash"] = chain_hash(seq, entity["prev_hash"], entity["body"])
    raw_table.update_entity(entity, mode=UpdateMode.REPLACE)
    raw_table.upsert_entity(
        {"PartitionKey": "head", "RowKey": "head", "seq": seq, "hash": entity["hash"]}, mode=UpdateMode.REPLACE
    )


class TestTailTruncation:
    """Deleting the last records (and moving the head back, and dropping their index entries) fails verify,
    naming the first missing record, with the archive and without it."""

    @pytest.mark.parametrize("archive", ["rotation-audit", None])
    def test_truncation_under_a_signed_checkpoint(
        self, storage_connection: str, table_name: str, raw_table: TableClient, archive: str | None
    ) -> None:
        store = TableAuditLog(
            storage_connection, table_name, LocalCheckpointSigner(), checkpoint_every=5, archive_container=archive
        )
        ids = [store.append(make_record(o)) for o in OUTCOMES]
        truncate_tail(raw_table, 3)

        report = store.verify()

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("deleted", 4)
        assert report.problem.record_id in (ids[3], None) if archive is None else report.problem.record_id == ids[3]
        assert "#4" in report.problem.message

    def test_index_entries_past_the_last_record_are_flagged(
        self, storage_connection: str, table_name: str, raw_table: TableClient
    ) -> None:
        store = TableAuditLog(storage_connection, table_name, archive_container=None)
        ids = [store.append(make_record(o)) for o in OUTCOMES]
        truncate_tail(raw_table, 3, drop_index=False)

        report = store.verify()

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq, report.problem.record_id) == ("deleted", 4, ids[3])
        assert ids[4] in report.problem.message

    def test_cli_exits_non_zero_naming_the_first_missing_record(
        self,
        storage_connection: str,
        table_name: str,
        raw_table: TableClient,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        store = TableAuditLog(storage_connection, table_name)
        ids = [store.append(make_record(o)) for o in OUTCOMES]
        truncate_tail(raw_table, 2)
        monkeypatch.setenv("AzureWebJobsStorage", storage_connection)
        monkeypatch.setenv("ROTATION_AUDIT_TABLE", table_name)
        monkeypatch.setenv("ROTATION_LOG_FORMAT", "console")
        capsys.readouterr()

        code = main(["audit", "verify", "--json"])

        report = json.loads(capsys.readouterr().out)
        assert code == 1
        assert (report["problem"]["kind"], report["problem"]["seq"], report["problem"]["record_id"]) == (
            "deleted",
            3,
            ids[2],
        )


class TestArchiveConfiguredButNotUsable:
    """An archive that is configured but unreadable, or that lacks a record's copy, fails verify, named."""

    def test_unreadable_archive_fails(self, storage_connection: str, table_name: str) -> None:
        store = TableAuditLog(storage_connection, table_name, archive_container="x")  # a name storage refuses
        store.append(make_record())

        report = store.verify()

        assert report.problem is not None
        assert report.problem.kind == "archive_unreadable"
        assert "archive x" in report.problem.message

    def test_record_without_archived_copy_fails(self, storage_connection: str, table_name: str) -> None:
        archive = f"arch{uuid.uuid4().hex[:10]}"
        store = TableAuditLog(storage_connection, table_name, archive_container=archive)
        for outcome in OUTCOMES[:3]:
            store.append(make_record(outcome))
        around = TableAuditLog(storage_connection, table_name, archive_container=None)  # writes the table only
        forged = around.append(make_record("succeeded", reason="forged approval"))

        report = store.verify()

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq, report.problem.record_id) == ("unarchived", 4, forged)


class TestCheckpointComparesWithTheArchive:
    """The periodic checkpoint refuses to sign when a record since the last checkpoint was rewritten in the
    table (re-hashed, head moved) and no longer matches its archived copy."""

    def test_no_checkpoint_over_a_rewritten_record(
        self, storage_connection: str, table_name: str, raw_table: TableClient
    ) -> None:
        archive = f"arch{uuid.uuid4().hex[:10]}"
        store = TableAuditLog(
            storage_connection, table_name, LocalCheckpointSigner(), checkpoint_every=3, archive_container=archive
        )
        for outcome in OUTCOMES:
            store.append(make_record(outcome))  # checkpoint at #3
        rehash_record(raw_table, 5)

        store.append(make_record("succeeded"))  # #6: the periodic checkpoint is due

        assert sorted(c.seq for c in store.checkpoints()) == [3]
        report = store.verify()
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("rewritten", 5)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class TestTimedCheckpoint:
    """Besides every ``checkpoint_every`` records, a checkpoint is signed once an hour has passed (the
    default) since the last one, or since the first record, as records arrive."""

    def test_hourly_checkpoint_while_records_arrive(self, storage_connection: str, table_name: str) -> None:
        clock: Callable[[], datetime] = Clock()
        store = TableAuditLog(
            storage_connection, table_name, LocalCheckpointSigner(), checkpoint_every=100, archive_container=None,
            now=clock,
        )  # fmt: skip
        store.append(make_record(recorded_at=clock()))
        clock.now += timedelta(minutes=30)  # type: ignore[attr-defined]
        store.append(make_record(recorded_at=clock()))
        assert store.checkpoints() == []
        clock.now += timedelta(minutes=31)  # type: ignore[attr-defined]

        store.append(make_record(recorded_at=clock()))

        assert [c.seq for c in store.checkpoints()] == [3]
        clock.now += timedelta(minutes=10)  # type: ignore[attr-defined]
        store.append(make_record(recorded_at=clock()))
        assert [c.seq for c in store.checkpoints()] == [3]


class TestForgedIndexEntries:
    """Record ids are predictable (rotation id + outcome): an index entry written ahead of time must not make
    the service skip the record, and verify names the entry that disagrees with its record."""

    def test_pre_written_index_entry_does_not_suppress_the_record(
        self, storage_connection: str, table_name: str, raw_table: TableClient
    ) -> None:
        store = TableAuditLog(storage_connection, table_name, archive_container=None)
        first = store.append(make_record("succeeded"))
        record = replace(make_record("failed"), record_id=f"rot-{uuid.uuid4().hex[:8]}-failed")
        raw_table.create_entity(
            {"PartitionKey": "id", "RowKey": id_key(record.record_id), "seq": 1, "record_id": first}
        )

        store.append(record)

        assert record.record_id in [r.record_id for r in store.records()]
        report = store.verify()
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("corrupt", 1)
