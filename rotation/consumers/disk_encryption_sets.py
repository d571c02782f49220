"""Disk encryption sets (``Microsoft.Compute/diskEncryptionSets``): the key behind managed disks.

Found through Resource Graph (``KeyReferences``). A set's ``activeKey.keyUrl`` always names a
version. Without ``rotationToLatestKeyVersionEnabled`` the set is pinned and ``repoint_disk_encryption_sets``
moves it (a long-running PATCH whose polling URL is journalled, then polled). With it, the set moves
to the newest version by itself "within one hour", so it is tracked by ``track_disk_encryption_sets``
until its active key is the new version. While a change is in progress the old key stays in ``previousKeys``: every key
in ``activeKey`` or ``previousKeys`` is in use and blocks the retirement of its version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rotation.consumers.base import ConsumerRun, LongRunning, Reading, UnitPorts
from rotation.consumers.via_resource_graph import FoundThroughResourceGraph
from rotation.domain.model import Consumer, ConsumerChange, KeyRef
from rotation.domain.policy import version_of
from rotation.domain.references import DiskEncryptionSetKey

KIND = "disk_encryption_set"
TYPE = "microsoft.compute/diskencryptionsets"
READ = "Microsoft.Compute/diskEncryptionSets/read"
WRITE = "Microsoft.Compute/diskEncryptionSets/write"


def versions_in_use(des: DiskEncryptionSetKey, key: KeyRef) -> tuple[str, ...]:
    """The versions of ``key`` the set uses: its active key's, then any previous key's still in use."""
    found = (version_of(url, key.uri) for url in des.key_urls_in_use)
    return tuple(dict.fromkeys(v for v in found if v))


class DiskEncryptionSetUnit(FoundThroughResourceGraph[DiskEncryptionSetKey]):
    """Implements ``ConsumerUnit[DiskEncryptionSetKey]``."""

    kind: str = KIND
    resource_type = TYPE
    label = "disk encryption sets"
    repoint_step: str | None = "repoint_disk_encryption_sets"
    settle_step: str | None = "track_disk_encryption_sets"
    set_action = "set_disk_encryption_set_key"
    rollback_action = "rollback_disk_encryption_set_key"
    property_label = "activeKey"
    follows_detail = "follows the latest version by itself"
    permissions: Mapping[str, tuple[str, ...]] = {"plan": (READ,), "repoint_disk_encryption_sets": (WRITE,)}

    def uses_key(self, item: DiskEncryptionSetKey, key: KeyRef) -> bool:
        return bool(versions_in_use(item, key))

    def consumer(self, item: DiskEncryptionSetKey, key: KeyRef) -> Consumer:
        active = version_of(item.key_url, key.uri) or None
        in_use = ", ".join(versions_in_use(item, key)) or None
        pinned = None if item.auto_rotation else active
        return Consumer(self.kind, item.set_id, item.name, pinned, in_use, item.identity_principal_id)

    def follows_key(self, item: DiskEncryptionSetKey, consumer: Consumer) -> bool:
        return item.auto_rotation

    def references_to(self, items: Sequence[DiskEncryptionSetKey], key: KeyRef, version: str) -> tuple[str, ...]:
        found: list[str] = []
        for des in items:
            if version_of(des.key_url, key.uri) == version:
                found.append(f"disk encryption set {des.name} has it as its active key")
            elif version in versions_in_use(des, key):
                found.append(f"disk encryption set {des.name} still uses it (previous key, change in progress)")
        return tuple(found)

    def get(self, ports: UnitPorts, resource_id: str) -> DiskEncryptionSetKey:
        return ports.disk_encryption_sets.get_set(resource_id)

    def reading(self, des: DiskEncryptionSetKey, key: KeyRef) -> Reading:
        active = version_of(des.key_url, key.uri)
        configured = "" if des.auto_rotation and active is not None else active
        in_use = versions_in_use(des, key)
        return Reading(des.name, configured, in_use[0] if len(in_use) == 1 else None, des.provisioning_state)

    def set_version(self, run: ConsumerRun, resource_id: str, version: str) -> object:
        return run.ports.disk_encryption_sets.set_active_key(resource_id, run.key.version_uri(version))

    def long_running(self, run: ConsumerRun, resource_id: str) -> LongRunning:
        sets, key = run.ports.disk_encryption_sets, run.key
        return (
            lambda version: sets.begin_active_key(resource_id, key.version_uri(version)),
            lambda operation: sets.poll_key_update(resource_id, operation),
        )

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        # A previous key may stay in use while Azure re-wraps the disks: that blocks retirement, not the rotation.
        if reading.configured != new_version:
            return f"{reading.name} is not using {new_version} (active: {reading.configured})"
        return None


DISK_ENCRYPTION_SETS = DiskEncryptionSetUnit()
