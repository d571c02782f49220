"""An in-memory journal with the Table adapter's guarantees: atomic begin, ETag-guarded saves."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable

from rotation.domain.model import RotationStatus
from rotation.domain.steps import RotationState
from rotation.errors import JournalConflict, RotationNotFound


class FakeJournal:
    """Implements ``rotation.ports.Journal``; ``writes`` counts every successful write."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[RotationState, str]] = {}
        self.locks: dict[str, tuple[str, str]] = {}  # key uri (lower) -> (rotation id, etag)
        self.writes = 0
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    def lock_holder(self, key_uri: str) -> tuple[str | None, str | None]:
        with self._lock:
            held = self.locks.get(key_uri.lower())
            return (held[0], held[1]) if held else (None, None)

    def begin(self, state: RotationState, lock_etag: str | None) -> str:
        with self._lock:
            held = self.locks.get(state.key_uri.lower())
            if (held[1] if held else None) != lock_etag:
                raise JournalConflict(f"the lock of {state.key_uri} changed")
            if state.rotation_id in self.entries:
                raise JournalConflict(f"rotation {state.rotation_id} exists")
            etag = self._etag()
            self.locks[state.key_uri.lower()] = (state.rotation_id, self._etag())
            self.entries[state.rotation_id] = (state, etag)
            self.writes += 1
            return etag

    def load(self, rotation_id: str) -> tuple[RotationState, str]:
        with self._lock:
            if rotation_id not in self.entries:
                raise RotationNotFound(rotation_id)
            return self.entries[rotation_id]

    def save(self, state: RotationState, etag: str) -> str:
        with self._lock:
            current = self.entries.get(state.rotation_id)
            if current is None or current[1] != etag:
                raise JournalConflict(f"rotation {state.rotation_id} changed since it was read")
            new = self._etag()
            self.entries[state.rotation_id] = (state, new)
            self.writes += 1
            return new

    def list(
        self, key_uri: str | None = None, statuses: Iterable[RotationStatus] | None = None, limit: int = 50
    ) -> list[RotationState]:
        wanted = set(statuses) if statuses is not None else None
        with self._lock:
            states = [s for s, _ in self.entries.values()]
        states = [
            s
            for s in states
            if (key_uri is None or s.key_uri.lower() == key_uri.lower()) and (wanted is None or s.status in wanted)
        ]
        return sorted(states, key=lambda s: (s.started_at, s.rotation_id), reverse=True)[:limit]
