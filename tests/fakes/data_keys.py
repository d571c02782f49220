"""In-memory ``DataKeys``: client-side-encrypted blobs by location, with the key version wrapping each.

It keeps real state, so the workflow can be tested against re-wrap outcomes (blobs moved, blobs that
cannot be moved and still need the old version, a re-wrap still in progress, poison messages)
without Azure. It follows the port's contract:

- ``survey`` counts blobs of the key by the version their ``KeyId`` names (a blob whose data key
  does not unwrap still counts there); ``""`` counts blobs without a readable ``KeyId`` (no or
  malformed ``encryptiondata``: put them with ``key_id=None``); ``SURVEY_OTHER_KEYS`` counts blobs
  whose ``KeyId`` names another Key Vault key (a location shared by several keys).
- A blob of another key is never changed nor reported as failed: the re-wrap counts it in
  ``other_keys``.
- ``begin_rewrap`` is idempotent per rotation id; the work happens as ``rewrap_progress`` is polled
  (like the queue-triggered worker), ``per_poll`` blobs at a time, not at all while ``paused``.
- A location whose container does not exist is reported in ``failed`` (blob ``""``), as it cannot be
  verified.
- A blob with a problem is never changed: it is reported in ``failed`` by name and reason and stays
  on its version, so the old version must not be retired while ``failed`` is non-empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rotation.domain.model import SURVEY_OTHER_KEYS, HeldBlob, KeyRef, RewrapFailure, RewrapSummary
from rotation.errors import InputError
from rotation.settings import DataLocation

_Container = tuple[str, str]  # (account_url, container)
MISSING_CONTAINER = "the data location's container does not exist"  # BlobDataKeys' reason, word for word


@dataclass
class FakeBlob:
    """One blob's wrapping: the versioned key id in its ``encryptiondata`` (None: no encryptiondata)."""

    key_id: str | None
    problem: str | None = None  # why it cannot be re-wrapped (e.g. "malformed encryptiondata")


@dataclass
class _Run:
    key: KeyRef
    new_version: str
    locations: tuple[DataLocation, ...]
    pending: list[tuple[DataLocation, str]]
    rewrapped: int = 0
    already_current: int = 0
    skipped_deleted: int = 0
    other_keys: int = 0
    failed: list[RewrapFailure] = field(default_factory=list)


