"""What the kinds found through Resource Graph share: discovery by resource type (their life once
planned is ``pinned_or_self_rotating``)."""

from __future__ import annotations

from collections.abc import Sequence

from rotation.consumers.base import Item, UnitPorts
from rotation.consumers.pinned_or_self_rotating import PinnedOrSelfRotating
from rotation.domain.model import KeyRef


def ids_of_type(ports: UnitPorts, key: KeyRef, resource_type: str) -> tuple[str, ...]:
    """Ids of the resources of ``resource_type`` (lower case) whose properties name ``key``, once each.

    One Resource Graph query spans every subscription the identity can read (``KeyReferences``).
    """
    found = ports.key_references.find(key)
    return tuple(dict.fromkeys(r.resource_id for r in found if r.resource_type == resource_type))


class FoundThroughResourceGraph(PinnedOrSelfRotating[Item]):
    """A pinned-or-self-rotating kind whose consumers are the resources of ``resource_type`` that name the
    key, each read through the kind's own port (``get``)."""

    resource_type: str

    def discover(self, ports: UnitPorts, key: KeyRef) -> Sequence[Item]:
        return tuple(self.get(ports, i) for i in ids_of_type(ports, key, self.resource_type))
