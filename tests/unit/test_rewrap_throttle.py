"""The re-wrap limiter against a simulated vault that throttles like Key Vault (fixed 10 s budgets)."""

from __future__ import annotations

import math

import pytest

from rotation.errors import ThrottledError, TransientError
from rotation.rewrap.throttle import AdaptiveLimiter, call_with_retries


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class ThrottlingVault:
    """A budget of ``limit`` requests per 10 s window (opened by the first request after the last one
    closed); beyond it, 429 with Retry-After = whole seconds to the window's end. 429s cost nothing."""

    def __init__(self, clock: FakeClock, limit: int) -> None:
        self.clock = clock
        self.limit = limit
        self.window_start = -math.inf
        self.used = 0
        self.served = 0
        self.refused = 0
        self.early = 0  # requests sent before a Retry-After had passed
        self.retry_at = -math.inf

    def unwrap(self) -> bytes:
        now = self.clock.now()
        if now < self.retry_at - 1e-9:
            self.early += 1
        if now - self.window_start >= 10:
            self.window_start, self.used = now, 0
        if self.used >= self.limit:
            self.refused += 1
            retry_after = max(1, math.ceil(self.window_start + 10 - now))
            self.retry_at = now + retry_after
            raise ThrottledError("throttled", float(retry_after))
        self.used += 1
        self.served += 1
        return b"k" * 32


def run(limit: int, seconds: float, latency: float = 0.004) -> tuple[ThrottlingVault, AdaptiveLimiter]:
    clock = FakeClock()
    vault = ThrottlingVault(clock, limit)
    limiter = AdaptiveLimiter(16, clock=clock.now, sleep=clock.sleep)

    def call() -> bytes:
        clock.t += latency
        return vault.unwrap()

    while clock.t < seconds:
        call_with_retries(limiter, call, attempts=100, sleep=clock.sleep)
    return vault, limiter


class TestAimsAtTheCeiling:
    """Against a vault throttled at a ceiling the sustained rate stays at or above 90% of it, under 5% of
    requests are throttled, and Retry-After is always honoured."""

    @pytest.mark.parametrize("limit", [100, 500, 2000])
    def test_sustained_rate_and_throttled_share(self, limit: int) -> None:
        seconds = 120.0

        vault, limiter = run(limit, seconds)

        assert vault.served / seconds >= 0.9 * limit / 10
        assert vault.refused / (vault.served + vault.refused) < 0.05
        assert vault.early == 0
        assert limiter.stats().throttle_events >= 1

    def test_unthrottled_calls_are_not_paced(self) -> None:
        vault, limiter = run(limit=10**9, seconds=10.0, latency=0.01)

        assert vault.served == pytest.approx(1000, abs=2)
        assert limiter.stats().rate_per_s is None


class TestThrottlingEvents:
    """A 429 pauses every caller until Retry-After, halves concurrency once per event, and recovers."""

    def test_pause_and_concurrency_cut(self) -> None:
        clock = FakeClock()
        limiter = AdaptiveLimiter(16, clock=clock.now, sleep=clock.sleep)
        for _ in range(3):
            limiter.acquire()

        limiter.release_throttled(2.0)
        limiter.release_throttled(2.0)  # in flight when the event began: the same event
        limiter.release_success()
        limiter.acquire()

        stats = limiter.stats()
        assert stats.throttle_events == 1
        assert stats.throttled == 2
        assert stats.concurrency_limit == pytest.approx(8 + 1 / 8)
        assert clock.t >= 2.0

    def test_backoff_without_retry_after_doubles(self) -> None:
        clock = FakeClock()
        limiter = AdaptiveLimiter(4, clock=clock.now, sleep=clock.sleep)
        pauses = []
        for _ in range(3):
            limiter.acquire()
            started = clock.t
            limiter.release_throttled(None)
            limiter.acquire()
            pauses.append(clock.t - started)
            limiter.release_failure()

        assert pauses[0] >= 1.0
        assert pauses[1] >= 2.0
        assert pauses[2] >= 4.0


class TestCallWithRetries:
    """Transient failures are retried with back-off up to the attempt limit; other errors pass at once."""

    def test_transient_then_success(self) -> None:
        clock = FakeClock()
        limiter = AdaptiveLimiter(2, clock=clock.now, sleep=clock.sleep)
        outcomes: list[Exception | None] = [TransientError("503"), TransientError("503"), None]

        def call() -> str:
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome
            return "ok"

        result = call_with_retries(limiter, call, sleep=clock.sleep)

        assert result == "ok"
        assert clock.t > 0
        assert limiter.stats().successes == 1

    def test_gives_up_after_attempts(self) -> None:
        clock = FakeClock()
        limiter = AdaptiveLimiter(2, clock=clock.now, sleep=clock.sleep)

        def call() -> str:
            raise TransientError("dropped")

        with pytest.raises(TransientError):
            call_with_retries(limiter, call, attempts=3, sleep=clock.sleep)

    def test_other_errors_are_not_retried(self) -> None:
        clock = FakeClock()
        limiter = AdaptiveLimiter(2, clock=clock.now, sleep=clock.sleep)
        calls = []

        def call() -> str:
            calls.append(1)
            raise KeyError("no")

        with pytest.raises(KeyError):
            call_with_retries(limiter, call, sleep=clock.sleep)

        assert len(calls) == 1
