"""The protocol every consumer kind implements, and the values it exchanges with the workflow.

A unit has pure parts (which items use the key, what to change, what a read-back means, what
references a version) and I/O parts that take the ports (``UnitPorts``) or the executor's view of
the running rotation (``ConsumerRun``). See ``rotation.consumers`` for the whole picture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from rotation.domain.model import ConsumerChange, KeyRef, RewrapSummary
from rotation.domain.operations import Operation, OperationPoll, provisioning_ended, provisioning_succeeded
from rotation.domain.plan import VERSIONLESS, ConsumerPlanner
from rotation.domain.steps import RotationState
from rotation.errors import VerificationFailed
from rotation.ports import (
    ContainerRegistries,
    DataKeys,
    DiskEncryptionSets,
    KeyReferences,
    StorageAccounts,
    Workspaces,
)
from rotation.settings import Settings

Item = TypeVar("Item")
#: A write as a long-running operation: ``begin(version)`` sends it, ``poll(operation)`` polls it once.
LongRunning = tuple[Callable[[str], Operation | None], Callable[[Operation], OperationPoll]]


class UnitPorts(Protocol):
    """The ports a unit's I/O parts may use (``Dependencies`` provides them)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def storage_accounts(self) -> StorageAccounts: ...

    @property
    def workspaces(self) -> Workspaces: ...

    @property
    def data_keys(self) -> DataKeys: ...

    @property
    def container_registries(self) -> ContainerRegistries: ...

    @property
    def disk_encryption_sets(self) -> DiskEncryptionSets: ...

    @property
    def key_references(self) -> KeyReferences: ...


@dataclass(frozen=True)
class Reading:
    """A consumer as read back: which version of the key it is configured with and which it uses.

    ``configured`` is the pinned version, ``""`` when it follows the latest version, None when it
    no longer names this key. ``in_use`` is the version the service reports in use, when it does.
    ``provisioning_state`` is ARM's: non-terminal ("Updating") while an operation on the resource runs.
    """

    name: str
    configured: str | None
    in_use: str | None = None
    provisioning_state: str = "Succeeded"


@dataclass(frozen=True)
class Settled:
    """What a settle step found: done (or still waiting), a log-safe detail, and updated changes."""

    done: bool
    detail: str
    changes: tuple[ConsumerChange, ...] = ()
    rewrap: RewrapSummary | None = None
    skipped: bool = False  # nothing to settle: the step is recorded as skipped


class ConsumerRun(Protocol):
    """The executor's view of a running rotation, as a unit's I/O parts see it."""

    @property
    def ports(self) -> UnitPorts: ...

    @property
    def key(self) -> KeyRef: ...

    @property
    def state(self) -> RotationState: ...

    @property
    def dry_run(self) -> bool:
        """Writes are switched off: ``write`` records what it would do instead."""
        ...

    def write(self, action: str, target: str, value: str, act: Callable[[], object]) -> bool:
        """Journal the intent, ``act()``, journal the outcome; True when it acted.

        In a dry run nothing is called or journalled and the answer is False. Safe to call from
        the per-consumer functions only; the executor owns every other journal write.
        """
        ...

    def write_long_running(
        self,
        action: str,
        target: str,
        value: str,
        begin: Callable[[], Operation | None],
        poll: Callable[[Operation], OperationPoll],
    ) -> bool:
        """``write`` for an ARM write ARM may accept as a long-running operation: ``begin()`` sends it (once:
        its polling URL is journalled with the intent), ``poll`` polls it until done or until the
        invocation's budget, when ``OperationPending`` is raised and a later invocation polls on."""
        ...

    def awaiting(self, target: str) -> bool:
        """Whether an accepted operation on ``target`` is journalled: it is polled on, not sent again."""
        ...

    def await_unanswered(
        self, action: str, target: str, value: str, reading: Reading, read: Callable[[], Reading]
    ) -> Reading:
        """``reading``, unless this long-running write's intent is journalled with no operation (an earlier
        invocation may have sent it and died before journalling ARM's answer): then the consumer as ``read``
        shows it once its ``provisioningState`` is terminal (re-read with back-off), so a write ARM accepted is
        judged by its end, not sent again. Raises ``OperationPending`` at the invocation's budget."""
        ...


