"""SDK clients built on first use, one per key (a vault URL, a subscription, a key id), shared by threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
C = TypeVar("C")


class ClientCache(Generic[K, C]):
    """``cache(key)`` is the client for ``key``, built by ``build(key)`` the first time it is asked for."""

    def __init__(self, build: Callable[[K], C]) -> None:
        self._build = build
        self._clients: dict[K, C] = {}
        self._lock = threading.Lock()

    def __call__(self, key: K) -> C:
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._build(key)
            return client

    def built(self) -> list[C]:
        """The clients built so far (to close them)."""
        with self._lock:
            return list(self._clients.values())
