"""The consumer kinds this build knows, in order, and the run steps they imply.

Order matters: plans list consumers kind by kind in this order, and re-point steps run in it
(then settle steps, in it). Add a kind by appending its unit to ``REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rotation.consumers.base import ConsumerUnit
from rotation.consumers.container_registries import CONTAINER_REGISTRIES
from rotation.consumers.data_locations import DATA_LOCATIONS
from rotation.consumers.disk_encryption_sets import DISK_ENCRYPTION_SETS
from rotation.consumers.ml_workspaces import ML_WORKSPACES
from rotation.consumers.storage_accounts import STORAGE_ACCOUNTS
from rotation.consumers.unknown_references import UNKNOWN_REFERENCES
from rotation.domain.steps import AFTER_CONSUMERS, BEFORE_CONSUMERS, Step

AnyUnit = ConsumerUnit[Any]


@dataclass(frozen=True)
class ConsumerRegistry:
    """An ordered set of consumer units, one per kind."""

    units: tuple[AnyUnit, ...]

    def __post_init__(self) -> None:
        kinds = [u.kind for u in self.units]
        steps = [s for u in self.units for s in (u.repoint_step, u.settle_step) if s]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"a consumer kind is registered twice: {kinds}")
        if len(set(steps)) != len(steps) or set(steps) & {*BEFORE_CONSUMERS, *AFTER_CONSUMERS, Step.RETIRE}:
            raise ValueError(f"consumer steps must be unique and not the workflow's own: {steps}")

    def __iter__(self) -> Iterator[AnyUnit]:
        return iter(self.units)

    def register(self, unit: AnyUnit) -> ConsumerRegistry:
        """This registry with ``unit`` added last (a new registry; this one is unchanged)."""
        return ConsumerRegistry((*self.units, unit))

    def unit(self, kind: str) -> AnyUnit | None:
        """The unit of ``kind``, or None when this build does not know it."""
        return next((u for u in self.units if u.kind == kind), None)

    def run_steps(self) -> tuple[str, ...]:
        """The steps a rotation started now runs, in order (it records them in the journal)."""
        repoint = tuple(u.repoint_step for u in self.units if u.repoint_step)
        settle = tuple(u.settle_step for u in self.units if u.settle_step)
        return (*BEFORE_CONSUMERS, *repoint, *settle, *AFTER_CONSUMERS)

    def owner(self, step: str) -> tuple[AnyUnit, str] | None:
        """(unit, "repoint" or "settle") for a consumer step, None for the workflow's own steps."""
        for unit in self.units:
            if unit.repoint_step == step:
                return unit, "repoint"
            if unit.settle_step == step:
                return unit, "settle"
        return None

    def permissions(self, step: str) -> tuple[str, ...]:
        """The actions the units need in ``step``, each once, in registry order."""
        return tuple(dict.fromkeys(a for u in self.units for a in u.permissions.get(step, ())))


REGISTRY = ConsumerRegistry(
    (STORAGE_ACCOUNTS, ML_WORKSPACES, CONTAINER_REGISTRIES, DISK_ENCRYPTION_SETS, DATA_LOCATIONS, UNKNOWN_REFERENCES)
)

#: The steps a rotation started by this build runs (``REGISTRY.run_steps()``).
RUN_STEPS: tuple[str, ...] = REGISTRY.run_steps()

__all__ = ["REGISTRY", "RUN_STEPS", "AnyUnit", "ConsumerRegistry"]
