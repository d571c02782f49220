"""``TableAuditLog``: the ``AuditLog`` port over Azure Table storage (AzureWebJobsStorage).

Layout of the audit table (one table, four partitions):

=============  ========================  ==================================================
PartitionKey   RowKey                    holds
=============  ========================  ==================================================
``record``     ``seq`` zero-padded       one audit record: ``body`` (canonical JSON, split
                                         over ``body``, ``body1``... when long), ``prev_hash``,
                                         ``hash``, and filter columns copied from the body
``id``         SHA-256 of the record id  the record's ``seq`` (lookup by id; idempotent append)
``checkpoint`` ``seq`` zero-padded       a signature over (seq, hash, time) by the signing key
``head``       ``head``                  the last appended ``seq`` and ``hash`` (a hint)
=============  ========================  ==================================================

Each record and checkpoint is also appended, as a JSON line, to an append blob in the archive
container (``rotation-audit``; see ``rotation.audit.archive``), which Azure keeps immutable under a
time-based retention policy: ``verify`` compares the table with that witness.

Records are only ever created, never updated. Appends from concurrent rotations (threads,
processes, Function instances) keep one chain without a lock: a record's RowKey is its sequence
number, so creating record ``n`` succeeds for exactly one appender, and each loser reads the
winner's hash and tries ``n + 1`` chained onto it. The head is only a hint where to start (it may
lag after a crash, never lead); appenders move it forward with ETag-guarded updates, never back.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from rotation.adapters.azure_errors import translated
from rotation.adapters.host_storage import StorageConnection, host_storage
from rotation.audit.archive import DEFAULT_ARCHIVE_CONTAINER, BlobArchive
from rotation.audit.chain import (
    ArchivedRecord,
    ChainEntry,
    Checkpoint,
    Head,
    Problem,
    VerifyReport,
    checkpoint_digest,
    index_key,
    verify,
)
from rotation.audit.codec import GENESIS_HASH, chain_hash, fit_body, record_from_dict, record_to_dict, stamped
from rotation.audit.signing import CheckpointSigner
from rotation.domain.model import AuditRecord
from rotation.errors import PreconditionFailed, TransientError
from rotation.logs import get_logger

log = get_logger("rotation.audit")

RECORDS = "record"
IDS = "id"
CHECKPOINTS = "checkpoint"
HEAD = "head"
_SEQ_WIDTH = 12
_CHUNK = 30_000  # characters per string property (Table storage allows 64 KiB of UTF-16)
_MAX_CHUNKS = 12
MAX_BODY = _CHUNK * _MAX_CHUNKS


def seq_key(seq: int) -> str:
    return f"{seq:0{_SEQ_WIDTH}d}"


def id_key(record_id: str) -> str:
    # Record ids come from callers; a digest keeps RowKey free of characters Table storage refuses.
    return index_key(record_id)


@dataclass(frozen=True)
class StoredRecord:
    """A record as stored: its place in the chain and its links."""

    seq: int
    hash: str
    prev_hash: str
    record: AuditRecord

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "prev_hash": self.prev_hash, **record_to_dict(self.record)}


def _storage(action: str) -> AbstractContextManager[None]:
    """Translate azure-core errors raised while talking to Table storage into ``rotation.errors``.

    Conflicts, misses and lost ETag races are let through: they are the expected outcomes of
    conditional writes and point reads, and callers branch on them.
    """
    return translated(
        action,
        "table data access",
        let_through=(ResourceExistsError, ResourceNotFoundError, ResourceModifiedError),
        credential_failure_denied=True,
        refused_key_fails_verification=False,
    )


class TableAuditLog:
    """Implements ``rotation.ports.AuditLog``; also the reads behind ``audit list|show|verify``."""

    def __init__(
        self,
        connection: StorageConnection,
        table_name: str,
        signer: CheckpointSigner | None = None,
        *,
        checkpoint_every: int = 100,
        checkpoint_interval: timedelta | None = timedelta(hours=1),
        now: Callable[[], datetime] | None = None,
        max_attempts: int = 200,
        archive_container: str | None = DEFAULT_ARCHIVE_CONTAINER,
    ) -> None:
        self.table_name = table_name
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._anchored_at: datetime | None = None  # the latest checkpoint's time (else the first record's)
        self._storage = host_storage(connection)
        self._now = now or (lambda: datetime.now(UTC))
        self._max_attempts = max_attempts
        self._table = self._storage.table_client(table_name)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._archive = (
            BlobArchive(self._storage, archive_container, table_name) if archive_container is not None else None
        )

    def close(self) -> None:
        self._table.close()
        if self._archive is not None:
            self._archive.close()

    # -- writing -------------------------------------------------------------------------------

    def _ensure_table(self) -> None:
        with self._ready_lock:
            if self._ready:
                return
            with _storage(f"create the audit table {self.table_name}"):
                service = self._storage.table_service()
                try:
                    service.create_table_if_not_exists(self.table_name)
                finally:
                    service.close()
            self._ready = True

    def append(self, record: AuditRecord) -> str:
        """Append ``record`` to the chain and return its id; written before this returns.

        Idempotent by record id: appending a record whose id is already indexed returns that id
        and writes nothing (a crash between the record and its index entry can leave a duplicate
        record, which the chain still covers). Raises ``TransientError`` if storage keeps failing.
        """
        self._ensure_table()
        record = stamped(record, self._now())
        if not record.record_id:
            record = replace(record, record_id=uuid.uuid4().hex)
        indexed = self._seq_of(record.record_id)
        if indexed is not None:
            if self._field_at(indexed, "record_id") == record.record_id:
                log.info("audit_record_duplicate", record_id=record.record_id)
                return record.record_id
            # An index entry whose record is not this one was written around the service (it would make
            # the service skip this record): append anyway; verify names the forged entry.
            log.error("audit_index_entry_forged", record_id=record.record_id, seq=indexed)
        body = fit_body(record, MAX_BODY)
        head, etag = self._read_head()
        if head.seq < 0:
            raise PreconditionFailed("the audit head is malformed (written around the service); run audit verify")
        seq = head.seq + 1
        prev_hash = self._field_at(head.seq, "hash") if head.seq else GENESIS_HASH
        if prev_hash is None:  # the head names a record that is not there (or has no hash): let verify say so
            raise PreconditionFailed(f"the audit head names record #{head.seq}, which is missing; run audit verify")
        for _attempt in range(self._max_attempts):
            digest = chain_hash(seq, prev_hash, body)
            try:
                with _storage("append an audit record"):
                    self._table.create_entity(self._record_entity(seq, prev_hash, digest, body, record))
            except ResourceExistsError:
                # Another appender took ``seq``: chain onto its record and try the next number.
                found = self._field_at(seq, "hash")
                if found is None:  # gone again between the two calls: only tampering does that
                    raise PreconditionFailed(
                        f"audit record #{seq} exists and then does not; run audit verify"
                    ) from None
                seq, prev_hash = seq + 1, found
                time.sleep(random.uniform(0, 0.002))  # noqa: S311 (jitter, not security)
                continue
            break
        else:
            raise TransientError(f"could not append an audit record after {self._max_attempts} attempts (contention)")
        self._advance_head(Head(seq, digest), etag)
        # suppress: an earlier attempt of this append indexed it
        with _storage("index an audit record"), suppress(ResourceExistsError):
            self._table.create_entity(
                {
                    "PartitionKey": IDS,
                    "RowKey": id_key(record.record_id),
                    "seq": seq,
                    "record_id": record.record_id,
                }
            )
        self._archive_record(seq, prev_hash, digest, body, record)
        self._log(seq, prev_hash, digest, record)
        if self.signer is not None and (
            (self.checkpoint_every > 0 and seq % self.checkpoint_every == 0) or self._checkpoint_due()
        ):
            self._periodic_checkpoint()
        return record.record_id

    def _checkpoint_due(self) -> bool:
        """The timed checkpoint: due when ``checkpoint_interval`` has passed since the latest checkpoint (or,
        before the first, since the first record), checked as records arrive. The anchor time is read once
        per process and then kept; a checkpoint signed elsewhere meanwhile only makes this one early."""
        if self.checkpoint_interval is None:
            return False
        if self._anchored_at is None:
            latest = max(self.checkpoints(), key=lambda c: c.seq, default=None)
            self._anchored_at = latest.created_at if latest is not None else self._first_record_time()
        return self._now() - self._anchored_at >= self.checkpoint_interval

    def _first_record_time(self) -> datetime:
        with _storage("read an audit record"):
            try:
                entity = self._table.get_entity(RECORDS, seq_key(1), select=["recorded_at"])
            except ResourceNotFoundError:
                return self._now()
        when = entity.get("recorded_at")
        if not isinstance(when, datetime):
            return self._now()
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)

    def _record_entity(self, seq: int, prev_hash: str, digest: str, body: str, record: AuditRecord) -> dict[str, Any]:
        chunks = [body[i : i + _CHUNK] for i in range(0, len(body), _CHUNK)] or [""]
        entity: dict[str, Any] = {
            "PartitionKey": RECORDS,
            "RowKey": seq_key(seq),
            "seq": seq,
            "prev_hash": prev_hash,
            "hash": digest,
            "record_id": record.record_id,
            "rotation_id": record.rotation_id,
            "key_uri": record.key_uri,
            "key": record.key_uri.rstrip("/").lower(),
            "outcome": record.outcome,
            "trigger_kind": str(record.trigger.kind),
            "caller": record.trigger.caller,
            "recorded_at": record.recorded_at,
            "chunks": len(chunks),
        }
        for i, chunk in enumerate(chunks):
            entity["body" if i == 0 else f"body{i}"] = chunk
        return {k: v for k, v in entity.items() if v is not None}

    def _read_head(self) -> tuple[Head, str | None]:
        with _storage("read the audit head"):
            try:
                entity = self._table.get_entity(HEAD, HEAD)
            except ResourceNotFoundError:
                return Head(0, GENESIS_HASH), None
        return Head(_int(entity.get("seq")), str(entity.get("hash", ""))), str(entity.metadata["etag"])

    def _move_head(self, head: Head, etag: str | None) -> bool:
        """Move the head to ``head`` if nobody moved it since ``etag`` was read (create it if absent)."""
        entity = {"PartitionKey": HEAD, "RowKey": HEAD, "seq": head.seq, "hash": head.hash}
        with _storage("move the audit head"):
            try:
                if etag is None:
                    self._table.create_entity(entity)
                else:
                    self._table.update_entity(
                        entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceExistsError, ResourceModifiedError):
                return False  # someone else moved it; they saw at least as far
        return True

    def _advance_head(self, head: Head, etag: str | None) -> None:
        """Move the head forward to ``head`` unless someone already moved it as far (it never moves back)."""
        for _attempt in range(5):
            if self._move_head(head, etag):
                return
            current, etag = self._read_head()
            if current.seq >= head.seq:
                return
        # Still lagging after repeated races: harmless, the next appender walks past it.

    def _field_at(self, seq: int, field: str) -> str | None:
        """A field (``hash``, ``record_id``) of the record at ``seq``; None when the record or field is missing."""
        with _storage("read an audit record"):
            try:
                entity = self._table.get_entity(RECORDS, seq_key(seq), select=[field])
            except ResourceNotFoundError:
                return None
        value = entity.get(field)
        return None if value is None else str(value)

    def _seq_of(self, record_id: str) -> int | None:
        with _storage("look up an audit record"):
            try:
                entity = self._table.get_entity(IDS, id_key(record_id))
            except ResourceNotFoundError:
                return None
        seq = _int(entity.get("seq"))
        return seq if seq > 0 else None

    def _archive_record(self, seq: int, prev_hash: str, digest: str, body: str, record: AuditRecord) -> None:
        """Best effort: the table record is the source of truth; a missing copy is a warning in verify."""
        if self._archive is None:
            return
        try:
            self._archive.append_record(
                seq=seq,
                record_id=record.record_id,
                prev_hash=prev_hash,
                digest=digest,
                body=body,
                when=record.recorded_at or self._now(),
            )
        except Exception as exc:  # noqa: BLE001 (an archive outage must not fail the rotation being recorded)
            log.warning("audit_archive_failed", seq=seq, record_id=record.record_id, error=type(exc).__name__)

    def _log(self, seq: int, prev_hash: str, digest: str, record: AuditRecord) -> None:
        """The same record as one structured log line, for Application Insights."""
        body = record_to_dict(record)
        log.info(
            "audit_record",
            seq=seq,
            hash=digest,
            prev_hash=prev_hash,
            record_id=record.record_id,
            rotation_id=record.rotation_id,
            key_uri=record.key_uri,
            outcome=record.outcome,
            old_version=record.old_version,
            new_version=record.new_version,
            trigger_kind=str(record.trigger.kind),
            event_id=record.trigger.event_id,
            caller=record.trigger.caller,
            reason=body["reason"],
            recorded_at=body["recorded_at"],
            audit_table=self.table_name,
            record=body,
        )

    # -- checkpoints ---------------------------------------------------------------------------

    def _periodic_checkpoint(self) -> None:
        try:
            self.checkpoint(full=False)
        except Exception as exc:  # noqa: BLE001 (a missed checkpoint must not fail the rotation it follows)
            log.warning("audit_checkpoint_failed", error=type(exc).__name__, problem=str(exc))

    def checkpoint(self, *, full: bool = True) -> Checkpoint | None:
        """Sign the current end of the chain, after verifying the chain up to it.

        Args:
            full: verify the whole chain, archive and checkpoints first (``audit checkpoint``);
                ``False`` verifies only the records since the last checkpoint, whose signature is
                checked (the periodic checkpoints on the append path stay cheap as the chain grows).

        Returns the checkpoint, or ``None`` when the chain is empty.

        Raises:
            PreconditionFailed: no signing key is configured, or the chain is already broken
                (signing it would anchor the damage).
        """
        if self.signer is None:
            raise PreconditionFailed("no audit signing key is configured (ROTATION_AUDIT_SIGNING_KEY)")
        report = self.verify() if full else self._verify_since_last_checkpoint()
        if report.problem is not None:
            raise PreconditionFailed(f"refusing to sign a broken audit chain: {report.problem.message}")
        if report.last_seq == 0:
            return None
        created_at = self._now().astimezone(UTC)
        signature = self.signer.sign(checkpoint_digest(report.last_seq, report.last_hash, created_at))
        checkpoint = Checkpoint(
            report.last_seq, report.last_hash, created_at, signature.key_id, signature.algorithm, signature.value
        )
        with _storage("write an audit checkpoint"):
            try:
                self._table.create_entity(
                    {
                        "PartitionKey": CHECKPOINTS,
                        "RowKey": seq_key(checkpoint.seq),
                        "seq": checkpoint.seq,
                        "hash": checkpoint.hash,
                        "created_at": created_at.isoformat(),
                        "key_id": checkpoint.key_id,
                        "algorithm": checkpoint.algorithm,
                        "signature": checkpoint.signature,
                    }
                )
            except ResourceExistsError:
                log.info("audit_checkpoint_exists", seq=checkpoint.seq)
                return next(c for c in self.checkpoints() if c.seq == checkpoint.seq)
        if self._archive is not None:
            try:
                self._archive.append_checkpoint(checkpoint)
            except Exception as exc:  # noqa: BLE001 (the table copy stands; verify warns about the archive)
                log.warning("audit_archive_failed", checkpoint=checkpoint.seq, error=type(exc).__name__)
        self._anchored_at = created_at
        log.info("audit_checkpoint", seq=checkpoint.seq, hash=checkpoint.hash, key_id=checkpoint.key_id)
        return checkpoint

    def _verify_since_last_checkpoint(self) -> VerifyReport:
        signer = self.signer
        assert signer is not None
        latest = max(self.checkpoints(), key=lambda c: c.seq, default=None)
        if latest is None:
            return self.verify()
        if not signer.verify(latest.key_id, latest.algorithm, latest.digest(), latest.signature):
            return self.verify()  # the last anchor is not ours: let the full walk name the problem
        entities = self._query("PartitionKey eq @pk and RowKey ge @from", {"pk": RECORDS, "from": seq_key(latest.seq)})
        entries = [_entry(e) for e in entities]
        if not entries or entries[0].position != latest.seq or entries[0].hash != latest.hash:
            return self.verify()
        head, etag = self._read_head()
        archive, unreadable = self._read_archive()
        if unreadable is not None:
            return replace(VerifyReport(0, 0, GENESIS_HASH, 0, 0), problem=unreadable)
        # The segment is compared with the archive too: a record rewritten (and re-hashed) in the table since
        # the last checkpoint must not be anchored by the next one.
        return verify(
            entries[1:],
            head if etag is not None else None,
            [],
            None,
            archive=archive[0] if archive is not None else None,
            origin=Head(latest.seq, latest.hash),
        )

    def _read_archive(self) -> tuple[tuple[dict[int, ArchivedRecord], list[Checkpoint]] | None, Problem | None]:
        """The archive's records and checkpoints (None when no archive is configured), or the problem
        that it is configured and could not be read."""
        if self._archive is None:
            return None, None
        try:
            return self._archive.read(), None
        except AzureError as exc:
            name = self._archive.container_name
            message = f"the archive {name} is configured but could not be read ({type(exc).__name__}): not verified"
            return None, Problem("archive_unreadable", 0, None, message)

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints in the table; a malformed row is logged and left out (it anchors nothing)."""
        found = []
        for e in self._query(f"PartitionKey eq '{CHECKPOINTS}'"):
            try:
                found.append(
                    Checkpoint(
                        seq=int(e["seq"]),
                        hash=str(e["hash"]),
                        created_at=datetime.fromisoformat(str(e["created_at"])),
                        key_id=str(e["key_id"]),
                        algorithm=str(e["algorithm"]),
                        signature=bytes(e["signature"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                log.warning("audit_checkpoint_malformed", row=str(e.get("RowKey", ""))[:40])
        return found

    # -- reading -------------------------------------------------------------------------------

    def _query(self, query_filter: str, parameters: dict[str, Any] | None = None) -> list[Any]:
        self._ensure_table()
        with _storage("read the audit table"):
            entities = list(self._table.query_entities(query_filter, parameters=parameters or {}))
        return sorted(entities, key=lambda e: str(e["RowKey"]))

    def records(self, key_uri: str | None = None, since: datetime | None = None) -> Iterable[AuditRecord]:
        """Records in chain order, optionally of one key and recorded at or after ``since``."""
        return [s.record for s in self.stored(key_uri=key_uri, since=since)]

    def stored(
        self,
        *,
        key_uri: str | None = None,
        since: datetime | None = None,
        outcome: str | None = None,
        rotation_id: str | None = None,
    ) -> list[StoredRecord]:
        """Records with their chain position and links, filtered in the Table query."""
        clauses = ["PartitionKey eq @pk"]
        parameters: dict[str, Any] = {"pk": RECORDS}
        if key_uri is not None:
            clauses.append("key eq @key")
            parameters["key"] = key_uri.rstrip("/").lower()
        if since is not None:
            clauses.append("recorded_at ge @since")
            parameters["since"] = since
        if outcome is not None:
            clauses.append("outcome eq @outcome")
            parameters["outcome"] = outcome
        if rotation_id is not None:
            clauses.append("rotation_id eq @rotation")
            parameters["rotation"] = rotation_id
        return [_stored(e) for e in self._query(" and ".join(clauses), parameters)]

    def get(self, reference: str) -> StoredRecord | None:
        """One record by id, or by sequence number written ``#12`` or ``12``."""
        text = reference.strip()
        number = text.removeprefix("#")
        # ASCII digits only: str.isdigit() also accepts characters such as "³" that int() refuses.
        seq = int(number) if number.isascii() and number.isdigit() else self._seq_of(text)
        if seq is None:
            return None
        self._ensure_table()
        with _storage("read an audit record"):
            try:
                entity = self._table.get_entity(RECORDS, seq_key(seq))
            except ResourceNotFoundError:
                return None
        return _stored(entity)

    def verify(self) -> VerifyReport:
        """Walk the whole chain, its head, its archive and its checkpoints; see ``rotation.audit.chain``."""
        entries = [_entry(e) for e in self._query(f"PartitionKey eq '{RECORDS}'")]
        # The id index outlives a deleted record, so verify can name what was deleted.
        rows = [e for e in self._query(f"PartitionKey eq '{IDS}'") if _int(e.get("seq")) > 0]
        index = [(str(e["RowKey"]), _int(e.get("seq"))) for e in rows]
        ids = {_int(e.get("seq")): str(e["record_id"]) for e in rows if "record_id" in e}
        head, etag = self._read_head()
        archive: dict[int, ArchivedRecord] | None = None
        checkpoints = {c.seq: c for c in self.checkpoints()}
        read, unreadable = self._read_archive()
        if read is not None:
            archive, archived_checkpoints = read
            # A checkpoint deleted from the table still anchors the chain through its archived copy.
            for checkpoint in archived_checkpoints:
                checkpoints.setdefault(checkpoint.seq, checkpoint)
        signer = self.signer

        def signature_valid(checkpoint: Checkpoint) -> bool:
            assert signer is not None
            return signer.verify(checkpoint.key_id, checkpoint.algorithm, checkpoint.digest(), checkpoint.signature)

        report = verify(
            entries,
            head if etag is not None else None,
            list(checkpoints.values()),
            None if signer is None else signature_valid,
            ids_by_seq=ids,
            index=index,
            archive=archive,
        )
        if unreadable is not None and report.problem is None:
            return replace(report, problem=unreadable)  # a configured witness that cannot be read fails, named
        return report


def _body(entity: Any) -> str:
    count = min(max(_int(entity.get("chunks", 1), 1), 1), _MAX_CHUNKS)
    return "".join(str(entity.get("body" if i == 0 else f"body{i}", "")) for i in range(count))


def _int(value: Any, default: int = -1) -> int:
    """A stored integer, or ``default`` when the row holds something else (verify then names the record)."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else default


def _entry(entity: Any) -> ChainEntry:
    """A record row as verify reads it; never raises (a malformed row is reported by verify, by position)."""
    columns = {name: entity.get(name) for name in ("record_id", "key_uri", "outcome", "rotation_id")}
    return ChainEntry(
        position=_int(entity.get("RowKey")),
        seq=_int(entity.get("seq", -1)),
        record_id=str(entity.get("record_id", "")),
        prev_hash=str(entity.get("prev_hash", "")),
        hash=str(entity.get("hash", "")),
        body=_body(entity),
        columns=columns,
    )


def _stored(entity: Any) -> StoredRecord:
    try:
        return StoredRecord(
            seq=int(entity["seq"]),
            hash=str(entity["hash"]),
            prev_hash=str(entity["prev_hash"]),
            record=record_from_dict(json.loads(_body(entity))),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise PreconditionFailed(
            f"audit record at position #{entity.get('RowKey', '?')} is unreadable ({type(exc).__name__}); "
            "run audit verify"
        ) from None
