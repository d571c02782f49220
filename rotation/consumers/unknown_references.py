"""References to a key by resources no unit rotates: they block the retirement of what they name.

Resource Graph finds every property, of every resource the identity can read, that names the key
(``KeyReferences``). Those of kinds a unit handles — registries and disk encryption sets anywhere,
storage accounts and ML workspaces in ``ROTATION_SUBSCRIPTIONS`` — are that unit's. Everything else
(a Cosmos DB account, a SQL server, a storage account in a subscription the service was not told
about, ...) is an **unknown reference**: listed in the plan by resource id and property path with the
version it names, never changed, and blocking the retirement of that version — or, when it names
the key without a version, of every version, since the version it uses cannot be shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rotation.consumers.base import ConsumerRun, Reading, Settled, UnitPorts, short_name
from rotation.consumers.container_registries import TYPE as REGISTRY_TYPE
from rotation.consumers.disk_encryption_sets import TYPE as DES_TYPE
from rotation.domain.model import Consumer, ConsumerChange, KeyRef
from rotation.domain.plan import VERSIONLESS, PlanContext, UnitPlan
from rotation.domain.references import KeyReference

KIND = "unknown_reference"
#: Types a unit handles wherever they are.
HANDLED_EVERYWHERE = (REGISTRY_TYPE, DES_TYPE)
#: Types a unit handles in the configured subscriptions only.
HANDLED_IN_SUBSCRIPTIONS = ("microsoft.storage/storageaccounts", "microsoft.machinelearningservices/workspaces")


def is_unknown(reference: KeyReference, subscriptions: Sequence[str]) -> bool:
    if reference.resource_type in HANDLED_EVERYWHERE:
        return False
    in_scope = reference.subscription_id.lower() in {s.lower() for s in subscriptions}
    return not (reference.resource_type in HANDLED_IN_SUBSCRIPTIONS and in_scope)


def where(reference: KeyReference) -> str:
    return f"{reference.resource_id} ({reference.property_path})"


class UnknownReferenceUnit:
    """Implements ``ConsumerUnit[KeyReference]``: nothing to change, everything to report."""

    kind: str = KIND
    label = "unknown references"
    repoint_step: str | None = None
    settle_step: str | None = None
    permissions: Mapping[str, tuple[str, ...]] = {"plan": ("Microsoft.ResourceGraph/resources/read",)}

    def discover(self, ports: UnitPorts, key: KeyRef) -> Sequence[KeyReference]:
        subscriptions = ports.settings.subscriptions
        return tuple(r for r in ports.key_references.find(key) if is_unknown(r, subscriptions))

    def uses_key(self, item: KeyReference, key: KeyRef) -> bool:
        return True  # the adapter returns only properties that name the key

    def plan(self, items: Sequence[KeyReference], context: PlanContext) -> UnitPlan:
        consumers: list[Consumer] = []
        changes: list[ConsumerChange] = []
        for ref in sorted(items, key=lambda r: (r.resource_id.lower(), r.property_path)):
            name = f"{short_name(ref.resource_id)} ({ref.property_path})"
            consumers.append(Consumer(self.kind, ref.resource_id, name, ref.version, ref.version))
            names = ref.version or "the key without a version (version in use unknown)"
            detail = (
                f"{ref.resource_type} {where(ref)} names {names}; not rotated by this service: retirement of that "
                "version waits until it names another (see the runbook)"
            )
            changes.append(
                ConsumerChange(self.kind, ref.resource_id, ref.version or VERSIONLESS, None, "unchanged", detail)
            )
        return UnitPlan(tuple(consumers), tuple(changes))

    def references_to(self, items: Sequence[KeyReference], key: KeyRef, version: str) -> tuple[str, ...]:
        found: list[str] = []
        for ref in items:
            if ref.version == version:
                found.append(f"unknown reference: {ref.resource_type} {where(ref)} names it")
            elif ref.version is None:
                found.append(
                    f"unknown reference: {ref.resource_type} {where(ref)} names the key without a version; "
                    "the version it uses cannot be shown"
                )
        return tuple(found)

    def readings(self, items: Sequence[KeyReference], key: KeyRef) -> Mapping[str, Reading]:
        return {}

    def repoint(
        self, run: ConsumerRun, change: ConsumerChange, observed: Reading | None = None
    ) -> ConsumerChange | None:
        return None

    def read_back(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> Reading | None:
        return None

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        return None

    def roll_back(self, run: ConsumerRun, change: ConsumerChange) -> None:
        return None

    def settle(self, run: ConsumerRun) -> Settled:
        return Settled(True, "nothing to settle", skipped=True)

    def at_retirement(self, change: ConsumerChange) -> ConsumerChange:
        return change

    def describe(self, changes: Sequence[ConsumerChange]) -> str:
        return f"{len(changes)} {self.label}: reported, not changed"


UNKNOWN_REFERENCES = UnknownReferenceUnit()
