"""A toy consumer kind, "gadget", written the way a new kind is: one unit, its own port, registered.

Nothing in ``rotation/`` knows it; the tests register it with ``REGISTRY.register(GadgetUnit(port))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from rotation.consumers import ConsumerRun, Reading, Settled, UnitPorts
from rotation.consumers.base import repoint_pinned, roll_back_pinned, would_repoint
from rotation.domain.model import Consumer, ConsumerChange, KeyRef
from rotation.domain.plan import PlanContext, UnitPlan
from rotation.domain.policy import version_of


@dataclass(frozen=True)
class Gadget:
    gadget_id: str
    name: str
    key_id: str  # a versioned key identifier (kid)


class FakeGadgets:
    """The gadget service: keeps real state; the next ``corrupt`` writes store another version."""

    def __init__(self) -> None:
        self.gadgets: dict[str, Gadget] = {}
        self.writes: list[tuple[str, str]] = []
        self.corrupt = 0

    def add(self, name: str, kid: str) -> Gadget:
        gadget = Gadget(f"/gadgets/{name}", name, kid)
        self.gadgets[gadget.gadget_id] = gadget
        return gadget

    def get(self, gadget_id: str) -> Gadget:
        return self.gadgets[gadget_id]

    def set_key(self, gadget_id: str, kid: str) -> None:
        self.writes.append((gadget_id, kid))
        stored = kid.rsplit("/", 1)[0] + "/corrupted" if self.corrupt else kid
        self.corrupt = max(0, self.corrupt - 1)
        self.gadgets[gadget_id] = replace(self.gadgets[gadget_id], key_id=stored)


class GadgetUnit:
    """Implements ``ConsumerUnit[Gadget]`` over its own port."""

    kind = "gadget"
    label = "gadgets"
    repoint_step: str | None = "repoint_gadgets"
    settle_step: str | None = None
    permissions: Mapping[str, tuple[str, ...]] = {
        "plan": ("Toy/gadgets/read",),
        "repoint_gadgets": ("Toy/gadgets/write",),
    }

    def __init__(self, gadgets: FakeGadgets) -> None:
        self.gadgets = gadgets

    def discover(self, ports: UnitPorts, key: KeyRef) -> Sequence[Gadget]:
        return tuple(self.gadgets.gadgets.values())

    def uses_key(self, item: Gadget, key: KeyRef) -> bool:
        return version_of(item.key_id, key.uri) is not None

    def plan(self, items: Sequence[Gadget], context: PlanContext) -> UnitPlan:
        pinned = {g.gadget_id: version_of(g.key_id, context.key.uri) for g in items}
        return UnitPlan(
            tuple(Consumer(self.kind, g.gadget_id, g.name, pinned[g.gadget_id], pinned[g.gadget_id]) for g in items),
            tuple(
                ConsumerChange(self.kind, g.gadget_id, pinned[g.gadget_id], context.target, "planned", g.name)
                for g in items
            ),
        )

    def references_to(self, items: Sequence[Gadget], key: KeyRef, version: str) -> tuple[str, ...]:
        return tuple(f"gadget {g.name} uses it" for g in items if version_of(g.key_id, key.uri) == version)

    def readings(self, items: Sequence[Gadget], key: KeyRef) -> Mapping[str, Reading]:
        return {}  # read one by one, as a kind without a listing is

    def repoint(
        self, run: ConsumerRun, change: ConsumerChange, observed: Reading | None = None
    ) -> ConsumerChange | None:
        if change.status != "planned":
            return None
        return repoint_pinned(
            run,
            self,
            change,
            action="set_gadget_key",
            set_version=lambda v: self.gadgets.set_key(change.resource_id, run.key.version_uri(v)),
            mismatch=lambda r: f"{r.name} reads back {r.configured}",
            detail=lambda r, new: f"{r.name} -> {new}",
        )

    def read_back(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> Reading:
        gadget = self.gadgets.get(change.resource_id)
        version = version_of(gadget.key_id, key.uri)
        return Reading(gadget.name, version, version)

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        return None if reading.configured == new_version else f"{reading.name} is not using {new_version}"

    def roll_back(self, run: ConsumerRun, change: ConsumerChange) -> None:
        assert change.before
        set_version = lambda v: self.gadgets.set_key(change.resource_id, run.key.version_uri(v))  # noqa: E731
        roll_back_pinned(run, self, change, change.before, action="rollback_gadget", set_version=set_version)

    def settle(self, run: ConsumerRun) -> Settled:
        return Settled(True, "")

    def at_retirement(self, change: ConsumerChange) -> ConsumerChange:
        return change

    def describe(self, changes: Sequence[ConsumerChange]) -> str:
        return would_repoint(self.label, changes)
