"""Every retry and pacing policy of the re-wrap, in one module.

Key Vault throttles per vault on a request budget per 10-second window and answers 429 (with
``Retry-After`` when it gives one) once the budget is spent. The limiter aims at that ceiling without a
retry storm:

- **Concurrency, AIMD**: up to ``max_concurrency`` unwraps in flight; halved on a throttling event,
  +1 per ``limit`` successes after it.
- **Rate, learnt**: unpaced until the first 429; then a token bucket paced at 90% of the success rate
  observed over the last window, probing up 2% per second without a 429.
- **Retry-After honoured**: a 429 pauses every caller of the limiter until Retry-After has passed (or an
  exponential back-off of 1, 2, 4 ... 30 s when the header is absent). The 429s of requests that were
  already in flight count as one throttling event, so a burst of them does not collapse the rate.

Other transient failures (5xx, dropped connections) are retried by ``call_with_retries`` with jittered
exponential back-off. azure-core's own retry is off for these calls, so each failure has one retry owner.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from rotation.errors import ThrottledError, TransientError
from rotation.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")

WINDOW_S = 10.0  # Key Vault's throttling window
PACE_FRACTION = 0.9  # pace at this share of the observed sustainable rate after a 429
PROBE_PER_S = 0.02  # rate probe-up per second without a 429
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class LimiterStats:
    successes: int
    throttled: int
    throttle_events: int
    concurrency_limit: float
    rate_per_s: float | None


class AdaptiveLimiter:
    """Adaptive concurrency plus a learnt token bucket. Thread-safe; clock and sleep are injectable."""

    def __init__(
        self,
        max_concurrency: int,
        *,
        rate_per_s: float | None = None,
        min_rate_per_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self._limit = float(self.max_concurrency)
        self._rate = rate_per_s
        self._min_rate = min_rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._inflight = 0
        now = clock()
        self._tokens = 1.0
        self._refilled_at = now
        self._probed_at = now
        self._resume_at = now
        self._backoff_s = 0.0
        self._successes: deque[float] = deque()
        self._started = now
        self.successes = 0
        self.throttled = 0
        self.throttle_events = 0

    def stats(self) -> LimiterStats:
        with self._cond:
            return LimiterStats(self.successes, self.throttled, self.throttle_events, self._limit, self._rate)

    def acquire(self) -> None:
        """Block until a request may be sent: not paused, a concurrency slot free, a token available."""
        while True:
            with self._cond:
                now = self._clock()
                self._refill(now)
                wait = max(self._resume_at - now, 0.0)
                if wait == 0 and self._rate is not None and self._tokens < 1 - 1e-9:
                    wait = max((1 - self._tokens) / self._rate, 1e-4)
                if wait == 0:
                    if self._inflight < int(self._limit):
                        self._inflight += 1
                        if self._rate is not None:
                            self._tokens -= 1
                        return
                    self._cond.wait(timeout=0.05)
                    continue
            self._sleep(min(wait, 1.0))

    def release_success(self) -> None:
        with self._cond:
            now = self._clock()
            self._inflight -= 1
            self.successes += 1
            self._backoff_s = 0.0
            self._successes.append(now)
            while self._successes and self._successes[0] < now - WINDOW_S:
                self._successes.popleft()
            if self._limit < self.max_concurrency:
                self._limit = min(float(self.max_concurrency), self._limit + 1 / self._limit)
            self._cond.notify()

    def release_failure(self) -> None:
        """The request failed for a reason other than throttling: free its slot only."""
        with self._cond:
            self._inflight -= 1
            self._cond.notify()

    def release_throttled(self, retry_after: float | None) -> None:
        """The request got 429: pause everyone, and on a new throttling event cut concurrency and rate."""
        with self._cond:
            now = self._clock()
            self._inflight -= 1
            self.throttled += 1
            if now < self._resume_at:
                return  # a request that was in flight when the event began: same event
            self.throttle_events += 1
            if retry_after is None:
                self._backoff_s = min(MAX_BACKOFF_S, max(1.0, self._backoff_s * 2))
                pause = self._backoff_s
            else:
                pause = max(retry_after, 0.0)
            self._resume_at = now + pause
            self._limit = max(1.0, self._limit / 2)
            span = min(WINDOW_S, max(now - self._started, 1e-3))
            observed = sum(1 for t in self._successes if t >= now - span) / span
            self._rate = max(self._min_rate, PACE_FRACTION * observed)
            self._tokens = 0.0
            self._refilled_at = self._probed_at = self._resume_at
            log.info(
                "rewrap_throttled",
                retry_after_s=retry_after,
                pause_s=round(pause, 3),
                concurrency=int(self._limit),
                rate_per_s=round(self._rate, 1),
            )
            self._cond.notify_all()

    def _refill(self, now: float) -> None:
        if self._rate is None or now <= self._refilled_at:
            return
        if now - self._probed_at >= 1.0:
            self._rate *= (1 + PROBE_PER_S) ** (now - self._probed_at)
            self._probed_at = now
        burst = max(1.0, self._rate * 0.05)
        self._tokens = min(burst, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now


def call_with_retries(
    limiter: AdaptiveLimiter,
    call: Callable[[], T],
    *,
    attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call`` under the limiter, retrying throttling and transient failures.

    Raises:
        ThrottledError / TransientError: still failing after ``attempts`` tries.
        Anything else ``call`` raises, at once.
    """
    for attempt in range(1, attempts + 1):
        limiter.acquire()
        try:
            result = call()
        except ThrottledError as exc:
            limiter.release_throttled(exc.retry_after)
            if attempt == attempts:
                raise
            continue
        except TransientError:
            limiter.release_failure()
            if attempt == attempts:
                raise
            delay = min(MAX_BACKOFF_S, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
            log.info("rewrap_transient_retry", attempt=attempt, delay_s=round(delay, 3))
            sleep(delay)
            continue
        except BaseException:
            limiter.release_failure()
            raise
        limiter.release_success()
        return result
    raise AssertionError("unreachable")  # pragma: no cover
