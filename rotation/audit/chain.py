"""Pure verification of a stored audit chain: which record broke, and how.

The store reads entities; this module decides. Given the records in storage order, the head
pointer and the signed checkpoints, :func:`verify` walks the chain once and names the first
broken record:

- ``edited``: a record's stored text no longer hashes to its stored hash, or its indexed columns
  disagree with its text;
- ``rewritten``: a record hashes correctly but its successor links to a different hash (it was
  edited and its own hash recomputed);
- ``deleted``: a sequence number is missing, or the head or a checkpoint covers records that are gone;
- ``reordered``: a record sits at a position other than its own sequence number;
- ``not_anchored``: the chain is self-consistent but disagrees with a signed checkpoint (the whole
  chain from some point on was rewritten), or a checkpoint's signature does not verify;
- ``unarchived``: an archive is kept but a record has no copy in it (written around the service, or
  the archive append failed: either way nothing vouches for it);
- ``archive_unreadable``: an archive is configured but could not be read, so nothing was compared.

The end of the chain is checked against every witness that outlives a deletion: the archive's copies,
the id index (entries past the last record), the head pointer and the signed checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from rotation.audit.codec import GENESIS_HASH, canonical_json, chain_hash

ProblemKind = Literal[
    "edited", "rewritten", "deleted", "reordered", "not_anchored", "corrupt", "unarchived", "archive_unreadable"
]

#: Body fields copied into entity columns (so Table queries can filter); they must match the body.
INDEXED_FIELDS = ("record_id", "key_uri", "outcome", "rotation_id")


@dataclass(frozen=True)
class ChainEntry:
    """One stored record as read back: its position, links, text and the columns beside it."""

    position: int  # the sequence number its storage key says it has
    seq: int  # the sequence number stored inside it
    record_id: str
    prev_hash: str
    hash: str
    body: str
    columns: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the chain's record ``seq`` hashed to ``hash`` at ``created_at``."""

    seq: int
    hash: str
    created_at: datetime
    key_id: str  # the versioned key that signed it
    algorithm: str
    signature: bytes

    def digest(self) -> bytes:
        return checkpoint_digest(self.seq, self.hash, self.created_at)


def index_key(record_id: str) -> str:
    """The id index's RowKey for a record id (a digest: record ids come from callers)."""
    return hashlib.sha256(record_id.encode()).hexdigest()


def checkpoint_digest(seq: int, record_hash: str, created_at: datetime) -> bytes:
    """The SHA-256 digest a checkpoint signature covers."""
    payload = canonical_json({"seq": seq, "hash": record_hash, "created_at": created_at.isoformat()})
    return hashlib.sha256(payload.encode()).digest()


@dataclass(frozen=True)
class Head:
    """The store's pointer to the last record (a hint for appenders; it may lag, never lead)."""

    seq: int
    hash: str


@dataclass(frozen=True)
class ArchivedRecord:
    """The first copy of a record in the immutable (WORM) archive: what the chain held when it was written."""

    seq: int
    record_id: str
    hash: str
    conflicting: bool = False  # two different copies for one seq: a forged copy was appended


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the chain, naming the record."""

    kind: ProblemKind
    seq: int
    record_id: str | None
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of walking the chain."""

    records: int
    last_seq: int
    last_hash: str
    checkpoints: int
    anchored_through: int  # the highest seq covered by a verified checkpoint (0: none)
    problem: Problem | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["warnings"] = list(self.warnings)
        return data


def _describe(seq: int, record_id: str | None) -> str:
    return f"record #{seq}" + (f" ({record_id})" if record_id else "")


