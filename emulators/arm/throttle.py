"""Azure Resource Manager's request throttling: token buckets per subscription, principal and kind.

Source: learn.microsoft.com, "Understand how Azure Resource Manager throttles requests" (the regional
throttling and token bucket algorithm, 2024): subscription limits apply per subscription, per service
principal and per operation type; reads: bucket 250, refill 25/s; writes: bucket 200, refill 10/s;
deletes: bucket 200, refill 10/s. Over the limit, ARM answers 429 with ``Retry-After`` (seconds), and
every answer reports what is left in ``x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}``.

Not modelled: the tenant-level buckets and the global subscription limit (15x one principal's).
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


class TokenBuckets:
    """The live levels of every (subscription, principal, kind) bucket; sizes and refills come from settings."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._levels: dict[tuple[str, str, str], _Level] = {}

    def reset(self) -> None:
        self._levels.clear()

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
            level = self._levels[key] = _Level(size, now)
        level.tokens = min(size, level.tokens + (now - level.at) * refill)
        level.at = now
        if level.tokens < 1 and settings.enabled:
            retry_after = max(1, math.ceil((1 - level.tokens) / refill)) if refill > 0 else 60
            raise errors.throttled(subscription_id, principal, retry_after, kind)
        level.tokens = max(0.0, level.tokens - 1)
        return {header_for(kind): str(math.floor(level.tokens))}
