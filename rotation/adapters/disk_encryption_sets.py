"""The ``DiskEncryptionSets`` port: a disk encryption set's active key through ARM, api-version 2026-03-02.

Wire shapes as azure-mgmt-compute 39.0.0 sends them (``DiskEncryptionSets_Get``,
``DiskEncryptionSets_Update``: PATCH, 200 or 202 + ``Location``; polled to the end, or sent alone
(``begin_active_key``) and polled one request at a time (``poll_key_update``)). The key URL must
be versioned; ``sourceVault`` is kept as it was. Permissions: ``Microsoft.Compute/diskEncryptionSets/read``
and ``.../write``. ARM's refusal of a key the set's identity cannot use (400) is ``VerificationFailed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rotation.adapters.arm_common import resource_id_of_type
from rotation.adapters.arm_rest import ArmRestAdapter, ArmWrite
from rotation.domain.model import KeyRef
from rotation.domain.operations import Operation, OperationPoll
from rotation.domain.references import DiskEncryptionSetKey
from rotation.domain.timestamps import parse_timestamp
from rotation.errors import InputError, PreconditionFailed

API_VERSION = "2026-03-02"
READ = "Microsoft.Compute/diskEncryptionSets/read"
WRITE = "Microsoft.Compute/diskEncryptionSets/write"
#: The Azure actions each operation needs (the update reads the set first, and polls it).
ACTIONS: Mapping[str, frozenset[str]] = {
    "get_set": frozenset({READ}),
    "set_active_key": frozenset({READ, WRITE}),
    "begin_active_key": frozenset({READ, WRITE}),
    "poll_key_update": frozenset({READ}),
}


def set_key(body: dict[str, Any]) -> DiskEncryptionSetKey:
    properties = body.get("properties") or {}
    active = properties.get("activeKey") or {}
    if not active.get("keyUrl"):
        raise PreconditionFailed(f"disk encryption set {body.get('name')} has no active key")
    error = properties.get("autoKeyRotationError") or {}
    return DiskEncryptionSetKey(
        set_id=str(body.get("id", "")),
        name=str(body.get("name", "")),
        key_url=str(active["keyUrl"]),
        source_vault_id=(active.get("sourceVault") or {}).get("id") or None,
        previous_key_urls=tuple(str(k["keyUrl"]) for k in properties.get("previousKeys") or [] if k.get("keyUrl")),
        auto_rotation=bool(properties.get("rotationToLatestKeyVersionEnabled", False)),
        identity_principal_id=(body.get("identity") or {}).get("principalId") or None,
        last_key_rotation=parse_timestamp(properties.get("lastKeyRotationTimestamp")),
        auto_rotation_error=f"{error.get('code')}: {error.get('message')}" if error else None,
        provisioning_state=str(properties.get("provisioningState") or "Succeeded"),
    )


def active_key_body(key_url: str, source_vault_id: str | None) -> dict[str, Any]:
    """The ``DiskEncryptionSetUpdate`` that re-points the active key, keeping ``sourceVault``."""
    active: dict[str, Any] = {"keyUrl": key_url}
    if source_vault_id:
        active["sourceVault"] = {"id": source_vault_id}
    return {"properties": {"activeKey": active}}


def _check(set_id: str) -> str:
    return resource_id_of_type(set_id, "/providers/microsoft.compute/diskencryptionsets/", "disk encryption set")


class ArmDiskEncryptionSets(ArmRestAdapter):
    """Implements ``rotation.ports.DiskEncryptionSets``."""

    def get_set(self, set_id: str) -> DiskEncryptionSetKey:
        return set_key(self._rest.get(_check(set_id), API_VERSION, f"read disk encryption set {set_id}", READ))

    def begin_active_key(self, set_id: str, key_url: str) -> Operation | None:
        return self._rest.begin(self._key_write(set_id, key_url))

    def poll_key_update(self, set_id: str, operation: Operation) -> OperationPoll:
        name = set_id.rstrip("/").rsplit("/", 1)[-1]
        return self._rest.poll(operation, what=f"re-point disk encryption set {name}", action=READ)

    def set_active_key(self, set_id: str, key_url: str) -> DiskEncryptionSetKey:
        return self._rest.long_running(self._key_write(set_id, key_url), set_key)

    def _key_write(self, set_id: str, key_url: str) -> ArmWrite:
        """The PATCH that re-points the active key (a versioned URL), keeping ``sourceVault`` (read first)."""
        if KeyRef.parse(key_url)[1] is None:
            raise InputError(f"{key_url!r} has no version: a disk encryption set needs a versioned key URL")
        current = self.get_set(set_id)
        body = active_key_body(key_url, current.source_vault_id)
        return ArmWrite("PATCH", set_id, API_VERSION, body, f"re-point disk encryption set {current.name}", WRITE)
