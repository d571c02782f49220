"""Scripted failures for fakes: ``faults.add("create_version", ThrottledError(...))`` fails the next call."""

from __future__ import annotations

from collections import defaultdict


class Faults:
    def __init__(self) -> None:
        self.pending: dict[str, list[BaseException]] = defaultdict(list)
        self.raised: list[tuple[str, str]] = []

    def add(self, method: str, error: BaseException, times: int = 1) -> None:
        self.pending[method].extend([error] * times)

    def check(self, method: str) -> None:
        if self.pending.get(method):
            error = self.pending[method].pop(0)
            self.raised.append((method, type(error).__name__))
            raise error
