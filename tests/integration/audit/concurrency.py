"""Appending to one audit chain from several threads, and checking the chain they left."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from rotation.audit.store import StoredRecord, TableAuditLog

T = TypeVar("T")


def run_in_threads(work: Callable[[T], None], arguments: Iterable[T]) -> None:
    """Call ``work`` once per argument, each in its own thread, all at once; return when all have finished."""
    threads = [threading.Thread(target=work, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def verified_chain(store: TableAuditLog, length: int) -> list[StoredRecord]:
    """The stored records, asserted to verify and to be numbered 1..``length`` with no gap or repeat."""
    stored = store.stored()
    report = store.verify()
    assert report.ok, report.problem
    assert [s.seq for s in stored] == list(range(1, length + 1))
    return stored
