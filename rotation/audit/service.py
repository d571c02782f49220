"""The audit reads shared by the CLI (``audit list|show|verify``) and the HTTP API (``/api/audit``).

Each function takes an :class:`AuditReader` (``TableAuditLog`` in the app) and plain, validated
arguments; parsing of caller input lives here too so both shells refuse the same things the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any, Protocol, get_args

from rotation.audit.chain import VerifyReport
from rotation.audit.store import StoredRecord
from rotation.domain.model import AuditOutcome, KeyRef
from rotation.errors import AuditRecordNotFound, InputError

OUTCOMES: tuple[str, ...] = get_args(AuditOutcome)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class AuditReader(Protocol):
    """What the reads need from the store (``TableAuditLog`` implements it)."""

    def stored(
        self,
        *,
        key_uri: str | None = None,
        since: datetime | None = None,
        outcome: str | None = None,
        rotation_id: str | None = None,
    ) -> list[StoredRecord]: ...

    def get(self, reference: str) -> StoredRecord | None: ...

    def verify(self) -> VerifyReport: ...


# -- input --------------------------------------------------------------------------------------


def parse_key(text: str | None) -> str | None:
    """A versionless key URI from a caller (a versioned one names its key)."""
    if text is None or not text.strip():
        return None
    key, _version = KeyRef.parse(text)
    return key.uri


def parse_since(text: str | None) -> datetime | None:
    """``2026-11-20`` (midnight UTC) or an ISO 8601 time (UTC if it has no offset)."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"since: {value[:40]!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if len(value) == 10:
        parsed = datetime.combine(parsed.date(), time(), UTC)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_rotation_id(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    value = text.strip()
    if len(value) > 100 or not all(c.isalnum() or c in "-_" for c in value):
        raise InputError("rotation: expected a rotation id (letters, digits, - and _)")
    return value


def parse_status(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    value = text.strip().lower().replace("-", "_")
    if value not in OUTCOMES:
        raise InputError(f"status: {value[:40]!r} is not one of {', '.join(OUTCOMES)}")
    return value


# -- reads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordList:
    """Records in chain order (the newest ``limit`` of those matching), and how many matched."""

    records: tuple[StoredRecord, ...]
    matched: int

    def to_dict(self) -> dict[str, Any]:
        return {"matched": self.matched, "records": [summary(r) for r in self.records]}


def summary(stored: StoredRecord) -> dict[str, Any]:
    """One line's worth of a record (``audit list``)."""
    record = stored.record
    return {
        "seq": stored.seq,
        "record_id": record.record_id,
        "recorded_at": record.recorded_at.isoformat() if record.recorded_at else None,
        "key_uri": record.key_uri,
        "outcome": record.outcome,
        "old_version": record.old_version,
        "new_version": record.new_version,
        "trigger": str(record.trigger.kind),
        "caller": record.trigger.caller,
        "event_id": record.trigger.event_id,
        "rotation_id": record.rotation_id,
        "reason": record.reason,
        "hash": stored.hash,
    }


def list_records(
    audit: AuditReader,
    *,
    key_uri: str | None = None,
    since: datetime | None = None,
    status: str | None = None,
    rotation_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> RecordList:
    """Records matching every filter given, oldest first: at most ``limit``, the newest of them."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit: must be from 1 to {MAX_LIMIT}")
    found = audit.stored(key_uri=key_uri, since=since, outcome=status, rotation_id=rotation_id)
    return RecordList(records=tuple(found[-limit:]), matched=len(found))


def show_record(audit: AuditReader, reference: str) -> StoredRecord:
    """One record by id or sequence number (``#12``).

    Raises:
        AuditRecordNotFound: nothing matches.
    """
    reference = reference.strip()
    if not reference or len(reference) > 200:
        raise InputError("record id: expected an audit record id or #sequence number")
    found = audit.get(reference)
    if found is None:
        raise AuditRecordNotFound(reference)
    return found


def verify_chain(audit: AuditReader) -> VerifyReport:
    """Walk the chain, head and signed checkpoints; ``report.ok`` is False naming the first broken record."""
    return audit.verify()


# -- rendering for people -----------------------------------------------------------------------


def render_timeline(stored: StoredRecord) -> str:
    """A readable account of one record: what, who, each step with its duration, each consumer's change."""
    record = stored.record
    trigger = record.trigger
    who = str(trigger.kind)
    if trigger.caller:
        who += f" by {trigger.caller}"
    if trigger.event_id:
        who += f" (event {trigger.event_id}{', ' + trigger.event_type if trigger.event_type else ''})"
    lines = [
        f"audit record #{stored.seq}  {record.record_id}",
        f"  key        {record.key_uri}",
        f"  versions   {record.old_version or '-'} -> {record.new_version or '-'}",
        f"  outcome    {record.outcome}" + (f": {record.reason}" if record.reason else ""),
        f"  trigger    {who}",
        f"  rotation   {record.rotation_id or '-'}",
        f"  recorded   {record.recorded_at.isoformat() if record.recorded_at else '-'}",
        f"  hash       {stored.hash}",
        f"  previous   {stored.prev_hash}",
    ]
    if record.steps:
        lines.append("steps:")
        origin = min(s.started_at for s in record.steps)
        for step in record.steps:
            offset = (step.started_at - origin).total_seconds()
            duration = "running" if step.duration_ms is None else _duration(step.duration_ms)
            detail = f"  {step.detail}" if step.detail else ""
            lines.append(f"  +{offset:8.1f}s  {step.name:<28} {step.status:<9} {duration:>9}{detail}")
    if record.consumers:
        lines.append("consumers:")
        for change in record.consumers:
            detail = f"  {change.detail}" if change.detail else ""
            lines.append(
                f"  {change.kind!s:<15} {change.resource_id}  {change.before or '-'} -> {change.after or '-'}"
                f"  [{change.status}]{detail}"
            )
    if record.rewrap is not None:
        rewrap = record.rewrap
        lines.append(
            f"re-wrap: {rewrap.rewrapped} re-wrapped, {rewrap.already_current} already current, "
            f"{rewrap.skipped_deleted} deleted, {len(rewrap.failed)} failed, {rewrap.poison_messages} poison, "
            f"{rewrap.remaining_on_old_versions} still on old versions, {rewrap.other_keys} of other keys left alone"
        )
        lines.extend(f"  failed {f.location}/{f.blob}: {f.reason}" for f in rewrap.failed)
    return "\n".join(lines)


def _duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def render_verify(report: VerifyReport) -> str:
    lines = []
    if report.problem is None:
        lines.append(
            f"audit chain OK: {report.records} records through #{report.last_seq}, "
            f"{report.checkpoints} signed checkpoints, anchored through #{report.anchored_through}"
        )
    else:
        lines.append(f"audit chain BROKEN at record #{report.problem.seq}: {report.problem.message}")
    lines.extend(f"warning: {w}" for w in report.warnings)
    return "\n".join(lines)
