"""TableAuditLog against Azurite through the official azure-data-tables client."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.data.tables import TableClient, UpdateMode
from structlog.testing import capture_logs

from rotation.audit.codec import chain_hash
from rotation.audit.store import RECORDS, TableAuditLog, seq_key
from rotation.cli import main
from rotation.domain.model import RewrapFailure, RewrapSummary
from tests.fakes.audit import OUTCOMES, LocalCheckpointSigner, make_record
from tests.integration.audit.concurrency import run_in_threads, verified_chain

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def store(storage_connection: str, table_name: str) -> Iterator[TableAuditLog]:
    log = TableAuditLog(storage_connection, table_name)
    yield log
    log.close()


CliRunner = Callable[..., tuple[int, str]]


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], storage_connection: str, table_name: str
) -> CliRunner:
    """``python -m rotation ...`` in-process against this test's audit table; returns (exit code, stdout)."""
    monkeypatch.setenv("AzureWebJobsStorage", storage_connection)
    monkeypatch.setenv("ROTATION_AUDIT_TABLE", table_name)
    monkeypatch.setenv("ROTATION_LOG_FORMAT", "console")

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(list(argv))
        return code, capsys.readouterr().out

    return run


class TestOutcomeRecords:
    """Each outcome writes one record, read back unchanged, and the same record goes out as a log line.

    What every ``AuditLog`` must do (idempotent append, ``records`` filters) is in tests/contracts.
    """

    def test_each_outcome_is_stored_and_logged(self, store: TableAuditLog) -> None:
        records = [
            make_record(o, key_uri=f"https://kv1.vault.azure.net/keys/k-{o.replace('_', '-')}") for o in OUTCOMES
        ]

        with capture_logs() as logs:
            ids = [store.append(r) for r in records]

        stored = store.stored()
        assert ids == [r.record_id for r in records]
        assert [s.seq for s in stored] == [1, 2, 3, 4, 5]
        assert [s.record for s in stored] == [
            replace(r, recorded_at=s.record.recorded_at) for r, s in zip(records, stored, strict=True)
        ]
        assert all(s.record.recorded_at is not None for s in stored)
        lines = [entry for entry in logs if entry["event"] == "audit_record"]
        assert [(line["record_id"], line["outcome"], line["hash"]) for line in lines] == [
            (s.record.record_id, s.record.outcome, s.hash) for s in stored
        ]
        assert lines[2]["record"]["reason"] == "vault has no purge protection"
        assert store.verify().ok

    def test_filters_select_by_key_time_and_outcome(self, store: TableAuditLog) -> None:
        old = datetime.now(UTC) - timedelta(days=10)
        store.append(make_record("failed", key_uri="https://kv1.vault.azure.net/keys/alpha", recorded_at=old))
        store.append(make_record("failed", key_uri="https://kv1.vault.azure.net/keys/beta"))
        store.append(make_record("succeeded", key_uri="https://kv1.vault.azure.net/keys/alpha"))

        by_key = store.stored(key_uri="https://KV1.vault.azure.net/keys/alpha")
        recent_failures = store.stored(since=datetime.now(UTC) - timedelta(days=7), outcome="failed")

        assert [s.seq for s in by_key] == [1, 3]
        assert [s.seq for s in recent_failures] == [2]

    def test_a_record_longer_than_one_property_is_split_and_verifies(self, store: TableAuditLog) -> None:
        failures = tuple(
            RewrapFailure("https://data.blob.core.windows.net/cse", f"tenant/{i:05d}/blob.bin", "etag changed")
            for i in range(1500)
        )
        record = replace(make_record(), rewrap=RewrapSummary(rewrapped=10, failed=failures))

        store.append(record)

        stored = store.get("#1")
        assert stored is not None
        assert stored.record.rewrap is not None
        assert len(stored.record.rewrap.failed) == 1500
        assert store.verify().ok


class TestResilience:
    """The chain survives a lost head and an archive outage; neither blocks the rotation being recorded."""

    def test_appends_walk_past_a_missing_head(self, store: TableAuditLog, raw_table: TableClient) -> None:
        for outcome in OUTCOMES[:3]:
            store.append(make_record(outcome))
        raw_table.delete_entity("head", "head")

        store.append(make_record("failed"))

        stored = store.stored()
        assert [s.seq for s in stored] == [1, 2, 3, 4]
        assert stored[3].prev_hash == stored[2].hash
        assert raw_table.get_entity("head", "head")["seq"] == 4
        assert store.verify().ok

    def test_an_archive_outage_does_not_fail_the_append_but_fails_verify(
        self, storage_connection: str, table_name: str
    ) -> None:
        store = TableAuditLog(storage_connection, table_name, archive_container="x")  # a name storage refuses

        with capture_logs() as logs:
            store.append(make_record())

        report = store.verify()
        assert [s.seq for s in store.stored()] == [1]
        assert any(e["event"] == "audit_archive_failed" for e in logs)
        assert report.problem is not None
        assert report.problem.kind == "archive_unreadable"
        assert "archive x is configured but could not be read" in report.problem.message


