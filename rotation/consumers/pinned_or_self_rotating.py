"""The life of a consumer that is either pinned to a key version or follows the key's newest version.

Storage accounts, container registries and disk encryption sets behave alike: a pinned one is planned
to move to the new version, re-pointed (read, write journalled, read back) and rolled back; one that
follows the key by itself is planned as tracked, tracked until it reports the new version in use,
and blocks retirement until then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Generic

from rotation.consumers.base import (
    ConsumerRun,
    Item,
    LongRunning,
    Reading,
    Settled,
    UnitPorts,
    repoint_pinned,
    roll_back_pinned,
    track_adoption,
    would_repoint,
)
from rotation.domain.model import Consumer, ConsumerChange, KeyRef
from rotation.domain.plan import VERSIONLESS, PlanContext, UnitPlan


class PinnedOrSelfRotating(Generic[Item]):
    """Plan, re-point, roll back, track and retire for a kind whose consumers are pinned or follow the key.

    A subclass names its journal actions, the property it changes and how its self-rotating consumers
    are described, and implements ``consumer`` (an item as the plan lists it), ``get`` (an item read through
    its port), ``reading`` (``configured`` ``""`` when the consumer follows the newest version) and
    ``set_version`` (the write).
    """

    kind: str
    label: str
    set_action: str
    rollback_action: str
    property_label: str
    #: How the consumers that follow the key by themselves are called in a dry run ("versionless").
    self_rotating_noun: str = "self-rotating"
    #: The recorded detail when a consumer planned as pinned turns out to follow the key by itself.
    found_self_rotating: str = "follows the newest version; tracked"
    #: How a consumer follows the key by itself, in its planned change ("versionless").
    follows_detail: str

    def consumer(self, item: Item, key: KeyRef) -> Consumer:
        """``item`` as a consumer of ``key``: the version it is pinned to and the version it uses."""
        raise NotImplementedError

    def follows_key(self, item: Item, consumer: Consumer) -> bool:
        """Whether ``item`` moves to the key's newest version by itself (tracked, not re-pointed): by
        default when it is pinned to no version of the key."""
        return consumer.pinned_version is None

    def plan(self, items: Sequence[Item], context: PlanContext) -> UnitPlan:
        planned = sorted(((self.consumer(i, context.key), i) for i in items), key=lambda p: p[0].resource_id.lower())
        changes = (self._planned_change(c, self.follows_key(i, c), context.target) for c, i in planned)
        return UnitPlan(tuple(c for c, _ in planned), tuple(changes))

    def _planned_change(self, consumer: Consumer, follows: bool, target: str | None) -> ConsumerChange:
        name, pinned = consumer.name, consumer.pinned_version
        if follows:
            in_use = consumer.version_in_use or "unknown"
            detail = f"{name}: {self.follows_detail} (in use: {in_use}); tracked until it adopts"
            return ConsumerChange(self.kind, consumer.resource_id, VERSIONLESS, VERSIONLESS, "tracking", detail)
        detail = f"{name}: {self.property_label} {pinned} -> {target or 'the new version'}"
        return ConsumerChange(self.kind, consumer.resource_id, pinned, target, "planned", detail)

    def get(self, ports: UnitPorts, resource_id: str) -> Item:
        """The consumer ``resource_id`` as its port reads it now."""
        raise NotImplementedError

    def reading(self, item: Item, key: KeyRef) -> Reading:
        """``item``'s configured version of ``key`` (``""`` when it follows the newest) and the version in use."""
        raise NotImplementedError

    def readings(self, items: Sequence[Item], key: KeyRef) -> Mapping[str, Reading]:
        return {self.consumer(i, key).resource_id.lower(): self.reading(i, key) for i in items}

    def read_back(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> Reading:
        return self.reading(self.get(ports, change.resource_id), key)

    def set_version(self, run: ConsumerRun, resource_id: str, version: str) -> object:
        """Point the consumer at ``version`` of the run's key, answered at once or polled to the end (re-points
        and roll-backs use ``long_running`` instead when a kind gives it)."""
        raise NotImplementedError

    def read_before_write(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> tuple[Reading, Item | None]:
        """The consumer as a re-point reads it before writing, and the item its write may be based on (None:
        the write reads what it needs itself). One read: ARM's read bucket refills 25/s against writes' 10/s,
        so a re-point reads twice per write at most (before and after)."""
        return self.read_back(ports, key, change), None

    def set_version_based_on(self, run: ConsumerRun, resource_id: str, version: str, item: Item | None) -> object:
        """``set_version``, given the ``item`` ``read_before_write`` read (by default not needed)."""
        return self.set_version(run, resource_id, version)

    def long_running(self, run: ConsumerRun, resource_id: str) -> LongRunning | None:
        """The re-point as a long-running operation (begin, poll) whose polling URL is journalled and polled
        across invocations, or None when the write is answered at once (the default)."""
        return None

    def answered(self, answer: object, key: KeyRef) -> Reading | None:
        """The consumer as ``set_version``'s answer shows it, or None (the default) to read it back."""
        return None

    def repoint(
        self, run: ConsumerRun, change: ConsumerChange, observed: Reading | None = None
    ) -> ConsumerChange | None:
        if change.before == VERSIONLESS or change.status in ("changed", "rolled_back", "failed"):
            return None
        # Seen by the step's discovery: no read of its own (a write that needs more reads it itself).
        reading, item = (observed, None) if observed is not None else self.read_before_write(run.ports, run.key, change)
        if reading.configured == "":
            return replace(change, status="tracking", after=VERSIONLESS, detail=self.found_self_rotating)
        key = run.key
        return repoint_pinned(
            run,
            self,  # type: ignore[arg-type]  # the subclass completes ConsumerUnit
            change,
            reading=reading,
            action=self.set_action,
            set_version=lambda v: self.set_version_based_on(run, change.resource_id, v, item),
            mismatch=lambda r: f"{r.name} reads back {r.configured}",
            detail=lambda r, new: f"{r.name}: {self.property_label} {change.before} -> {new}",
            long_running=self.long_running(run, change.resource_id),
            answered=lambda answer: self.answered(answer, key),
        )

    def roll_back(self, run: ConsumerRun, change: ConsumerChange) -> None:
        before = change.before
        if not before or before == VERSIONLESS:
            return
        roll_back_pinned(
            run,
            self,  # type: ignore[arg-type]  # the subclass completes ConsumerUnit
            change,
            before,
            action=self.rollback_action,
            set_version=lambda v: self.set_version(run, change.resource_id, v),
            long_running=self.long_running(run, change.resource_id),
        )

    def settle(self, run: ConsumerRun) -> Settled:
        """Record which self-rotating consumers use the new version (tracking -> adopted)."""
        return track_adoption(self, run, self.self_rotating_noun)  # type: ignore[arg-type]  # the subclass completes it

    def at_retirement(self, change: ConsumerChange) -> ConsumerChange:
        if change.kind == self.kind and change.status == "tracking":
            return replace(change, status="adopted", detail="adopted the new version")
        return change

    def describe(self, changes: Sequence[ConsumerChange]) -> str:
        return would_repoint(f"pinned {self.label}", changes)
