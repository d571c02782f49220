"""What the reconciler reads of a vault in one tick, within min(M, ⌈N/25⌉) Key Vault calls. Pure.

A tick needs, for every managed key, its current version (is it near expiry?) and whether some other
enabled version is near expiry (may a consumer sit on it?). Two ways to learn that:

- **one version listing per managed key**: everything, one call each (up to 25 versions): M calls;
- **one listing of the vault** (``GET /keys``, up to 25 keys a page): ⌈N/25⌉ calls. Key Vault's List Keys
  gives each key's *current* version's attributes (``enabled``, ``nbf``, ``exp``, ``created``,
  ``updated``), its tags and ``managed``, under the versionless ``kid``: no version id and no other
  version ("Individual versions of a key are not listed", learn.microsoft.com, Get Keys). Enough to
  judge the current version; not enough to see an older version nearing expiry.

Every tick keeps to the bound, the first of a deployment too (:func:`plan_tick`). A listing's cost is
counted in the pages it actually took: Key Vault fills pages to ``maxresults`` in practice, but its SDK
maintainers say page sizes may vary (Azure/azure-sdk-for-cpp#2620), and then a listing costs more than
⌈N/25⌉; the sweep then costs min(M, the pages a listing takes).

- **A listing cut at M pages never costs more than the bound**: page k exists only if the vault's
  listing has at least k pages. So a vault whose size is unknown (a deployment's first tick, or its
  memory lost), or was last listed more than ``SIZE_MAX_AGE`` ago, is listed, at most M pages, and judged
  from what that showed; a managed key the cut listing did not reach is *deferred* to the next tick.
- **Reading each key** (M calls) is chosen while the vault is known to take at least M pages.
- **Otherwise the vault is listed**, and what a listing cannot show (another enabled version nearing
  expiry) comes from :class:`VersionsSeen`, kept by the process and in the app's storage: what the key's
  last version listing showed, carried forward by later listings (when a listing shows a new current
  version, the one before it becomes "another version" with the expiry the sweep last saw for it).
  A key needs a version listing (:func:`needs_versions`) when it has no such record, when its record is
  older than ``VERSIONS_MAX_AGE`` or only carried forward (versions made in between are unknown), or
  when another version entered the near-expiry window since it was read (consumers on it must be
  looked for). Those keys join the vault's queue (``VaultSize.pending``, first in first out, so a key
  that cannot be read never holds back the others) and are read on the tick after a listing, instead of
  listing, at most as many as the listing took pages (*catching up*). While a vault catches up, its
  missed events are noticed within two ticks instead of one.

No decision is taken on less than it needs: a key whose other versions are not known is judged on its
current version only, and looked at again, completely, when its turn in the queue comes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rotation.domain.model import KeyRef, KeyVersion

#: Keys per page of Key Vault's List Keys (its ``maxresults`` maximum and default).
KEYS_PER_PAGE = 25
#: How long what a version listing showed about a key's other versions is trusted without listing again.
VERSIONS_MAX_AGE = timedelta(hours=24)
#: How long a vault's size is trusted: a vault read key by key is listed again (cut at M pages) after it.
SIZE_MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True)
class VaultSize:
    """What the last listing of a vault saw: ``keys`` in ``pages`` pages, ``complete`` or cut short, at
    ``listed_at``; ``pending``: the managed keys (ids) waiting for a version listing, in order, and
    ``catch_up``: whether the next tick reads them instead of listing the vault."""

    keys: int
    pages: int
    complete: bool
    listed_at: datetime
    pending: tuple[str, ...] = ()
    catch_up: bool = False

    @property
    def expected_pages(self) -> int:
        """The pages a full listing takes: as many as the last one took, or at least one more than a cut
        one read (a lower bound)."""
        return max(1, self.pages) if self.complete else self.pages + 1


@dataclass(frozen=True)
class VersionsSeen:
    """What the sweep knows of a key's versions: its current version's ``created``, ``updated`` and
    ``expires`` (as a listing or version listing showed them), the earliest expiry of its other enabled
    versions (None: none expires), and when a version listing last showed all of them (``seen_at``).
    ``vouched`` is False once a listing showed a newer current version: others made in between are unknown."""

    current_created: datetime
    current_updated: datetime | None
    current_expires: datetime | None
    others_expire: datetime | None
    seen_at: datetime
    vouched: bool = True

    def shows(self, listed: KeyVersion) -> bool:
        """Whether ``listed`` (a listing's current attributes) is the current version this record describes."""
        return (self.current_created, self.current_updated) == (listed.created, listed.updated)

    def complete(self, now: datetime) -> bool:
        """Whether it still says everything about the key's other versions."""
        return self.vouched and now - self.seen_at < VERSIONS_MAX_AGE


@dataclass
class SweepMemory:
    """What earlier ticks learnt: kept by the process, and between processes in the app's storage
    (``rotation.domain.sweep_record``; lost, the next tick judges less and catches up, within the bound)."""

    vaults: dict[str, VaultSize] = field(default_factory=dict)  # vault URL (lower-case) -> size
    keys: dict[str, VersionsSeen] = field(default_factory=dict)  # key URI (lower-case) -> versions seen


@dataclass(frozen=True)
class TickPlan:
    """One vault's reads this tick: list at most ``list_pages`` pages (0: no listing), then make a version
    listing of each key in ``read`` (key ids)."""

    list_pages: int
    read: tuple[str, ...] = ()


def plan_tick(managed: Sequence[str], size: VaultSize | None, now: datetime) -> TickPlan:
    """The reads of one tick over a vault whose managed keys are ``managed`` (key ids): never more than
    min(M, the pages a listing of the vault takes) calls (module docstring)."""
    m = len(managed)
    if m == 1:
        return TickPlan(0, tuple(managed))  # one call: within any bound
    if size is None or not timedelta(0) <= now - size.listed_at < SIZE_MAX_AGE:
        return TickPlan(m)  # learn the size: a listing cut at M pages is within the bound
    if size.expected_pages >= m:
        return TickPlan(0, tuple(managed))
    if size.catch_up:
        wanted = set(managed)
        due = tuple(key for key in size.pending if key in wanted)
        if due:
            return TickPlan(0, due[: size.expected_pages])
    return TickPlan(m)


def needs_versions(seen: VersionsSeen | None, now: datetime, near: timedelta) -> bool:
    """Whether a key's versions must be read: what the sweep knows of its other versions is missing, stale
    or carried forward, or one of them entered the near-expiry window since they were read."""
    if seen is None or not seen.complete(now):
        return True
    return near_expiry(seen.others_expire, now, near) and not near_expiry(seen.others_expire, seen.seen_at, near)


def judged_before(previous: VersionsSeen | None, read: VersionsSeen, now: datetime, near: timedelta) -> bool:
    """Whether a version listing (``read``) shows what ``previous`` showed, judged within a day and with no
    other version entering the window since: then its decision needs the current version only, and
    ``previous`` is kept (its ``seen_at`` says when the consumers were last looked for)."""
    if previous is None or needs_versions(previous, now, near):
        return False
    return replace(read, seen_at=previous.seen_at) == previous


def queued(pending: Sequence[str], due: Iterable[str]) -> tuple[str, ...]:
    """The queue after a listing: the keys still due in the order they were queued, then the newly due."""
    due = list(due)
    kept = [key for key in pending if key in due]
    return (*kept, *(key for key in due if key not in kept))


def carried_forward(seen: VersionsSeen | None, listed: KeyVersion) -> VersionsSeen | None:
    """What the sweep knows of a key after a listing showed ``listed`` as its current version.

    The same current version: unchanged. A newer one: the version before it joins the others, with the
    expiry last seen for it (taken as enabled: its ``enabled`` may have changed unseen), and the record is
    no longer vouched for. Never seen: None (a listing says nothing of other versions).
    """
    if seen is None or seen.shows(listed):
        return seen
    others = [e for e in (seen.others_expire, seen.current_expires) if e is not None]
    return replace(
        seen,
        current_created=listed.created,
        current_updated=listed.updated,
        current_expires=listed.expires,
        others_expire=min(others) if others else None,
        vouched=False,
    )


def versions_seen(versions: Iterable[KeyVersion], now: datetime) -> VersionsSeen | None:
    """What a version listing shows that the sweep needs later; None for a key without versions."""
    listed = list(versions)
    if not listed:
        return None
    current = newest(listed)
    expiries = [v.expires for v in listed if v is not current and v.enabled and v.expires is not None]
    return VersionsSeen(current.created, current.updated, current.expires, min(expiries) if expiries else None, now)


def newest(versions: Iterable[KeyVersion]) -> KeyVersion:
    """The current version among a key's versions: the last created (same second: the greater id)."""
    return max(versions, key=lambda v: (v.created, v.version))


def near_expiry(expires: datetime | None, now: datetime, window: timedelta) -> bool:
    return expires is not None and expires - now <= window


def key_id(key: KeyRef) -> str:
    return key.uri.lower()
