"""An ``AuditRecord`` as canonical JSON, and the SHA-256 chain hash over it.

Canonical JSON is ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=True)``:
the same record always serialises to the same bytes, so its hash can be recomputed by anyone
with the stored text. A record's hash covers its position (``seq``), its predecessor's hash and
its body, so moving, editing or dropping a record breaks the chain.

Free-text fields (reasons and details, where exception messages land) are scrubbed of anything
shaped like a credential before they are stored: the audit trail must never hold a token, a key
or a connection secret, even if a caller passes one by mistake.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from rotation.domain.jsonable import jsonable
from rotation.domain.model import (
    AuditRecord,
    ConsumerChange,
    RetirementEvidence,
    RewrapFailure,
    RewrapSummary,
    StepRecord,
    Trigger,
    TriggerKind,
)

GENESIS_HASH = "0" * 64
#: Format of the stored body; bump it if the canonical form ever changes.
SCHEMA_VERSION = 1
SCRUBBED = "[redacted]"

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(?:-----END [A-Z ]+-----|$)", re.DOTALL)
_ASSIGNMENTS = re.compile(r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|sig|Bearer)([=\s]+)([^\s;&,\"']+)")
# Standard and URL-safe base64 runs, separately: mixing the alphabets would swallow whole URL paths.
_BASE64_TOKENS = (re.compile(r"[A-Za-z0-9+/]{40,}={0,2}"), re.compile(r"[A-Za-z0-9_-]{40,}={0,2}"))


def canonical_json(value: Any) -> str:
    """The one serialisation every hash is computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def chain_hash(seq: int, prev_hash: str, body: str) -> str:
    """SHA-256 (hex) of a record at position ``seq`` whose predecessor hashed to ``prev_hash``."""
    material = f"{seq}\n{prev_hash}\n{body}".encode()
    return hashlib.sha256(material).hexdigest()


def _looks_random(token: str) -> bool:
    """True for long base64/base64url runs with the character spread of random bytes (keys, signatures).

    Random base64 of 32 bytes or more has a character entropy around 4.8 bits and rarely a run of
    six lower-case letters; identifiers and paths (``Storage/storageAccounts/name``) have words.
    """
    body = token.rstrip("=")
    if all(c in "0123456789abcdefABCDEF" for c in body):
        return False  # hex: hashes, Key Vault versions and record ids are hex by design
    classes = sum(
        (any(c.isupper() for c in body), any(c.islower() for c in body), any(c.isdigit() for c in body),
         any(c in "+/-_" for c in body))
    )  # fmt: skip
    if token.endswith("="):
        # base64 padding: encoded bytes (a 32-byte key is 44 characters ending in "="), never a name
        return classes >= 2
    if classes < 3:
        return False
    counts: dict[str, int] = {}
    for c in body:
        counts[c] = counts.get(c, 0) + 1
    entropy = -sum(n / len(body) * math.log2(n / len(body)) for n in counts.values())
    has_word = re.search(r"[a-z]{6,}", body) is not None
    return entropy >= 4.6 or (entropy >= 4.3 and not has_word)


def scrub(text: str) -> str:
    """``text`` with anything shaped like a token, key or connection secret replaced by ``[redacted]``."""
    text = _PEM.sub(SCRUBBED, text)
    text = _JWT.sub(SCRUBBED, text)
    text = _ASSIGNMENTS.sub(lambda m: f"{m.group(1)}{m.group(2)}{SCRUBBED}", text)
    for pattern in _BASE64_TOKENS:
        text = pattern.sub(lambda m: SCRUBBED if _looks_random(m.group(0)) else m.group(0), text)
    return text


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def record_to_dict(record: AuditRecord) -> dict[str, Any]:
    """The JSON-safe form of a record (times ISO 8601, enums as strings); free text scrubbed.

    Fields added after records were first stored are written only when they say something: ``evidence``
    when the record has it, a re-wrap's and a blob survey's ``other_keys`` when not zero. A record without
    them (every record before they existed) keeps exactly its old canonical form, so its hash still verifies.
    """
    body = _body(record)
    if record.rewrap is not None and record.rewrap.other_keys:
        body["rewrap"]["other_keys"] = record.rewrap.other_keys
    if record.evidence is not None:
        evidence = jsonable(record.evidence)
        evidence["references"] = [scrub(r) for r in evidence["references"]]
        for kind in evidence["kinds"]:
            if kind["blobs"] is not None and not kind["blobs"]["other_keys"]:
                del kind["blobs"]["other_keys"]
        body["evidence"] = evidence
    return body


