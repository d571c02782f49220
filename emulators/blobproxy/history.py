"""Blob versioning and soft delete for the account behind the proxy: the modes and each blob's history.

Azurite 3.35 has neither (its README's support matrix: "Blob Versions" and "Soft delete & Undelete Blob"
are not supported; List Blobs ignores ``include=versions,deleted``). The proxy keeps every previous state
that Azure would keep as an Azurite snapshot it hides from the client, and this module maps Azure's view
onto them: which hidden snapshot holds which version id, which blob, snapshot or version is soft-deleted
and until when. Both modes are off by default (``BlobService``), so nothing changes unless a test or an
operator switches them on through the admin API (``PUT /admin/blob-service``).

Azure's behaviour modelled here, with its sources:

- Blob versioning (learn.microsoft.com/azure/storage/blobs/versioning-overview): with versioning on, Put
  Blob, Put Block List, Copy Blob and Set Blob Metadata make the current version a previous version and
  create a new current version; the response's ``x-ms-version-id`` names it; "the value of the version ID
  is the timestamp at which the blob was updated". A blob written before versioning was on has no version
  id; its state before the next write becomes a version too. Delete Blob without a version id makes the
  current version a previous version and leaves no current version. Put Page and Append Block create no
  version. After versioning is turned off, the next write keeps the current version as a previous one and
  makes a blob that is not a version; versions stay readable, listable and deletable.
- Blob soft delete (learn.microsoft.com/azure/storage/blobs/soft-delete-blob-overview, "Blob soft delete
  protection by operation"): with soft delete alone, Delete Blob marks the blob (or the snapshot) soft
  deleted; Put Blob, Put Block List and Copy Blob over an active blob first make a soft-deleted snapshot
  of its state (Set Blob Metadata and Set Blob Properties do not); over a soft-deleted blob they keep its
  state as a soft-deleted snapshot. With versioning too, deleting a blob only makes the current version a
  previous one (no soft delete); deleting a version soft-deletes it. Undelete Blob restores the blob and
  every soft-deleted snapshot or version (never the current version when versioning is on). After the
  retention period a soft-deleted object is gone; the period is the one in effect when it was deleted.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DAY_S = 86400.0
MAX_RETENTION_DAYS = 365  # DeleteRetentionPolicy.days: 1 to 365 (Set Blob Service Properties)


@dataclass(frozen=True)
class BlobService:
    """The account's data-protection settings: ``isVersioningEnabled`` and ``deleteRetentionPolicy``
    (ARM ``blobServices/default``), here set through the proxy's admin API."""

    versioning: bool = False
    soft_delete_days: int | None = None  # None: soft delete off

    @property
    def active(self) -> bool:
        return self.versioning or self.soft_delete_days is not None

    def to_json(self) -> dict[str, Any]:
        return {"versioning": self.versioning, "soft_delete_days": self.soft_delete_days}

    @classmethod
    def from_json(cls, raw: Any) -> BlobService:
        """Raises ValueError naming the field that is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(raw) - {"versioning", "soft_delete_days"}
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        versioning = raw.get("versioning", False)
        if not isinstance(versioning, bool):
            raise ValueError("versioning must be true or false")
        days = raw.get("soft_delete_days")
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS
        ):
            raise ValueError(f"soft_delete_days must be null or a whole number from 1 to {MAX_RETENTION_DAYS}")
        return cls(versioning, days)


@dataclass(frozen=True)
class SoftDeleted:
    at: float  # when it was deleted (epoch seconds, the proxy's clock)
    until: float  # when it is gone for good

    def remaining_days(self, now: float) -> int:
        return max(0, math.ceil((self.until - now) / DAY_S))


@dataclass
class BlobHistory:
    """What Azure keeps of one blob beyond what Azurite shows.

    ``versions`` maps each previous version id to the hidden Azurite snapshot holding it; ``deleted``
    marks what is soft-deleted: the base blob (key ``""``), a snapshot (its id: the client's own, or one
    made when a write overwrote the blob) or a version (``"v:" + version id``).
    """

    current: str | None = None  # the current version's id; None: not a version (or no current blob)
    live: bool = True  # False: Azurite keeps the base blob for its history only; the client sees none
    versions: dict[str, str] = field(default_factory=dict)
    deleted: dict[str, SoftDeleted] = field(default_factory=dict)  # "" | snapshot id | "v:" + version id

    def hidden(self) -> set[str]:
        """Azurite snapshots that are versions, not snapshots, to the client."""
        return set(self.versions.values())

    def version_of(self, snapshot: str) -> str | None:
        return next((v for v, s in self.versions.items() if s == snapshot), None)

    def empty(self) -> bool:
        return self.current is None and self.live and not self.versions and not self.deleted

    def to_json(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "live": self.live,
            "versions": self.versions,
            "deleted": {k: [d.at, d.until] for k, d in self.deleted.items()},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BlobHistory:
        return cls(
            raw.get("current"),
            bool(raw.get("live", True)),
            dict(raw.get("versions", {})),
            {k: SoftDeleted(float(a), float(u)) for k, (a, u) in raw.get("deleted", {}).items()},
        )


def version_id(at: float) -> str:
    """A version id as Azure writes one: the UTC time with seven fractional digits, e.g.
    ``2026-12-05T23:59:01.1234567Z`` (the ids in the versioning docs' examples and SDK tests)."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


class History:
    """The modes, the proxy's clock offset and every blob's history, kept in ``history.json``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / "history.json"
        self._lock = threading.Lock()
        self.service = BlobService()
        self.offset_s = 0.0
        self._blobs: dict[str, BlobHistory] = {}
        self._last_id = 0.0
        if self._path.exists():
            raw = json.loads(self._path.read_text())
            self.service = BlobService.from_json(raw.get("service", {}))
            self.offset_s = float(raw.get("offset_s", 0.0))
            self._blobs = {b: BlobHistory.from_json(h) for b, h in raw.get("blobs", {}).items()}

    # -- modes and clock ------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.offset_s

    def set_service(self, service: BlobService) -> BlobService:
        with self._lock:
            self.service = service
            self._save()
            return service

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.offset_s += seconds
            self._save()
        return self.now()

    def new_version_id(self) -> str:
        """A fresh version id, later than every one handed out before (ids order the versions)."""
        with self._lock:
            at = max(self.now(), self._last_id + 1e-6)
            self._last_id = at
            return version_id(at)

    def soft_deleted(self) -> SoftDeleted | None:
        """A deletion now under the current retention, or None when soft delete is off."""
        days = self.service.soft_delete_days
        if days is None:
            return None
        now = self.now()
        return SoftDeleted(now, now + days * DAY_S)

    # -- per blob ---------------------------------------------------------------------------------

    def get(self, blob: str) -> BlobHistory | None:
        with self._lock:
            found = self._blobs.get(blob)
            if found is None:
                return None
            return replace(found, versions=dict(found.versions), deleted=dict(found.deleted))

    def put(self, blob: str, history: BlobHistory) -> None:
        with self._lock:
            if history.empty():
                self._blobs.pop(blob, None)
            else:
                self._blobs[blob] = history
            self._save()

    def in_container(self, prefix: str) -> dict[str, BlobHistory]:
        """Every blob with a history under ``prefix`` (``account/container/``), by blob name."""
        with self._lock:
            return {b[len(prefix) :]: h for b, h in self._blobs.items() if b.startswith(prefix)}

    def forget_container(self, prefix: str) -> None:
        with self._lock:
            for blob in [b for b in self._blobs if b.startswith(prefix)]:
                del self._blobs[blob]
            self._save()

    def _save(self) -> None:
        data = {
            "service": self.service.to_json(),
            "offset_s": self.offset_s,
            "blobs": {b: h.to_json() for b, h in self._blobs.items()},
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._path)
