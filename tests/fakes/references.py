"""In-memory container registries, disk encryption sets and Resource Graph over them (and anything else).

``FakeKeyReferences`` reads the registries and sets of the other two fakes plus resources added with
``add_resource`` (any type, any subscription), and finds references the way the adapter does
(``rotation.adapters.resource_graph.references_in``, a pure function over one row).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rotation.adapters.resource_graph import references_in
from rotation.domain.model import KeyRef
from rotation.domain.operations import Operation, OperationPoll
from rotation.domain.references import DiskEncryptionSetKey, KeyReference, RegistryKey
from rotation.errors import InputError
from tests.fakes.arm import SUBSCRIPTION, FakeConsumerProvider, arm_id_of
from tests.fakes.faults import Faults


class _FakeAnsweredAtOnce(FakeConsumerProvider):
    """A provider of one ``kind`` of resource whose key writes ARM answers at once: there is never an operation
    to poll."""

    def poll_key_update(self, resource_id: str, operation: Operation) -> OperationPoll:
        raise AssertionError(f"no operation was accepted for {resource_id}")

    def _version_to_write(self, key_id: str, name: str) -> str | None:
        """The version ``key_id`` names (None: versionless), unless Azure refuses it for the resource ``name``."""
        _, version = KeyRef.parse(key_id)
        self._check_refused(version, f"could not re-point {self.kind} {name}: the key was refused")
        return version


class FakeContainerRegistries(_FakeAnsweredAtOnce):
    """Implements ``rotation.ports.ContainerRegistries``. Versionless registries adopt on ``auto_rotate``."""

    kind = "container registry"

    def __init__(self) -> None:
        super().__init__()
        self.registries: dict[str, RegistryKey] = {}

    def add(self, name: str, key: KeyRef, version: str | None, *, in_use: str | None = None) -> RegistryKey:
        """A registry pinned to ``version``, or versionless (None) using ``in_use``."""
        identifier = key.version_uri(version) if version else key.uri
        used = version or in_use
        registry = RegistryKey(
            arm_id_of("Microsoft.ContainerRegistry/registries", name),
            name,
            identifier,
            key.version_uri(used) if used else None,
            "client-id",
        )
        self.registries[registry.registry_id.lower()] = registry
        return registry

    def auto_rotate(self, registry_id: str, key: KeyRef, version: str) -> None:
        """The registry's own hourly check: a versionless registry starts using ``version``."""
        registry = self.registries[registry_id.lower()]
        assert registry.versionless
        self.registries[registry_id.lower()] = replace(registry, versioned_key_identifier=key.version_uri(version))

    def get_registry(self, registry_id: str) -> RegistryKey:
        return self._read("get_registry", self.registries, registry_id)

    def set_key_identifier(self, registry_id: str, key_identifier: str) -> RegistryKey:
        self.faults.check("set_key_identifier")
        registry = self.get_registry(registry_id)
        version = self._version_to_write(key_identifier, registry.name)
        in_use = key_identifier if version else (registry.versioned_key_identifier or None)
        updated = replace(registry, key_identifier=key_identifier, versioned_key_identifier=in_use)
        return self._written(self.registries, registry_id, updated, key_identifier)

    def begin_key_identifier(self, registry_id: str, key_identifier: str) -> Operation | None:
        """Answered at once (the workspaces fake models operations that outlast an invocation)."""
        self.set_key_identifier(registry_id, key_identifier)
        return None


class FakeDiskEncryptionSets(_FakeAnsweredAtOnce):
    """Implements ``rotation.ports.DiskEncryptionSets``. Sets with auto rotation adopt on ``auto_rotate``."""

    kind = "disk encryption set"

    def __init__(self) -> None:
        super().__init__()
        self.sets: dict[str, DiskEncryptionSetKey] = {}

    def add(self, name: str, key: KeyRef, version: str, *, auto_rotation: bool = False) -> DiskEncryptionSetKey:
        des = DiskEncryptionSetKey(
            arm_id_of("Microsoft.Compute/diskEncryptionSets", name),
            name,
            key.version_uri(version),
            None,
            (),
            auto_rotation,
        )
        self.sets[des.set_id.lower()] = des
        return des

    def auto_rotate(self, set_id: str, key: KeyRef, version: str, *, finished: bool = False) -> None:
        """The set's own check moves it to ``version``; the old key stays in previousKeys until ``finished``."""
        des = self.sets[set_id.lower()]
        previous = () if finished else (des.key_url,)
        self.sets[set_id.lower()] = replace(des, key_url=key.version_uri(version), previous_key_urls=previous)

    def get_set(self, set_id: str) -> DiskEncryptionSetKey:
        return self._read("get_set", self.sets, set_id)

    def set_active_key(self, set_id: str, key_url: str) -> DiskEncryptionSetKey:
        self.faults.check("set_active_key")
        des = self.get_set(set_id)
        if self._version_to_write(key_url, des.name) is None:
            raise InputError(f"{key_url!r} has no version")
        updated = replace(des, key_url=key_url, previous_key_urls=())
        return self._written(self.sets, set_id, updated, key_url)

    def begin_active_key(self, set_id: str, key_url: str) -> Operation | None:
        """Answered at once (the workspaces fake models operations that outlast an invocation)."""
        self.set_active_key(set_id, key_url)
        return None


class FakeKeyReferences:
    """Implements ``rotation.ports.KeyReferences`` over the other fakes and any added resource."""

    def __init__(
        self, registries: FakeContainerRegistries | None = None, sets: FakeDiskEncryptionSets | None = None
    ) -> None:
        self.registries = registries
        self.sets = sets
        self.resources: dict[str, dict[str, Any]] = {}
        self.queries = 0
        self.faults = Faults()

    def add_resource(
        self, resource_type: str, name: str, properties: dict[str, Any], *, subscription: str = SUBSCRIPTION
    ) -> str:
        """A resource of any type whose ``properties`` may name a key; returns its id."""
        resource_id = arm_id_of(resource_type, name, subscription)
        self.resources[resource_id.lower()] = {
            "id": resource_id,
            "type": resource_type.lower(),
            "subscriptionId": subscription,
            "properties": properties,
        }
        return resource_id

    def remove_resource(self, resource_id: str) -> None:
        del self.resources[resource_id.lower()]

    def _rows(self) -> list[dict[str, Any]]:
        rows = list(self.resources.values())
        for registry in self.registries.registries.values() if self.registries else ():
            kvp = {
                "keyIdentifier": registry.key_identifier,
                "versionedKeyIdentifier": registry.versioned_key_identifier,
            }
            rows.append(self._row(registry.registry_id, {"encryption": {"keyVaultProperties": kvp}}))
        for des in self.sets.sets.values() if self.sets else ():
            previous = [{"keyUrl": url} for url in des.previous_key_urls]
            rows.append(self._row(des.set_id, {"activeKey": {"keyUrl": des.key_url}, "previousKeys": previous}))
        return rows

    @staticmethod
    def _row(resource_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        parts = resource_id.split("/")
        return {
            "id": resource_id,
            "type": f"{parts[6]}/{parts[7]}".lower(),
            "subscriptionId": parts[2],
            "properties": properties,
        }

    def find(self, key: KeyRef) -> list[KeyReference]:
        self.faults.check("find")
        self.queries += 1
        return [ref for row in self._rows() for ref in references_in(row, key)]
