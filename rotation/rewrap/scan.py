"""Listing blobs a page at a time (metadata and ETag included) and deciding what each one needs.

The listing is ``List Blobs`` with ``include=metadata``: the re-wrap reads every blob's
``encryptiondata`` and ETag from it, with no GET per blob and no content read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from azure.storage.blob import ContainerClient

from rotation.domain.model import KeyRef
from rotation.errors import InputError
from rotation.rewrap.keys import UNWRAP_ALGORITHMS
from rotation.rewrap.metadata import MalformedEncryptionData, WrappedKey, parse_wrapped_key

_BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"

#: The blob data action each call needs, on the data containers.
ACTIONS: Mapping[str, frozenset[str]] = {
    "list_page": frozenset({_BLOB_READ}),
    "iterate_history": frozenset({_BLOB_READ}),
}

#: What the history listing asks for. Azure lists previous versions (blob versioning), snapshots and
#: soft-deleted blobs only when asked (List Blobs, ``include``:
#: learn.microsoft.com/rest/api/storageservices/list-blobs).
#: Azurite 3.35 lists snapshots and ignores ``versions`` and ``deleted`` (its README: "Blob Versions" and
#: "Soft delete & Undelete Blob" are not supported).
HISTORY_INCLUDE = ["metadata", "snapshots", "versions", "deleted"]


@dataclass(frozen=True)
class ListedBlob:
    """A blob as the listing shows it: name, ETag, metadata (never content)."""

    name: str
    etag: str
    metadata: Mapping[str, str]


class Status(StrEnum):
    OLD = "old"  # wrapped by an older version of the key: re-wrap
    CURRENT = "current"  # wrapped by the new version already
    OTHER_KEY = "other_key"  # wrapped by another key (a data location can be shared): not this key's concern
    FAILED = "failed"  # cannot be re-wrapped; ``reason`` says why


@dataclass(frozen=True)
class Verdict:
    status: Status
    version: str | None = None  # the key version the blob names, when it names one of the key
    wrapped: WrappedKey | None = None
    reason: str = ""


def classify(blob: ListedBlob, key: KeyRef, new_version: str) -> Verdict:
    """What the re-wrap must do with ``blob``. Pure; never raises.

    A data location can hold blobs of several keys. A blob whose well-formed ``encryptiondata`` names a
    Key Vault key other than ``key`` (another vault, or another name: compared as ``KeyRef.same_key``
    does, host and name case-insensitively, ``:443`` dropped) is ``OTHER_KEY``: never unwrapped,
    written or reported as a failure. Anything that cannot be shown to be another key's stays a
    failure: malformed or missing ``encryptiondata``, a ``KeyId`` that is not a Key Vault key URI, or
    one naming ``key`` with no version. Versions are compared case-insensitively.
    """
    try:
        wrapped = parse_wrapped_key(blob.metadata)
    except MalformedEncryptionData as exc:
        return Verdict(Status.FAILED, reason=f"malformed encryptiondata: {exc}")
    if wrapped is None:
        return Verdict(Status.FAILED, reason="no encryptiondata metadata (not client-side encrypted)")
    try:
        named, version = KeyRef.parse(wrapped.key_id)
    except InputError:
        return Verdict(Status.FAILED, reason="KeyId is not a Key Vault key URI")
    if not named.same_key(key):
        return Verdict(Status.OTHER_KEY, reason=f"KeyId names another key ({named.uri})")
    if version is None:
        return Verdict(Status.FAILED, reason="KeyId names no key version")
    if wrapped.algorithm not in UNWRAP_ALGORITHMS:
        # Checked before any Key Vault call: blob metadata must not choose RSA1_5 (an unwrap oracle).
        return Verdict(Status.FAILED, reason=f"wrap algorithm {wrapped.algorithm[:24]!r} is not accepted")
    if KeyRef.same_version(version, new_version):
        return Verdict(Status.CURRENT, version, wrapped)
    return Verdict(Status.OLD, version, wrapped)


def list_page(
    container: ContainerClient, prefix: str, marker: str | None, page_size: int
) -> tuple[list[ListedBlob], str | None]:
    """One page of the listing from ``marker`` (None: the start); returns the blobs and the next marker."""
    pages = container.list_blobs(
        name_starts_with=prefix or None, include=["metadata"], results_per_page=page_size
    ).by_page(continuation_token=marker)
    blobs = [ListedBlob(b.name, str(b.etag), dict(b.metadata or {})) for b in next(pages, [])]
    next_marker: str | None = getattr(pages, "continuation_token", None) or None
    return blobs, next_marker


@dataclass(frozen=True)
class HistoryEntry:
    """A listed entry that is not the current, live blob: a previous version, a snapshot, or soft-deleted.

    Azure refuses to write the metadata of either of the first two (Set Blob Metadata takes no
    ``versionid`` or ``snapshot``; "a snapshot is a read-only version of a blob", "you can't modify a
    previous version": learn.microsoft.com/azure/storage/blobs/snapshots-overview, versioning-overview),
    so the re-wrap cannot move them; a soft-deleted blob can be undeleted with its old wrapping.
    """

    blob: ListedBlob
    entry: str  # "version <id>", "snapshot <time>", "soft-deleted"


def history_entry(props: Any) -> HistoryEntry | None:
    """The listed blob as a history entry, or None when it is the current, live blob. Pure."""
    listed = ListedBlob(props.name, str(props.etag), dict(props.metadata or {}))
    if getattr(props, "snapshot", None):
        return HistoryEntry(listed, f"snapshot {props.snapshot}")
    if getattr(props, "deleted", None):
        return HistoryEntry(listed, "soft-deleted" + (f" version {props.version_id}" if props.version_id else ""))
    if getattr(props, "version_id", None) and getattr(props, "is_current_version", None) is not True:
        return HistoryEntry(listed, f"version {props.version_id}")
    return None


def iterate_history(container: ContainerClient, prefix: str, page_size: int = 500) -> Iterator[HistoryEntry]:
    """Every previous version, snapshot and soft-deleted blob under ``prefix`` (memory: one page)."""
    pages = container.list_blobs(
        name_starts_with=prefix or None, include=HISTORY_INCLUDE, results_per_page=page_size
    ).by_page()
    for page in pages:
        for props in page:
            entry = history_entry(props)
            if entry is not None:
                yield entry


def iterate(container: ContainerClient, prefix: str, page_size: int = 500) -> Iterator[ListedBlob]:
    """Every blob under ``prefix``, page by page: memory is bounded by one page (a listed blob with its
    metadata costs ~10 KB of Python objects, so pages stay at the work-item size, not the 5,000 maximum)."""
    marker: str | None = None
    while True:
        blobs, marker = list_page(container, prefix, marker, page_size)
        yield from blobs
        if marker is None:
            return
