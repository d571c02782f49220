"""Immutability policies and legal holds per blob, and which requests they (or the archive tier) refuse.

Sources (Azure's behaviour, modelled here):

- Error codes, statuses and messages: learn.microsoft.com/rest/api/storageservices/blob-service-error-codes
  (``BlobImmutableDueToPolicy``, ``BlobImmutableDueToLegalHold``, ``BlobArchived``: all 409 Conflict).
- Immutable storage (learn.microsoft.com/azure/storage/blobs/immutable-storage-overview): while a blob's
  retention interval runs or a legal hold is set, Delete Blob, Put Blob, Put Block, Put Block List, Set
  Blob Metadata, Put Page, Set Blob Properties, Snapshot Blob and Append Block are not allowed.
- Archive tier (learn.microsoft.com/azure/storage/blobs/access-tiers-overview): "Setting or modifying the
  blob metadata while in archive isn't allowed"; the valid operations are Get Blob Properties, Get Blob
  Metadata, Set/Get Blob Tags, Find Blobs by Tags, List Blobs, Set Blob Tier, Copy Blob and Delete Blob.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


LEGAL_HOLD = Refusal(
    409,
    "BlobImmutableDueToLegalHold",
    "This operation is not permitted as the blob is immutable due to one or more legal holds.",
)
POLICY = Refusal(
    409, "BlobImmutableDueToPolicy", "This operation is not permitted as the blob is immutable due to a policy."
)
ARCHIVED = Refusal(409, "BlobArchived", "This operation is not permitted on an archived blob.")

#: ``comp`` values of PUT requests that write the blob (the immutable-storage list above); ``None`` is Put Blob.
IMMUTABLE_WRITES = frozenset({None, "block", "blocklist", "metadata", "properties", "page", "appendblock", "snapshot"})
#: Writes refused on an archived blob that Azurite lets through (it refuses Get Blob and overwrites itself).
ARCHIVE_REFUSED = frozenset({"metadata", "properties", "snapshot"})
POLICY_MODES = ("Unlocked", "Locked")


@dataclass(frozen=True)
class Protection:
    legal_hold: bool = False
    policy_until: datetime | None = None
    policy_mode: str | None = None

    def active_policy(self, now: datetime) -> bool:
        return self.policy_until is not None and now < self.policy_until

    def headers(self) -> list[tuple[str, str]]:
        """What Get Blob Properties adds for this blob."""
        found = [("x-ms-legal-hold", "true" if self.legal_hold else "false")]
        if self.policy_until is not None and self.policy_mode is not None:
            found.append(("x-ms-immutability-policy-until-date", format_datetime(self.policy_until, usegmt=True)))
            found.append(("x-ms-immutability-policy-mode", self.policy_mode.lower()))
        return found


def parse_until(value: str | None) -> datetime:
    """``x-ms-immutability-policy-until-date`` (RFC 1123); raises ValueError when missing or malformed."""
    if not value:
        raise ValueError("x-ms-immutability-policy-until-date is required")
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise ValueError("x-ms-immutability-policy-until-date is not an RFC 1123 date") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class Protections:
    """Legal holds and immutability policies by blob (``account/container/blob``), kept in ``state.json``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / "state.json"
        self._lock = threading.Lock()
        self._blobs: dict[str, Protection] = {}
        if self._path.exists():
            for blob, raw in json.loads(self._path.read_text()).items():
                until = raw.get("policy_until")
                self._blobs[blob] = Protection(
                    bool(raw.get("legal_hold")),
                    datetime.fromisoformat(until) if until else None,
                    raw.get("policy_mode"),
                )

    def get(self, blob: str) -> Protection | None:
        with self._lock:
            return self._blobs.get(blob)

    def set_legal_hold(self, blob: str, hold: bool) -> Protection:
        with self._lock:
            current = self._blobs.get(blob, Protection())
            updated = Protection(hold, current.policy_until, current.policy_mode)
            return self._store(blob, updated)

    def set_policy(self, blob: str, until: datetime | None, mode: str | None) -> Protection:
        with self._lock:
            current = self._blobs.get(blob, Protection())
            return self._store(blob, Protection(current.legal_hold, until, mode))

    def forget(self, blob: str) -> None:
        with self._lock:
            if self._blobs.pop(blob, None) is not None:
                self._save()

    def refusal(self, blob: str, comp: str | None, method: str, now: datetime) -> Refusal | None:
        """The immutability refusal of this request, if any (a legal hold is named before a policy)."""
        protection = self.get(blob)
        if protection is None:
            return None
        writes = (method == "DELETE" and comp is None) or (method == "PUT" and comp in IMMUTABLE_WRITES)
        if not writes:
            return None
        if protection.legal_hold:
            return LEGAL_HOLD
        if protection.active_policy(now):
            return POLICY
        return None

    def _store(self, blob: str, protection: Protection) -> Protection:
        if not protection.legal_hold and protection.policy_until is None:
            self._blobs.pop(blob, None)
        else:
            self._blobs[blob] = protection
        self._save()
        return protection

    def _save(self) -> None:
        data = {
            blob: {
                "legal_hold": p.legal_hold,
                "policy_until": p.policy_until.isoformat() if p.policy_until else None,
                "policy_mode": p.policy_mode,
            }
            for blob, p in self._blobs.items()
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._path)