def _body(record: AuditRecord) -> dict[str, Any]:
    rewrap = record.rewrap
    return {
        "schema": SCHEMA_VERSION,
        "record_id": record.record_id,
        "rotation_id": record.rotation_id,
        "key_uri": record.key_uri,
        "old_version": record.old_version,
        "new_version": record.new_version,
        "trigger": {
            "kind": str(record.trigger.kind),
            "event_id": record.trigger.event_id,
            "event_type": record.trigger.event_type,
            "caller": record.trigger.caller,
        },
        "outcome": record.outcome,
        "reason": scrub(record.reason),
        "steps": [
            {
                "name": s.name,
                "status": s.status,
                "started_at": _time(s.started_at),
                "finished_at": _time(s.finished_at),
                "duration_ms": s.duration_ms,
                "detail": scrub(s.detail),
            }
            for s in record.steps
        ],
        "consumers": [
            {
                "kind": str(c.kind),
                "resource_id": c.resource_id,
                "before": c.before,
                "after": c.after,
                "status": c.status,
                "detail": scrub(c.detail),
            }
            for c in record.consumers
        ],
        "rewrap": None
        if rewrap is None
        else {
            "rewrapped": rewrap.rewrapped,
            "already_current": rewrap.already_current,
            "skipped_deleted": rewrap.skipped_deleted,
            "failed": [{"location": f.location, "blob": f.blob, "reason": scrub(f.reason)} for f in rewrap.failed],
            "poison_messages": rewrap.poison_messages,
            "remaining_on_old_versions": rewrap.remaining_on_old_versions,
        },
        "recorded_at": _time(record.recorded_at),
    }


def record_from_dict(data: dict[str, Any]) -> AuditRecord:
    """Rebuild a record from :func:`record_to_dict` output.

    Raises:
        ValueError, KeyError, TypeError: ``data`` is not a stored record (the caller reports it as corrupt).
    """
    trigger = data["trigger"]
    rewrap = data.get("rewrap")
    return AuditRecord(
        record_id=str(data["record_id"]),
        rotation_id=data.get("rotation_id"),
        key_uri=str(data["key_uri"]),
        old_version=data.get("old_version"),
        new_version=data.get("new_version"),
        trigger=Trigger(
            kind=TriggerKind(trigger["kind"]),
            event_id=trigger.get("event_id"),
            event_type=trigger.get("event_type"),
            caller=trigger.get("caller"),
        ),
        outcome=data["outcome"],
        reason=str(data.get("reason", "")),
        steps=tuple(
            StepRecord(
                name=s["name"],
                status=s["status"],
                started_at=datetime.fromisoformat(str(s["started_at"])),
                finished_at=_parse_time(s.get("finished_at")),
                detail=s.get("detail", ""),
            )
            for s in data.get("steps", ())
        ),
        consumers=tuple(
            ConsumerChange(
                kind=str(c["kind"]),
                resource_id=c["resource_id"],
                before=c.get("before"),
                after=c.get("after"),
                status=c["status"],
                detail=c.get("detail", ""),
            )
            for c in data.get("consumers", ())
        ),
        rewrap=None
        if rewrap is None
        else RewrapSummary(
            rewrapped=int(rewrap.get("rewrapped", 0)),
            already_current=int(rewrap.get("already_current", 0)),
            skipped_deleted=int(rewrap.get("skipped_deleted", 0)),
            failed=tuple(
                RewrapFailure(f["location"], f["blob"], f.get("reason", "")) for f in rewrap.get("failed", ())
            ),
            poison_messages=int(rewrap.get("poison_messages", 0)),
            remaining_on_old_versions=int(rewrap.get("remaining_on_old_versions", 0)),
            other_keys=int(rewrap.get("other_keys", 0)),
        ),
        recorded_at=_parse_time(data.get("recorded_at")),
        evidence=RetirementEvidence.from_json(data["evidence"]) if data.get("evidence") else None,
    )


def fit_body(record: AuditRecord, max_chars: int) -> str:
    """Canonical JSON of ``record``, shedding re-wrap failure rows (keeping a count) if it is too long.

    A re-wrap of millions of blobs can fail thousands of them; the record keeps as many as fit and
    says how many it left out (the re-wrap's own report holds them all).
    """
    body = record_to_dict(record)
    text = canonical_json(body)
    rewrap = body["rewrap"]
    if len(text) <= max_chars or rewrap is None or not rewrap["failed"]:
        return text
    failed = list(rewrap["failed"])
    keep = len(failed)
    while keep > 0 and len(text) > max_chars:
        keep = keep // 2
        rewrap["failed"] = failed[:keep]
        rewrap["failed_omitted"] = len(failed) - keep
        text = canonical_json(body)
    return text


def stamped(record: AuditRecord, now: datetime) -> AuditRecord:
    """``record`` with ``recorded_at`` set (to ``now`` if the caller left it unset)."""
    return record if record.recorded_at is not None else replace(record, recorded_at=now)
