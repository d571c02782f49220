"""What the kinds found through Resource Graph share: discovery by resource type, and the life of a
consumer that is either pinned to a version (re-pointed, rolled back) or follows the key's newest
version by itself (tracked until it reports the new version in use)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from rotation.consumers.base import (
    ConsumerRun,
    Reading,
    Settled,
    UnitPorts,
    repoint_pinned,
    roll_back_pinned,
    track_adoption,
    would_repoint,
)
from rotation.domain.model import ConsumerChange, KeyRef
from rotation.domain.plan import VERSIONLESS


def ids_of_type(ports: UnitPorts, key: KeyRef, resource_type: str) -> tuple[str, ...]:
    """Ids of the resources of ``resource_type`` (lower case) whose properties name ``key``, once each.

    One Resource Graph query spans every subscription the identity can read (``KeyReferences``).
    """
    found = ports.key_references.find(key)
    return tuple(dict.fromkeys(r.resource_id for r in found if r.resource_type == resource_type))


class PinnedOrSelfRotating:
    """Re-point, roll back, track and retire for a kind whose consumers are pinned or follow the key.

    A subclass names its journal actions and the property it changes, and implements ``read_back``
    (``configured`` ``""`` when the consumer follows the newest version) and ``set_key`` (the write).
    """

    kind: str
    label: str
    set_action: str
    rollback_action: str
    property_label: str

    def read_back(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> Reading:
        raise NotImplementedError

    def set_key(self, ports: UnitPorts, resource_id: str, key_id: str) -> object:
        """Point the consumer at ``key_id`` (a versioned key identifier); polled to the end, read back."""
        raise NotImplementedError

    def repoint(self, run: ConsumerRun, change: ConsumerChange) -> ConsumerChange | None:
        if change.before == VERSIONLESS or change.status in ("changed", "rolled_back", "failed"):
            return None
        reading = self.read_back(run.ports, run.key, change)
        if reading.configured == "":
            return replace(change, status="tracking", after=VERSIONLESS, detail="follows the newest version; tracked")
        key = run.key
        return repoint_pinned(
            run,
            self,  # type: ignore[arg-type]  # the subclass completes ConsumerUnit
            change,
            action=self.set_action,
            set_version=lambda v: self.set_key(run.ports, change.resource_id, key.version_uri(v)),
            mismatch=lambda r: f"{r.name} reads back {r.configured}",
            detail=lambda r, new: f"{r.name}: {self.property_label} {change.before} -> {new}",
        )

    def roll_back(self, run: ConsumerRun, change: ConsumerChange) -> None:
        before = change.before
        if not before or before == VERSIONLESS:
            return
        key = run.key
        roll_back_pinned(
            run,
            self,  # type: ignore[arg-type]  # the subclass completes ConsumerUnit
            change,
            before,
            action=self.rollback_action,
            set_version=lambda v: self.set_key(run.ports, change.resource_id, key.version_uri(v)),
        )

    def settle(self, run: ConsumerRun) -> Settled:
        """Record which self-rotating consumers use the new version (tracking -> adopted)."""
        return track_adoption(self, run, "self-rotating")  # type: ignore[arg-type]  # the subclass completes it

    def at_retirement(self, change: ConsumerChange) -> ConsumerChange:
        if change.kind == self.kind and change.status == "tracking":
            return replace(change, status="adopted", detail="adopted the new version")
        return change

    def describe(self, changes: Sequence[ConsumerChange]) -> str:
        return would_repoint(f"pinned {self.label}", changes)
