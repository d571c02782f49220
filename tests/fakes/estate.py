"""A whole estate in memory: ``Dependencies`` wired to fakes, with helpers to arrange consumers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from rotation import bootstrap
from rotation.bootstrap import wire_inline
from rotation.consumers import REGISTRY, ConsumerRegistry
from rotation.domain.model import KeyRef
from rotation.domain.sweep_cost import SweepMemory
from rotation.service.deps import Dependencies, InlineDispatcher
from rotation.settings import DataLocation, HostStorageSettings, Settings
from tests.fakes.arm import SUBSCRIPTION, FakeStorageAccounts, FakeVaults, FakeWorkspaces
from tests.fakes.audit import FakeAuditLog
from tests.fakes.clock import FakeClock
from tests.fakes.data_keys import FakeDataKeys
from tests.fakes.journal import FakeJournal
from tests.fakes.keystore import FakeKeyStore
from tests.fakes.references import FakeContainerRegistries, FakeDiskEncryptionSets, FakeKeyReferences
from tests.fakes.sweep_memory import FakeSweepMemory

VAULT = "https://kv-main.vault.azure.net"
OTHER_VAULT = "https://kv-other.vault.azure.net"
KEY = KeyRef(VAULT, "cmk")
OTHER_KEY = KeyRef(VAULT, "other")
LOCATION = DataLocation("https://data.blob.core.windows.net", "secure")


@dataclass
class Estate:
    clock: FakeClock = field(default_factory=lambda: FakeClock(tick=timedelta(milliseconds=1)))
    keys: FakeKeyStore = field(init=False)
    vaults: FakeVaults = field(default_factory=FakeVaults)
    storage: FakeStorageAccounts = field(default_factory=FakeStorageAccounts)
    workspaces: FakeWorkspaces = field(init=False)
    data_keys: FakeDataKeys = field(default_factory=FakeDataKeys)
    registries: FakeContainerRegistries = field(default_factory=FakeContainerRegistries)
    disk_encryption_sets: FakeDiskEncryptionSets = field(default_factory=FakeDiskEncryptionSets)
    references: FakeKeyReferences = field(init=False)
    journal: FakeJournal = field(default_factory=FakeJournal)
    audit: FakeAuditLog = field(init=False)
    dispatcher: InlineDispatcher = field(default_factory=InlineDispatcher)
    settings: Settings = field(init=False)
    consumers: ConsumerRegistry = REGISTRY
    #: Shared by every ``deps()``, as one worker process keeps it across timer ticks.
    sweep_memory: SweepMemory = field(default_factory=SweepMemory)
    #: The app's storage of that memory, shared by every process (``deps(cold=True)`` is a new one).
    sweep_store: FakeSweepMemory = field(default_factory=FakeSweepMemory)

    def __post_init__(self) -> None:
        self.keys = FakeKeyStore(self.clock.now)
        self.workspaces = FakeWorkspaces(self.vaults, lambda: self.clock.current)  # reads the clock without a tick
        self.references = FakeKeyReferences(self.registries, self.disk_encryption_sets)
        self.audit = FakeAuditLog(self.clock.now)
        self.settings = Settings(
            storage=HostStorageSettings(connection_string="UseDevelopmentStorage=true"),
            managed_keys=(KEY.uri, OTHER_KEY.uri),
            subscriptions=(SUBSCRIPTION,),
            retire_grace_hours=24,
        )
        self.vaults.add(VAULT)
        self.vaults.add(OTHER_VAULT)

    def with_data_locations(self) -> Estate:
        self.settings = replace(self.settings, data_locations=(LOCATION,))
        return self

    def deps(self, *, owner: str = "test-executor", inline: bool = True, cold: bool = False) -> Dependencies:
        """``cold``: as a new worker process, remembering nothing but what the app's storage holds."""
        dispatcher = self.dispatcher if inline else InlineDispatcher()
        if not inline:
            dispatcher.runner = lambda _rotation_id: None  # queued: nothing runs until run_rotation is called
        return wire_inline(
            Dependencies(
                settings=self.settings,
                clock=self.clock,
                keys=self.keys,
                vaults=self.vaults,
                storage_accounts=self.storage,
                workspaces=self.workspaces,
                data_keys=self.data_keys,
                container_registries=self.registries,
                disk_encryption_sets=self.disk_encryption_sets,
                key_references=self.references,
                journal=self.journal,
                audit=self.audit,
                dispatcher=dispatcher,
                owner=owner,
                sleep=self.clock.sleep,
                consumers=self.consumers,
                sweep_memory=SweepMemory() if cold else self.sweep_memory,
                sweep_store=self.sweep_store,
            )
        )

    def follower_adopts(self, version: str | None) -> None:
        """The versionless account ``follows`` (standard_estate's) starts using ``version`` of KEY, as Azure's
        automatic key-version update does."""
        follows = next(a for a in self.storage.accounts.values() if a.name == "follows")
        self.storage.adopt_latest(follows.account_id, KEY, version or "")

    def deps_with_lock_check_failing(self, error: Exception) -> Dependencies:
        """``deps()`` whose journal raises ``error`` when asked who holds a key's lock (its first call)."""
        journal = self.journal

        class FailingJournal:
            def lock_holder(self, key_uri: str) -> Any:
                raise error

            def __getattr__(self, name: str) -> Any:
                return getattr(journal, name)

        deps = self.deps()
        deps.journal = FailingJournal()  # type: ignore[assignment]
        return deps


def standard_estate() -> tuple[Estate, str]:
    """A key with two pinned accounts, one versionless account, two workspaces, and unrelated consumers."""
    estate = Estate()
    old = estate.keys.add_key(KEY).version
    other = estate.keys.add_key(OTHER_KEY).version
    estate.storage.add("pinned1", KEY, old)
    estate.storage.add("pinned2", KEY, old)
    estate.storage.add("follows", KEY, "", in_use=old)
    estate.storage.add("unrelated", OTHER_KEY, other)
    estate.workspaces.add("ws1", KEY, old)
    estate.workspaces.add("ws2", KEY, old)
    estate.workspaces.add("wsother", OTHER_KEY, other)
    return estate, old


def pinned_estate(accounts: int, bound: int, workspaces: int = 0) -> tuple[Estate, str]:
    """A key with ``accounts`` pinned accounts and ``workspaces`` workspaces, re-pointed ``bound`` at once."""
    estate = Estate()
    old = estate.keys.add_key(KEY).version
    for i in range(accounts):
        estate.storage.add(f"pinned{i:02}", KEY, old)
    for i in range(workspaces):
        estate.workspaces.add(f"ws{i:02}", KEY, old)
    estate.settings = replace(estate.settings, repoint_concurrency=bound)
    return estate, old


def hosted_standard_estate() -> Iterator[tuple[Estate, str]]:
    """A fixture body: the standard estate, wired as the function app's dependencies until the test ends."""
    arranged = standard_estate()
    bootstrap.override_dependencies(arranged[0].deps())
    yield arranged
    bootstrap.override_dependencies(None)


def rewrap_estate(blobs: int = 10, per_poll: int = 4) -> tuple[Estate, str]:
    """The standard estate plus a data location of ``blobs`` old-version blobs, re-wrapped ``per_poll`` at a time."""
    estate, old = standard_estate()
    estate.with_data_locations()
    estate.data_keys.put_blobs(LOCATION, KEY, old, blobs)
    estate.data_keys.per_poll = per_poll
    return estate, old
