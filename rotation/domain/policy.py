"""Pure decisions about when to rotate and when an old version may retire.

Every function here is a function of plain values and ``now`` (an injected clock's reading).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from rotation.domain.model import KeyRef, KeyVersion, RotationPolicy
from rotation.errors import InputError, excerpt

_DURATION = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration as Key Vault rotation policies write them (``P90D``, ``P1Y10D``, ``PT48H``).

    Years count as 365 days and months as 30, as Key Vault documents for policy arithmetic.

    Raises:
        InputError: ``text`` is not such a duration.
    """
    match = _DURATION.match(text.strip().upper())
    if match is None or text.strip().upper() in ("P", "PT"):
        raise InputError(f"{excerpt(text)} is not an ISO 8601 duration such as P90D or PT48H")
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    days = parts.get("years", 0) * 365 + parts.get("months", 0) * 30 + parts.get("weeks", 0) * 7 + parts.get("days", 0)
    return timedelta(
        days=days, hours=parts.get("hours", 0), minutes=parts.get("minutes", 0), seconds=parts.get("seconds", 0)
    )


def new_version_expiry(policy: RotationPolicy | None, now: datetime) -> datetime | None:
    """The expiry a new version gets: ``now`` plus the policy's ``expiryTime``, if the policy sets one."""
    if policy is None or not policy.expiry_time:
        return None
    return now + parse_duration(policy.expiry_time)


@dataclass(frozen=True)
class RotateDecision:
    rotate: bool
    reason: str


def should_rotate(
    latest: KeyVersion, policy: RotationPolicy | None, now: datetime, near_expiry: timedelta
) -> RotateDecision:
    """Whether the reconciler should rotate a key whose latest version is ``latest``.

    Rotate when the latest version has expired, expires within ``near_expiry`` (the event was
    missed), or is older than the policy's ``rotate_after_create``. A disabled latest version is
    left to a human: rotating it would copy a version someone deliberately switched off.
    """
    if not latest.enabled:
        return RotateDecision(False, "latest version is disabled")
    if latest.expires is not None:
        if latest.expires <= now:
            return RotateDecision(True, "latest version has expired")
        if latest.expires - now <= near_expiry:
            return RotateDecision(True, f"latest version expires within {near_expiry.days} days")
    if policy is not None and policy.rotate_after_create:
        due = latest.created + parse_duration(policy.rotate_after_create)
        if due <= now:
            return RotateDecision(True, f"latest version is older than {policy.rotate_after_create}")
    if policy is not None and policy.rotate_before_expiry and latest.expires is not None:
        due = latest.expires - parse_duration(policy.rotate_before_expiry)
        if due <= now:
            return RotateDecision(True, f"latest version is within {policy.rotate_before_expiry} of expiry")
    return RotateDecision(False, "not due")


@dataclass(frozen=True)
class RetirementDecision:
    due: bool
    reason: str
    blockers: tuple[str, ...] = ()


def version_of(key_identifier: str | None, key_uri: str) -> str | None:
    """The version of ``key_uri`` named by ``key_identifier``: ``""`` when versionless, None when another key."""
    if not key_identifier:
        return None
    try:
        ident_key, version = KeyRef.parse(key_identifier)
        key, _ = KeyRef.parse(key_uri)
    except InputError:
        return None
    if ident_key.vault_url != key.vault_url or ident_key.name.lower() != key.name.lower():
        return None
    return version or ""


def retirement_due(
    retire_after: datetime | None, now: datetime, references: tuple[str, ...], rewrap_failures: int = 0
) -> RetirementDecision:
    """The old version may be disabled only after the grace period and when nothing uses it."""
    if retire_after is None:
        return RetirementDecision(False, "not cut over yet")
    blockers = list(references)
    if rewrap_failures:
        blockers.append(f"{rewrap_failures} blobs failed to re-wrap and still need it")
    if now < retire_after:
        return RetirementDecision(False, f"grace period runs until {retire_after.isoformat()}", tuple(blockers))
    if blockers:
        return RetirementDecision(False, "still referenced", tuple(blockers))
    return RetirementDecision(True, "grace period over and nothing references the old version")
