"""Container registries with customer-managed keys (``Microsoft.ContainerRegistry/registries``).

Found through Resource Graph (``KeyReferences``: every subscription the identity can read). A
registry pinned to a version (``keyIdentifier`` with a version) is re-pointed by
``repoint_registries`` (a long-running PATCH whose polling URL is journalled, then polled). A versionless one
rotates by itself "within 1 hour" (learn.microsoft.com, container-registry-customer-managed-keys),
so it is tracked by ``track_registries`` until ``versionedKeyIdentifier`` shows the new version, and
it blocks retirement until then — as does one whose version in use cannot be read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rotation.consumers.base import ConsumerRun, LongRunning, Reading, UnitPorts
from rotation.consumers.via_resource_graph import FoundThroughResourceGraph
from rotation.domain.model import Consumer, ConsumerChange, KeyRef
from rotation.domain.policy import version_of
from rotation.domain.references import RegistryKey

KIND = "container_registry"
TYPE = "microsoft.containerregistry/registries"
READ = "Microsoft.ContainerRegistry/registries/read"
WRITE = "Microsoft.ContainerRegistry/registries/write"


class ContainerRegistryUnit(FoundThroughResourceGraph[RegistryKey]):
    """Implements ``ConsumerUnit[RegistryKey]``."""

    kind: str = KIND
    resource_type = TYPE
    label = "container registries"
    repoint_step: str | None = "repoint_registries"
    settle_step: str | None = "track_registries"
    set_action = "set_registry_key"
    rollback_action = "rollback_registry_key"
    property_label = "keyIdentifier"
    follows_detail = "versionless, rotates by itself within the hour"
    permissions: Mapping[str, tuple[str, ...]] = {"plan": (READ,), "repoint_registries": (WRITE,)}

    def uses_key(self, item: RegistryKey, key: KeyRef) -> bool:
        return version_of(item.key_identifier, key.uri) is not None

    def consumer(self, item: RegistryKey, key: KeyRef) -> Consumer:
        reading = self.reading(item, key)
        return Consumer(self.kind, item.registry_id, item.name, reading.configured or None, reading.in_use)

    def references_to(self, items: Sequence[RegistryKey], key: KeyRef, version: str) -> tuple[str, ...]:
        found: list[str] = []
        for registry in items:
            reading = self.reading(registry, key)
            if reading.configured == version:
                found.append(f"container registry {registry.name} is pinned to it")
            elif reading.in_use == version:
                found.append(f"container registry {registry.name} still uses it (versionless, not yet adopted)")
            elif reading.configured == "" and reading.in_use is None:
                found.append(f"container registry {registry.name} is versionless and its version in use is unknown")
        return tuple(found)

    def get(self, ports: UnitPorts, resource_id: str) -> RegistryKey:
        return ports.container_registries.get_registry(resource_id)

    def reading(self, registry: RegistryKey, key: KeyRef) -> Reading:
        return Reading(
            registry.name,
            version_of(registry.key_identifier, key.uri),
            version_of(registry.versioned_key_identifier, key.uri) or None,
            registry.provisioning_state,
        )

    def set_version(self, run: ConsumerRun, resource_id: str, version: str) -> object:
        return run.ports.container_registries.set_key_identifier(resource_id, run.key.version_uri(version))

    def long_running(self, run: ConsumerRun, resource_id: str) -> LongRunning:
        registries, key = run.ports.container_registries, run.key
        return (
            lambda version: registries.begin_key_identifier(resource_id, key.version_uri(version)),
            lambda operation: registries.poll_key_update(resource_id, operation),
        )

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        if reading.configured != new_version or reading.in_use not in (None, new_version):
            return f"{reading.name} is not using {new_version} (in use: {reading.in_use})"
        return None


CONTAINER_REGISTRIES = ContainerRegistryUnit()
