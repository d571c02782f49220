"""Blob versioning and soft delete over Azurite: the proxy's answers to blob requests and List Blobs.

Each previous version is a hidden Azurite snapshot (``history.BlobHistory.versions``); a deleted blob
that Azure would keep is left in Azurite and hidden (``live`` false), so its versions and snapshots stay
readable. Requests the proxy changes on the way (``versionid`` read as ``snapshot``, List Blobs asked for
snapshots) are sent with the proxy's own account SAS; everything else is forwarded unchanged, signature
and all. The rules and their sources are in ``history.py`` and ``docs/emulators/blobproxy.md``.

REST shapes (learn.microsoft.com/rest/api/storageservices): ``versionid`` on Get Blob, Get Blob
Properties, Get Blob Metadata and Delete Blob (2019-12-12 and later); ``x-ms-version-id`` on the
responses of writes; ``x-ms-is-current-version`` on Get Blob Properties; List Blobs ``include=versions``
gives each blob's ``VersionId`` and, for the current one, ``IsCurrentVersion``; ``include=deleted`` gives
``Deleted`` with ``DeletedTime`` and ``RemainingRetentionDays`` in its properties (the element names are
those azure-storage-blob's generated ``BlobItemInternal`` and ``BlobPropertiesInternal`` read); Undelete
Blob is ``PUT {blob}?comp=undelete``.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Protocol

from emulators.blobproxy.history import BlobHistory, History, SoftDeleted
from emulators.blobproxy.state import Refusal

Response = tuple[int, list[tuple[str, str]], bytes]
Query = Mapping[str, list[str]]

#: Writes that make a new version (versioning-overview, "Versioning on write operations"): Put Blob and
#: Copy Blob (no ``comp``), Put Block List, Set Blob Metadata. Put Block, Put Page, Append Block do not.
VERSION_WRITES = frozenset({None, "blocklist", "metadata"})
#: Writes that overwrite a blob's data (soft-delete-blob-overview: a soft-deleted snapshot is kept first).
OVERWRITES = frozenset({None, "blocklist"})

BLOB_NOT_FOUND = Refusal(404, "BlobNotFound", "The specified blob does not exist.")
SNAPSHOTS_PRESENT = Refusal(409, "SnapshotsPresent", "This operation is not permitted because the blob has snapshots.")
#: Deleting the current version by its version id: 403 ``OperationNotAllowedOnRootBlob`` (the service's
#: answer recorded in azure-sdk-for-java's ImmutableStorageWithVersioning test clean-up, PR 48716).
ROOT_BLOB = Refusal(403, "OperationNotAllowedOnRootBlob", "This operation is not permitted on the root blob.")
#: An operation that takes no version id (Set Blob Metadata is "only allowed on the root blob": the
#: REST spec change azure-rest-api-specs PR 8735): 400 ``InvalidQueryParameterValue`` naming ``versionid``,
#: the shape Azure answered for a refused ``versionid`` (AzureStorageExplorer issue 3425).
VERSION_REFUSED = Refusal(
    400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid."
)


class Upstream(Protocol):
    """What the proxy asks Azurite itself (with the account key), besides forwarding."""

    async def snapshot(self, container: str, blob: str) -> str | None:
        """Snapshot Blob; None when the blob does not exist."""
        ...

    async def delete_snapshot(self, container: str, blob: str, snapshot: str) -> None: ...

    async def delete_all(self, container: str, blob: str) -> None:
        """Delete Blob with every snapshot (the blob is gone for good)."""
        ...

    async def snapshots(self, container: str, blob: str) -> list[str] | None:
        """The blob's Azurite snapshots, oldest first; None when the base blob does not exist."""
        ...

    async def spaced(self, container: str, blob: str, call: Callable[[], Awaitable[Response]]) -> Response:
        """``call`` (the client's Snapshot Blob) apart in time from the proxy's own snapshots of the blob."""
        ...

    async def send(
        self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
    ) -> Response:
        """The request as given, signed with the proxy's SAS instead of the client's signature."""
        ...


Forward = Callable[[], Awaitable[Response]]
Answer = Callable[[Refusal], Response]
Ok = Callable[[int], Response]


@dataclass(frozen=True)
class BlobRequest:
    """A request for one blob: ``name`` is (account, container, blob); ``forward`` sends it on unchanged."""

    method: str
    comp: str | None
    name: tuple[str, str, str]
    query: Query
    path: str  # as sent (percent-encoded)
    headers: dict[str, str]
    body: bytes
    forward: Forward

    @property
    def blob_id(self) -> str:
        return "/".join(self.name)