class TestTamperDetection:
    """Editing, deleting or reordering a record in storage makes ``audit verify`` fail and name it."""

    @pytest.fixture
    def chain(self, store: TableAuditLog) -> list[str]:
        return [store.append(make_record(o)) for o in OUTCOMES]

    def test_intact_chain_verifies(self, chain: list[str], cli: CliRunner) -> None:
        code, out = cli("audit", "verify")

        assert code == 0
        assert out.startswith("audit chain OK: 5 records through #5")

    def test_edited_record_is_named(self, chain: list[str], raw_table: TableClient, cli: CliRunner) -> None:
        entity = raw_table.get_entity(RECORDS, seq_key(4))
        entity["body"] = entity["body"].replace('"outcome":"failed"', '"outcome":"succeeded"')
        raw_table.update_entity(entity, mode=UpdateMode.REPLACE)

        code, out = cli("audit", "verify", "--json")

        report = json.loads(out)
        assert code == 1
        assert report["ok"] is False
        assert report["problem"]["kind"] == "edited"
        assert report["problem"]["seq"] == 4
        assert report["problem"]["record_id"] == chain[3]

    def test_deleted_record_is_named(self, chain: list[str], raw_table: TableClient, cli: CliRunner) -> None:
        raw_table.delete_entity(RECORDS, seq_key(2))

        code, out = cli("audit", "verify")

        assert code == 1
        assert "BROKEN at record #2" in out
        assert chain[1] in out
        assert "deleted" in out

    def test_a_corrupt_record_is_reported_not_crashed_on(
        self, chain: list[str], raw_table: TableClient, cli: CliRunner
    ) -> None:
        entity = raw_table.get_entity(RECORDS, seq_key(2))
        entity["body"] = "{not json"
        raw_table.update_entity(entity, mode=UpdateMode.REPLACE)

        code, _out = cli("audit", "show", "#2")
        verify_code, out = cli("audit", "verify")

        assert code == 1
        assert verify_code == 1
        assert "BROKEN at record #2" in out

    def test_the_installed_command_exits_non_zero(
        self, chain: list[str], raw_table: TableClient, storage_connection: str, table_name: str
    ) -> None:
        raw_table.delete_entity(RECORDS, seq_key(3))
        env = {**os.environ, "AzureWebJobsStorage": storage_connection, "ROTATION_AUDIT_TABLE": table_name}

        result = subprocess.run(
            [sys.executable, "-m", "rotation", "audit", "verify"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode == 1
        assert f"BROKEN at record #3: record #3 ({chain[2]}) missing" in result.stdout

    def test_deleted_last_record_is_named(self, chain: list[str], raw_table: TableClient, cli: CliRunner) -> None:
        raw_table.delete_entity(RECORDS, seq_key(5))

        code, out = cli("--json", "audit", "verify")

        assert code == 1
        assert json.loads(out)["problem"]["record_id"] == chain[4]

    def test_reordered_records_are_named(self, chain: list[str], raw_table: TableClient, cli: CliRunner) -> None:
        second, third = raw_table.get_entity(RECORDS, seq_key(2)), raw_table.get_entity(RECORDS, seq_key(3))
        swapped_into_2 = {**dict(third), "PartitionKey": RECORDS, "RowKey": seq_key(2)}
        swapped_into_3 = {**dict(second), "PartitionKey": RECORDS, "RowKey": seq_key(3)}
        raw_table.upsert_entity(swapped_into_2, mode=UpdateMode.REPLACE)
        raw_table.upsert_entity(swapped_into_3, mode=UpdateMode.REPLACE)

        code, out = cli("audit", "verify", "--json")

        problem = json.loads(out)["problem"]
        assert code == 1
        assert (problem["kind"], problem["seq"]) == ("reordered", 2)
        assert chain[2] in problem["message"]

    def test_rewritten_chain_is_caught_by_a_signed_checkpoint(
        self, storage_connection: str, table_name: str, raw_table: TableClient
    ) -> None:
        signer = LocalCheckpointSigner()
        store = TableAuditLog(storage_connection, table_name, signer, checkpoint_every=3, archive_container=None)
        ids = [store.append(make_record(o)) for o in OUTCOMES]
        attacker = TableAuditLog(storage_connection, table_name, archive_container=None)  # no signing key
        target = raw_table.get_entity(RECORDS, seq_key(2))
        raw_table.delete_entity(RECORDS, seq_key(2))
        # Rewrite from #2 on, re-hashing every record so the chain is self-consistent again.
        for seq in range(3, 6):
            raw_table.delete_entity(RECORDS, seq_key(seq))
        raw_table.delete_entity("head", "head")
        raw_table.upsert_entity(
            {
                "PartitionKey": "head",
                "RowKey": "head",
                "seq": 1,
                "hash": raw_table.get_entity(RECORDS, seq_key(1))["hash"],
            }
        )
        for _ in range(4):
            attacker.append(make_record("succeeded"))

        report = store.verify()

        assert target["record_id"] == ids[1]
        assert signer.signed == 1
        assert report.problem is not None
        assert report.problem.kind == "not_anchored"
        assert report.problem.seq == 1
        assert "#3" in report.problem.message


class TestPeriodicCheckpoints:
    """A periodic checkpoint checks the records since the last one and refuses to sign a broken segment."""

    def test_a_broken_segment_is_not_signed(
        self, storage_connection: str, table_name: str, raw_table: TableClient
    ) -> None:
        signer = LocalCheckpointSigner()
        store = TableAuditLog(storage_connection, table_name, signer, checkpoint_every=2)
        for outcome in OUTCOMES[:3]:
            store.append(make_record(outcome))
        entity = raw_table.get_entity(RECORDS, seq_key(3))
        entity["body"] = entity["body"].replace('"reason":"', '"reason":"edited ', 1)
        raw_table.update_entity(entity, mode=UpdateMode.REPLACE)

        with capture_logs() as logs:
            store.append(make_record("failed"))

        assert [c.seq for c in store.checkpoints()] == [2]
        failed = [e for e in logs if e["event"] == "audit_checkpoint_failed"]
        assert len(failed) == 1
        assert "#3" in failed[0]["problem"]
        assert signer.signed == 1


class TestImmutableArchive:
    """The WORM archive copy of each record catches what the table alone cannot."""

    def test_a_rehashed_rewrite_is_caught_against_the_archive(
        self, storage_connection: str, table_name: str, raw_table: TableClient
    ) -> None:
        store = TableAuditLog(storage_connection, table_name)
        ids = [store.append(make_record(o)) for o in OUTCOMES]
        # Edit #3 and re-hash #3..#5 and the head in the table only (the archive cannot be rewritten).
        prev = raw_table.get_entity(RECORDS, seq_key(2))["hash"]
        for seq in range(3, 6):
            entity = raw_table.get_entity(RECORDS, seq_key(seq))
            if seq == 3:
                entity["body"] = entity["body"].replace('"reason":"', '"reason":"approved; ', 1)
            entity["prev_hash"] = prev
            entity["hash"] = prev = chain_hash(seq, prev, entity["body"])
            raw_table.update_entity(entity, mode=UpdateMode.REPLACE)
        raw_table.upsert_entity(
            {"PartitionKey": "head", "RowKey": "head", "seq": 5, "hash": prev}, mode=UpdateMode.REPLACE
        )

        report = store.verify()

        assert TableAuditLog(storage_connection, table_name, archive_container=None).verify().ok  # table alone: fooled
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq, report.problem.record_id) == ("rewritten", 3, ids[2])
        assert "archived copy" in report.problem.message

    def test_deleting_the_tail_and_head_is_caught_against_the_archive(
        self, storage_connection: str, table_name: str, raw_table: TableClient
    ) -> None:
        store = TableAuditLog(storage_connection, table_name)
        ids = [store.append(make_record(o)) for o in OUTCOMES]
        raw_table.delete_entity(RECORDS, seq_key(5))
        raw_table.delete_entity(RECORDS, seq_key(4))
        raw_table.upsert_entity(
            {
                "PartitionKey": "head",
                "RowKey": "head",
                "seq": 3,
                "hash": raw_table.get_entity(RECORDS, seq_key(3))["hash"],
            },
            mode=UpdateMode.REPLACE,
        )
        for entity in raw_table.query_entities("PartitionKey eq 'id'"):
            raw_table.delete_entity(entity)

        report = store.verify()

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq, report.problem.record_id) == ("deleted", 4, ids[3])
        assert ids[4] in report.problem.message

    def test_a_checkpoint_deleted_from_the_table_still_anchors(
        self, storage_connection: str, table_name: str, raw_table: TableClient
    ) -> None:
        store = TableAuditLog(storage_connection, table_name, LocalCheckpointSigner(), checkpoint_every=2)
        for outcome in OUTCOMES:
            store.append(make_record(outcome))
        for entity in raw_table.query_entities("PartitionKey eq 'checkpoint'"):
            raw_table.delete_entity(entity)

        report = store.verify()

        assert report.ok, report.problem
        assert report.anchored_through == 4


