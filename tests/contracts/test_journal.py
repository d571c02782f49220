"""The ``Journal`` contract: ``FakeJournal`` and ``TableJournal`` (Azurite) keep the same guarantees.

Exactly one rotation takes a key's lock; stale writers are refused; state round-trips whole; queries
select by key and status, newest first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.domain.model import ConsumerChange, ConsumerKind, RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import Intent, RotationState
from rotation.errors import JournalConflict, RotationNotFound
from rotation.ports import Journal
from tests.contracts.conftest import BOTH

NOW = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(params=BOTH)
def journal(request: pytest.FixtureRequest) -> Iterator[Journal]:
    if request.param == "fake":
        from tests.fakes.journal import FakeJournal

        yield FakeJournal()
        return
    from rotation.adapters.journal import TableJournal

    local_azure: dict[str, Any] = request.getfixturevalue("local_azure")
    yield TableJournal(local_azure["storage"]["connection_string"], f"j{uuid.uuid4().hex[:12]}")


def new_key() -> str:
    return f"https://kv.vault.azure.net/keys/k{uuid.uuid4().hex[:6]}"


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


class TestLock:
    """Exactly one rotation takes a key's lock; a racer that read the lock before it moved is refused."""

    def test_begin_takes_the_lock_once(self, journal: Journal) -> None:
        key = new_key()
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

    def test_a_rotation_id_begins_once(self, journal: Journal) -> None:
        key = new_key()
        first = state(key)
        journal.begin(first, None)
        _, lock_etag = journal.lock_holder(key)

        with pytest.raises(JournalConflict):
            journal.begin(replace(first, started_at=NOW + timedelta(hours=1)), lock_etag)

        assert journal.load(first.rotation_id)[0] == first

    def test_the_lock_is_per_key_whatever_the_case_of_its_uri(self, journal: Journal) -> None:
        key = new_key()
        first = state(key)
        journal.begin(first, None)

        holder, etag = journal.lock_holder(key.upper().replace("HTTPS://", "https://"))

        assert holder == first.rotation_id
        assert etag is not None
        with pytest.raises(JournalConflict):
            journal.begin(state(key.replace("kv.vault", "KV.vault")), None)


class TestGuardedSaves:
    """``save`` replaces the entry only if it is unchanged since it was read (ETag)."""

    def test_stale_save_is_refused(self, journal: Journal) -> None:
        key = new_key()
        created = state(key)
        journal.begin(created, None)
        loaded, etag = journal.load(created.rotation_id)
        newer = journal.save(replace(loaded, stage="new_version"), etag)

        with pytest.raises(JournalConflict):
            journal.save(replace(loaded, stage="plan"), etag)

        assert journal.load(created.rotation_id) == (replace(loaded, stage="new_version"), newer)

    def test_save_of_a_rotation_never_begun_is_a_conflict(self, journal: Journal) -> None:
        begun = state(new_key())
        etag = journal.begin(begun, None)

        with pytest.raises(JournalConflict):
            journal.save(state(begun.key_uri), etag)

        assert [s.rotation_id for s in journal.list(begun.key_uri)] == [begun.rotation_id]

    def test_begin_returns_the_etag_load_reads(self, journal: Journal) -> None:
        created = state(new_key())

        etag = journal.begin(created, None)

        assert journal.load(created.rotation_id) == (created, etag)
        assert journal.save(replace(created, stage="new_version"), etag) != etag


class TestRoundTrip:
    """Whatever the state holds comes back equal, however large."""

    def test_large_state_round_trips(self, journal: Journal) -> None:
        key = new_key()
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


class TestQueries:
    """``list`` selects by key and status, newest first, up to ``limit``; ``load`` of an unknown id is refused."""

    def test_queries(self, journal: Journal) -> None:
        key = new_key()
        done = state(key, status=RotationStatus.RETIRED)
        journal.begin(done, None)
        _, lock_etag = journal.lock_holder(key)
        running = state(key, started_at=NOW + timedelta(minutes=5))
        journal.begin(running, lock_etag)

        active = journal.list(key, [RotationStatus.RUNNING, RotationStatus.WAITING])

        assert [s.rotation_id for s in active] == [running.rotation_id]
        assert journal.list(key, []) == []
        assert [s.rotation_id for s in journal.list(key, limit=1)] == [running.rotation_id]
        with pytest.raises(RotationNotFound):
            journal.load("rot-does-not-exist")
        with pytest.raises(RotationNotFound):
            journal.load("bad'id")

    def test_list_without_a_key_spans_keys(self, journal: Journal) -> None:
        first, second = state(new_key()), state(new_key(), started_at=NOW + timedelta(minutes=1))
        journal.begin(first, None)
        journal.begin(second, None)

        listed = [s.rotation_id for s in journal.list(None, None, 500)]

        assert listed.index(second.rotation_id) < listed.index(first.rotation_id)
