"""Poisoned re-wrap work items are sent again by the sweep's progress poll, with back-off (Azurite)."""

from __future__ import annotations

import json
from typing import Any

from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from rotation.errors import PermissionDenied
from rotation.rewrap.adapter import BlobDataKeys
from rotation.rewrap.queue import drain
from tests.integration.rewrap_helpers import LocalKeyRing, location_of
from tests.integration.test_rewrap_blobs import (
    KEY,
    adapter,
    ring,
    settings_for,
    upload,
    work_queues,
)

__all__ = ["ring"]  # the fixture (``container`` is the shared one in tests/conftest.py)


class Outage:
    """Key Vault refuses unwraps while ``down`` (a role assignment not yet propagated); then they go through."""

    def __init__(self, ring: LocalKeyRing) -> None:
        self.ring = ring
        self.down = True

    def unwrap(self, key_id: str, algorithm: str, encrypted_key: bytes) -> bytes:
        if self.down:
            raise PermissionDenied("Key Vault HTTP 403 (Forbidden)", "keys/unwrap/action")
        return self.ring.unwrap(key_id, algorithm, encrypted_key)


def poisoned_run(
    local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient, name: str, **kwargs: Any
) -> tuple[BlobDataKeys, Outage, str, QueueClient, QueueClient]:
    """One blob on an old version whose only work item went to the poison queue: (keys, outage, new, queues)."""
    old, new = ring.new_version(), ring.new_version()
    upload(container, ring, old, name, name.encode(), "2.0")
    settings = settings_for(local_azure, container)
    outage = Outage(ring)
    keys = adapter(local_azure, container, ring, new, settings=settings, inline=False, unwrapper=outage, **kwargs)
    queue, poison = work_queues(settings)
    keys.begin_rewrap(f"rot-{name}", KEY, new, [location_of(container)])
    drain(queue, poison, keys.handle_message, idle_s=0.3)
    return keys, outage, new, queue, poison


class TestPoisonRedrive:
    def test_a_poisoned_item_is_sent_again_after_its_back_off_and_finishes(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        keys, outage, new, queue, poison = poisoned_run(local_azure, ring, container, "rd", redrive_base_s=0.0)
        _, poisoned = keys.rewrap_progress("rot-rd")  # re-drives the item: its back-off (0 s) has passed

        outage.down = False
        drain(queue, poison, keys.handle_message, idle_s=0.3)
        done, summary = keys.rewrap_progress("rot-rd")

        assert poisoned.poison_messages == 0  # sent again, pending
        assert done is True
        assert summary.rewrapped == 1
        assert summary.poison_messages == 0
        metadata = json.loads(container.get_blob_client("rd").get_blob_properties().metadata["encryptiondata"])
        assert metadata["WrappedContentKey"]["KeyId"] == KEY.version_uri(new)
        keys.close()

    def test_not_sent_again_before_its_back_off(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        keys, _, _, queue, _ = poisoned_run(local_azure, ring, container, "rs")

        done, summary = keys.rewrap_progress("rot-rs")

        assert done is False
        assert summary.poison_messages == 1
        assert not list(queue.peek_messages(max_messages=5))
        keys.close()