def verify(
    entries: Sequence[ChainEntry],
    head: Head | None,
    checkpoints: Sequence[Checkpoint],
    signature_valid: Callable[[Checkpoint], bool] | None,
    *,
    ids_by_seq: Mapping[int, str] | None = None,
    index: Sequence[tuple[str, int]] | None = None,
    archive: Mapping[int, ArchivedRecord] | None = None,
    origin: Head | None = None,
) -> VerifyReport:
    """Walk the chain and report the first broken record.

    Args:
        entries: records in storage order (ascending position).
        head: the head pointer, if one was written.
        checkpoints: signed checkpoints, any order.
        signature_valid: checks one checkpoint's signature; ``None`` when no signing key is
            configured (then any checkpoint present is a problem: it cannot be trusted or refuted).
        ids_by_seq: record ids by sequence number from the id index, to name deleted records.
        index: every (RowKey, seq) entry of the id index (RowKey = ``index_key(record id)``); an entry
            pointing at a record with another id is reported (a forged one would make the append skip
            a record).
        archive: the first archived copy of each record by sequence number, when an archive is
            kept; a record that differs from its copy, or a copy with no record, is reported.
        origin: walk only the records after this already-verified point (``entries`` then start
            at ``origin.seq + 1``); used to check the segment since the last checkpoint cheaply.
    """
    copies = archive or {}
    ids = {**{seq: copy.record_id for seq, copy in copies.items()}, **(ids_by_seq or {})}
    hashes: dict[int, str] = {}
    warnings: list[str] = []

    def report(problem: Problem | None, anchored: int = 0) -> VerifyReport:
        last_seq = max(hashes) if hashes else 0
        return VerifyReport(
            records=len(entries),
            last_seq=last_seq,
            last_hash=hashes.get(last_seq, GENESIS_HASH),
            checkpoints=len(checkpoints),
            anchored_through=anchored,
            problem=problem,
            warnings=tuple(warnings),
        )

    if head is not None and head.seq < 0:
        return report(Problem("corrupt", 0, None, "the head pointer is malformed: it was written around the service"))
    expected_seq = 1 if origin is None else origin.seq + 1
    prev_hash = GENESIS_HASH if origin is None else origin.hash
    if origin is not None and origin.seq > 0:
        hashes[origin.seq] = origin.hash
    prev: ChainEntry | None = None
    index_problem: Problem | None = None  # reported last: the other witnesses name a rewrite more precisely
    indexed_ids: dict[int, set[str]] = {}
    for row_key, seq in index or ():
        indexed_ids.setdefault(seq, set()).add(row_key)
    for entry in entries:
        if entry.position != entry.seq:
            return report(
                Problem(
                    "reordered",
                    entry.position,
                    ids.get(entry.position, entry.record_id),
                    f"position #{entry.position} holds {_describe(entry.seq, entry.record_id)}: records were reordered",
                )
            )
        if entry.seq > expected_seq:
            missing = ", ".join(_describe(s, ids.get(s)) for s in range(expected_seq, entry.seq))
            return report(
                Problem(
                    "deleted",
                    expected_seq,
                    ids.get(expected_seq),
                    f"{missing} missing before {_describe(entry.seq, entry.record_id)}: deleted",
                )
            )
        problem = _check_entry(entry)
        if problem is not None:
            return report(problem)
        foreign = indexed_ids.get(entry.seq, set()) - {index_key(entry.record_id)}
        if foreign and index_problem is None:
            message = (
                f"{len(foreign)} id index entries point at {_describe(entry.seq, entry.record_id)} for another "
                "record id: the record or its index entry was replaced"
            )
            index_problem = Problem("corrupt", entry.seq, entry.record_id, message)
        copy = copies.get(entry.seq)
        if copy is not None and copy.conflicting:
            message = f"{_describe(entry.seq, copy.record_id)} has conflicting copies in the immutable archive: forged"
            return report(Problem("rewritten", entry.seq, copy.record_id, message))
        if copy is not None and copy.hash != entry.hash:
            name = _describe(entry.seq, copy.record_id)
            message = f"{name} was rewritten: it no longer matches its immutable archived copy"
            return report(Problem("rewritten", entry.seq, copy.record_id, message))
        if entry.prev_hash != prev_hash:
            if prev is None:
                after = "start the chain" if origin is None else f"follow the checkpoint at #{origin.seq}"
                message = f"{_describe(entry.seq, entry.record_id)} does not {after}: the chain was rewritten"
                return report(Problem("rewritten", entry.seq, entry.record_id, message))
            message = (
                f"{_describe(prev.seq, prev.record_id)} was rewritten after {_describe(entry.seq, entry.record_id)}"
                " was appended: its hash no longer matches the link stored in its successor"
            )
            return report(Problem("rewritten", prev.seq, prev.record_id, message))
        hashes[entry.seq] = entry.hash
        prev_hash = entry.hash
        prev = entry
        expected_seq = entry.seq + 1

    last_seq = expected_seq - 1
    beyond = sorted(seq for seq in copies if seq > last_seq)
    if beyond:
        missing = ", ".join(_describe(s, ids.get(s)) for s in beyond)
        message = f"{missing} missing at the end: deleted (the immutable archive holds copies)"
        return report(Problem("deleted", beyond[0], ids.get(beyond[0]), message))
    indexed_beyond = sorted(seq for seq in (ids_by_seq or {}) if seq > last_seq)
    if indexed_beyond:
        first = indexed_beyond[0]
        missing = ", ".join(_describe(s, ids.get(s)) for s in range(last_seq + 1, indexed_beyond[-1] + 1))
        message = f"{missing} missing at the end: deleted (the id index still names them)"
        return report(Problem("deleted", last_seq + 1, ids.get(last_seq + 1, ids.get(first)), message))
    if archive is not None:
        unarchived = sorted(seq for seq in hashes if seq not in copies and seq > (origin.seq if origin else 0))
        if unarchived:
            first = unarchived[0]
            message = (
                f"{_describe(first, ids.get(first))} has no copy in the immutable archive "
                f"({len(unarchived)} records lack one): it was written around the service, or its archive "
                "append failed; nothing vouches for it"
            )
            return report(Problem("unarchived", first, ids.get(first), message))
    if head is not None:
        if head.seq > last_seq:
            missing = ", ".join(_describe(s, ids.get(s)) for s in range(last_seq + 1, head.seq + 1))
            return report(
                Problem("deleted", last_seq + 1, ids.get(last_seq + 1), f"{missing} missing at the end: deleted")
            )
        if head.seq > 0 and hashes.get(head.seq) != head.hash:
            message = f"{_describe(head.seq, ids.get(head.seq))} no longer matches the hash the head recorded"
            return report(Problem("rewritten", head.seq, ids.get(head.seq), message))
        if head.seq < last_seq:
            warnings.append(f"the head pointer lags at #{head.seq}; the next append moves it forward")

    checked = _check_checkpoints(
        checkpoints,
        hashes=hashes,
        last_seq=last_seq,
        signature_valid=signature_valid,
        ids=ids,
        report=report,
        warnings=warnings,
    )
    return replace(checked, problem=index_problem) if checked.ok and index_problem is not None else checked


