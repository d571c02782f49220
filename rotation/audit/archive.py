"""Immutable copies of audit records and checkpoints: JSON lines in append blobs.

Table storage cannot be made immutable; blob containers can. In Azure the archive container
(``rotation-audit``, provisioned by ``infra/``) carries a time-based retention policy with
protected append writes: lines can be appended, and nothing can be changed or deleted, not even by
the app's own identity, until the retention period ends. ``audit verify`` compares every record in
the table with its first archived copy, so an edit, a deletion or a rewritten-and-re-signed chain in
the table is caught against a witness the attacker could not touch.

One blob per table per month (``<table>/<YYYY-MM>.jsonl``): an append blob takes at most 50,000
appends, far above a month of rotations.
"""

from __future__ import annotations

import base64
import json
from contextlib import suppress
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from rotation.adapters.host_storage import StorageConnection, host_storage
from rotation.audit.chain import ArchivedRecord, Checkpoint
from rotation.audit.codec import canonical_json

DEFAULT_ARCHIVE_CONTAINER = "rotation-audit"


class BlobArchive:
    """Append-only JSON lines in append blobs under ``<prefix>/`` of one container."""

    def __init__(self, connection: StorageConnection, container: str, prefix: str) -> None:
        self.container_name = container
        self.prefix = prefix
        self._container = host_storage(connection).container_client(container)

    def close(self) -> None:
        self._container.close()

    def blob_name(self, when: datetime) -> str:
        return f"{self.prefix}/{when:%Y-%m}.jsonl"

    def append_record(
        self, *, seq: int, record_id: str, prev_hash: str, digest: str, body: str, when: datetime
    ) -> None:
        """Append a copy of one record. Repeating it appends a duplicate line, which readers ignore."""
        line = {"type": "record", "seq": seq, "record_id": record_id, "prev_hash": prev_hash, "hash": digest}
        self._append({**line, "body": body}, when)

    def append_checkpoint(self, checkpoint: Checkpoint) -> None:
        line = {
            "type": "checkpoint",
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "created_at": checkpoint.created_at.isoformat(),
            "key_id": checkpoint.key_id,
            "algorithm": checkpoint.algorithm,
            "signature": base64.b64encode(checkpoint.signature).decode(),
        }
        self._append(line, checkpoint.created_at)

    def _append(self, line: dict[str, Any], when: datetime) -> None:
        data = (canonical_json(line) + "\n").encode()
        blob = self._container.get_blob_client(self.blob_name(when))
        try:
            blob.append_block(data)
        except ResourceNotFoundError:
            self._create(blob)
            blob.append_block(data)

    def _create(self, blob: BlobClient) -> None:
        with suppress(ResourceExistsError):
            self._container.create_container()
        # IfMissing: never truncate a blob another appender created first.
        with suppress(ResourceExistsError, ResourceModifiedError):
            blob.create_append_blob(match_condition=MatchConditions.IfMissing)

    def read(self) -> tuple[dict[int, ArchivedRecord], list[Checkpoint]]:
        """The first copy of each record by seq (flagged if another copy differs), and every checkpoint."""
        records: dict[int, ArchivedRecord] = {}
        checkpoints: dict[int, Checkpoint] = {}
        try:
            names = sorted(b.name for b in self._container.list_blobs(name_starts_with=self.prefix + "/"))
        except ResourceNotFoundError:
            return {}, []
        for name in names:
            text = self._container.download_blob(name).readall().decode("utf-8", errors="replace")
            for raw in text.splitlines():
                try:
                    line = json.loads(raw)
                    seq = int(line["seq"])
                    kind = line.get("type")
                except (ValueError, KeyError, TypeError):
                    continue  # a torn write; the table record is still checked against the chain
                if kind == "record":
                    copy = ArchivedRecord(seq, str(line.get("record_id", "")), str(line.get("hash", "")))
                    first = records.setdefault(seq, copy)
                    if first.hash != copy.hash:
                        records[seq] = ArchivedRecord(seq, first.record_id, first.hash, conflicting=True)
                elif kind == "checkpoint":
                    with suppress(ValueError, KeyError, TypeError):
                        checkpoints.setdefault(
                            seq,
                            Checkpoint(
                                seq=seq,
                                hash=str(line["hash"]),
                                created_at=datetime.fromisoformat(str(line["created_at"])),
                                key_id=str(line["key_id"]),
                                algorithm=str(line["algorithm"]),
                                signature=base64.b64decode(str(line["signature"])),
                            ),
                        )
        return records, list(checkpoints.values())
