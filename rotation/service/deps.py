"""The collaborators every service function receives.

The real ones are built and wired in the composition root (``rotation.bootstrap``); tests build
``Dependencies`` from fakes (``tests/fakes``). Nothing here imports an adapter or an SDK.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from rotation.consumers import REGISTRY, ConsumerRegistry
from rotation.domain.sweep_cost import SweepMemory
from rotation.ports import (
    AuditLog,
    Clock,
    ContainerRegistries,
    DataKeys,
    DiskEncryptionSets,
    Journal,
    KeyReferences,
    KeyStore,
    StorageAccounts,
    SweepMemoryStore,
    Vaults,
    Workspaces,
)
from rotation.settings import Settings


class Dispatcher(Protocol):
    def dispatch(self, rotation_id: str, delay_seconds: float = 0.0) -> None:
        """Have ``run_rotation(rotation_id)`` run: now (inline) or from the ``rotation-run`` queue, where the
        message becomes visible after ``delay_seconds`` (a continuation waits for the operations it polls)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class InlineDispatcher:
    """Runs the rotation in this process, now (CLI, local server, tests).

    ``runner`` is set by whoever wires the dependencies (``rotation.bootstrap.wire_inline``); without
    one a dispatch is only recorded.
    """

    def __init__(self, runner: Callable[[str], object] | None = None) -> None:
        self.runner = runner
        self.dispatched: list[str] = []
        self.delays: list[float] = []

    def dispatch(self, rotation_id: str, delay_seconds: float = 0.0) -> None:
        """Run it now (``delay_seconds`` is only recorded: in-process runs have no invocation budget, so they
        never hand a continuation over)."""
        self.dispatched.append(rotation_id)
        self.delays.append(delay_seconds)
        if self.runner is not None:
            self.runner(rotation_id)


def default_owner() -> str:
    """A name for this executor in leases: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Dependencies:
    settings: Settings
    clock: Clock
    keys: KeyStore
    vaults: Vaults
    storage_accounts: StorageAccounts
    workspaces: Workspaces
    data_keys: DataKeys
    container_registries: ContainerRegistries
    disk_encryption_sets: DiskEncryptionSets
    #: Every resource naming a key, across the identity's reach (Resource Graph).
    key_references: KeyReferences
    journal: Journal
    audit: AuditLog
    dispatcher: Dispatcher
    #: How long an executor's claim on a rotation lasts without renewal (each journal write renews it).
    lease_seconds: float = 120.0
    #: The name this executor writes into leases.
    owner: str = field(default_factory=default_owner)
    #: The sleep tenacity uses between step attempts (tests inject a fake).
    sleep: Callable[[float], None] = time.sleep
    #: Upper bound on step attempts for transient failures.
    step_attempts: int = 5
    #: The consumer kinds this build rotates (``rotation.consumers``).
    consumers: ConsumerRegistry = REGISTRY
    #: Seconds one ``run_rotation`` invocation polls long-running operations before it pauses and hands the
    #: rest to a continuation (``ROTATION_INVOCATION_BUDGET_SECONDS`` in the Function app); None: poll them
    #: to the end in this process (CLI, local server).
    invocation_budget_seconds: float | None = None
    #: What the sweep's earlier ticks in this process learnt about the vaults (``rotation.domain.sweep_cost``).
    sweep_memory: SweepMemory = field(default_factory=SweepMemory)
    #: Where that memory is kept between worker processes (``rotation.service.sweep_recall``); None: this
    #: process only.
    sweep_store: SweepMemoryStore | None = None