class VersionedBlobs:
    """Versioning and soft delete in front of Azurite, for one account's blobs (``history`` keeps state)."""

    def __init__(self, history: History, upstream: Upstream, refuse: Answer, ok: Ok) -> None:
        self.history = history
        self.up = upstream
        self.refuse = refuse
        self.ok = ok
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, blob_id: str) -> asyncio.Lock:
        return self._locks.setdefault(blob_id, asyncio.Lock())

    # -- blobs ----------------------------------------------------------------------------------

    async def blob_request(self, request: BlobRequest) -> Response | None:
        """The answer to ``request``, or None to forward it as is."""
        method, comp, name, query, forward = request.method, request.comp, request.name, request.query, request.forward
        if self.history.get(request.blob_id) is None and not self.history.service.active:
            return None
        async with self._lock(request.blob_id):
            record = await self._purged(name, self.history.get(request.blob_id) or BlobHistory())
            if "versionid" in query:
                return await self._on_version(request, record)
            if "snapshot" in query:
                return await self._on_snapshot(method, name, record, query["snapshot"][0])
            if method == "PUT" and comp == "snapshot" and record.live:
                return await self.up.spaced(name[1], name[2], forward)
            if method == "PUT" and comp == "undelete":
                return await self._undelete(name, record)
            if not record.live:
                if method == "PUT" and comp in OVERWRITES:
                    return await self._write(request, record)
                if method == "PUT" and comp == "block":
                    return None  # uncommitted blocks for the blob to come
                return self.refuse(BLOB_NOT_FOUND)
            if method == "PUT" and comp in VERSION_WRITES:
                return await self._write(request, record)
            if method == "DELETE" and comp is None:
                return await self._delete(name, record, request.headers, forward)
            if method in ("GET", "HEAD") and comp is None and record.current is not None:
                status, out, content = await forward()
                if status < 300:
                    out = [*out, ("x-ms-version-id", record.current), ("x-ms-is-current-version", "true")]
                return status, out, content
            return None

    async def _write(self, request: BlobRequest, record: BlobHistory) -> Response:
        """A write that may keep the previous state: as a version, or as a soft-deleted snapshot."""
        name, comp, forward = request.name, request.comp, request.forward
        _, container, blob = name
        if not record.live and request.headers.get("if-none-match") == "*":
            # Azurite still has the blob the client cannot see: "create only if absent" holds for Azure.
            headers = {k: v for k, v in request.headers.items() if k != "if-none-match"}
            pairs = [(k, v) for k, values in request.query.items() for v in values]
            forward = lambda: self.up.send(request.method, request.path, pairs, headers, request.body)  # noqa: E731
        service = self.history.service
        keep_version = record.live and (service.versioning or record.current is not None)
        kept_deletion: SoftDeleted | None = None
        if not record.live:
            kept_deletion = record.deleted.get("")  # the soft-deleted blob's state becomes a deleted snapshot
        elif not keep_version and comp in OVERWRITES:
            kept_deletion = self.history.soft_deleted()
        previous = self.history.new_version_id() if keep_version and record.current is None else record.current
        snapshot = None
        if keep_version or kept_deletion is not None:
            snapshot = await self.up.snapshot(container, blob)
        status, out, content = await forward()
        if status >= 300:
            if snapshot is not None:
                await self.up.delete_snapshot(container, blob, snapshot)
            return status, out, content
        if snapshot is not None and keep_version and previous is not None:
            record.versions[previous] = snapshot
        elif snapshot is not None and kept_deletion is not None:
            record.deleted[snapshot] = kept_deletion
        record.live = True
        record.deleted.pop("", None)
        record.current = self.history.new_version_id() if service.versioning else None
        self.history.put("/".join(name), record)
        if record.current is not None:
            out = [*out, ("x-ms-version-id", record.current)]
        return status, out, content

    async def _delete(
        self, name: tuple[str, str, str], record: BlobHistory, headers: dict[str, str], forward: Forward
    ) -> Response:
        """Delete Blob on the live blob: it becomes a version, or soft-deleted, or is gone."""
        _, container, blob = name
        service = self.history.service
        found = await self.up.snapshots(container, blob)
        if found is None:
            return await forward()  # Azurite's own 404
        own = [s for s in found if s not in record.hidden() and s not in record.deleted]
        option = headers.get("x-ms-delete-snapshots", "").lower()
        if own and option not in ("include", "only"):
            return self.refuse(SNAPSHOTS_PRESENT)
        if option in ("include", "only"):
            await self._delete_snapshots(name, record, own)
        if option != "only":
            if service.versioning or record.current is not None:
                snapshot = await self.up.snapshot(container, blob)
                if snapshot is not None:
                    record.versions[record.current or self.history.new_version_id()] = snapshot
                record.current, record.live = None, False
            elif (deletion := self.history.soft_deleted()) is not None:
                record.deleted[""] = deletion
                record.live = False
            elif record.versions or record.deleted:
                record.live = False  # its versions (and soft-deleted snapshots) outlive it
            else:
                self.history.put("/".join(name), BlobHistory())
                return await forward()
        self.history.put("/".join(name), record)
        return self.ok(202)

    async def _delete_snapshots(self, name: tuple[str, str, str], record: BlobHistory, snapshots: list[str]) -> None:
        for snapshot in snapshots:
            deletion = self.history.soft_deleted()
            if deletion is not None:
                record.deleted[snapshot] = deletion
            else:
                await self.up.delete_snapshot(name[1], name[2], snapshot)

    async def _on_version(self, request: BlobRequest, record: BlobHistory) -> Response:
        method, comp, name, query = request.method, request.comp, request.name, request.query
        version = query["versionid"][0]
        current = record.live and version == record.current
        held = record.versions.get(version) if f"v:{version}" not in record.deleted else None
        if method in ("GET", "HEAD") and comp in (None, "metadata"):
            if not current and held is None:
                return self.refuse(BLOB_NOT_FOUND)
            rest = [(k, v) for k, values in query.items() if k != "versionid" for v in values]
            sent = rest if current else [*rest, ("snapshot", str(held))]
            status, out, content = await self.up.send(method, request.path, sent, request.headers, request.body)
            if status < 300:
                is_current = "true" if current else "false"
                out = [*out, ("x-ms-version-id", version), ("x-ms-is-current-version", is_current)]
            return status, out, content
        if method == "DELETE" and comp is None:
            if current:
                return self.refuse(ROOT_BLOB)
            if version not in record.versions:
                return self.refuse(BLOB_NOT_FOUND)
            if f"v:{version}" not in record.deleted:  # deleting a soft-deleted version changes nothing
                deletion = self.history.soft_deleted()
                if deletion is not None:
                    record.deleted[f"v:{version}"] = deletion
                else:
                    await self.up.delete_snapshot(name[1], name[2], record.versions.pop(version))
                await self._settle(name, record)
            return self.ok(202)
        return self.refuse(VERSION_REFUSED)

    async def _on_snapshot(
        self, method: str, name: tuple[str, str, str], record: BlobHistory, snapshot: str
    ) -> Response | None:
        if snapshot in record.hidden():
            return self.refuse(BLOB_NOT_FOUND)  # a version, not a snapshot, to the client
        if snapshot in record.deleted:
            return self.ok(202) if method == "DELETE" else self.refuse(BLOB_NOT_FOUND)
        if method == "DELETE" and (deletion := self.history.soft_deleted()) is not None:
            record.deleted[snapshot] = deletion
            self.history.put("/".join(name), record)
            return self.ok(202)
        return None

    async def _undelete(self, name: tuple[str, str, str], record: BlobHistory) -> Response:
        """Undelete Blob: the soft-deleted blob and every soft-deleted snapshot and version come back; with
        versioning, a deleted blob stays without a current version (no ``""`` entry was made for it)."""
        if await self.up.snapshots(name[1], name[2]) is None:
            return self.refuse(BLOB_NOT_FOUND)
        if "" in record.deleted:
            record.live = True
        record.deleted.clear()
        self.history.put("/".join(name), record)
        return self.ok(200)

    async def _settle(self, name: tuple[str, str, str], record: BlobHistory) -> None:
        """Keep ``record``; when nothing of a blob without a current blob is left, delete it in Azurite."""
        if not record.live and not record.versions and not record.deleted:
            await self.up.delete_all(name[1], name[2])
            self.history.put("/".join(name), BlobHistory())
        else:
            self.history.put("/".join(name), record)

    async def _purged(self, name: tuple[str, str, str], record: BlobHistory) -> BlobHistory:
        """``record`` without what has outlived its retention period (gone for good, in Azurite too)."""
        now = self.history.now()
        expired = [k for k, d in record.deleted.items() if d.until <= now]
        if not expired:
            return record
        for key in expired:
            del record.deleted[key]
            if key.startswith("v:"):
                snapshot = record.versions.pop(key[2:], None)
                if snapshot is not None:
                    await self.up.delete_snapshot(name[1], name[2], snapshot)
            elif key:
                await self.up.delete_snapshot(name[1], name[2], key)
        await self._settle(name, record)
        return record

    # -- List Blobs -------------------------------------------------------------------------------

    async def list_request(
        self, account: str, container: str, query: Query, path: str, headers: dict[str, str]
    ) -> Response | None:
        include = {i.strip().lower() for v in query.get("include", []) for i in v.split(",") if i.strip()}
        if "versions" in include and query.get("delimiter", [""])[0]:
            # "Listing versions and using a delimiter are mutually exclusive." (the service's 400 answer,
            # azure-sdk-for-java issue 22982)
            return self.refuse(Refusal(400, "InvalidQueryParameterValue", VERSION_REFUSED.message))
        prefix = f"{account}/{container}/"
        if not self.history.in_container(prefix) and not self.history.service.active:
            return None  # nothing hidden, nothing deleted: Azurite's own listing
        for blob in list(self.history.in_container(prefix)):
            async with self._lock(prefix + blob):
                record = self.history.get(prefix + blob)
                if record is not None:
                    await self._purged((account, container, blob), record)
        histories = self.history.in_container(prefix)
        asked = (include - {"versions", "deleted", "deletedwithversions"}) | {"snapshots"}
        sent = [(k, v) for k, values in query.items() if k != "include" for v in values]
        sent.append(("include", ",".join(sorted(asked))))
        status, out, content = await self.up.send("GET", path, sent, headers, b"")
        if status >= 300:
            return status, out, content
        return status, out, rewrite_listing(content, histories, include, self.history.now())

    def forget_container(self, account: str, container: str) -> None:
        self.history.forget_container(f"{account}/{container}/")


