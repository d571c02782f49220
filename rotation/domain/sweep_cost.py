"""What the reconciler reads of a vault in one tick, within min(M, ⌈N/25⌉) Key Vault calls. Pure.

A tick needs, for every managed key, its current version (is it near expiry?) and whether some other
enabled version is near expiry (may a consumer sit on it?). Two ways to learn that:

- **one version listing per managed key**: everything, one call each (up to 25 versions): M calls;
- **one listing of the vault** (``GET /keys``, up to 25 keys a page): ⌈N/25⌉ calls. Key Vault's List Keys
  gives each key's *current* version's attributes (``enabled``, ``nbf``, ``exp``, ``created``,
  ``updated``), its tags and ``managed``, under the versionless ``kid``: no version id and no other
  version ("Individual versions of a key are not listed", learn.microsoft.com, Get Keys). Enough to
  judge the current version; not enough to see an older version nearing expiry.

Every tick keeps to the bound, the first of a deployment too (:func:`plan_tick`):

- **A listing never costs more than the bound** when it stops at M pages: page k exists only if the vault
  has at least k pages. So a vault whose size is unknown (a deployment's first tick, or its memory lost)
  is listed, at most M pages, and judged from what that showed; a managed key the cut listing did not
  reach is *deferred* to the next tick, which knows the size.
- **Reading each key** (M calls) is chosen once the vault is known to take at least M pages.
- **Otherwise the vault is listed**, and what a listing cannot show (another enabled version nearing
  expiry) comes from :class:`VersionsSeen`, kept by the process and in the app's storage: what the key's
  last version listing showed, carried forward by later listings (when a listing shows a new current
  version, the one before it becomes "another version" with the expiry the sweep last saw for it). A key
  without such a record, or whose record is older than ``VERSIONS_MAX_AGE`` or only carried forward
  (versions made in between are unknown), needs a version listing: those are made on the tick after a
  listing, instead of listing, at most as many as the vault has pages (*catching up*). While a vault
  catches up, its missed events are noticed within two ticks instead of one.

No decision is taken on less than it needs: a key whose other versions are not known is judged on its
current version only, and looked at again, completely, within ⌈M / pages⌉ catching-up ticks. Where what
the sweep knows says a version nears expiry, the decision reads the key's versions: that read belongs to
the action (the issue's "plus the actions it takes"), and is counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rotation.domain.model import KeyRef, KeyVersion

#: Keys per page of Key Vault's List Keys (its ``maxresults`` maximum and default).
KEYS_PER_PAGE = 25
#: How long what a version listing showed about a key's other versions is trusted without listing again.
VERSIONS_MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True)
class VaultSize:
    """What the last listing of a vault saw: ``keys`` in ``pages`` pages, ``complete`` or cut short.
    ``catch_up``: the next tick makes version listings instead of listing the vault."""

    keys: int
    pages: int
    complete: bool
    catch_up: bool = False

    @property
    def expected_pages(self) -> int:
        """The pages a full listing takes: known, or at least one more than were read (a lower bound)."""
        if self.complete:
            return max(1, math.ceil(self.keys / KEYS_PER_PAGE))
        return self.pages + 1


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


def plan_tick(
    managed: Sequence[str], size: VaultSize | None, seen: Mapping[str, VersionsSeen], now: datetime
) -> TickPlan:
    """The reads of one tick over a vault whose managed keys are ``managed`` (key ids): never more than
    min(M, ⌈N/25⌉) calls, whatever the vault's size (module docstring)."""
    m = len(managed)
    if m == 1:
        return TickPlan(0, tuple(managed))  # one call: within any bound
    if size is None:
        return TickPlan(m)  # learn the size: a listing cut at M pages is within the bound
    if size.expected_pages >= m:
        return TickPlan(0, tuple(managed))
    if size.catch_up:
        due = catching_up(managed, seen, now)
        if due:
            return TickPlan(0, due[: size.expected_pages])
    return TickPlan(m)


def catching_up(managed: Iterable[str], seen: Mapping[str, VersionsSeen], now: datetime) -> tuple[str, ...]:
    """The keys whose other versions the sweep does not know completely: never seen first, then oldest."""
    due = [key for key in managed if key not in seen or not seen[key].complete(now)]
    return tuple(sorted(due, key=lambda key: (key in seen, seen[key].seen_at if key in seen else now)))


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
