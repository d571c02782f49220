"""Azure Resource Manager's request throttling: token buckets per subscription, principal and kind.

Source: learn.microsoft.com, "Understand how Azure Resource Manager throttles requests" (the regional
throttling and token bucket algorithm, 2024): subscription limits apply per subscription, per service
principal and per operation type; reads: bucket 250, refill 25/s; writes: bucket 200, refill 10/s;
deletes: bucket 200, refill 10/s. Over the limit, ARM answers 429 with ``Retry-After`` (seconds), and
every answer reports what is left in ``x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}``.

Not modelled: the tenant-level buckets and the global subscription limit (15x one principal's).

Two things Azure does not do, for measuring: a kind's ``initial`` setting makes a bucket first seen start
with that many tokens instead of full (a bench measures the sustained rate from a drained bucket), and
every bucket counts what it answered (:meth:`TokenBuckets.stats`: granted, throttled, when the first
request came and when the last one was granted), so a 429 is counted where it is answered, not by clients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from emulators.arm import errors
from emulators.arm.state import Throttle

KINDS = ("reads", "writes", "deletes")


def kind_of(method: str) -> str:
    """Which bucket a request draws from: GET/HEAD read, DELETE deletes, everything else writes."""
    method = method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return "reads"
    return "deletes" if method == "DELETE" else "writes"


def header_for(kind: str) -> str:
    return f"x-ms-ratelimit-remaining-subscription-{kind}"


@dataclass
class _Level:
    tokens: float
    at: float
    first_request_at: float
    last_granted_at: float | None = None
    granted: int = 0
    throttled: int = 0


class TokenBuckets:
    """The live levels of every (subscription, principal, kind) bucket; sizes and refills come from settings."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._levels: dict[tuple[str, str, str], _Level] = {}

    def reset(self) -> None:
        """Forget every bucket (each starts again at its kind's ``initial`` level) and its counts."""
        self._levels.clear()

    def stats(self, subscription_id: str | None = None) -> list[dict[str, object]]:
        """What each bucket answered since it was first used (or the last reset), optionally of one subscription.

        Times are seconds on the emulator's monotonic clock: only differences between them mean anything.
        """
        return [
            {
                "subscription_id": sub,
                "principal": principal,
                "kind": kind,
                "tokens": math.floor(level.tokens),
                "granted": level.granted,
                "throttled": level.throttled,
                "first_request_at": level.first_request_at,
                "last_granted_at": level.last_granted_at,
            }
            for (sub, principal, kind), level in sorted(self._levels.items())
            if subscription_id is None or sub == subscription_id.lower()
        ]

    def take(self, settings: Throttle, subscription_id: str, principal: str, kind: str) -> dict[str, str]:
        """Spend one token; return the rate-limit header for the answer.

        Raises:
            ArmError: 429 ``SubscriptionRequestsThrottled`` with ``Retry-After`` when the bucket is empty
                (and throttling is enabled); the token is not spent.
        """
        bucket = settings.buckets[kind]
        size, refill = float(bucket["bucket"]), float(bucket["refill_per_s"])
        now = self._clock()
        key = (subscription_id.lower(), principal, kind)
        level = self._levels.get(key)
        if level is None:
            initial = min(size, float(bucket.get("initial", size)))
            level = self._levels[key] = _Level(initial, now, first_request_at=now)
        level.tokens = min(size, level.tokens + (now - level.at) * refill)
        level.at = now
        if level.tokens < 1 and settings.enabled:
            level.throttled += 1
            retry_after = max(1, math.ceil((1 - level.tokens) / refill)) if refill > 0 else 60
            raise errors.throttled(subscription_id, principal, retry_after, kind)
        level.tokens = max(0.0, level.tokens - 1)
        level.granted += 1
        level.last_granted_at = now
        return {header_for(kind): str(math.floor(level.tokens))}
