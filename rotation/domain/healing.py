"""Pure decisions of the self-healing reconciler: which stopped rotations to retry, when, and when to give up.

A rotation that stopped ``rolled_back`` or ``failed`` for a cause that may pass (a resource provider
that could not reach Key Vault, a timeout, throttling: decided by the error code the journal recorded)
is retried with exponential back-off, adopting the version it already created, until it succeeds or
the expiry window of the version its consumers use closes; then a human is paged. Every function here
is a function of plain values and ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from rotation.domain.model import Consumer, KeyVersion, RotationStatus
from rotation.domain.steps import RotationState
from rotation.errors import ProviderKeyVaultUnavailable, ThrottledError, TransientError

#: Recorded error codes whose cause may pass by itself: the resource provider's own Key Vault access
#: failing (``ProviderKeyVaultUnavailable``), transient failures, throttling, and timeouts (``Timeout``,
#: as a journal written by another build may record one).
RETRYABLE_CODES = frozenset({ProviderKeyVaultUnavailable.code, TransientError.code, ThrottledError.code, "Timeout"})
RETRYABLE_STATUSES = frozenset({RotationStatus.ROLLED_BACK, RotationStatus.FAILED})


def retryable(state: RotationState) -> bool:
    """Whether ``state`` stopped for a cause that may pass (by its recorded error code)."""
    return state.status in RETRYABLE_STATUSES and state.error is not None and state.error[0] in RETRYABLE_CODES


def backoff(attempt: int, base: timedelta, cap: timedelta) -> timedelta:
    """How long after attempt ``attempt`` stopped the next one may start: ``base * 2**(attempt-1)``, capped."""
    delay: timedelta = base * (2 ** max(0, min(attempt, 30) - 1))
    return min(cap, delay)


@dataclass(frozen=True)
class RetryDecision:
    action: Literal["retry", "wait", "escalate"]
    reason: str
    not_before: datetime | None = None


def retry_decision(
    state: RotationState,
    now: datetime,
    *,
    old_expires: datetime | None,
    base: timedelta,
    cap: timedelta,
    max_attempts: int,
) -> RetryDecision:
    """What to do about a retryable stopped rotation (``retryable(state)``).

    Escalate once the version its consumers stay on has expired (the window closed) or after
    ``max_attempts``; otherwise retry once the back-off since it stopped has passed.
    """
    code = state.error[0] if state.error else state.status.value
    if old_expires is not None and old_expires <= now:
        return RetryDecision("escalate", f"version {state.old_version} expired while retrying ({code})")
    if state.attempt >= max_attempts:
        return RetryDecision("escalate", f"{state.attempt} attempts failed ({code}); last: {_message(state)}")
    not_before = state.updated_at + backoff(state.attempt, base, cap)
    if now < not_before:
        why = f"attempt {state.attempt} stopped ({code}); next after {not_before.isoformat()}"
        return RetryDecision("wait", why, not_before)
    return RetryDecision("retry", f"retry {state.attempt + 1} of {state.rotation_id} ({code})", not_before)


def _message(state: RotationState) -> str:
    return state.error[1][:200] if state.error else ""


@dataclass(frozen=True)
class ExpiringUse:
    """A consumer on a version of the key that is expired or expires within the window."""

    consumer: str
    version: str
    expires: datetime

    def describe(self, now: datetime) -> str:
        if self.expires <= now:
            return f"{self.consumer} uses version {self.version}, expired {self.expires.isoformat()}"
        return f"{self.consumer} uses version {self.version}, expiring {self.expires.isoformat()}"


def expiring_uses(
    consumers: Iterable[Consumer], versions: Iterable[KeyVersion], now: datetime, near_expiry: timedelta
) -> tuple[ExpiringUse, ...]:
    """Every consumer whose version in use (or pinned version) is expired or expires within ``near_expiry``."""
    by_version = {v.version: v for v in versions}
    found: list[ExpiringUse] = []
    for consumer in consumers:
        used = consumer.version_in_use or consumer.pinned_version
        version = by_version.get(used) if used else None
        if version is None or version.expires is None:
            continue
        if version.expires - now <= near_expiry:
            found.append(ExpiringUse(consumer.name, version.version, version.expires))
    return tuple(found)


def versions_near_expiry(
    versions: Iterable[KeyVersion], latest: str, now: datetime, near_expiry: timedelta
) -> tuple[KeyVersion, ...]:
    """Enabled versions other than ``latest`` that are expired or expire within ``near_expiry``.

    Only when there is one can a consumer be on an expiring version while the latest is fresh,
    so only then does the reconciler look for the key's consumers.
    """
    return tuple(
        v
        for v in versions
        if v.version != latest and v.enabled and v.expires is not None and v.expires - now <= near_expiry
    )


def waiting_for(state: RotationState) -> tuple[str, tuple[str, ...]]:
    """For a rotation not finished: what it is waiting for, and the on-call commands that act on it.

    A finished one (retired, dry run, refused, abandoned) answers ``("", ())``.
    """
    rid = state.rotation_id
    retry, abandon = f"retry {rid}", f"abandon {rid} --reason TEXT"
    step = next((r for r in state.steps if r.name == state.stage), None)
    detail = step.detail if step is not None and step.detail else ""
    status = state.status
    if status == RotationStatus.RUNNING:
        if step is not None and step.status == "failed":
            return f"the next reconciler tick to resume {state.stage} ({detail})", (retry, abandon)
        if step is not None and step.status == "waiting":
            return f"{state.stage}: {detail}", (abandon,)  # paused at the invocation budget; its continuation
        return f"an executor running {state.stage}", (abandon,)
    if status == RotationStatus.WAITING:
        return f"{state.stage}: {detail or 'an external process'}", (retry, abandon)
    if status == RotationStatus.AWAITING_RETIREMENT:
        when = state.retire_after.isoformat() if state.retire_after else "the grace period"
        why = detail if state.stage == "retire" and detail else f"the grace period (until {when})"
        return f"retirement of {state.old_version}: {why}", (abandon,)
    if retryable(state):
        return f"the reconciler's retry with back-off ({state.error[0] if state.error else ''})", (retry, abandon)
    if status in (RotationStatus.ROLLED_BACK, RotationStatus.FAILED, RotationStatus.NEEDS_HUMAN):
        reason = state.error[1][:200] if state.error else status.value
        return f"a human: {reason}", (retry, abandon)
    return "", ()