class TestConcurrentAppends:
    """Rotations of different keys appending at once, in threads and in two processes, keep one chain."""

    def test_threads_keep_one_consistent_chain(self, store: TableAuditLog) -> None:
        appended: list[str] = []
        lock = threading.Lock()

        def rotate(key: int) -> None:
            for outcome in OUTCOMES:
                record_id = store.append(make_record(outcome, key_uri=f"https://kv1.vault.azure.net/keys/key-{key}"))
                with lock:
                    appended.append(record_id)

        run_in_threads(rotate, range(6))

        stored = verified_chain(store, 30)
        assert sorted(s.record.record_id for s in stored) == sorted(appended)
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))

    def test_two_processes_keep_one_consistent_chain(
        self, store: TableAuditLog, storage_connection: str, table_name: str
    ) -> None:
        script = (
            "import sys; from rotation.audit.store import TableAuditLog; from tests.fakes.audit import make_record\n"
            "log = TableAuditLog(sys.argv[1], sys.argv[2])\n"
            "for i in range(12): log.append(make_record('succeeded', key_uri=f'https://kv1.vault.azure.net/keys/{sys.argv[3]}'))\n"
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, storage_connection, table_name, f"proc-{n}"],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for n in range(2)
        ]
        for _ in range(8):
            store.append(make_record("failed", key_uri="https://kv1.vault.azure.net/keys/in-test"))
        errors = [p.communicate(timeout=120)[1] for p in procs]

        stored = store.stored()
        assert [p.returncode for p in procs] == [0, 0], errors
        assert [s.seq for s in stored] == list(range(1, 33))
        keys = [s.record.key_uri.rsplit("/", 1)[1] for s in stored]
        assert (keys.count("proc-0"), keys.count("proc-1"), keys.count("in-test")) == (12, 12, 8)
        assert store.verify().ok


