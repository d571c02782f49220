"""Re-wrap one blob, and one page of blobs, with a conditional metadata write.

Per re-wrapped blob: one Key Vault call (unwrap, to the version the blob names), a local wrap with the
new version's public key, one ``Set Blob Metadata`` with ``If-Match`` on the ETag from the listing.
Content bytes are never read or written.

Concurrent writers: on 412 (ETag changed) the blob's properties are read again and the decision is
made afresh: a blob rewritten by its owner under the new version (or under another key) is left alone,
one still on an old version is re-wrapped from its new metadata. A blob deleted meanwhile (404) is
skipped and counted.

A blob wrapped by another key (data locations can be shared by several keys) is counted as such and
never touched: no Key Vault call, no write, not a failure.

A blob whose own state refuses the write (a lease, an immutability policy, a legal hold, the archive
tier: ``rotation.rewrap.refusals``) is that blob's failure, by name and error code; the rest of the page
goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from rotation.domain.model import KeyRef
from rotation.logs import get_logger
from rotation.rewrap.keys import Unwrapper, UnwrapRefused, Wrapper
from rotation.rewrap.metadata import MalformedEncryptionData, check_unwrapped, rewrapped_metadata
from rotation.rewrap.refusals import blob_write_refusal, error_code
from rotation.rewrap.scan import ListedBlob, Status, classify
from rotation.rewrap.throttle import AdaptiveLimiter, call_with_retries

log = get_logger(__name__)
MAX_RACES = 5  # ETag races on one blob before it is reported instead of retried

_BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
_BLOB_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"

#: The blob data actions each call needs, on the data containers: Set Blob Metadata, and after a
#: lost ETag race Get Blob Properties.
ACTIONS: Mapping[str, frozenset[str]] = {"Rewrapper.rewrap_blob": frozenset({_BLOB_READ, _BLOB_WRITE})}


class Outcome(StrEnum):
    REWRAPPED = "rewrapped"
    ALREADY_CURRENT = "already_current"
    OTHER_KEY = "other_key"  # wrapped by another key: left alone, counted, not a failure
    DELETED = "skipped_deleted"
    FAILED = "failed"


@dataclass(frozen=True)
class BlobResult:
    name: str
    outcome: Outcome
    reason: str = ""
    races: int = 0


@dataclass
class Tally:
    """Counts for a run of blobs; failures by name and log-safe reason."""

    rewrapped: int = 0
    already_current: int = 0
    skipped_deleted: int = 0
    other_keys: int = 0
    races: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, result: BlobResult) -> None:
        self.races += result.races
        if result.outcome is Outcome.REWRAPPED:
            self.rewrapped += 1
        elif result.outcome is Outcome.ALREADY_CURRENT:
            self.already_current += 1
        elif result.outcome is Outcome.DELETED:
            self.skipped_deleted += 1
        elif result.outcome is Outcome.OTHER_KEY:
            self.other_keys += 1
        else:
            self.failures.append((result.name, result.reason))


@dataclass
class Rewrapper:
    """Everything needed to move blobs of ``key`` to ``wrapper``'s version (the new one)."""

    key: KeyRef
    new_version: str
    wrapper: Wrapper
    unwrapper: Unwrapper
    limiter: AdaptiveLimiter

    def rewrap_blob(self, container: ContainerClient, blob: ListedBlob) -> BlobResult:
        """Bring one blob to the new version. Safe to repeat; raises only for systemic failures (a refusal
        by the blob's own state is its result, ``FAILED`` with the error code)."""
        cached: tuple[bytes, bytes] | None = None  # (wrapped, unwrapped) across ETag races
        for races in range(MAX_RACES + 1):
            verdict = classify(blob, self.key, self.new_version)
            if verdict.status is Status.CURRENT:
                return BlobResult(blob.name, Outcome.ALREADY_CURRENT, races=races)
            if verdict.status is Status.OTHER_KEY:
                return BlobResult(blob.name, Outcome.OTHER_KEY, races=races)
            if verdict.status is Status.FAILED or verdict.wrapped is None:
                return BlobResult(blob.name, Outcome.FAILED, verdict.reason, races)
            wrapped = verdict.wrapped
            if cached is not None and cached[0] == wrapped.encrypted_key:
                content_key = cached[1]
            else:
                try:
                    # The normalised id of the version, never the raw KeyId text: only the rotated key's vault
                    # is ever called, whatever a blob's metadata says.
                    kid = self.key.version_uri(str(verdict.version))
                    unwrap = partial(self.unwrapper.unwrap, kid, wrapped.algorithm, wrapped.encrypted_key)
                    content_key = call_with_retries(self.limiter, unwrap)
                    check_unwrapped(wrapped, content_key)
                except UnwrapRefused as exc:
                    return BlobResult(blob.name, Outcome.FAILED, f"unwrap failed: {exc.reason}", races)
                except MalformedEncryptionData as exc:
                    return BlobResult(blob.name, Outcome.FAILED, f"malformed encryptiondata: {exc}", races)
                cached = (wrapped.encrypted_key, content_key)
            # Each blob keeps its own wrap algorithm unless the settings name one: readers may pass a fixed one.
            algorithm = self.wrapper.algorithm or wrapped.algorithm
            metadata = rewrapped_metadata(
                blob.metadata, wrapped, self.wrapper.key_id, self.wrapper.wrap(content_key, algorithm), algorithm
            )
            client = container.get_blob_client(blob.name)
            try:
                client.set_blob_metadata(metadata, etag=blob.etag, match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                try:
                    props = client.get_blob_properties()
                except ResourceNotFoundError:
                    return BlobResult(blob.name, Outcome.DELETED, races=races + 1)
                blob = ListedBlob(blob.name, str(props.etag), dict(props.metadata or {}))
                continue
            except ResourceNotFoundError:
                return BlobResult(blob.name, Outcome.DELETED, races=races)
            except HttpResponseError as exc:
                refusal = blob_write_refusal(exc)
                if refusal is None:
                    raise
                log.warning("rewrap_blob_refused", blob=blob.name, status=exc.status_code, code=error_code(exc))
                return BlobResult(blob.name, Outcome.FAILED, refusal, races)
            return BlobResult(blob.name, Outcome.REWRAPPED, races=races)
        return BlobResult(blob.name, Outcome.FAILED, f"changed concurrently {MAX_RACES} times; try again", MAX_RACES)

    def rewrap_blobs(
        self,
        container: ContainerClient,
        blobs: Sequence[ListedBlob],
        executor: Executor,
        *,
        chunk: int = 100,
        on_chunk: Callable[[Tally, str], None] | None = None,
    ) -> Tally:
        """Re-wrap ``blobs`` concurrently; results are taken in listing order.

        Every ``chunk`` results (and at the end) ``on_chunk(tally_so_far, last_name)`` runs (the
        checkpoint): every blob up to ``last_name`` is then finished. The executor's threads keep working
        meanwhile, so a checkpoint never idles them. If a blob raises, blobs not yet started are cancelled
        and the error propagates (the item is retried from its last checkpoint).
        """
        tally = Tally()
        futures = [executor.submit(self.rewrap_blob, container, blob) for blob in blobs]
        try:
            for index, future in enumerate(futures):
                tally.add(future.result())
                if on_chunk is not None and ((index + 1) % chunk == 0 or index + 1 == len(futures)):
                    on_chunk(tally, blobs[index].name)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return tally
