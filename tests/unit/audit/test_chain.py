"""Chain verification names the first broken record, whatever was done to the chain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from rotation.audit.chain import ArchivedRecord, ChainEntry, Checkpoint, Head, checkpoint_digest, verify
from rotation.audit.codec import GENESIS_HASH, canonical_json, chain_hash, record_to_dict
from tests.fakes.audit import LocalCheckpointSigner, make_record


def build_chain(n: int) -> list[ChainEntry]:
    entries = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        record = make_record(("succeeded", "failed", "refused", "dry_run", "rolled_back")[seq % 5])
        body = canonical_json(record_to_dict(record))
        digest = chain_hash(seq, prev, body)
        columns = {"record_id": record.record_id, "key_uri": record.key_uri, "outcome": record.outcome}
        entries.append(ChainEntry(seq, seq, record.record_id, prev, digest, body, columns))
        prev = digest
    return entries


def signed(signer: LocalCheckpointSigner, entry: ChainEntry) -> Checkpoint:
    created = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    signature = signer.sign(checkpoint_digest(entry.seq, entry.hash, created))
    return Checkpoint(entry.seq, entry.hash, created, signature.key_id, signature.algorithm, signature.value)


def rehash_from(entries: list[ChainEntry], start: int) -> list[ChainEntry]:
    """What an attacker with write access does: recompute every hash from ``start`` (1-based) on."""
    out = entries[: start - 1]
    prev = out[-1].hash if out else GENESIS_HASH
    for entry in entries[start - 1 :]:
        digest = chain_hash(entry.seq, prev, entry.body)
        out.append(replace(entry, prev_hash=prev, hash=digest))
        prev = digest
    return out


def head_of(entries: list[ChainEntry]) -> Head:
    return Head(entries[-1].seq, entries[-1].hash)


class TestIntactChain:
    """An untouched chain verifies, anchored through its last checkpoint."""

    def test_intact_chain_is_ok(self) -> None:
        signer = LocalCheckpointSigner()
        entries = build_chain(6)
        checkpoints = [signed(signer, entries[2])]

        report = verify(
            entries,
            head_of(entries),
            checkpoints,
            lambda c: signer.verify(c.key_id, c.algorithm, c.digest(), c.signature),
        )

        assert report.ok
        assert (report.records, report.last_seq, report.last_hash) == (6, 6, entries[-1].hash)
        assert report.anchored_through == 3
        assert "#4..#6" in report.warnings[0]

    def test_empty_chain_is_ok(self) -> None:
        report = verify([], None, [], None)

        assert report.ok
        assert report.last_seq == 0

    def test_a_lagging_head_is_only_a_warning(self) -> None:
        entries = build_chain(4)

        report = verify(entries, Head(3, entries[2].hash), [], None)

        assert report.ok
        assert any("lags" in w for w in report.warnings)


class TestTampering:
    """Each kind of tampering is reported against the record it touched."""

    def test_edited_text_names_the_record(self) -> None:
        entries = build_chain(5)
        entries[2] = replace(entries[2], body=entries[2].body.replace('"reason":"', '"reason":"nothing to see; '))

        report = verify(entries, head_of(entries), [], None)

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq, report.problem.record_id) == (
            "edited",
            3,
            entries[2].record_id,
        )

    def test_edited_column_names_the_record(self) -> None:
        entries = build_chain(3)
        entries[1] = replace(entries[1], columns={**entries[1].columns, "outcome": "succeeded_honest"})

        report = verify(entries, head_of(entries), [], None)

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("edited", 2)
        assert "outcome" in report.problem.message

    def test_edit_with_recomputed_hash_names_the_record(self) -> None:
        entries = build_chain(5)
        victim = entries[1]
        body = victim.body.replace('"reason":"', '"reason":"approved by nobody; ', 1)
        entries[1] = replace(victim, body=body, hash=chain_hash(2, victim.prev_hash, body))

        report = verify(entries, head_of(entries), [], None)

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq, report.problem.record_id) == ("rewritten", 2, victim.record_id)

    def test_deleted_record_is_named_by_the_id_index(self) -> None:
        entries = build_chain(5)
        ids = {e.seq: e.record_id for e in entries}
        deleted = entries.pop(2)

        report = verify(entries, head_of(entries), [], None, ids_by_seq=ids)

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq, report.problem.record_id) == ("deleted", 3, deleted.record_id)
        assert deleted.record_id in report.problem.message

    def test_deleted_last_record_is_caught_by_the_head(self) -> None:
        entries = build_chain(4)
        head = head_of(entries)
        entries.pop()

        report = verify(entries, head, [], None)

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("deleted", 4)

    def test_reordered_records_are_named(self) -> None:
        entries = build_chain(5)
        a, b = entries[1], entries[3]
        entries[1] = replace(b, position=2)
        entries[3] = replace(a, position=4)

        report = verify(entries, head_of(entries), [], None)

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("reordered", 2)
        assert b.record_id in report.problem.message

    def test_swapped_text_with_matching_positions_is_caught(self) -> None:
        entries = build_chain(4)
        a, b = entries[1], entries[2]
        entries[1] = replace(a, body=b.body, record_id=b.record_id)
        entries[2] = replace(b, body=a.body, record_id=a.record_id)

        report = verify(entries, head_of(entries), [], None)

        assert report.problem is not None
        assert report.problem.seq == 2


class TestCheckpoints:
    """Signed checkpoints catch a rewrite of the whole chain and forged or unverifiable anchors."""

    @pytest.fixture
    def signer(self) -> LocalCheckpointSigner:
        return LocalCheckpointSigner()

    def check(self, signer: LocalCheckpointSigner):  # type: ignore[no-untyped-def]
        return lambda c: signer.verify(c.key_id, c.algorithm, c.digest(), c.signature)

    def test_whole_chain_rewrite_is_caught_by_a_checkpoint(self, signer: LocalCheckpointSigner) -> None:
        entries = build_chain(8)
        checkpoints = [signed(signer, entries[3]), signed(signer, entries[6])]
        forged_body = entries[5].body.replace('"reason":"', '"reason":"forged ', 1)
        entries[5] = replace(entries[5], body=forged_body)
        entries = rehash_from(entries, 6)

        report = verify(entries, head_of(entries), checkpoints, self.check(signer))

        assert report.problem is not None
        assert report.problem.kind == "not_anchored"
        assert report.problem.seq == 5  # the first record after the last checkpoint that still holds
        assert "#5" in report.problem.message
        assert "#7" in report.problem.message

    def test_tail_deleted_with_head_moved_back_is_caught_by_a_checkpoint(self, signer: LocalCheckpointSigner) -> None:
        entries = build_chain(5)
        checkpoints = [signed(signer, entries[4])]
        entries = entries[:3]

        report = verify(entries, head_of(entries), checkpoints, self.check(signer))

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("deleted", 4)

    def test_forged_signature_is_refused(self, signer: LocalCheckpointSigner) -> None:
        entries = build_chain(3)
        forger = LocalCheckpointSigner(key_uri=signer.key_uri)
        checkpoints = [signed(forger, entries[2])]

        report = verify(entries, head_of(entries), checkpoints, self.check(signer))

        assert report.problem is not None
        assert report.problem.kind == "not_anchored"
        assert "does not verify" in report.problem.message

    def test_older_signing_key_versions_still_verify(self, signer: LocalCheckpointSigner) -> None:
        entries = build_chain(4)
        checkpoints = [signed(signer, entries[1])]
        rotated = LocalCheckpointSigner(key_uri=signer.key_uri, older=(signer,))
        checkpoints.append(signed(rotated, entries[3]))

        report = verify(entries, head_of(entries), checkpoints, self.check(rotated))

        assert report.ok
        assert report.anchored_through == 4
        assert report.warnings == ()

    def test_checkpoints_without_a_signing_key_are_a_problem(self, signer: LocalCheckpointSigner) -> None:
        entries = build_chain(2)

        report = verify(entries, head_of(entries), [signed(signer, entries[1])], None)

        assert report.problem is not None
        assert "no audit signing key" in report.problem.message


def _last_copy_missing(archive: dict[int, ArchivedRecord]) -> None:
    del archive[max(archive)]


def _second_copy_forged(archive: dict[int, ArchivedRecord]) -> None:
    archive[2] = replace(archive[2], conflicting=True)


class TestArchive:
    """The immutable archive's first copy of each record is the witness the table is held to."""

    def archive_of(self, entries: list[ChainEntry]) -> dict[int, ArchivedRecord]:
        return {e.seq: ArchivedRecord(e.seq, e.record_id, e.hash) for e in entries}

    def test_matching_archive_is_ok(self) -> None:
        entries = build_chain(4)

        report = verify(entries, head_of(entries), [], None, archive=self.archive_of(entries))

        assert report.ok, report.problem

    @pytest.mark.parametrize(
        ("size", "tamper", "kind", "seq", "says"),
        [
            pytest.param(4, _last_copy_missing, "unarchived", 4, "no copy in the immutable archive", id="unarchived"),
            pytest.param(3, _second_copy_forged, "rewritten", 2, "conflicting copies", id="forged copy appended"),
        ],
    )
    def test_an_archive_at_odds_with_the_table_fails(
        self, size: int, tamper: Callable[[dict[int, ArchivedRecord]], None], kind: str, seq: int, says: str
    ) -> None:
        entries = build_chain(size)
        archive = self.archive_of(entries)
        tamper(archive)

        report = verify(entries, head_of(entries), [], None, archive=archive)

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == (kind, seq)
        assert says in report.problem.message

    def test_records_only_the_archive_remembers_are_deleted(self) -> None:
        entries = build_chain(4)
        archive = self.archive_of(entries)

        report = verify(entries[:2], head_of(entries[:2]), [], None, archive=archive)

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq, report.problem.record_id) == (
            "deleted",
            3,
            entries[2].record_id,
        )


class TestSegmentSinceCheckpoint:
    """Walking only the records after a verified checkpoint finds the same problems in that segment."""

    def test_intact_segment_is_ok(self) -> None:
        entries = build_chain(6)

        report = verify(entries[3:], head_of(entries), [], None, origin=Head(3, entries[2].hash))

        assert report.ok
        assert (report.last_seq, report.last_hash) == (6, entries[-1].hash)

    def test_a_segment_that_no_longer_follows_the_checkpoint_is_rewritten(self) -> None:
        entries = rehash_from(
            [*build_chain(3), *[replace(e, body=e.body + " ") for e in build_chain(6)[3:]]], 1
        )  # a different history with the same length

        report = verify(entries[3:], head_of(entries), [], None, origin=Head(3, build_chain(3)[2].hash))

        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("rewritten", 4)
        assert "checkpoint at #3" in report.problem.message
