"""What the kinds found through Resource Graph share: discovery by resource type, and tracking of
consumers that follow the key's newest version by themselves until they report it in use."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rotation.consumers.base import ConsumerRun, ConsumerUnit, Settled, UnitPorts
from rotation.domain.model import ConsumerChange, KeyRef
from rotation.domain.plan import VERSIONLESS


def ids_of_type(ports: UnitPorts, key: KeyRef, resource_type: str) -> tuple[str, ...]:
    """Ids of the resources of ``resource_type`` (lower case) whose properties name ``key``, once each.

    One Resource Graph query spans every subscription the identity can read (``KeyReferences``).
    """
    found = ports.key_references.find(key)
    return tuple(dict.fromkeys(r.resource_id for r in found if r.resource_type == resource_type))


def track_adoption(unit: ConsumerUnit[Any], run: ConsumerRun) -> Settled:
    """Record which self-rotating consumers of ``unit``'s kind use the new version (tracking -> adopted)."""
    if run.dry_run:
        count = sum(c.kind == unit.kind and c.status == "tracking" for c in run.state.consumers)
        return Settled(True, f"would track {count} self-rotating {unit.label}")
    new = run.state.new_version
    tracked = adopted = 0
    changes: list[ConsumerChange] = []
    for change in run.state.consumers:
        if change.kind != unit.kind or change.status not in ("tracking", "adopted"):
            continue
        reading = unit.read_back(run.ports, run.key, change)
        if reading is not None and reading.in_use == new:
            adopted += 1
            detail = f"{reading.name}: adopted {new}"
            changes.append(replace(change, status="adopted", after=VERSIONLESS, detail=detail))
        else:
            tracked += 1
            in_use = reading.in_use if reading is not None else None
            detail = f"{reading.name if reading else change.resource_id}: in use {in_use or 'unknown'}"
            changes.append(replace(change, status="tracking", after=VERSIONLESS, detail=detail))
    return Settled(True, f"{adopted} adopted, {tracked} still tracking", tuple(changes))
