"""The sweep's memory as stored between worker processes: one small JSON record per vault's size and per
managed key's last version listing. Pure.

A record holds counts, key ids and timestamps only (no key material). Whatever is read back is input:
:func:`decode_size` and :func:`decode_seen` accept exactly what :func:`encode_size` and
:func:`encode_seen` write and raise :class:`UnusableRecord` for anything else, including a version
listing older than ``VERSIONS_MAX_AGE`` or dated in the future, or a record of an earlier format. The
sweep then knows nothing of that key's other versions: it judges the key on its current version and
reads its versions on a catching-up tick (``rotation.domain.sweep_cost``). A lost record delays that
check by a tick or two, within the bound; it never makes the sweep act on what it did not read.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from rotation.domain.sweep_cost import KEYS_PER_PAGE, VERSIONS_MAX_AGE, VaultSize, VersionsSeen

#: The record name of a vault's size; every other record of a vault is named by a key URI (lower-case).
SIZE_RECORD = "~size"
#: Clock skew tolerated between workers before a record dated ahead of now is refused.
FUTURE_SKEW = timedelta(minutes=5)


class UnusableRecord(ValueError):
    """A stored record that is not what this module writes, or too old to trust: it is ignored."""


#: The most keys of a vault's queue of version listings that are stored: a Table property holds at most 32K
#: characters. Keys past it are queued again by the next listing (still due), only later in the queue.
MAX_PENDING = 100


def encode_size(size: VaultSize) -> str:
    return _dump(
        {
            "keys": size.keys,
            "pages": size.pages,
            "complete": size.complete,
            # To the hour: a listing that saw what the last one saw rewrites nothing (a vault's size is trusted
            # for a day, so an hour of slack only makes the next listing come that much earlier).
            "listed_at": size.listed_at.replace(minute=0, second=0, microsecond=0).isoformat(),
            "pending": list(size.pending[:MAX_PENDING]),
            "catch_up": size.catch_up,
        }
    )


def encode_seen(seen: VersionsSeen) -> str:
    return _dump(
        {
            "current_created": seen.current_created.isoformat(),
            "current_updated": _iso(seen.current_updated),
            "current_expires": _iso(seen.current_expires),
            "others_expire": _iso(seen.others_expire),
            "seen_at": seen.seen_at.isoformat(),
            "vouched": seen.vouched,
        }
    )


def decode_size(text: str, now: datetime) -> VaultSize:
    """A vault's size as stored. Its ``pending`` keys are ids only: the caller keeps those it manages."""
    fields = _load(text, {"keys", "pages", "complete", "listed_at", "pending", "catch_up"})
    keys, pages, complete, catch_up = fields["keys"], fields["pages"], fields["complete"], fields["catch_up"]
    if not (_count(keys) and _count(pages) and isinstance(complete, bool) and isinstance(catch_up, bool)):
        raise UnusableRecord("a vault size needs counts keys, pages and booleans complete, catch_up")
    if pages < 1 or keys > pages * KEYS_PER_PAGE:
        raise UnusableRecord(f"a listing of {pages} pages cannot have shown {keys} keys")
    listed_at = _time(fields["listed_at"])
    if listed_at > now + FUTURE_SKEW:
        raise UnusableRecord("a vault listing dated in the future")
    pending = fields["pending"]
    if not (isinstance(pending, list) and len(pending) <= MAX_PENDING and all(isinstance(k, str) for k in pending)):
        raise UnusableRecord(f"pending must be a list of at most {MAX_PENDING} key ids")
    return VaultSize(keys, pages, complete, listed_at, tuple(pending), catch_up)


def decode_seen(text: str, now: datetime) -> VersionsSeen:
    fields = _load(
        text, {"current_created", "current_updated", "current_expires", "others_expire", "seen_at", "vouched"}
    )
    seen_at = _time(fields["seen_at"])
    if seen_at > now + FUTURE_SKEW:
        raise UnusableRecord("a version listing dated in the future")
    if now - seen_at >= VERSIONS_MAX_AGE:
        raise UnusableRecord("a version listing older than the sweep trusts")
    if not isinstance(fields["vouched"], bool):
        raise UnusableRecord("vouched must be a boolean")
    return VersionsSeen(
        _time(fields["current_created"]),
        _optional_time(fields["current_updated"]),
        _optional_time(fields["current_expires"]),
        _optional_time(fields["others_expire"]),
        seen_at,
        fields["vouched"],
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


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