class TestReads:
    """``audit list`` / ``audit show`` and the HTTP routes read the same records."""

    def test_cli_list_and_show(self, store: TableAuditLog, cli: CliRunner) -> None:
        ids = [store.append(make_record(o, key_uri="https://kv1.vault.azure.net/keys/cmk")) for o in OUTCOMES]
        store.append(make_record("failed", key_uri="https://kv1.vault.azure.net/keys/other"))

        code, out = cli(
            "--json",
            "audit",
            "list",
            "--key",
            "https://kv1.vault.azure.net/keys/cmk",
            "--status",
            "failed",
        )
        listed = json.loads(out)
        show_code, timeline = cli("audit", "show", ids[4])
        text_code, table_text = cli("audit", "list", "--since", "2000-01-01")
        missing_code, _ = cli("audit", "show", "nope")
        bad_code, _ = cli("audit", "list", "--since", "last week")
        rotation = store.get(ids[1])
        assert rotation is not None
        by_rotation = json.loads(cli("audit", "list", "--json", "--rotation", rotation.record.rotation_id or "")[1])

        assert code == 0
        assert [r["record_id"] for r in listed["records"]] == [ids[3]]
        assert show_code == 0
        assert timeline.startswith(f"audit record #5  {ids[4]}")
        assert "repoint_storage_account" in timeline
        assert "[rolled_back]" in timeline
        assert text_code == 0
        assert "6 of 6 matching records" in table_text
        assert missing_code == 2
        assert bad_code == 2
        assert [r["record_id"] for r in by_rotation["records"]] == [ids[1]]

    def test_http_routes(
        self,
        store: TableAuditLog,
        storage_connection: str,
        table_name: str,
        raw_table: TableClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from fastapi.testclient import TestClient

        from rotation.api.app import create_app

        ids = [store.append(make_record(o)) for o in OUTCOMES]
        monkeypatch.setenv("AzureWebJobsStorage", storage_connection)
        monkeypatch.setenv("ROTATION_AUDIT_TABLE", table_name)
        client = TestClient(create_app())

        listed = client.get("/api/audit", params={"status": "refused"})
        shown = client.get(f"/api/audit/{ids[0]}")
        by_seq = client.get("/api/audit/2")
        missing = client.get("/api/audit/no-such-record")
        not_ascii = client.get("/api/audit/%C2%B3")  # "³": isdigit() but not a number int() takes
        bad = client.get("/api/audit", params={"since": "yesterday"})
        verified = client.get("/api/audit/verify")
        raw_table.delete_entity(RECORDS, seq_key(3))
        broken = client.get("/api/audit/verify")

        assert listed.status_code == 200
        assert [r["record_id"] for r in listed.json()["records"]] == [ids[2]]
        assert shown.json()["steps"][0]["name"] == "preflight"
        assert shown.json()["seq"] == 1
        assert by_seq.json()["record_id"] == ids[1]
        assert missing.status_code == 404
        assert not_ascii.status_code == 404
        assert bad.status_code == 400
        assert verified.json()["ok"] is True
        assert broken.json()["ok"] is False
        assert broken.json()["problem"]["record_id"] == ids[2]
