"""Re-wrap work items and their progress, checkpointed in Table storage.

Table ``rotationrewrap`` in AzureWebJobsStorage (its own table, so the journal's partitions stay small
and the re-wrap can be inspected or cleaned up on its own). One partition per rotation id:

- ``run``: the key, the new version, the data locations, the current pass, and once verified, the result.
- ``item-PP-LLL-SSSSSS``: one page of one location's listing in pass PP: the listing marker it starts
  at, its status (pending, done, poison), whether the next page was handed on, the last blob name
  finished (the checkpoint inside the page) and its counts.
- ``fail-LLL-<sha256 of name>``: one blob that cannot be re-wrapped, by name and reason (idempotent).

Writes are merges of a few properties; a repeated merge writes the same values, so redelivered
messages are harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from rotation.adapters.host_storage import StorageConnection, host_storage
from rotation.settings import DataLocation

TABLE = "rotationrewrap"
PENDING, DONE, POISON = "pending", "done", "poison"


def item_id(pass_no: int, location: int, seq: int) -> str:
    return f"item-{pass_no:02d}-{location:03d}-{seq:06d}"


@dataclass(frozen=True)
class Run:
    rotation_id: str
    key_uri: str
    new_version: str
    locations: tuple[DataLocation, ...]
    pass_no: int
    done: bool
    remaining: int


@dataclass(frozen=True)
class Item:
    rotation_id: str
    item_id: str
    pass_no: int
    location: int
    seq: int
    marker: str | None
    status: str
    has_next: bool | None
    enqueued: bool
    last_name: str
    rewrapped: int
    already_current: int
    skipped_deleted: int
    races: int
    other_keys: int = 0  # blobs of other keys seen (first pass only); rows written before it have none
    owner: str = ""
    lease_until: float = 0.0  # epoch seconds; a worker holds the item until then (renewed at checkpoints)
    etag: str | None = None
    age_s: float = 0.0  # seconds since the entity last changed
    redrives: int = 0  # times the reconciler sent it again after it was poisoned


class CheckpointStore:
    """Typed access to the ``rotationrewrap`` table."""

    _created: set[str] = set()
    _created_lock = threading.Lock()

    def __init__(self, connection: StorageConnection, table_name: str = TABLE, **client_kwargs: Any) -> None:
        self._service = host_storage(connection).table_service(**client_kwargs)
        self._table: TableClient = self._service.get_table_client(table_name)
        self._name = table_name

    def ensure_table(self) -> None:
        key = f"{self._service.url}/{self._name}"
        with self._created_lock:
            if key in self._created:
                return
            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._created.add(key)

    # -- run ----------------------------------------------------------------------------------

    def create_run(self, rotation_id: str, key_uri: str, new_version: str, locations: Iterable[DataLocation]) -> bool:
        """Record a new run; False when it already exists (begin is idempotent)."""
        entity = {
            "PartitionKey": rotation_id,
            "RowKey": "run",
            "KeyUri": key_uri,
            "NewVersion": new_version,
            "Locations": json.dumps([[loc.account_url, loc.container, loc.prefix] for loc in locations]),
            "Pass": 1,
            "Done": False,
            "Remaining": -1,
        }
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    def get_run(self, rotation_id: str) -> Run | None:
        try:
            e = self._table.get_entity(rotation_id, "run")
        except ResourceNotFoundError:
            return None
        return _run(e)

    def update_run(self, rotation_id: str, **fields: Any) -> None:
        self._table.update_entity({"PartitionKey": rotation_id, "RowKey": "run", **fields}, mode=UpdateMode.MERGE)

    # -- items --------------------------------------------------------------------------------

    def ensure_item(self, rotation_id: str, pass_no: int, location: int, seq: int, marker: str | None) -> Item:
        """Create the item if missing; return it as stored."""
        entity = {
            "PartitionKey": rotation_id,
            "RowKey": item_id(pass_no, location, seq),
            "Pass": pass_no,
            "Location": location,
            "Seq": seq,
            "Marker": marker or "",
            "Status": PENDING,
            "HasNext": "unknown",
            "Enqueued": False,
            "LastName": "",
            "Rewrapped": 0,
            "AlreadyCurrent": 0,
            "SkippedDeleted": 0,
            "OtherKeys": 0,
            "Races": 0,
            "Owner": "",
            "LeaseUntil": 0.0,
        }
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            return self.get_item(rotation_id, entity["RowKey"])  # type: ignore[arg-type]
        return _item(entity)

    def get_item(self, rotation_id: str, item: str) -> Item:
        return _item(self._table.get_entity(rotation_id, item))

    def claim_item(self, item: Item, owner: str, lease_until: float) -> bool:
        """Take the item for ``owner`` if nobody changed it since it was read (ETag); False if someone did."""
        try:
            self._table.update_entity(
                {"PartitionKey": item.rotation_id, "RowKey": item.item_id, "Owner": owner, "LeaseUntil": lease_until},
                mode=UpdateMode.MERGE,
                etag=item.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def update_item(self, rotation_id: str, item: str, **fields: Any) -> None:
        self._table.update_entity({"PartitionKey": rotation_id, "RowKey": item, **fields}, mode=UpdateMode.MERGE)

    def record_failures(
        self, rotation_id: str, location: int, display: str, failures: Iterable[tuple[str, str]]
    ) -> None:
        for name, reason in failures:
            digest = hashlib.sha256(name.encode()).hexdigest()[:40]
            self._table.upsert_entity(
                {
                    "PartitionKey": rotation_id,
                    "RowKey": f"fail-{location:03d}-{digest}",
                    "Location": display,
                    "Blob": name[:1024],
                    "Reason": reason[:512],
                },
                mode=UpdateMode.REPLACE,
            )

    def partition(self, rotation_id: str) -> tuple[Run | None, list[Item], list[tuple[str, str, str]]]:
        """The run, its items (in order) and its failures (location, blob, reason), in one query."""
        run: Run | None = None
        items: list[Item] = []
        failures: list[tuple[str, str, str]] = []
        escaped = rotation_id.replace("'", "''")
        for e in self._table.query_entities(f"PartitionKey eq '{escaped}'"):
            row = str(e["RowKey"])
            if row == "run":
                run = _run(e)
            elif row.startswith("item-"):
                items.append(_item(e))
            elif row.startswith("fail-"):
                failures.append((str(e["Location"]), str(e["Blob"]), str(e["Reason"])))
        items.sort(key=lambda i: i.item_id)
        failures.sort()
        return run, items, failures

    def close(self) -> None:
        self._table.close()
        self._service.close()


class MalformedRow(ValueError):
    """A stored run or item row does not have the shape this module writes (log-safe message)."""


def _run(e: Any) -> Run:
    """Decode a run row. Raises MalformedRow for any other shape (rows are input: anyone who can write the
    table can write them)."""
    try:
        return _decode_run(e)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        raise MalformedRow("re-wrap run row is malformed") from None


def _item(e: Any) -> Item:
    """Decode an item row. Raises MalformedRow for any other shape."""
    try:
        return _decode_item(e)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise MalformedRow("re-wrap work item row is malformed") from None


def _decode_run(e: Any) -> Run:
    raw = json.loads(str(e["Locations"]))
    if not isinstance(raw, list) or not all(
        isinstance(loc, list) and len(loc) == 3 and all(isinstance(part, str) for part in loc) for loc in raw
    ):
        raise ValueError("Locations")
    locations = tuple(DataLocation(a, c, p) for a, c, p in raw)
    return Run(
        str(e["PartitionKey"]),
        str(e["KeyUri"]),
        str(e["NewVersion"]),
        locations,
        int(e["Pass"]),
        bool(e["Done"]),
        int(e["Remaining"]),
    )


def _decode_item(e: Any) -> Item:
    has_next = {"yes": True, "no": False}.get(str(e.get("HasNext", "unknown")))
    metadata = getattr(e, "metadata", {}) or {}
    stamp = metadata.get("timestamp")
    age = (datetime.now(UTC) - stamp).total_seconds() if isinstance(stamp, datetime) else 0.0
    return Item(
        rotation_id=str(e["PartitionKey"]),
        item_id=str(e["RowKey"]),
        pass_no=int(e["Pass"]),
        location=int(e["Location"]),
        seq=int(e["Seq"]),
        marker=str(e["Marker"]) or None,
        status=str(e["Status"]),
        has_next=has_next,
        enqueued=bool(e["Enqueued"]),
        last_name=str(e["LastName"]),
        rewrapped=int(e["Rewrapped"]),
        already_current=int(e["AlreadyCurrent"]),
        skipped_deleted=int(e["SkippedDeleted"]),
        races=int(e["Races"]),
        other_keys=int(e.get("OtherKeys", 0)),
        owner=str(e.get("Owner", "")),
        lease_until=float(e.get("LeaseUntil", 0.0)),
        etag=metadata.get("etag"),
        age_s=age,
        redrives=int(e.get("Redrives", 0)),
    )
