"""The Table storage journal on Azurite: transactional begin, ETag-guarded saves, chunked state, queries."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.adapters.journal import TableJournal
from rotation.domain.model import ConsumerChange, ConsumerKind, RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import Intent, RotationState
from rotation.errors import JournalConflict, RotationNotFound

NOW = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def journal(local_azure: dict[str, Any]) -> TableJournal:
    return TableJournal(local_azure["storage"]["connection_string"], f"j{uuid.uuid4().hex[:12]}")


def state(key: str, rotation_id: str | None = None, **changes: Any) -> RotationState:
    base = RotationState(
        rotation_id=rotation_id or f"rot-{uuid.uuid4().hex[:8]}",
        key_uri=key,
        status=RotationStatus.RUNNING,
        trigger=Trigger(TriggerKind.EVENT, event_id="e1", event_type="Microsoft.KeyVault.KeyNearExpiry"),
        started_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **changes)


class TestTableJournal:
    """Exactly one rotation takes a key's lock; stale writers are refused; state round-trips whole."""

    def test_begin_takes_the_lock_once(self, journal: TableJournal) -> None:
        key = f"https://kv.vault.azure.net/keys/k{uuid.uuid4().hex[:6]}"
        first = state(key)
        holder, etag = journal.lock_holder(key)
        journal.begin(first, etag)

        with pytest.raises(JournalConflict):
            journal.begin(state(key), etag)  # a racer that read the lock before the first began
        holder_after, lock_etag = journal.lock_holder(key)
        second = state(key, started_at=NOW + timedelta(hours=1))
        journal.begin(second, lock_etag)  # the service decides the first no longer holds the key

        assert holder is None
        assert holder_after == first.rotation_id
        assert journal.lock_holder(key)[0] == second.rotation_id
        assert [s.rotation_id for s in journal.list(key)] == [second.rotation_id, first.rotation_id]

    def test_stale_save_is_refused(self, journal: TableJournal) -> None:
        key = f"https://kv.vault.azure.net/keys/k{uuid.uuid4().hex[:6]}"
        created = state(key)
        journal.begin(created, None)
        loaded, etag = journal.load(created.rotation_id)
        newer = journal.save(replace(loaded, stage="new_version"), etag)

        with pytest.raises(JournalConflict):
            journal.save(replace(loaded, stage="plan"), etag)

        assert journal.load(created.rotation_id) == (replace(loaded, stage="new_version"), newer)

    def test_large_state_round_trips(self, journal: TableJournal) -> None:
        key = f"https://kv.vault.azure.net/keys/k{uuid.uuid4().hex[:6]}"
        consumers = tuple(
            ConsumerChange(
                ConsumerKind.STORAGE_ACCOUNT,
                f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa{i:04d}",
                "a" * 32,
                "b" * 32,
                "changed",
                "detail " * 10,
            )
            for i in range(400)
        )
        big = state(
            key,
            consumers=consumers,
            intent=Intent("set_storage_version", "sa0001", "b" * 32, NOW),
            error=("Transient", "x"),
            retire_after=NOW + timedelta(days=1),
        )

        journal.begin(big, None)
        loaded, _ = journal.load(big.rotation_id)

        assert loaded == big

    def test_queries(self, journal: TableJournal) -> None:
        key = f"https://kv.vault.azure.net/keys/k{uuid.uuid4().hex[:6]}"
        done = state(key, status=RotationStatus.RETIRED)
        journal.begin(done, None)
        _, lock_etag = journal.lock_holder(key)
        running = state(key, started_at=NOW + timedelta(minutes=5))
        journal.begin(running, lock_etag)

        active = journal.list(key, [RotationStatus.RUNNING, RotationStatus.WAITING])

        assert [s.rotation_id for s in active] == [running.rotation_id]
        assert journal.list(key, []) == []
        with pytest.raises(RotationNotFound):
            journal.load("rot-does-not-exist")
        with pytest.raises(RotationNotFound):
            journal.load("bad'id")
