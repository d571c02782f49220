"""``BlobDataKeys``: the ``DataKeys`` port over Blob storage, Key Vault, a queue and a checkpoint table.

``begin_rewrap`` records the run and the first work item (page 1 of each data location's listing).
Processing an item lists its page (``include=metadata``), hands the next page on as a new item before
re-wrapping its own blobs, then re-wraps them in chunks, checkpointing after each chunk. Inline (CLI,
local server, tests) items run in this process; queued, they go to ``ROTATION_REWRAP_QUEUE`` and the
queue trigger ``rewrap_worker`` runs them, as many at once as the Functions host scales to.

``rewrap_progress`` reads the table. When every item is finished and every location's listing has
been walked to its end, it runs a verification scan: done when no blob is left on an old version other
than the failures listed. Blobs found on an old version (written by their owner under the old version
after the listing passed them) start another pass, up to ``MAX_PASSES``; after that they are reported
as failures, never dropped.

A data location can be shared by several keys: blobs wrapped by another key are counted
(``other_keys``, once, in the first pass) and left alone, never reported as failures.

Permissions: Storage Blob Data Contributor on the data locations (list, set metadata), Key Vault
keys/read (the new version's public key) and keys/unwrap/action (old versions), Storage Queue Data
Contributor and Table Data Contributor on AzureWebJobsStorage.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from rotation.adapters.host_storage import HostStorage
from rotation.adapters.http_session import direct_session_kwargs, pool_for
from rotation.domain.model import SURVEY_OTHER_KEYS, HeldBlob, KeyRef, RewrapFailure, RewrapSummary
from rotation.errors import RotationError, TransientError
from rotation.logs import get_logger
from rotation.rewrap import scan
from rotation.rewrap.checkpoint import DONE, PENDING, POISON, CheckpointStore, Item, MalformedRow, Run
from rotation.rewrap.keys import KeyVaultUnwrapper, Unwrapper, Wrapper, fetch_wrapper
from rotation.rewrap.queue import MAX_DEQUEUE, LocalWorkQueue, StorageWorkQueue, WorkMessage, WorkQueue, storage_queue
from rotation.rewrap.scan import Status
from rotation.rewrap.scope import OutOfScope, RewrapScope, checked_version
from rotation.rewrap.throttle import AdaptiveLimiter
from rotation.rewrap.worker import Rewrapper, Tally
from rotation.settings import DataLocation, Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = get_logger(__name__)
MAX_PASSES = 3
LEASE_S = 120.0  # how long a worker holds a work item without a checkpoint
STALE_S = 60.0  # a pending item untouched this long, never sent or never claimed, lost its message: send it
MISSING_CONTAINER = "the data location's container does not exist"
PAGE_SIZE = 500
CHUNK = 100
CLAIM_TRIES = 5
REDRIVE_BASE_S = 900.0  # a poisoned item is sent again after 15 min, then 30, 60, 120 (MAX_REDRIVES)
MAX_REDRIVES = 4
ITEMS_IN_FLIGHT = 2  # inline: while one page's blobs are re-wrapped, the next page is listed


class BlobDataKeys:
    """Implements ``rotation.ports.DataKeys``.

    Args:
        settings: the app settings (AzureWebJobsStorage, queue name, wrap algorithm, concurrency).
        credential: the identity for Key Vault and for data locations outside AzureWebJobsStorage's account.
        transport_kwargs: passed to every SDK client (e.g. ``connection_verify`` for the local CA).
        inline: run work items in this process (True) or on the queue (False).
        unwrapper: replaces Key Vault unwrap (tests without a vault).
        wrapper: replaces fetching the new version's public key (tests without a vault).
        storage_kwargs: extra keyword arguments for blob clients only (e.g. a request-counting policy).
    """

    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential,
        transport_kwargs: dict[str, Any],
        *,
        inline: bool = True,
        unwrapper: Unwrapper | None = None,
        wrapper: Wrapper | None = None,
        storage_kwargs: dict[str, Any] | None = None,
        page_size: int = PAGE_SIZE,
        chunk: int = CHUNK,
        limiter: AdaptiveLimiter | None = None,
        redrive_base_s: float = REDRIVE_BASE_S,
    ) -> None:
        self.settings = settings
        self._redrive_base_s = redrive_base_s
        self.scope = RewrapScope.from_settings(settings)
        self.inline = inline
        self._credential = credential
        self._transport_kwargs = dict(transport_kwargs)
        self._storage_kwargs = {**self._transport_kwargs, **(storage_kwargs or {})}
        self._pool_maxsize = pool_for(settings.rewrap_concurrency)
        self._unwrapper = unwrapper or KeyVaultUnwrapper(
            credential,
            self._transport_kwargs,
            verify_challenge_resource=settings.verify_challenge_resource,
            pool_maxsize=self._pool_maxsize,
        )
        self._fixed_wrapper = wrapper
        self._wrappers: dict[str, Wrapper] = {}
        self.page_size = page_size
        self.chunk = chunk
        self.limiter = limiter or AdaptiveLimiter(settings.rewrap_concurrency)
        self._executor = ThreadPoolExecutor(max_workers=settings.rewrap_concurrency, thread_name_prefix="rewrap")
        self._lock = threading.Lock()
        self._host_storage = HostStorage.from_settings(settings.storage, credential)
        self.store = CheckpointStore(self._host_storage)
        self._local = LocalWorkQueue()
        self._queue: WorkQueue = self._local
        if not inline:
            self._queue = StorageWorkQueue(storage_queue(self._host_storage, settings.rewrap_queue))
        self._containers: dict[tuple[str, str], ContainerClient] = {}
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- the port -----------------------------------------------------------------------------

    def survey(self, key: KeyRef, locations: Sequence[DataLocation]) -> dict[str, int]:
        """Blob counts by version of ``key`` (lower case); ``""`` counts blobs with problems,
        ``SURVEY_OTHER_KEYS`` blobs wrapped by other keys. Safe to repeat."""
        counts: dict[str, int] = {}
        key = self.scope.key(key.uri)
        for location in self.scope.locations_of(locations):
            for blob in self._list_all(location):
                verdict = scan.classify(blob, key, new_version="")
                if verdict.status is Status.OTHER_KEY:
                    bucket = SURVEY_OTHER_KEYS
                elif verdict.status is Status.FAILED:
                    bucket = ""
                else:
                    bucket = (verdict.version or "").lower()
                counts[bucket] = counts.get(bucket, 0) + 1
        return counts

    def held_blobs(self, key: KeyRef, locations: Sequence[DataLocation]) -> tuple[HeldBlob, ...]:
        """Versions, snapshots and soft-deleted blobs wrapped by a version of ``key``. Safe to repeat."""
        held: list[HeldBlob] = []
        for location in locations:
            try:
                for entry in scan.iterate_history(self._container(location), location.prefix):
                    verdict = scan.classify(entry.blob, key, new_version="")
                    if verdict.version:
                        version = verdict.version.lower()
                        held.append(HeldBlob(location.display, entry.blob.name, entry.entry, version))
            except ResourceNotFoundError:
                continue  # the container is gone: the re-wrap reports it
            except AzureError as exc:
                raise TransientError(f"listing {location.display} failed: {type(exc).__name__}") from None
        return tuple(held)

    def begin_rewrap(self, rotation_id: str, key: KeyRef, new_version: str, locations: Sequence[DataLocation]) -> None:
        """Record the run and hand out page 1 of each location. Idempotent per ``rotation_id``.

        Raises:
            OutOfScope: the key or a location is not in the settings (nothing is recorded).
        """
        key, locations = self.scope.key(key.uri), self.scope.locations_of(locations)
        checked_version(new_version)
        self.store.ensure_table()
        created = self.store.create_run(rotation_id, key.uri, new_version, locations)
        run = self.store.get_run(rotation_id)
        assert run is not None
        log.info("rewrap_begin", rotation_id=rotation_id, new_version=new_version, created=created)
        self._start_pass(run, run.pass_no)
        if self.inline:
            self._drain_local()

    def rewrap_progress(self, rotation_id: str) -> tuple[bool, RewrapSummary]:
        """(done, summary); runs the verification scan when every item has finished. Safe to repeat.

        Inline, it first finishes any pending items (a crashed inline run resumes from its checkpoints).
        """
        self.store.ensure_table()
        run, items, failures = self.store.partition(rotation_id)
        for _ in range(2 * MAX_PASSES + 2):
            if run is None:
                return False, RewrapSummary()
            self._in_scope(run)  # a rewritten run row stops the rotation here, before any listing
            if run.done:
                break
            if not self.inline and self._redrive([i for i in items if i.status == POISON]):
                run, items, failures = self.store.partition(rotation_id)
                continue
            pending = [i for i in items if i.status == PENDING]
            if self.inline and pending:
                for item in pending:
                    self.process_item(rotation_id, item.item_id, takeover=True)  # resume after a crash
                self._drain_local()
            elif pending:
                for item in pending:
                    # Recorded but its message never sent, or sent and never claimed for STALE_S (the message
                    # was lost): send it (again). A duplicate of a live message finds the item held or done.
                    if item.age_s > STALE_S and (not item.enqueued or not item.owner):
                        self._enqueue(item)
                break
            elif self._walked(run, items):
                self._verify(run, [(loc, blob) for loc, blob, _ in failures])
            else:
                break
            run, items, failures = self.store.partition(rotation_id)
        assert run is not None
        return run.done, self._summary(run, items, failures)

    # -- work items ---------------------------------------------------------------------------

    def handle_message(self, body: str, dequeue_count: int = 1, max_dequeue: int = MAX_DEQUEUE) -> None:
        """Process one work-item message (the queue trigger's body). Safe to repeat.

        On the last try (``dequeue_count >= max_dequeue``, host.json ``maxDequeueCount``) a failing item
        is marked poisoned first, so the rotation reports it once the host moves the message aside.

        Raises:
            ValueError: the body is not a work item.
            RotationError: a systemic failure; the host retries the message.
        """
        try:
            message = WorkMessage.from_json(body)
            self.process_item(message.rotation_id, message.item)
        except OutOfScope as exc:
            # Not retryable, and nothing was done: the message is consumed, the refusal logged.
            log.error("rewrap_item_out_of_scope", reason=exc.message)
        except MalformedRow as exc:
            log.error("rewrap_item_row_malformed", reason=str(exc))
        except Exception:
            if dequeue_count >= max_dequeue:
                self.mark_poison(body)
            raise

    def mark_poison(self, body: str) -> None:
        """Record that a work item's message went to the poison queue (reported by the rotation)."""
        try:
            message = WorkMessage.from_json(body)
        except ValueError:
            log.warning("rewrap_poison_unreadable")
            return
        self.store.ensure_table()
        try:
            self.store.update_item(message.rotation_id, message.item, Status=POISON)
        except ResourceNotFoundError:
            log.warning("rewrap_poison_unknown_item", rotation_id=message.rotation_id, item=message.item)
            return
        log.error("rewrap_item_poisoned", rotation_id=message.rotation_id, item=message.item)

    def process_item(self, rotation_id: str, item_name: str, *, takeover: bool = False) -> None:
        """Re-wrap one page. Safe to repeat: a finished item is skipped, and an item another worker holds
        (a duplicate message) is left to it unless ``takeover`` (inline resume after a crash)."""
        self.store.ensure_table()
        run = self.store.get_run(rotation_id)
        if run is None:
            raise RotationError(f"re-wrap work item for unknown rotation {rotation_id[:80]!r}")
        key, locations = self._in_scope(run)
        item = self._claim(rotation_id, item_name, takeover=takeover)
        if item is None:
            return
        if not 0 <= item.location < len(locations):
            raise OutOfScope(f"re-wrap work item {item.item_id[:40]!r} names no location of its run")
        location = locations[item.location]
        container = self._container(location)
        try:
            blobs, next_marker = scan.list_page(container, location.prefix, item.marker, self.page_size)
        except ResourceNotFoundError:
            # A data location whose container is gone cannot be verified: report it (it blocks retirement).
            self.store.record_failures(rotation_id, item.location, location.display, [("", MISSING_CONTAINER)])
            blobs, next_marker = [], None
        except AzureError as exc:
            raise TransientError(f"listing {location.display} failed: {type(exc).__name__}") from None
        if next_marker is not None and not item.has_next:
            following = self.store.ensure_item(rotation_id, item.pass_no, item.location, item.seq + 1, next_marker)
            if not following.enqueued:
                self._enqueue(following)
        self.store.update_item(rotation_id, item.item_id, HasNext="yes" if next_marker else "no")
        todo = [b for b in blobs if b.name > item.last_name] if item.last_name else blobs
        rewrapper = Rewrapper(key, run.new_version, self._wrapper(key, run.new_version), self._unwrapper, self.limiter)
        base = item

        def checkpoint(tally: Tally, last_name: str) -> None:
            if tally.failures:
                self.store.record_failures(rotation_id, base.location, location.display, tally.failures)
                tally.failures.clear()
            self.store.update_item(
                rotation_id,
                base.item_id,
                LastName=last_name,
                Rewrapped=base.rewrapped + tally.rewrapped,
                AlreadyCurrent=base.already_current + (tally.already_current if base.pass_no == 1 else 0),
                SkippedDeleted=base.skipped_deleted + tally.skipped_deleted,
                # Later passes list every blob again: the other keys' blobs are counted once, as current ones are.
                OtherKeys=base.other_keys + (tally.other_keys if base.pass_no == 1 else 0),
                Races=base.races + tally.races,
                LeaseUntil=time.time() + LEASE_S,
            )

        rewrapper.rewrap_blobs(container, todo, self._executor, chunk=self.chunk, on_chunk=checkpoint)
        self.store.update_item(rotation_id, item.item_id, Status=DONE)
        log.info("rewrap_item_done", rotation_id=rotation_id, item=item.item_id, blobs=len(blobs))

    # -- internals ----------------------------------------------------------------------------

    def _claim(self, rotation_id: str, item_name: str, *, takeover: bool) -> Item | None:
        """Take the item for this worker; None when there is nothing to do (finished, or held by another
        worker whose lease runs). The claim is ETag-guarded: when it loses to a write that did not take
        the item (the sender marking it enqueued right after sending its message, a checkpoint of a
        lease that just ran out), the item is read again and claimed again, never dropped, since the
        message that brought us here is deleted once this returns.

        Raises:
            RotationError: the item does not exist.
            TransientError: still contended after a few tries (the message is delivered again).
        """
        for _ in range(CLAIM_TRIES):
            try:
                item = self.store.get_item(rotation_id, item_name)
            except ResourceNotFoundError:
                raise RotationError(f"unknown re-wrap work item {item_name} of rotation {rotation_id}") from None
            if item.status != PENDING:
                return None  # a repeated message: the item is finished
            now = time.time()
            if item.owner and item.owner != self._owner and item.lease_until > now and not takeover:
                log.info("rewrap_item_held_elsewhere", rotation_id=rotation_id, item=item.item_id)
                return None
            if self.store.claim_item(item, self._owner, now + LEASE_S):
                return item
            log.info("rewrap_item_claim_raced", rotation_id=rotation_id, item=item.item_id)
        raise TransientError(f"re-wrap work item {item_name} kept changing while being claimed; try again")

    def _start_pass(self, run: Run, pass_no: int) -> None:
        for index in range(len(run.locations)):
            first = self.store.ensure_item(run.rotation_id, pass_no, index, 0, None)
            if first.status == PENDING and not first.enqueued:
                self._enqueue(first)

    def _redrive(self, poisoned: list[Item]) -> bool:
        """Send poisoned items again, each after its back-off (``REDRIVE_BASE_S`` doubling, ``MAX_REDRIVES``
        times): the cause (an outage, throttling) may have passed. True when one was sent.

        An item poisoned more often stays poisoned: the rotation reports it, and a rotation that waits
        longer than ``ROTATION_REWRAP_WAIT_HOURS`` goes to a human.
        """
        sent = False
        for item in poisoned:
            if item.redrives >= MAX_REDRIVES or item.age_s < self._redrive_base_s * 2**item.redrives:
                continue
            self.store.update_item(
                item.rotation_id, item.item_id, Status=PENDING, Redrives=item.redrives + 1, Owner="", LeaseUntil=0.0
            )
            self._enqueue(item)
            log.warning(
                "rewrap_item_redriven", rotation_id=item.rotation_id, item=item.item_id, redrive=item.redrives + 1
            )
            sent = True
        return sent

    def _enqueue(self, item: Item) -> None:
        self._queue.send(WorkMessage(item.rotation_id, item.item_id))
        self.store.update_item(item.rotation_id, item.item_id, Enqueued=True)

    def _drain_local(self) -> None:
        """Run the local queue's items, ``ITEMS_IN_FLIGHT`` at a time, as the Functions host runs queued
        messages concurrently: an item hands its next page on before re-wrapping its own blobs, so the
        next page is listed while the re-wrap threads work. The first failure is raised once the other
        item in flight has finished (both are checkpointed)."""
        with ThreadPoolExecutor(max_workers=ITEMS_IN_FLIGHT, thread_name_prefix="rewrap-item") as runners:
            running: set[Future[None]] = set()
            failure: BaseException | None = None
            while running or (self._local.messages and failure is None):
                while failure is None and self._local.messages and len(running) < ITEMS_IN_FLIGHT:
                    message = self._local.messages.popleft()
                    running.add(runners.submit(self.process_item, message.rotation_id, message.item))
                # A short timeout: an item in flight enqueues its follower while it runs.
                finished, running = wait(running, timeout=0.05, return_when=FIRST_COMPLETED)
                for future in finished:
                    error = future.exception()
                    if error is not None and failure is None:
                        failure = error
            if failure is not None:
                raise failure

    def _in_scope(self, run: Run) -> tuple[KeyRef, tuple[DataLocation, ...]]:
        """The run's key and locations as the settings name them; raises OutOfScope for anything else."""
        checked_version(run.new_version)
        return self.scope.key(run.key_uri), self.scope.locations_of(run.locations)

    @staticmethod
    def _walked(run: Run, items: list[Item]) -> bool:
        """Every item of the current pass finished, and every location's listing walked to its end."""
        current = [i for i in items if i.pass_no == run.pass_no]
        if not current or any(i.status != DONE for i in current):
            return False
        ended = {i.location for i in current if i.has_next is False}
        return ended == set(range(len(run.locations)))

    def _verify(self, run: Run, failed: list[tuple[str, str]]) -> Run:
        """Scan every location; finish the run, start another pass, or report stragglers as failures."""
        key, locations = self._in_scope(run)
        known = set(failed)
        stragglers: dict[int, list[tuple[str, str]]] = {}
        remaining = 0
        for index, location in enumerate(locations):
            for blob in self._list_all(location):
                verdict = scan.classify(blob, key, run.new_version)
                if (location.display, blob.name) in known:
                    continue
                if verdict.status is Status.OLD:
                    remaining += 1
                    stragglers.setdefault(index, []).append((blob.name, "still on an old version"))
                elif verdict.status is Status.FAILED:
                    remaining += 1  # a blob that went bad after its page was processed
                    stragglers.setdefault(index, []).append((blob.name, verdict.reason))
        log.info("rewrap_verified", rotation_id=run.rotation_id, pass_no=run.pass_no, remaining=remaining)
        if remaining == 0:
            self.store.update_run(run.rotation_id, Done=True, Remaining=0)
        elif run.pass_no < MAX_PASSES:
            self.store.update_run(run.rotation_id, Pass=run.pass_no + 1, Remaining=remaining)
            self._start_pass(run, run.pass_no + 1)
        else:
            for index, found in stragglers.items():
                self.store.record_failures(
                    run.rotation_id,
                    index,
                    locations[index].display,
                    [(n, f"{r} after {MAX_PASSES} passes") for n, r in found],
                )
            self.store.update_run(run.rotation_id, Done=True, Remaining=0)
        updated = self.store.get_run(run.rotation_id)
        assert updated is not None
        return updated

    @staticmethod
    def _summary(run: Run, items: list[Item], failures: list[tuple[str, str, str]]) -> RewrapSummary:
        finished = run.done
        return RewrapSummary(
            rewrapped=sum(i.rewrapped for i in items),
            already_current=sum(i.already_current for i in items),
            skipped_deleted=sum(i.skipped_deleted for i in items),
            failed=tuple(RewrapFailure(loc, blob, reason) for loc, blob, reason in failures),
            poison_messages=sum(1 for i in items if i.status == POISON),
            remaining_on_old_versions=0 if finished else max(run.remaining, 0),
            other_keys=sum(i.other_keys for i in items),
        )

    def _list_all(self, location: DataLocation) -> Iterator[scan.ListedBlob]:
        """Every blob of ``location``, a page at a time (memory bounded by one page)."""
        try:
            yield from scan.iterate(self._container(location), location.prefix)
        except ResourceNotFoundError:
            return  # the container is gone: reported by its work item, nothing to count here
        except AzureError as exc:
            raise TransientError(f"listing {location.display} failed: {type(exc).__name__}") from None

    def _wrapper(self, key: KeyRef, version: str) -> Wrapper:
        if self._fixed_wrapper is not None:
            return self._fixed_wrapper
        kid = key.version_uri(version)
        with self._lock:
            wrapper = self._wrappers.get(kid)
            if wrapper is None:
                wrapper = self._wrappers[kid] = fetch_wrapper(
                    key,
                    version,
                    self._credential,
                    self._transport_kwargs,
                    self.settings.wrap_algorithm,
                    verify_challenge_resource=self.settings.verify_challenge_resource,
                )
            return wrapper

    def _container(self, location: DataLocation) -> ContainerClient:
        cache_key = (location.account_url, location.container)
        with self._lock:
            client = self._containers.get(cache_key)
            if client is None:
                credential: Any = _shared_key_for(self.settings.storage.connection_string, location.account_url)
                if credential is None:
                    credential = self._credential
                kwargs = direct_session_kwargs(self._storage_kwargs, self._pool_maxsize)
                client = ContainerClient(location.account_url, location.container, credential=credential, **kwargs)
                self._containers[cache_key] = client
            return client

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for client in self._containers.values():
            client.close()
        self.store.close()


def _shared_key_for(connection_string: str | None, account_url: str) -> dict[str, str] | None:
    """AzureWebJobsStorage's account key when ``account_url`` is that account's blob endpoint (Azurite).

    With identity-based AzureWebJobsStorage there is no key: data locations use the managed identity.
    """
    if connection_string is None:
        return None
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    endpoint = parts.get("BlobEndpoint", "").rstrip("/")
    if not endpoint and parts.get("AccountName"):
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        endpoint = f"https://{parts['AccountName']}.blob.{suffix}"
    if endpoint and endpoint.lower() == account_url.rstrip("/").lower() and parts.get("AccountKey"):
        return {"account_name": parts["AccountName"], "account_key": parts["AccountKey"]}
    return None
