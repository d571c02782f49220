"""What the kinds found through Resource Graph share: discovery by resource type (their life once
planned is ``pinned_or_self_rotating``)."""

from __future__ import annotations

from rotation.consumers.base import UnitPorts
from rotation.domain.model import KeyRef


def ids_of_type(ports: UnitPorts, key: KeyRef, resource_type: str) -> tuple[str, ...]:
    """Ids of the resources of ``resource_type`` (lower case) whose properties name ``key``, once each.

    One Resource Graph query spans every subscription the identity can read (``KeyReferences``).
    """
    found = ports.key_references.find(key)
    return tuple(dict.fromkeys(r.resource_id for r in found if r.resource_type == resource_type))