class ConsumerUnit(ConsumerPlanner[Item], Protocol[Item]):
    """One kind of consumer of a managed key (storage account, ML workspace, data location, ...).

    Attributes:
        kind: the name journalled in ``ConsumerChange.kind`` (never renamed: the journal keeps it).
        label: plural, for people ("storage accounts").
        repoint_step: the run step that moves this kind to the new version, or None.
        settle_step: the run step that waits for this kind to settle after every re-point, or None.
        permissions: step name -> the actions this kind needs in it (``plan`` for its reads).
    """

    kind: str
    label: str
    repoint_step: str | None
    settle_step: str | None
    permissions: Mapping[str, tuple[str, ...]]

    # -- discovery and planning -------------------------------------------------------------

    def discover(self, ports: UnitPorts, key: KeyRef) -> Sequence[Item]:
        """Every candidate in the configured scope, whether it uses ``key`` or not. Reads only."""
        ...

    # uses_key(item, key), plan(items, context) and references_to(items, key, version): the pure
    # parts, declared by ``ConsumerPlanner``.

    # -- the rotation -----------------------------------------------------------------------

    def readings(self, items: Sequence[Item], key: KeyRef) -> Mapping[str, Reading]:
        """What ``read_back`` would say of each of ``items`` (as ``discover`` found them), by lower-case
        resource id; empty for a kind whose discovery does not show it. Pure.

        Lets a step read a whole kind with the one listing it makes anyway, instead of one read per consumer.
        """
        ...

    def repoint(
        self, run: ConsumerRun, change: ConsumerChange, observed: Reading | None = None
    ) -> ConsumerChange | None:
        """Move one consumer to the rotation's new version: read it, write (journalled), read it back.

        Self-contained (one consumer, its own intent and outcome), so consumers of one step can
        run concurrently. Returns the change to record, or None when the step has nothing to do
        for it. In a dry run, the returned change says what would be done.

        ``observed``: the consumer as the step's own discovery read it (``readings``), taken instead of
        a read of its own; None reads it.

        Raises:
            VerificationFailed: Azure refused the change or the read-back differs; roll it back.
        """
        ...

    def read_back(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> Reading | None:
        """The consumer as it is now, or None when this kind has nothing to read back. Reads only."""
        ...

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        """Why a re-pointed consumer is not on ``new_version`` (log-safe), or None when it is. Pure."""
        ...

    def roll_back(self, run: ConsumerRun, change: ConsumerChange) -> None:
        """Put one consumer back on the version it had before (journalled). Safe to repeat."""
        ...

    def settle(self, run: ConsumerRun) -> Settled:
        """The work of ``settle_step`` (only called when it is set)."""
        ...

    def at_retirement(self, change: ConsumerChange) -> ConsumerChange:
        """The change as recorded when the old version retires (e.g. tracking -> adopted). Pure."""
        ...

    def describe(self, changes: Sequence[ConsumerChange]) -> str:
        """One line for a dry run: what this kind's re-point step would do to ``changes``. Pure."""
        ...


def repoint_pinned(
    run: ConsumerRun,
    unit: ConsumerUnit[Item],
    change: ConsumerChange,
    *,
    action: str,
    set_version: Callable[[str], object],
    mismatch: Callable[[Reading], str],
    detail: Callable[[Reading, str], str],
    long_running: LongRunning | None = None,
    reading: Reading | None = None,
    answered: Callable[[object], Reading | None] | None = None,
) -> ConsumerChange:
    """The re-point of a consumer pinned to a version: read it, write if needed, read it back.

    Shared by kinds whose consumers name a key version (storage accounts, workspaces, ...).

    Args:
        reading: the consumer as the caller just read it (or its step's discovery did: not read again),
            else it is read here.
        action: the intent's name in the journal (``set_storage_version``).
        set_version: the write, given the new version; it may return what Azure answered.
        mismatch: the log-safe reason when the read-back is not the new version.
        detail: the recorded detail of the moved consumer, given its reading and the new version.
        long_running: the write as a long-running operation (begin, poll) instead of ``set_version``: its
            polling URL is journalled, and an operation journalled by an earlier invocation is polled on
            whatever the consumer reads back, never sent again. A poll that finds the operation gone (404)
            ends the wait: the read-back below judges. An intent journalled with no operation (a crash
            between ARM's answer and the journal write of its URL) waits for the consumer's
            ``provisioningState`` to end first (``ConsumerRun.await_unanswered``); a consumer whose last
            operation ended ``Failed`` or ``Canceled`` is written again whatever it shows.
        answered: the consumer as ``set_version``'s answer shows it (a synchronous PATCH's 200), or None
            when the answer does not carry it: then it is read back with ``read_back``. Either way
            ``verify_consumers`` reads it again before the cut-over.
    """
    new = run.state.new_version
    target = new or "the new version"
    reading = reading if reading is not None else _read(unit, run, change)
    if long_running is not None:
        reading = run.await_unanswered(action, change.resource_id, target, reading, lambda: _read(unit, run, change))
    if new is None or reading.configured != new or run.awaiting(change.resource_id) or _ended_badly(reading):
        answers: list[object] = []
        if long_running is not None:
            begin, poll = long_running
            acted = run.write_long_running(action, change.resource_id, target, lambda: begin(target), poll)
        else:
            acted = run.write(action, change.resource_id, target, lambda: answers.append(set_version(target)))
        if not acted:
            return change  # a dry run: the planned change says what would be done
        reading = answered(answers[0]) if answered is not None and answers else None
        reading = reading or _read(unit, run, change)
        if reading.configured != new:
            raise VerificationFailed(mismatch(reading))
    elif run.dry_run:
        return replace(change, detail=f"{reading.name} is already on {new}")
    assert new is not None
    return replace(change, status="changed", after=new, detail=detail(reading, new))


def _read(unit: ConsumerUnit[Item], run: ConsumerRun, change: ConsumerChange) -> Reading:
    reading = unit.read_back(run.ports, run.key, change)
    assert reading is not None
    return reading


def _ended_badly(reading: Reading) -> bool:
    """The consumer's last operation ended ``Failed`` or ``Canceled``: what it shows is not to be trusted as moved."""
    state = reading.provisioning_state
    return provisioning_ended(state) and not provisioning_succeeded(state)


def roll_back_pinned(
    run: ConsumerRun,
    unit: ConsumerUnit[Item],
    change: ConsumerChange,
    before: str,
    *,
    action: str,
    set_version: Callable[[str], object],
    long_running: LongRunning | None = None,
) -> None:
    """Put a consumer pinned to a version back on ``before``, unless it reads back that already (journalled).

    ``long_running``: the write as a long-running operation (begin, poll), journalled, paused at the invocation's
    budget and resumed as a re-point's is (``repoint_pinned``); raises ``OperationPending`` at the budget.
    """
    reading = _read(unit, run, change)
    if long_running is None:
        if reading.configured != before:
            run.write(action, change.resource_id, before, lambda: set_version(before))
        return
    reading = run.await_unanswered(action, change.resource_id, before, reading, lambda: _read(unit, run, change))
    if reading.configured != before or run.awaiting(change.resource_id):
        begin, poll = long_running
        run.write_long_running(action, change.resource_id, before, lambda: begin(before), poll)


def in_subscriptions(ports: UnitPorts, list_in: Callable[[str], Iterable[Item]]) -> tuple[Item, ...]:
    """What ``list_in`` finds in each subscription the service is configured for, in that order."""
    return tuple(item for subscription in ports.settings.subscriptions for item in list_in(subscription))


def short_name(resource_id: str) -> str:
    """The last segment of an ARM id (the resource's name)."""
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def would_repoint(label: str, changes: Sequence[ConsumerChange]) -> str:
    """A dry run's line for a re-point step: how many of ``label`` it would move, by name."""
    names = [short_name(c.resource_id) for c in changes]
    return f"would re-point {len(names)} {label}" + (f": {', '.join(names)}" if names else "")


def track_adoption(unit: ConsumerUnit[Item], run: ConsumerRun, noun: str) -> Settled:
    """Record which of ``unit``'s consumers that follow the key by themselves use the new version.

    Shared by kinds whose consumers adopt a new version on their own (versionless storage accounts,
    versionless registries, auto-rotating disk encryption sets): ``tracking`` until the read-back
    shows the new version in use, then ``adopted``. ``noun`` describes them in a dry run's line.
    """
    if run.dry_run:
        count = sum(c.kind == unit.kind and c.status == "tracking" for c in run.state.consumers)
        return Settled(True, f"would track {count} {noun} {unit.label}")
    new = run.state.new_version
    tracked = adopted = 0
    changes: list[ConsumerChange] = []
    for change in run.state.consumers:
        if change.kind != unit.kind or change.status not in ("tracking", "adopted"):
            continue
        reading = unit.read_back(run.ports, run.key, change)
        assert reading is not None
        if reading.in_use == new:
            adopted += 1
            detail = f"{reading.name}: adopted {new}"
            changes.append(replace(change, status="adopted", after=VERSIONLESS, detail=detail))
        else:
            tracked += 1
            detail = f"{reading.name}: in use {reading.in_use or 'unknown'}"
            changes.append(replace(change, status="tracking", after=VERSIONLESS, detail=detail))
    return Settled(True, f"{adopted} adopted, {tracked} still tracking", tuple(changes))
