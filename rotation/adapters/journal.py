"""The ``Journal`` port on Azure Table storage (azure-data-tables), in ``AzureWebJobsStorage``.

Layout: one partition per managed key (``PartitionKey`` = a hash of the key URI). In it, one entity
per rotation (``RowKey`` = the rotation id) and the key's lock (``RowKey`` = ``~lock``) naming the
rotation that holds the key. ``begin`` creates the rotation and moves the lock in one entity-group
transaction (same partition), so there is never a lock without its rotation or the reverse;
``save`` replaces the rotation only if its ETag is unchanged. The rotation's state is JSON, split
over ``State0..StateN`` properties to stay under Table storage's 64 KiB per property.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from rotation.adapters.azure_errors import NotFound, translate, translated
from rotation.adapters.host_storage import StorageConnection
from rotation.adapters.tables import LazyTable
from rotation.domain.jsonable import jsonable
from rotation.domain.model import (
    ConsumerChange,
    RetirementEvidence,
    RewrapFailure,
    RewrapSummary,
    RotationStatus,
    StepRecord,
    Trigger,
    TriggerKind,
)
from rotation.domain.operations import Operation
from rotation.domain.steps import HISTORICAL_RUN_STEPS, Intent, RotationState
from rotation.errors import JournalConflict, NeedsHuman, PreconditionFailed, RotationNotFound
from rotation.logs import get_logger

_log = get_logger("rotation.journal")

LOCK_ROW = "~lock"
_CHUNK = 30_000  # characters per State property (Table storage allows 64 KiB, UTF-16)
_ROTATION_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_PERMISSION = "Microsoft.Storage/storageAccounts/tableServices/tables/entities/write"


class MalformedJournalEntry(PreconditionFailed):
    """A stored rotation does not have the shape this adapter writes: it is not acted on (rows are input)."""

    code = "MalformedJournalEntry"


#: What decoding a malformed entry raises (missing fields, wrong types, bad JSON, unknown enum values).
_UNDECODABLE = (ValueError, KeyError, TypeError, AttributeError, AssertionError, MalformedJournalEntry)


def partition_of(key_uri: str) -> str:
    return "k" + hashlib.sha256(key_uri.rstrip("/").lower().encode()).hexdigest()[:40]


# -- codec ---------------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def encode_state(state: RotationState) -> str:
    return json.dumps(jsonable(state), separators=(",", ":"), sort_keys=True)


def decode_state(text: str) -> RotationState:
    """Decode a stored rotation. Raises MalformedJournalEntry for anything this module did not write."""
    try:
        state = _decode_state(text)
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError, IndexError, RecursionError):
        raise MalformedJournalEntry("a journal entry is malformed; it is not acted on") from None
    texts = (state.rotation_id, state.key_uri, state.reason, state.stage)
    optional = (state.old_version, state.new_version, state.adopt_version, state.lease_owner)
    if not all(isinstance(t, str) for t in texts) or not all(v is None or isinstance(v, str) for v in optional):
        raise MalformedJournalEntry("a journal entry has fields of the wrong type; it is not acted on")
    return state


def _decode_state(text: str) -> RotationState:
    data: dict[str, Any] = json.loads(text)
    trigger = data["trigger"]
    rewrap = data.get("rewrap")
    intent = data.get("intent")
    started = _time(data["started_at"])
    updated = _time(data["updated_at"])
    assert started is not None
    assert updated is not None
    return RotationState(
        rotation_id=data["rotation_id"],
        key_uri=data["key_uri"],
        status=RotationStatus(data["status"]),
        trigger=Trigger(
            TriggerKind(trigger["kind"]), trigger.get("event_id"), trigger.get("event_type"), trigger.get("caller")
        ),
        started_at=started,
        updated_at=updated,
        reason=data.get("reason", ""),
        dry_run=bool(data.get("dry_run", False)),
        stage=data.get("stage", "plan"),
        old_version=data.get("old_version"),
        new_version=data.get("new_version"),
        adopt_version=data.get("adopt_version"),
        retire_after=_time(data.get("retire_after")),
        steps=tuple(
            StepRecord(s["name"], s["status"], _time(s["started_at"]), _time(s.get("finished_at")), s.get("detail", ""))  # type: ignore[arg-type]
            for s in data.get("steps", [])
        ),
        consumers=tuple(
            ConsumerChange(
                str(c["kind"]),
                c["resource_id"],
                c.get("before"),
                c.get("after"),
                c["status"],
                c.get("detail", ""),
            )
            for c in data.get("consumers", [])
        ),
        rewrap=RewrapSummary(
            rewrapped=rewrap.get("rewrapped", 0),
            already_current=rewrap.get("already_current", 0),
            skipped_deleted=rewrap.get("skipped_deleted", 0),
            failed=tuple(RewrapFailure(f["location"], f["blob"], f["reason"]) for f in rewrap.get("failed", [])),
            poison_messages=rewrap.get("poison_messages", 0),
            remaining_on_old_versions=rewrap.get("remaining_on_old_versions", 0),
            other_keys=rewrap.get("other_keys", 0),
        )
        if rewrap
        else None,
        error=(data["error"][0], data["error"][1]) if data.get("error") else None,
        intent=_intent(intent) if intent else None,
        in_flight=tuple(_intent(i) for i in data.get("in_flight", [])),
        lease_owner=data.get("lease_owner"),
        lease_expires=_time(data.get("lease_expires")),
        history=tuple(data.get("history", [])),
        # An entry written before the journal recorded the step list ran the historical list.
        run_steps=tuple(str(s) for s in data["run_steps"]) if "run_steps" in data else HISTORICAL_RUN_STEPS,
        attempt=int(data.get("attempt", 1)),
        retry_of=data.get("retry_of"),
        evidence=RetirementEvidence.from_json(data["evidence"]) if data.get("evidence") else None,
    )


def _intent(data: dict[str, Any]) -> Intent:
    return Intent(
        data["action"],
        data["target"],
        data.get("value", ""),
        _time(data.get("recorded_at")),
        _operation(data["operation"]) if data.get("operation") else None,
    )


def _operation(data: dict[str, Any]) -> Operation:
    """A journalled polling URL, as stored: its shape only. Whether it may be polled is checked where it is
    used (``polling_url_problem``, against the settings), never here."""
    header = data["header"]
    if header not in ("Azure-AsyncOperation", "Location") or not isinstance(data["url"], str):
        raise MalformedJournalEntry("a journalled operation is malformed; it is not acted on")
    return Operation(data["url"], header, float(data.get("retry_after_s", 1.0)), _time(data.get("accepted_at")))


def _entity(state: RotationState) -> dict[str, Any]:
    text = encode_state(state)
    chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    entity: dict[str, Any] = {
        "PartitionKey": partition_of(state.key_uri),
        "RowKey": state.rotation_id,
        "Kind": "rotation",
        "KeyUri": state.key_uri,
        "Status": state.status.value,
        "StartedAt": state.started_at.isoformat(),
        "Chunks": len(chunks),
    }
    for i, chunk in enumerate(chunks):
        entity[f"State{i}"] = chunk
    return entity


def _state(entity: Mapping[str, Any]) -> RotationState:
    try:
        count = min(int(entity.get("Chunks", 1)), 64)
    except (TypeError, ValueError):
        raise MalformedJournalEntry("a journal entry is malformed; it is not acted on") from None
    return decode_state("".join(str(entity.get(f"State{i}", "")) for i in range(count)))


def _etag(entity: Any) -> str:
    return str(entity.metadata["etag"])


# -- the adapter ---------------------------------------------------------------------------------


class TableJournal:
    """Implements ``rotation.ports.Journal``."""

    def __init__(self, connection: StorageConnection, table_name: str, **client_kwargs: Any) -> None:
        self._table = LazyTable(connection, table_name, _PERMISSION, **client_kwargs)

    def _ensure(self) -> TableClient:
        return self._table.client()

    def lock_holder(self, key_uri: str) -> tuple[str | None, str | None]:
        table = self._ensure()
        with translated(f"read the lock of {key_uri}", _PERMISSION):
            found = list(table.query_entities(f"PartitionKey eq '{partition_of(key_uri)}' and RowKey eq '{LOCK_ROW}'"))
        if not found:
            return None, None
        return str(found[0].get("RotationId") or "") or None, _etag(found[0])

    def begin(self, state: RotationState, lock_etag: str | None) -> str:
        table = self._ensure()
        entity = _entity(state)
        lock = {"PartitionKey": entity["PartitionKey"], "RowKey": LOCK_ROW, "RotationId": state.rotation_id}
        operations: list[Any] = [("create", entity)]
        if lock_etag is None:
            operations.append(("create", lock))
        else:
            operations.append(
                (
                    "update",
                    lock,
                    {"mode": UpdateMode.REPLACE, "etag": lock_etag, "match_condition": MatchConditions.IfNotModified},
                )
            )
        try:
            results = table.submit_transaction(operations)
        except TableTransactionError as exc:
            raise JournalConflict(f"the lock of {state.key_uri} changed ({type(exc).__name__})") from None
        except AzureError as exc:
            raise translate(exc, f"start rotation {state.rotation_id}", _PERMISSION) from None
        return str(results[0]["etag"])

    def load(self, rotation_id: str) -> tuple[RotationState, str]:
        if not _ROTATION_ID.match(rotation_id):
            raise RotationNotFound(rotation_id)
        table = self._ensure()
        with translated(f"read rotation {rotation_id}", _PERMISSION):
            found = list(table.query_entities(f"RowKey eq '{rotation_id}' and Kind eq 'rotation'"))
        if not found:
            raise RotationNotFound(rotation_id)
        try:
            return _state(found[0]), _etag(found[0])
        except _UNDECODABLE as exc:
            raise NeedsHuman(f"journal entry {rotation_id} cannot be read ({type(exc).__name__})") from None

    def save(self, state: RotationState, etag: str) -> str:
        table = self._ensure()
        try:
            with translated(f"save rotation {state.rotation_id}", _PERMISSION):
                result = table.update_entity(
                    _entity(state), mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except NotFound:
            # The entry is gone since it was read: it is not at ``etag`` any more, as the port says.
            raise JournalConflict(f"rotation {state.rotation_id} no longer exists in the journal") from None
        return str(result["etag"])

    def list(
        self, key_uri: str | None = None, statuses: Iterable[RotationStatus] | None = None, limit: int = 50
    ) -> list[RotationState]:
        table = self._ensure()
        clauses = ["Kind eq 'rotation'"]
        if key_uri is not None:
            clauses.append(f"PartitionKey eq '{partition_of(key_uri)}'")
        wanted = [s.value for s in statuses] if statuses is not None else None
        if wanted is not None:
            if not wanted:
                return []
            clauses.append("(" + " or ".join(f"Status eq '{s}'" for s in wanted) + ")")
        with translated("list rotations", _PERMISSION):
            entities = list(table.query_entities(" and ".join(clauses)))
        states = sorted(_readable(entities), key=lambda s: (s.started_at, s.rotation_id), reverse=True)
        return states[:limit]


def _readable(entities: Iterable[Mapping[str, Any]]) -> list[RotationState]:
    """The entries that decode; one that does not is logged (by row, never its content) and left out.

    An entry is input: a hand-edited or truncated row must not stop a listing (or the reconciler's
    sweep) for every other rotation. ``load`` of such a row raises ``NeedsHuman`` naming it.
    """
    states: list[RotationState] = []
    for entity in entities:
        try:
            states.append(_state(entity))
        except _UNDECODABLE as exc:
            _log.warning(
                "journal_entry_unreadable",
                partition=str(entity.get("PartitionKey", ""))[:100],
                row=str(entity.get("RowKey", ""))[:100],
                error=type(exc).__name__,
            )
    return states
