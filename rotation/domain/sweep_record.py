"""The sweep's memory as stored between worker processes: one small JSON record per vault's size and per
managed key's last version listing. Pure.

A record holds counts, key ids and timestamps only (no key material). Whatever is read back is input:
:func:`decode_size` and :func:`decode_seen` accept exactly what :func:`encode_size` and
:func:`encode_seen` write and raise :class:`UnusableRecord` for anything else, including a version
listing older than ``VERSIONS_MAX_AGE`` or dated in the future (the sweep then reads that key again:
a lost record costs calls, never a decision).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from rotation.domain.sweep_cost import VERSIONS_MAX_AGE, VaultSize, VersionsSeen

#: The record name of a vault's size; every other record of a vault is named by a key URI (lower-case).
SIZE_RECORD = "~size"
#: Clock skew tolerated between workers before a record dated ahead of now is refused.
FUTURE_SKEW = timedelta(minutes=5)


class UnusableRecord(ValueError):
    """A stored record that is not what this module writes, or too old to trust: it is ignored."""


def encode_size(size: VaultSize) -> str:
    return _dump({"keys": size.keys, "pages": size.pages, "complete": size.complete})


def encode_seen(seen: VersionsSeen) -> str:
    return _dump(
        {
            "current_created": seen.current_created.isoformat(),
            "others_expire": seen.others_expire.isoformat() if seen.others_expire is not None else None,
            "seen_at": seen.seen_at.isoformat(),
        }
    )


def decode_size(text: str) -> VaultSize:
    fields = _load(text, {"keys", "pages", "complete"})
    keys, pages, complete = fields["keys"], fields["pages"], fields["complete"]
    if not (_count(keys) and _count(pages) and isinstance(complete, bool)):
        raise UnusableRecord("a vault size needs counts keys, pages and a boolean complete")
    return VaultSize(keys, pages, complete)


def decode_seen(text: str, now: datetime) -> VersionsSeen:
    fields = _load(text, {"current_created", "others_expire", "seen_at"})
    seen_at = _time(fields["seen_at"])
    if seen_at > now + FUTURE_SKEW:
        raise UnusableRecord("a version listing dated in the future")
    if now - seen_at >= VERSIONS_MAX_AGE:
        raise UnusableRecord("a version listing older than the sweep trusts")
    others = fields["others_expire"]
    return VersionsSeen(_time(fields["current_created"]), None if others is None else _time(others), seen_at)


def _dump(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


def _load(text: str, names: set[str]) -> dict[str, Any]:
    try:
        fields = json.loads(text)
    except (TypeError, ValueError):
        raise UnusableRecord("not JSON") from None
    if not isinstance(fields, dict) or set(fields) != names:
        raise UnusableRecord(f"expected exactly the fields {sorted(names)}")
    return fields


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000_000


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise UnusableRecord("a timestamp must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UnusableRecord("a timestamp must be an ISO 8601 string") from None
    if parsed.tzinfo is None:
        raise UnusableRecord("a timestamp must carry its time zone")
    return parsed
