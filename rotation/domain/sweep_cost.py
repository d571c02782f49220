"""How the reconciler reads the managed keys of a vault at the least Key Vault cost. Pure.

A tick needs, for every managed key, its current version (is it near expiry?) and whether some other
enabled version is near expiry (may a consumer sit on it?). Two ways to learn that:

- **one version listing per managed key**: everything, one call each (up to 25 versions): M calls;
- **one listing of the vault** (``GET /keys``, up to 25 keys a page): ⌈N/25⌉ calls. Key Vault's List Keys
  gives each key's *current* version's attributes (``enabled``, ``nbf``, ``exp``, ``created``,
  ``updated``), its tags and ``managed``, under the versionless ``kid``: no version id and no other
  version ("Individual versions of a key are not listed", learn.microsoft.com, Get Keys). Enough to
  judge the current version; not enough to see an older version nearing expiry.

So the listing is used only when it is expected to be cheaper (the vault's size, as an earlier tick
listed it, in fewer pages than there are managed keys), and never beyond ``managed - 1`` pages (a vault
that grew is read per key from there: a stale size costs calls, never a decision). Each key listed that
way is judged from the listing only when a version listing of it (:class:`VersionsSeen`, kept by the
process and in the app's storage) says no other enabled version nears expiry, its current version is
still the one seen then, and that was less than ``VERSIONS_MAX_AGE`` ago (an older version's attributes
can be edited without the listing showing it); otherwise its versions are listed, as its decision needs
them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotation.domain.model import KeyRef, KeyVersion

#: Keys per page of Key Vault's List Keys (its ``maxresults`` maximum and default).
KEYS_PER_PAGE = 25
#: How long what a version listing showed about a key's other versions is trusted without listing again.
VERSIONS_MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True)
class VaultSize:
    """What the last listing of a vault saw: ``keys`` in ``pages`` pages, ``complete`` or cut short."""

    keys: int
    pages: int
    complete: bool

    @property
    def expected_pages(self) -> int:
        """The pages a full listing is expected to take: known, or at least one more than were read."""
        if self.complete:
            return max(1, math.ceil(self.keys / KEYS_PER_PAGE))
        return self.pages + 1


@dataclass(frozen=True)
class VersionsSeen:
    """What one version listing of a key showed: its current version's creation time and the earliest
    expiry of its other enabled versions (None: none expires)."""

    current_created: datetime
    others_expire: datetime | None
    seen_at: datetime


@dataclass
class SweepMemory:
    """What earlier ticks learnt: kept by the process, and between processes in the app's storage
    (``rotation.domain.sweep_record``; lost, the next tick pays more, once)."""

    vaults: dict[str, VaultSize] = field(default_factory=dict)  # vault URL (lower-case) -> size
    keys: dict[str, VersionsSeen] = field(default_factory=dict)  # key URI (lower-case) -> versions seen


def list_the_vault(managed: int, size: VaultSize | None) -> bool:
    """Whether to start with a listing of the vault rather than one version listing per managed key.

    The size unknown (the first tick of a deployment, or its stored memory lost), a listing is tried (cut
    at ``page_limit`` pages, or as soon as every managed key was seen) to learn it, at most ``managed - 1``
    calls on top of the version listings that tick needs anyway: once, so that every later tick, in any
    worker process, is within the bound. Known, it is used when its expected pages are fewer than the
    managed keys.
    """
    if managed < 2:
        return False
    if size is None:
        return True
    return size.expected_pages < managed


def page_limit(managed: int) -> int:
    """The most pages a tick lists: past ``managed - 1`` pages, reading per key is no dearer."""
    return max(0, managed - 1)


def versions_seen(versions: Iterable[KeyVersion], now: datetime) -> VersionsSeen | None:
    """What a version listing shows that the sweep needs later; None for a key without versions."""
    listed = list(versions)
    if not listed:
        return None
    current = max(listed, key=lambda v: (v.created, v.version))
    expiries = [v.expires for v in listed if v is not current and v.enabled and v.expires is not None]
    return VersionsSeen(current.created, min(expiries) if expiries else None, now)


def listing_suffices(seen: VersionsSeen | None, listed: KeyVersion, now: datetime, near_expiry: timedelta) -> bool:
    """Whether ``listed`` (a key's current attributes from the vault listing) is all its decision needs.

    True when a recent version listing saw this same current version and no other enabled version
    expiring within ``near_expiry`` of now, and the current version is not itself that close to expiry
    (then a rotation starts, and who is on which version is worth its calls).
    """
    if seen is None or seen.current_created != listed.created or now - seen.seen_at >= VERSIONS_MAX_AGE:
        return False
    if listed.expires is not None and listed.expires - now <= near_expiry:
        return False
    return seen.others_expire is None or seen.others_expire - now > near_expiry


def key_id(key: KeyRef) -> str:
    return key.uri.lower()
