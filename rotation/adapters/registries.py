"""The ``ContainerRegistries`` port: a registry's customer-managed key through ARM, api-version 2025-11-01.

Wire shapes as azure-mgmt-containerregistry 15.0.0 sends them (``Registries_Get``,
``Registries_Update``: PATCH, 200 or 201 + ``Azure-AsyncOperation``; polled to the end, or sent alone
(``begin_key_identifier``) and polled one request at a time (``poll_key_update``)). The key is
changed with the identity the registry already uses for it (``keyVaultProperties.identity``), as
``az acr encryption rotate-key`` does. Permissions: ``Microsoft.ContainerRegistry/registries/read``
and ``.../write``. ARM's refusal of a key the registry cannot use (400) is ``VerificationFailed``:
the registry stays on the key it had.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rotation.adapters.arm_common import resource_id_of_type
from rotation.adapters.arm_rest import ArmRestAdapter, ArmWrite
from rotation.domain.operations import Operation, OperationPoll
from rotation.domain.references import RegistryKey
from rotation.domain.timestamps import parse_timestamp
from rotation.errors import PreconditionFailed

API_VERSION = "2025-11-01"
READ = "Microsoft.ContainerRegistry/registries/read"
WRITE = "Microsoft.ContainerRegistry/registries/write"
#: The Azure actions each operation needs (the update reads the registry first, and polls it).
ACTIONS: Mapping[str, frozenset[str]] = {
    "get_registry": frozenset({READ}),
    "set_key_identifier": frozenset({READ, WRITE}),
    "begin_key_identifier": frozenset({READ, WRITE}),
    "poll_key_update": frozenset({READ}),
}


def registry_key(body: dict[str, Any]) -> RegistryKey:
    """The CMK settings of a registry body; PreconditionFailed when it has none."""
    encryption = (body.get("properties") or {}).get("encryption") or {}
    kvp = encryption.get("keyVaultProperties") or {}
    if str(encryption.get("status", "")).lower() != "enabled" or not kvp.get("keyIdentifier"):
        raise PreconditionFailed(f"container registry {body.get('name')} does not use a customer-managed key")
    return RegistryKey(
        registry_id=str(body.get("id", "")),
        name=str(body.get("name", "")),
        key_identifier=str(kvp["keyIdentifier"]),
        versioned_key_identifier=kvp.get("versionedKeyIdentifier") or None,
        identity_client_id=kvp.get("identity") or None,
        last_key_rotation=parse_timestamp(kvp.get("lastKeyRotationTimestamp")),
        provisioning_state=str((body.get("properties") or {}).get("provisioningState") or "Succeeded"),
    )


def key_update_body(key_identifier: str, identity_client_id: str | None) -> dict[str, Any]:
    """The ``RegistryUpdateParameters`` that re-points the key, keeping the identity used for it."""
    kvp: dict[str, Any] = {"keyIdentifier": key_identifier}
    if identity_client_id:
        kvp["identity"] = identity_client_id
    return {"properties": {"encryption": {"status": "enabled", "keyVaultProperties": kvp}}}


def _check(registry_id: str) -> str:
    return resource_id_of_type(registry_id, "/providers/microsoft.containerregistry/registries/", "container registry")


class ArmContainerRegistries(ArmRestAdapter):
    """Implements ``rotation.ports.ContainerRegistries``."""

    def get_registry(self, registry_id: str) -> RegistryKey:
        body = self._rest.get(_check(registry_id), API_VERSION, f"read container registry {registry_id}", READ)
        return registry_key(body)

    def set_key_identifier(self, registry_id: str, key_identifier: str) -> RegistryKey:
        return self._rest.long_running(self._key_write(registry_id, key_identifier), registry_key)

    def begin_key_identifier(self, registry_id: str, key_identifier: str) -> Operation | None:
        return self._rest.begin(self._key_write(registry_id, key_identifier))

    def _key_write(self, registry_id: str, key_identifier: str) -> ArmWrite:
        """The PATCH that re-points the key, with the identity the registry uses for it (read first)."""
        current = self.get_registry(registry_id)
        body = key_update_body(key_identifier, current.identity_client_id)
        return ArmWrite("PATCH", registry_id, API_VERSION, body, f"re-point container registry {current.name}", WRITE)

    def poll_key_update(self, registry_id: str, operation: Operation) -> OperationPoll:
        name = registry_id.rstrip("/").rsplit("/", 1)[-1]
        return self._rest.poll(operation, what=f"re-point container registry {name}", action=READ)
