"""Client-side-encrypted blobs whose data keys a managed key wraps (``ROTATION_DATA_LOCATIONS``).

They are one consumer per location, moved together by the ``rewrap`` step: it starts the re-wrap
(queued work, or inline) and waits, resumable, until a verification scan finds no blob left on an
old version other than the ones that failed, which keep the old version from retiring.

The locations are shared by every managed key (and may hold blobs of keys the service does not manage):
a key's plan, re-wrap, status and retirement count the other keys' blobs apart (``other_keys``), never
as problems, failures or references to its versions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rotation.consumers.base import ConsumerRun, Reading, Settled, UnitPorts
from rotation.domain.model import (
    SURVEY_OTHER_KEYS,
    BlobEvidence,
    Consumer,
    ConsumerChange,
    ConsumerKind,
    HeldBlob,
    KeyRef,
)
from rotation.domain.plan import PlanContext, UnitPlan

BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
BLOB_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
MAX_NAMED = 20  # held blobs named in one blocker (the rest are counted)


@dataclass(frozen=True)
class DataSurvey:
    """Blob counts by key version over the configured locations (``""``: blobs with problems), and the
    blobs wrapped by other keys (not this key's concern)."""

    counts: Mapping[str, int]
    locations: tuple[str, ...]  # display names
    held: tuple[HeldBlob, ...] = ()  # versions, snapshots, soft-deleted blobs: never re-wrapped
    other_keys: int = 0


class DataLocationUnit:
    """Implements ``ConsumerUnit[DataSurvey]``."""

    kind: str = ConsumerKind.DATA_LOCATION
    label = "data locations"
    repoint_step: str | None = None
    settle_step: str | None = "rewrap"
    permissions: Mapping[str, tuple[str, ...]] = {
        "plan": (BLOB_READ,),  # the survey lists the blobs with their metadata
        "rewrap": (
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
            BLOB_READ,
            BLOB_WRITE,
        ),
    }

    def discover(self, ports: UnitPorts, key: KeyRef) -> Sequence[DataSurvey]:
        locations = ports.settings.data_locations
        if not locations:
            return ()
        counts = dict(ports.data_keys.survey(key, locations))
        other_keys = counts.pop(SURVEY_OTHER_KEYS, 0)
        held = ports.data_keys.held_blobs(key, locations)
        return (DataSurvey(counts, tuple(d.display for d in locations), held, other_keys),)

    def uses_key(self, item: DataSurvey, key: KeyRef) -> bool:
        return True  # the survey counts the key's blobs only

    def plan(self, items: Sequence[DataSurvey], context: PlanContext) -> UnitPlan:
        consumers: list[Consumer] = []
        changes: list[ConsumerChange] = []
        target = context.target
        for survey in items:
            on_key = {v: n for v, n in survey.counts.items() if v}
            consumers.extend(Consumer(self.kind, d, d, None, None) for d in survey.locations)
            total_old = sum(n for v, n in on_key.items() if not KeyRef.same_version(v, target or ""))
            changes.append(
                ConsumerChange(
                    self.kind,
                    ",".join(survey.locations) or "data locations",
                    ",".join(f"{v}:{n}" for v, n in sorted(on_key.items())) or None,
                    target,
                    "planned",
                    f"{total_old} blobs to re-wrap; {survey.counts.get('', 0)} blobs with problems"
                    + (f"; {survey.other_keys} blobs of other keys (left alone)" if survey.other_keys else ""),
                )
            )
        history = tuple(h for survey in items for h in survey.held)
        return UnitPlan(tuple(consumers), tuple(changes), history=history)

    def references_to(self, items: Sequence[DataSurvey], key: KeyRef, version: str) -> tuple[str, ...]:
        count = sum(n for s in items for v, n in s.counts.items() if v and KeyRef.same_version(v, version))
        found = [f"{count} client-side-encrypted blobs are wrapped by it"] if count else []
        held = [h for s in items for h in s.held if KeyRef.same_version(h.key_version, version)]
        if held:
            # Named, so the owner can delete them (or wait for their lifecycle rule): nothing can re-wrap them.
            names = ", ".join(h.label() for h in held[:MAX_NAMED])
            more = f" and {len(held) - MAX_NAMED} more" if len(held) > MAX_NAMED else ""
            found.append(f"{len(held)} blob versions, snapshots or soft-deleted blobs are wrapped by it: {names}{more}")
        return tuple(found)

    def evidence(self, items: Sequence[DataSurvey]) -> BlobEvidence:
        """The blobs surveyed, by the key version that wraps them (``problems``: no usable version of this
        key), those of other keys, and the blob history (versions, snapshots, soft-deleted blobs) wrapped
        by a version of the key."""
        counts: Counter[str] = Counter()
        for survey in items:
            for version, n in survey.counts.items():
                counts[version or "problems"] += n
        held = [h for s in items for h in s.held]
        entries = Counter(h.entry.split(" ", 1)[0] for h in held)
        other_keys = sum(s.other_keys for s in items)
        return BlobEvidence(
            locations=sum(len(s.locations) for s in items),
            surveyed=sum(counts.values()) + other_keys,
            by_version=tuple(sorted(counts.items())),
            versions=entries["version"],
            snapshots=entries["snapshot"],
            soft_deleted=entries["soft-deleted"],
            history_by_version=tuple(sorted(Counter(h.key_version for h in held).items())),
            other_keys=other_keys,
        )

    def readings(self, items: Sequence[DataSurvey], key: KeyRef) -> Mapping[str, Reading]:
        return {}

    def repoint(
        self, run: ConsumerRun, change: ConsumerChange, observed: Reading | None = None
    ) -> ConsumerChange | None:
        return None  # moved by the settle step (the re-wrap), not one by one

    def read_back(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> Reading | None:
        return None  # the re-wrap's verification scan is its read-back

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        return None

    def roll_back(self, run: ConsumerRun, change: ConsumerChange) -> None:
        """Nothing to undo: a re-wrapped blob is readable with either version while both are enabled."""

    def settle(self, run: ConsumerRun) -> Settled:
        """Start the re-wrap once, then report its progress until a verification scan says it is done."""
        ports, state = run.ports, run.state
        locations = ports.settings.data_locations
        if not locations:
            return Settled(True, "no data locations", skipped=True)
        if run.dry_run:
            planned = [c.detail for c in state.consumers if c.kind == self.kind]
            return Settled(True, "would re-wrap client-side data keys: " + "; ".join(planned))
        new = state.new_version
        assert new is not None
        begun = any(r.name == self.settle_step and r.status == "waiting" for r in state.steps)

        def begin() -> None:
            ports.data_keys.begin_rewrap(state.rotation_id, run.key, new, locations)

        if not begun:
            run.write("begin_rewrap", state.rotation_id, new, begin)
        else:
            begin()  # idempotent: the run re-sends work a lost message left undone
        done, summary = ports.data_keys.rewrap_progress(state.rotation_id)
        detail = (
            f"{summary.rewrapped} re-wrapped, {summary.already_current} current, {len(summary.failed)} failed, "
            f"{summary.remaining_on_old_versions} remaining"
            + (f", {summary.other_keys} blobs of other keys left alone" if summary.other_keys else "")
        )
        if not done:
            return Settled(False, detail, rewrap=summary)
        outcome: Literal["failed", "changed"] = "failed" if summary.failed else "changed"
        changes = tuple(
            replace(c, status=outcome, after=new, detail=detail) for c in state.consumers if c.kind == self.kind
        )
        return Settled(True, detail, changes, summary)

    def at_retirement(self, change: ConsumerChange) -> ConsumerChange:
        return change

    def describe(self, changes: Sequence[ConsumerChange]) -> str:
        return "; ".join(c.detail for c in changes) or "no data locations"


DATA_LOCATIONS = DataLocationUnit()