class FakeDataKeys:
    """A ``DataKeys`` port over dictionaries. ``calls`` records (method, rotation_id or "") in order."""

    def __init__(self, *, per_poll: int | None = None) -> None:
        self.containers: dict[_Container, dict[str, FakeBlob]] = {}
        self.runs: dict[str, _Run] = {}
        self.per_poll = per_poll
        self.paused = False
        self.poison_messages = 0
        self.calls: list[tuple[str, str]] = []
        # (location display, blob, entry) -> the key id wrapping it: versions, snapshots, soft-deleted blobs
        self.history: dict[tuple[str, str, str], str | None] = {}

    # -- arranging state ---------------------------------------------------------------------

    def create_container(self, location: DataLocation) -> None:
        """An empty container (a location whose container was never created is reported as missing)."""
        self.containers.setdefault((location.account_url, location.container), {})

    def put_blob(self, location: DataLocation, name: str, key_id: str | None, *, problem: str | None = None) -> None:
        """Create or overwrite a blob (its owner writing it) wrapped by ``key_id``."""
        self.containers.setdefault((location.account_url, location.container), {})[name] = FakeBlob(key_id, problem)

    def put_blobs(self, location: DataLocation, key: KeyRef, version: str, count: int, *, prefix: str = "b") -> None:
        """``count`` healthy blobs wrapped by ``version`` of ``key``."""
        for i in range(count):
            self.put_blob(location, f"{location.prefix}{prefix}{i:06d}", key.version_uri(version))

    def put_history(self, location: DataLocation, name: str, entry: str, key_id: str | None) -> None:
        """A previous version, snapshot or soft-deleted blob (``entry`` as ``HeldBlob.entry``)."""
        self.history[(location.display, name, entry)] = key_id

    def delete_history(self, location: DataLocation, name: str, entry: str) -> None:
        self.history.pop((location.display, name, entry), None)

    def delete_blob(self, location: DataLocation, name: str) -> None:
        self.containers.get((location.account_url, location.container), {}).pop(name, None)

    def blob(self, location: DataLocation, name: str) -> FakeBlob | None:
        return self.containers.get((location.account_url, location.container), {}).get(name)

    def versions_in_use(self, key: KeyRef, locations: Sequence[DataLocation]) -> dict[str, int]:
        """Blob counts by version of ``key`` (problems included: a broken blob still needs its version)."""
        counts: dict[str, int] = {}
        for _, _, blob in self._blobs(locations):
            version = _version_of(key, blob.key_id)
            if version is not None:
                counts[version] = counts.get(version, 0) + 1
        return counts

    # -- the port ----------------------------------------------------------------------------

    def survey(self, key: KeyRef, locations: Sequence[DataLocation]) -> dict[str, int]:
        self.calls.append(("survey", ""))
        counts: dict[str, int] = {}
        for _, _, blob in self._blobs(locations):
            # As the real survey, which reads metadata only: a blob whose KeyId names a version counts
            # there even if its data key would not unwrap (it still needs that version).
            # A blob of another key with a problem (malformed metadata) cannot be vouched for: a problem here.
            other = blob.problem is None and _other_key(key, blob.key_id)
            bucket = _version_of(key, blob.key_id) or (SURVEY_OTHER_KEYS if other else "")
            counts[bucket] = counts.get(bucket, 0) + 1
        return counts

    def held_blobs(self, key: KeyRef, locations: Sequence[DataLocation]) -> tuple[HeldBlob, ...]:
        self.calls.append(("held_blobs", ""))
        displays = {location.display for location in locations}
        return tuple(
            HeldBlob(display, name, entry, version)
            for (display, name, entry), key_id in sorted(self.history.items())
            if display in displays and (version := _version_of(key, key_id))
        )

    def begin_rewrap(self, rotation_id: str, key: KeyRef, new_version: str, locations: Sequence[DataLocation]) -> None:
        self.calls.append(("begin_rewrap", rotation_id))
        if rotation_id in self.runs:
            return
        pending = [(location, name) for location, name, _ in self._blobs(locations)]
        run = _Run(key, new_version, tuple(locations), pending)
        for location in locations:
            if (location.account_url, location.container) not in self.containers:
                # As BlobDataKeys: a location that cannot be listed cannot be verified; it blocks retirement.
                run.failed.append(RewrapFailure(location.display, "", MISSING_CONTAINER))
        self.runs[rotation_id] = run

    def rewrap_progress(self, rotation_id: str) -> tuple[bool, RewrapSummary]:
        self.calls.append(("rewrap_progress", rotation_id))
        run = self.runs.get(rotation_id)
        if run is None:
            return False, RewrapSummary()
        if not self.paused:
            budget = len(run.pending) if self.per_poll is None else self.per_poll
            while run.pending and budget > 0:
                budget -= 1
                self._rewrap_one(run, *run.pending.pop(0))
        remaining = self._remaining_on_old(run)
        summary = RewrapSummary(
            rewrapped=run.rewrapped,
            already_current=run.already_current,
            skipped_deleted=run.skipped_deleted,
            failed=tuple(run.failed),
            poison_messages=self.poison_messages,
            remaining_on_old_versions=remaining,
            other_keys=run.other_keys,
        )
        return (not run.pending and remaining == 0), summary

    # -- internals ---------------------------------------------------------------------------

    def _blobs(self, locations: Sequence[DataLocation]) -> list[tuple[DataLocation, str, FakeBlob]]:
        found = []
        for location in locations:
            blobs = self.containers.get((location.account_url, location.container), {})
            for name in sorted(blobs):
                if name.startswith(location.prefix):
                    found.append((location, name, blobs[name]))
        return found

    def _rewrap_one(self, run: _Run, location: DataLocation, name: str) -> None:
        blob = self.blob(location, name)
        if blob is None:
            run.skipped_deleted += 1
            return
        if blob.problem is None and _other_key(run.key, blob.key_id):
            run.other_keys += 1
            return
        version = _version_of(run.key, blob.key_id)
        if blob.problem is not None or version is None:
            reason = blob.problem or ("no encryptiondata" if blob.key_id is None else "KeyId names no version")
            run.failed.append(RewrapFailure(location.display, name, reason))
            return
        if version == run.new_version:
            run.already_current += 1
            return
        blob.key_id = run.key.version_uri(run.new_version)
        run.rewrapped += 1

    def _remaining_on_old(self, run: _Run) -> int:
        """Verification scan: healthy blobs of the key on a version other than the new one."""
        failed = {(f.location, f.blob) for f in run.failed}
        remaining = 0
        for location, name, blob in self._blobs(run.locations):
            version = _version_of(run.key, blob.key_id)
            if version is None or version == run.new_version or (location.display, name) in failed:
                continue
            remaining += 1
        return remaining


def _other_key(key: KeyRef, key_id: str | None) -> bool:
    """True when ``key_id`` is a Key Vault key URI of a key other than ``key``."""
    try:
        named, _ = KeyRef.parse(key_id or "")
    except InputError:
        return False
    return not named.same_key(key)


def _version_of(key: KeyRef, key_id: str | None) -> str | None:
    """The version of ``key`` named by ``key_id``, or None when it names no version of ``key``."""
    if key_id is None:
        return None
    prefix = key.uri.lower() + "/"
    if not key_id.lower().startswith(prefix):
        return None
    version = key_id[len(prefix) :]
    return version if version and "/" not in version else None