def _check_entry(entry: ChainEntry) -> Problem | None:
    if chain_hash(entry.seq, entry.prev_hash, entry.body) != entry.hash:
        message = f"{_describe(entry.seq, entry.record_id)} was edited: its text no longer matches its hash"
        return Problem("edited", entry.seq, entry.record_id, message)
    try:
        body = json.loads(entry.body)
    except ValueError:
        return Problem("corrupt", entry.seq, entry.record_id, f"{_describe(entry.seq, entry.record_id)} is not JSON")
    for name in INDEXED_FIELDS:
        if name in entry.columns and entry.columns[name] != body.get(name):
            message = f"{_describe(entry.seq, entry.record_id)} was edited: column {name!r} disagrees with its text"
            return Problem("edited", entry.seq, entry.record_id, message)
    return None


def _check_checkpoints(
    checkpoints: Sequence[Checkpoint],
    *,
    hashes: Mapping[int, str],
    last_seq: int,
    signature_valid: Callable[[Checkpoint], bool] | None,
    ids: Mapping[int, str],
    report: Callable[[Problem | None, int], VerifyReport],
    warnings: list[str],
) -> VerifyReport:
    anchored = 0
    previous_good = 0
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        name = _describe(checkpoint.seq, ids.get(checkpoint.seq))
        if signature_valid is None:
            message = f"the checkpoint at {name} cannot be checked: no audit signing key is configured"
            return report(Problem("not_anchored", checkpoint.seq, ids.get(checkpoint.seq), message), anchored)
        if not signature_valid(checkpoint):
            message = f"the checkpoint at {name} has a signature that does not verify with {checkpoint.key_id}"
            return report(Problem("not_anchored", checkpoint.seq, ids.get(checkpoint.seq), message), anchored)
        if checkpoint.seq > last_seq:
            missing = ", ".join(_describe(s, ids.get(s)) for s in range(last_seq + 1, checkpoint.seq + 1))
            message = f"{missing} missing: a signed checkpoint covers them but the chain ends at #{last_seq}: deleted"
            return report(Problem("deleted", last_seq + 1, ids.get(last_seq + 1), message), anchored)
        if hashes.get(checkpoint.seq) != checkpoint.hash:
            first = previous_good + 1
            message = (
                f"the chain from {_describe(first, ids.get(first))} to {name} was rewritten: "
                f"{name} no longer matches the checkpoint signed at {checkpoint.created_at.isoformat()}"
            )
            return report(Problem("not_anchored", first, ids.get(first), message), anchored)
        anchored = previous_good = checkpoint.seq
    if last_seq > anchored:
        if anchored == 0:
            warnings.append("no signed checkpoint yet: a rewrite of the whole chain would not be detected")
        else:
            warnings.append(f"records #{anchored + 1}..#{last_seq} are not yet covered by a signed checkpoint")
    return report(None, anchored)
