"""Re-wrap against Azurite with the SDK's real client-side encryption (unwrap by a local key ring)."""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import pytest
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from rotation.domain.model import SURVEY_OTHER_KEYS, KeyRef
from rotation.errors import PermissionDenied
from rotation.rewrap.adapter import BlobDataKeys
from rotation.rewrap.queue import drain, storage_queue
from rotation.settings import DataLocation, HostStorageSettings, Settings
from tests.integration.rewrap_helpers import (
    LocalKeyRing,
    decrypting_client,
    encrypted_client,
    location_of,
)

KEY = KeyRef("https://kv.vault.azure.net", "cmk")


class Crash(BaseException):
    """Stands for the worker process dying (not an Exception: nothing may catch it)."""


@pytest.fixture
def ring() -> LocalKeyRing:
    return LocalKeyRing(KEY)


def settings_for(local_azure: dict[str, Any], *where: ContainerClient | DataLocation, **overrides: Any) -> Settings:
    """Settings whose scope (ROTATION_MANAGED_KEYS, ROTATION_DATA_LOCATIONS) is KEY and ``where``."""
    values: dict[str, Any] = {
        "storage": HostStorageSettings(connection_string=local_azure["storage"]["connection_string"]),
        "managed_keys": (KEY.uri,),
        "data_locations": tuple(w if isinstance(w, DataLocation) else location_of(w) for w in where),
        "rewrap_concurrency": 4,
        "rewrap_queue": f"rewrap-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return Settings(**values)


def adapter(
    local_azure: dict[str, Any], container: ContainerClient, ring: LocalKeyRing, new: str, **kwargs: Any
) -> BlobDataKeys:
    inline = kwargs.pop("inline", True)
    settings = kwargs.pop("settings", None) or settings_for(local_azure, container)
    return BlobDataKeys(settings, credential=None, transport_kwargs={}, inline=inline,  # type: ignore[arg-type]
                        unwrapper=kwargs.pop("unwrapper", ring), wrapper=ring.wrapper(new), **kwargs)  # fmt: skip


def work_queues(settings: Settings, name: str | None = None, **kwargs: Any) -> tuple[QueueClient, QueueClient]:
    """The re-wrap's work-item queue (``settings.rewrap_queue`` unless named) and its poison queue."""
    connection, name = str(settings.storage.connection_string), name or settings.rewrap_queue
    return storage_queue(connection, name, **kwargs), storage_queue(connection, name + "-poison")


def upload(container: ContainerClient, ring: LocalKeyRing, version: str, name: str, data: bytes, protocol: str) -> None:  # noqa: PLR0917 - reads like the SDK call it wraps
    client = encrypted_client(container, ring.kek(version), protocol)
    client.upload_blob(name, data, metadata={"owner": "team-a", "Purpose": "training"})


class QueuedRewrap(NamedTuple):
    old: str
    new: str
    settings: Settings
    keys: BlobDataKeys


def queued_rewrap(
    local_azure: dict[str, Any],
    container: ContainerClient,
    ring: LocalKeyRing,
    blobs: Mapping[str, bytes],
    *,
    protocol: str = "2.0",
    **adapter_kwargs: Any,
) -> QueuedRewrap:
    """``blobs`` written (with ``protocol``) under a new version of KEY, the next version, and a queued (not
    inline) adapter re-wrapping to it with settings scoped to ``container``: (old, new, settings, adapter)."""
    old, new = ring.new_version(), ring.new_version()
    for name, data in blobs.items():
        upload(container, ring, old, name, data, protocol)
    settings = settings_for(local_azure, container)
    keys = adapter(local_azure, container, ring, new, settings=settings, inline=False, **adapter_kwargs)
    return QueuedRewrap(old, new, settings, keys)


@pytest.mark.filterwarnings("ignore:This client has been configured to use encryption with version 1.0")
class TestRewrapKeepsContentReadableWithOnlyTheNewVersion:
    """Blobs written with protocols 1.0 and 2.0 under the old version decrypt after the re-wrap with a
    resolver that knows only the new version; content bytes and other metadata are unchanged, and the
    blobs still read once the old version is disabled."""

    def test_v1_and_v2_blobs_move_to_the_new_version(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        old, new = ring.new_version(), ring.new_version()
        payloads = {f"v1/{i}": os.urandom(1000 + i) for i in range(3)} | {
            f"v2/{i}": os.urandom(5000 + i) for i in range(3)
        }
        for name, data in payloads.items():
            upload(container, ring, old, name, data, "1.0" if name.startswith("v1") else "2.0")
        raw_before = {n: container.download_blob(n).readall() for n in payloads}
        keys = adapter(local_azure, container, ring, new)

        keys.begin_rewrap("rot-1", KEY, new, [location_of(container)])
        done, summary = keys.rewrap_progress("rot-1")
        ring.disabled.add(KEY.version_uri(old))

        assert done is True
        assert summary.rewrapped == 6
        assert summary.failed == ()
        assert summary.remaining_on_old_versions == 0
        reader = decrypting_client(container, ring.resolver(new))
        for name, data in payloads.items():
            assert reader.download_blob(name).readall() == data
            assert container.download_blob(name).readall() == raw_before[name]
            metadata = container.get_blob_client(name).get_blob_properties().metadata
            assert metadata["owner"] == "team-a"
            assert metadata["Purpose"] == "training"
            assert json.loads(metadata["encryptiondata"])["WrappedContentKey"]["KeyId"] == KEY.version_uri(new)
        assert keys.survey(KEY, [location_of(container)]) == {new: 6}
        keys.close()

    def test_repeating_the_rewrap_changes_nothing(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        old, new = ring.new_version(), ring.new_version()
        upload(container, ring, old, "a", b"x" * 100, "2.0")
        keys = adapter(local_azure, container, ring, new)
        keys.begin_rewrap("rot-2", KEY, new, [location_of(container)])
        etag = container.get_blob_client("a").get_blob_properties().etag

        keys.begin_rewrap("rot-2", KEY, new, [location_of(container)])
        done, summary = keys.rewrap_progress("rot-2")

        assert done
        assert summary.rewrapped == 1
        assert container.get_blob_client("a").get_blob_properties().etag == etag
        assert ring.unwrap_calls == 1
        keys.close()


class TestBadDataIsReportedNotTouched:
    """Malformed encryptiondata and a failing unwrap leave the blob untouched and are reported by name and
    reason; nothing is dropped. A KeyId naming another key leaves the blob untouched and is counted as
    another key's, not reported: a data location can be shared by several keys."""

    def test_each_bad_blob_is_reported(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        old, new = ring.new_version(), ring.new_version()
        upload(container, ring, old, "good", b"good", "2.0")
        container.upload_blob("malformed", b"zz", metadata={"encryptiondata": "{not json"})
        other = LocalKeyRing(KeyRef("https://kv.vault.azure.net", "another"))
        upload(container, other, other.new_version(), "other-key", b"other", "2.0")
        upload(container, ring, old, "bad-unwrap", b"bad", "2.0")
        client = container.get_blob_client("bad-unwrap")
        doc = json.loads(client.get_blob_properties().metadata["encryptiondata"])
        doc["WrappedContentKey"]["EncryptedKey"] = "AAAA" * 86 + "AA=="
        client.set_blob_metadata({"encryptiondata": json.dumps(doc)})
        untouched = {
            n: container.get_blob_client(n).get_blob_properties().etag for n in ("malformed", "other-key", "bad-unwrap")
        }
        keys = adapter(local_azure, container, ring, new)

        keys.begin_rewrap("rot-bad", KEY, new, [location_of(container)])
        done, summary = keys.rewrap_progress("rot-bad")

        assert done is True
        assert summary.rewrapped == 1
        reasons = {f.blob: f.reason for f in summary.failed}
        assert set(reasons) == {"malformed", "bad-unwrap"}
        assert reasons["malformed"].startswith("malformed encryptiondata")
        assert reasons["bad-unwrap"].startswith("unwrap failed")
        assert summary.other_keys == 1
        assert ring.unwrap_calls == 2  # "good" and "bad-unwrap": never the other key's blob
        for name, etag in untouched.items():
            assert container.get_blob_client(name).get_blob_properties().etag == etag
        assert keys.survey(KEY, [location_of(container)]) == {new: 1, "": 1, old: 1, SURVEY_OTHER_KEYS: 1}
        keys.close()


class TestConcurrentWriters:
    """An ETag mismatch re-reads and retries; a blob rewritten by its owner under the new version is left
    alone; a blob deleted meanwhile is skipped and counted."""

    def test_races_during_the_rewrap(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        old, new = ring.new_version(), ring.new_version()
        for name in ("touched", "rewritten", "deleted", "calm"):
            upload(container, ring, old, name, name.encode() * 10, "2.0")
        by_wrapped = {}
        for name in ("touched", "rewritten", "deleted"):
            doc = json.loads(container.get_blob_client(name).get_blob_properties().metadata["encryptiondata"])
            by_wrapped[doc["WrappedContentKey"]["EncryptedKey"]] = name
        acted: set[str] = set()

        def owner_acts(_kid: str, encrypted: bytes) -> None:
            import base64

            name = by_wrapped.get(base64.b64encode(encrypted).decode())
            if name is None or name in acted:
                return
            acted.add(name)
            if name == "touched":
                client = container.get_blob_client(name)
                metadata = client.get_blob_properties().metadata
                client.set_blob_metadata({**metadata, "owner": "team-b"})
            elif name == "rewritten":
                encrypted_client(container, ring.kek(new), "2.0").upload_blob(name, b"fresh", overwrite=True)
            else:
                container.delete_blob(name)

        ring.before_unwrap = owner_acts
        keys = adapter(local_azure, container, ring, new)

        keys.begin_rewrap("rot-race", KEY, new, [location_of(container)])
        done, summary = keys.rewrap_progress("rot-race")

        assert done is True
        assert summary.rewrapped == 2
        assert summary.already_current == 1
        assert summary.skipped_deleted == 1
        reader = decrypting_client(container, ring.resolver(new))
        assert reader.download_blob("touched").readall() == b"touched" * 10
        assert container.get_blob_client("touched").get_blob_properties().metadata["owner"] == "team-b"
        assert reader.download_blob("rewritten").readall() == b"fresh"
        assert reader.download_blob("calm").readall() == b"calm" * 10
        keys.close()


class TestCrashAndResume:
    """A worker that dies in the middle of a listing resumes from its checkpoints: every blob ends on the
    new version, and blobs finished before the last checkpoint are not unwrapped again."""

    def test_resume_after_a_crash(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        old, new = ring.new_version(), ring.new_version()
        for i in range(23):
            upload(container, ring, old, f"b{i:03d}", b"%d" % i, "2.0")
        calls = {"n": 0}

        def crash_at_nine(_kid: str, _encrypted: bytes) -> None:
            calls["n"] += 1
            if calls["n"] == 9:
                raise Crash

        ring.before_unwrap = crash_at_nine
        settings = settings_for(local_azure, container, rewrap_concurrency=1)
        first = adapter(local_azure, container, ring, new, settings=settings, page_size=5, chunk=2)
        with pytest.raises(Crash):
            first.begin_rewrap("rot-crash", KEY, new, [location_of(container)])
        ring.before_unwrap = None
        calls_before_resume = ring.unwrap_calls

        second = adapter(local_azure, container, ring, new, settings=settings, page_size=5, chunk=2)
        done, summary = second.rewrap_progress("rot-crash")

        assert done is True
        assert summary.failed == ()
        assert summary.rewrapped + summary.already_current == 23
        # 8 blobs were checkpointed before the crash (4 chunks of 2): none of them is unwrapped again, and
        # of the rest only the blob that was in flight when the worker died is unwrapped twice.
        assert ring.unwrap_calls - calls_before_resume <= 23 - 8
        assert ring.unwrap_calls <= 23 + 1
        reader = decrypting_client(container, ring.resolver(new))
        assert all(reader.download_blob(f"b{i:03d}").readall() == b"%d" % i for i in range(23))
        first.close()
        second.close()


@pytest.mark.filterwarnings("ignore:This client has been configured to use encryption with version 1.0")
class TestQueuedWorkItems:
    """Queued, the listing is cut into page work items on the storage queue; a consumer finishes them, and
    a message that keeps failing lands in the poison queue and is reported by the rotation."""

    def test_queue_consumer_finishes_the_run(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        blobs = {f"q{i:03d}": b"q" for i in range(12)}
        _, new, settings, keys = queued_rewrap(local_azure, container, ring, blobs, protocol="1.0", page_size=5)
        queue, poison = work_queues(settings)

        keys.begin_rewrap("rot-q", KEY, new, [location_of(container)])
        pending, _ = keys.rewrap_progress("rot-q")
        handled = drain(queue, poison, keys.handle_message, idle_s=0.3)
        done, summary = keys.rewrap_progress("rot-q")

        assert pending is False
        assert handled == 3  # pages of 5, 5 and 2 blobs
        assert done is True
        assert summary.rewrapped == 12
        assert summary.poison_messages == 0
        keys.close()

    def test_concurrent_consumers_in_one_process_finish_the_run_once(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        blobs = {f"c{i:03d}": b"c%d" % i for i in range(23)}
        _, new, settings, keys = queued_rewrap(local_azure, container, ring, blobs, page_size=4)
        queue, poison = work_queues(settings)
        calls_before = ring.unwrap_calls

        keys.begin_rewrap("rot-cc", KEY, new, [location_of(container)])
        handled = drain(queue, poison, keys.handle_message, idle_s=0.5, concurrency=3)
        done, summary = keys.rewrap_progress("rot-cc")

        assert handled == 6  # pages of 4 x 5 and 3
        assert done is True
        assert summary.rewrapped == 23
        assert ring.unwrap_calls - calls_before == 23  # no blob unwrapped twice
        reader = decrypting_client(container, ring.resolver(new))
        assert all(reader.download_blob(f"c{i:03d}").readall() == b"c%d" % i for i in range(23))
        keys.close()

    def test_duplicate_message_while_an_item_is_held_does_nothing(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        _, new, settings, first = queued_rewrap(local_azure, container, ring, {f"d{i}": b"d" for i in range(6)})
        second = adapter(local_azure, container, ring, new, settings=settings, inline=False)
        first.begin_rewrap("rot-dup", KEY, new, [location_of(container)])
        item = "item-01-000-000000"
        body = json.dumps({"rotation_id": "rot-dup", "item": item})
        duplicates: list[int] = []

        def duplicate_arrives(_kid: str, _encrypted: bytes) -> None:
            if not duplicates:
                duplicates.append(ring.unwrap_calls)
                second.handle_message(body)  # another worker gets the same message meanwhile

        ring.before_unwrap = duplicate_arrives

        first.handle_message(body)
        second.handle_message(body)  # and once more after the item finished
        done, summary = first.rewrap_progress("rot-dup")

        assert done is True
        assert summary.rewrapped == 6
        assert summary.already_current == 0
        assert ring.unwrap_calls == 6
        first.close()
        second.close()

    def test_an_empty_queue_is_polled_with_back_off(self, local_azure: dict[str, Any]) -> None:
        settings = settings_for(local_azure)
        polls: list[float] = []

        def count_receives(response: Any) -> None:
            if response.http_request.method == "GET" and "/messages" in response.http_request.url:
                polls.append(time.monotonic())

        name = f"idle-{uuid.uuid4().hex[:8]}"
        queue, poison = work_queues(settings, name, raw_response_hook=count_receives)

        began = time.monotonic()
        handled = drain(queue, poison, lambda _body, _count: None, idle_s=1.5, max_poll_s=0.4)
        waited = time.monotonic() - began

        gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
        assert handled == 0
        assert 1.5 <= waited < 4.0
        assert 3 <= len(polls) <= 10  # 50, 100, 200, 400, 400 ... ms apart, not every 50 ms (30 polls)
        assert max(gaps) >= 0.35
        queue.delete_queue()

    def test_a_claim_that_loses_to_a_harmless_write_is_retried_not_dropped(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        """The sender marks an item enqueued right after sending its message; a fast worker that read the
        item before that write lands loses its ETag-guarded claim. Its message is deleted when handling
        returns, so dropping the item there would leave it pending forever (found by the scale-out bench)."""
        _, new, _, keys = queued_rewrap(local_azure, container, ring, {f"r{i}": b"r" for i in range(4)})
        keys.begin_rewrap("rot-claim", KEY, new, [location_of(container)])
        item = "item-01-000-000000"
        claim = keys.store.claim_item
        raced: list[str] = []

        def sender_marks_it_enqueued_first(read: Any, owner: str, lease_until: float) -> bool:
            if not raced:
                raced.append(read.item_id)
                keys.store.update_item("rot-claim", read.item_id, Enqueued=True)  # changes the ETag
            return claim(read, owner, lease_until)

        keys.store.claim_item = sender_marks_it_enqueued_first  # type: ignore[method-assign]

        keys.handle_message(json.dumps({"rotation_id": "rot-claim", "item": item}))
        done, summary = keys.rewrap_progress("rot-claim")

        assert raced == [item]
        assert done is True
        assert summary.rewrapped == 4
        keys.close()

    def test_a_lost_message_is_sent_again(
        self,
        local_azure: dict[str, Any],
        ring: LocalKeyRing,
        container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        _, new, settings, keys = queued_rewrap(local_azure, container, ring, {"lost": b"l"})
        queue, poison = work_queues(settings)
        monkeypatch.setattr("rotation.rewrap.adapter.STALE_S", 0.5)
        keys.begin_rewrap("rot-lost", KEY, new, [location_of(container)])
        queue.clear_messages()  # the item's message is gone; the item says it was enqueued

        time.sleep(1.0)
        before, _ = keys.rewrap_progress("rot-lost")  # notices the unclaimed item and sends it again
        handled = drain(queue, poison, keys.handle_message, idle_s=0.3)
        done, summary = keys.rewrap_progress("rot-lost")

        assert before is False
        assert handled == 1
        assert done is True
        assert summary.rewrapped == 1
        keys.close()

    def test_failing_item_goes_to_the_poison_queue_and_is_reported(
        self, local_azure: dict[str, Any], ring: LocalKeyRing, container: ContainerClient
    ) -> None:
        class Forbidden:
            def unwrap(self, key_id: str, algorithm: str, encrypted_key: bytes) -> bytes:
                raise PermissionDenied("Key Vault HTTP 403 (Forbidden)", "keys/unwrap/action")

        old, new, settings, keys = queued_rewrap(local_azure, container, ring, {"p": b"p"}, unwrapper=Forbidden())
        queue, poison = work_queues(settings)
        keys.begin_rewrap("rot-p", KEY, new, [location_of(container)])
        queue.send_message("not a work item")

        drain(queue, poison, keys.handle_message, idle_s=0.3)
        done, summary = keys.rewrap_progress("rot-p")

        assert done is False
        assert summary.poison_messages == 1
        assert len(list(poison.peek_messages(max_messages=10))) == 2
        assert json.loads(container.get_blob_client("p").get_blob_properties().metadata["encryptiondata"])[
            "WrappedContentKey"
        ]["KeyId"] == KEY.version_uri(old)
        keys.close()