def rewrite_listing(xml: bytes, histories: Mapping[str, BlobHistory], include: set[str], now: float) -> bytes:
    """Azurite's listing (asked for snapshots) as Azure lists it: hidden snapshots as versions, soft-deleted
    entries marked or left out, the current version's id. Pure."""
    root = ET.fromstring(xml)  # noqa: S314 - Azurite's answer
    blobs = root.find("Blobs")
    if blobs is None:
        return xml
    listed = [e for e in blobs.findall("Blob") if _listed(e, histories.get(e.findtext("Name") or ""), include, now)]
    for element in blobs.findall("Blob"):
        blobs.remove(element)
    # Azure lists a name's snapshots and versions oldest first, then the blob itself (Azurite: as stored).
    listed.sort(key=lambda e: (e.findtext("Name") or "", _entry_time(e) is None, _entry_time(e) or ""))
    blobs.extend(listed)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _entry_time(element: ET.Element) -> str | None:
    """A snapshot's or previous version's time (both are ISO timestamps), None for the blob itself."""
    if element.findtext("IsCurrentVersion") == "true":
        return None
    return element.findtext("Snapshot") or element.findtext("VersionId")


def _listed(element: ET.Element, record: BlobHistory | None, include: set[str], now: float) -> bool:
    """Rewrite one ``Blob`` element in place; False when Azure would not list it."""
    snapshot = element.findtext("Snapshot")
    if record is None:
        return not snapshot or "snapshots" in include
    if snapshot and snapshot in record.hidden():
        version = next(v for v, s in record.versions.items() if s == snapshot)
        deletion = record.deleted.get(f"v:{version}")
        if "versions" not in include or (deletion is not None and "deleted" not in include):
            return False
        _set(element, snapshot=None, version=version, deletion=deletion, now=now)
        return True
    if snapshot:
        deletion = record.deleted.get(snapshot)
        if "snapshots" not in include or (deletion is not None and "deleted" not in include):
            return False
        _set(element, snapshot=snapshot, deletion=deletion, now=now)
        return True
    if not record.live:
        deletion = record.deleted.get("")
        if deletion is None or "deleted" not in include:
            return False
        _set(element, deletion=deletion, now=now)
        return True
    _set(element, version=record.current, current=record.current is not None and "versions" in include, now=now)
    return True


