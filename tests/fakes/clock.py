"""A clock tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    def __init__(self, start: datetime | None = None, tick: timedelta = timedelta(0)) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.tick = tick  # added after every reading, so successive events are ordered

    def now(self) -> datetime:
        value = self.current
        self.current = self.current + self.tick
        return value

    def advance(self, delta: timedelta) -> None:
        self.current = self.current + delta

    def sleep(self, seconds: float) -> None:
        """An injectable sleep that only moves this clock."""
        self.advance(timedelta(seconds=seconds))
