"""A blob whose own state refuses Set Blob Metadata is that blob's failure, not its page's.

Real client-side-encrypted blobs (the SDK's encryption, protocol 2.0) on Azurite. Each shape is put on
one blob in the middle of a page: the re-wrap records it by name and error code, re-wraps every other
blob of the page and of the run, finishes (done, with the failure listed, which keeps the old version
enabled) and never poisons the work item.

Shapes and where they come from: a lease (Azurite itself answers 412 ``LeaseIdMissing``); a legal hold
(409 ``BlobImmutableDueToLegalHold``), an immutability policy (409 ``BlobImmutableDueToPolicy``) and the
archive tier (409 ``BlobArchived``) from the blob proxy in front of Azurite (``emulators/blobproxy``), set
through the SDK's own calls. Every blob is reached through the proxy.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient, ImmutabilityPolicy
from azure.storage.queue import QueueClient

from rotation.rewrap.queue import drain
from rotation.settings import HostStorageSettings
from tests.integration.emulators.test_blobproxy import proxied
from tests.integration.rewrap_helpers import LocalKeyRing, decrypting_client, location_of
from tests.integration.test_rewrap_blobs import KEY, adapter, ring, settings_for, upload, work_queues

__all__ = ["proxied", "ring"]  # fixtures (a new container reached through the blob proxy; the key ring)
BLOBS = [f"b{i:02d}" for i in range(9)]
REFUSING = "b04"  # in the middle of the first page (pages of 6)


@dataclass(frozen=True)
class Shape:
    """A blob state that refuses metadata writes: how to put it on a blob, how to lift it, what Azure says."""

    name: str
    status: int
    code: str
    apply: Callable[[BlobClient], None]
    lift: Callable[[BlobClient], None]


def _lease(blob: BlobClient) -> None:
    blob.acquire_lease(lease_duration=-1)


def _break_lease(blob: BlobClient) -> None:
    BlobLeaseClient(blob).break_lease(lease_break_period=0)


def _legal_hold(blob: BlobClient) -> None:
    blob.set_legal_hold(True)


def _clear_legal_hold(blob: BlobClient) -> None:
    blob.set_legal_hold(False)


def _retention_policy(blob: BlobClient) -> None:
    blob.set_immutability_policy(
        ImmutabilityPolicy(expiry_time=datetime.now(UTC) + timedelta(days=1), policy_mode="Unlocked")
    )


def _delete_retention_policy(blob: BlobClient) -> None:
    blob.delete_immutability_policy()


def _archive(blob: BlobClient) -> None:
    blob.set_standard_blob_tier("Archive")


def _nothing(_blob: BlobClient) -> None:
    """An archived blob may be deleted with its container."""


SHAPES = [
    Shape("leased", 412, "LeaseIdMissing", _lease, _break_lease),
    Shape("legal-hold", 409, "BlobImmutableDueToLegalHold", _legal_hold, _clear_legal_hold),
    Shape("retention-policy", 409, "BlobImmutableDueToPolicy", _retention_policy, _delete_retention_policy),
    Shape("archived", 409, "BlobArchived", _archive, _nothing),
]


def _poisoned(poison: QueueClient) -> int:
    try:
        return len(list(poison.peek_messages(max_messages=10)))
    except ResourceNotFoundError:
        return 0  # nothing was ever poisoned: the host creates the poison queue on the first one


def _key_id(container: ContainerClient, name: str) -> str:
    doc = json.loads(container.get_blob_client(name).get_blob_properties().metadata["encryptiondata"])
    return str(doc["WrappedContentKey"]["KeyId"])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
@pytest.mark.parametrize("queued", [False, True], ids=["inline", "queued"])
class TestARefusingBlobIsItsOwnFailure:
    """The refusing blob is listed by name with its error code; the rest of its page and of the run is
    re-wrapped; the run is done with the failure (so retirement waits); no work item is poisoned."""

    def test_refusal_is_recorded_and_the_page_continues(
        self,
        local_azure: dict[str, Any],
        ring: LocalKeyRing,
        proxied: ContainerClient,
        shape: Shape,
        queued: bool,
    ) -> None:
        old, new = ring.new_version(), ring.new_version()
        for name in BLOBS:
            upload(proxied, ring, old, name, name.encode() * 50, "2.0")
        refusing = proxied.get_blob_client(REFUSING)
        wrapped_before = json.loads(refusing.get_blob_properties().metadata["encryptiondata"])["WrappedContentKey"]
        shape.apply(refusing)
        proxy_storage = HostStorageSettings(connection_string=local_azure["storage"]["proxy_connection_string"])
        settings = settings_for(local_azure, proxied, storage=proxy_storage)
        keys = adapter(local_azure, proxied, ring, new, settings=settings, inline=not queued, page_size=6, chunk=2)
        location = location_of(proxied)
        rotation_id = f"rot-{shape.name}-{uuid.uuid4().hex[:8]}"

        try:
            keys.begin_rewrap(rotation_id, KEY, new, [location])
            if queued:
                queue, poison = work_queues(settings)
                drain(queue, poison, keys.handle_message, idle_s=0.3)
                assert _poisoned(poison) == 0
            done, summary = keys.rewrap_progress(rotation_id)
        finally:
            shape.lift(refusing)
            keys.close()

        assert done is True
        assert summary.poison_messages == 0
        assert summary.rewrapped == len(BLOBS) - 1
        assert len(summary.failed) == 1
        failure = summary.failed[0]
        assert (failure.location, failure.blob) == (location.display, REFUSING)
        assert failure.reason.startswith(f"Set Blob Metadata refused: HTTP {shape.status} {shape.code}")
        assert wrapped_before["EncryptedKey"] not in failure.reason
        assert base64.b64decode(wrapped_before["EncryptedKey"]).hex() not in failure.reason
        assert _key_id(proxied, REFUSING) == KEY.version_uri(old)
        reader = decrypting_client(proxied, ring.resolver(new))
        for name in BLOBS:
            if name != REFUSING:
                assert reader.download_blob(name).readall() == name.encode() * 50