def _set(
    element: ET.Element,
    *,
    now: float,
    snapshot: str | None = None,
    version: str | None = None,
    current: bool = False,
    deletion: SoftDeleted | None = None,
) -> None:
    """Put ``Name, Deleted, Snapshot, VersionId, IsCurrentVersion`` first, in the order Azure writes them."""
    head: list[ET.Element] = []
    name = element.find("Name")
    assert name is not None
    head.append(name)
    if deletion is not None:
        head.append(_leaf("Deleted", "true"))
        properties = element.find("Properties")
        if properties is not None:
            when = format_datetime(datetime.fromtimestamp(deletion.at, UTC), usegmt=True)
            properties.append(_leaf("DeletedTime", when))
            properties.append(_leaf("RemainingRetentionDays", str(deletion.remaining_days(now))))
    if snapshot is not None:
        head.append(_leaf("Snapshot", snapshot))
    if version is not None:
        head.append(_leaf("VersionId", version))
    if current:
        head.append(_leaf("IsCurrentVersion", "true"))
    rest = [c for c in element if c.tag not in ("Name", "Deleted", "Snapshot", "VersionId", "IsCurrentVersion")]
    for child in list(element):
        element.remove(child)
    element.extend([*head, *rest])


def _leaf(tag: str, text: str) -> ET.Element:
    leaf = ET.Element(tag)
    leaf.text = text
    return leaf
