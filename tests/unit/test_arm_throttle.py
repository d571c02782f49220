"""The ARM emulator's token buckets, on an injected clock."""

from __future__ import annotations

import pytest

from emulators.arm.errors import ArmError
from emulators.arm.state import Throttle
from emulators.arm.throttle import TokenBuckets, kind_of

SUB, OTHER_SUB = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def small(writes: tuple[int, float] = (3, 2.0)) -> Throttle:
    throttle = Throttle()
    throttle.buckets["writes"] = {"bucket": writes[0], "refill_per_s": writes[1]}
    return throttle


class TestTokenBuckets:
    """A bucket starts full, each request spends a token, tokens come back at the refill rate up to the size."""

    def test_spends_then_throttles_with_retry_after(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(clock)
        settings = small()

        left = [buckets.take(settings, SUB, "p", "writes") for _ in range(3)]
        with pytest.raises(ArmError) as caught:
            buckets.take(settings, SUB, "p", "writes")

        assert [h["x-ms-ratelimit-remaining-subscription-writes"] for h in left] == ["2", "1", "0"]
        assert caught.value.status == 429
        assert caught.value.code == "SubscriptionRequestsThrottled"
        assert caught.value.headers["Retry-After"] == "1"  # half a second to one token, rounded up

    def test_refills_at_the_rate_and_never_above_the_size(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(clock)
        settings = small()
        for _ in range(3):
            buckets.take(settings, SUB, "p", "writes")

        clock.now += 1.0  # two tokens back
        after_one_second = buckets.take(settings, SUB, "p", "writes")
        clock.now += 3600
        after_an_hour = buckets.take(settings, SUB, "p", "writes")

        assert after_one_second["x-ms-ratelimit-remaining-subscription-writes"] == "1"
        assert after_an_hour["x-ms-ratelimit-remaining-subscription-writes"] == "2"

    def test_a_throttled_request_spends_nothing(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(clock)
        settings = small(writes=(1, 1.0))
        buckets.take(settings, SUB, "p", "writes")
        with pytest.raises(ArmError):
            buckets.take(settings, SUB, "p", "writes")

        clock.now += 1.0

        assert buckets.take(settings, SUB, "p", "writes")["x-ms-ratelimit-remaining-subscription-writes"] == "0"

    def test_buckets_are_per_subscription_principal_and_kind(self) -> None:
        buckets = TokenBuckets(Clock())
        settings = small(writes=(1, 0.001))
        buckets.take(settings, SUB, "p", "writes")

        other_principal = buckets.take(settings, SUB, "q", "writes")
        other_subscription = buckets.take(settings, OTHER_SUB, "p", "writes")
        reads = buckets.take(settings, SUB, "p", "reads")

        assert other_principal["x-ms-ratelimit-remaining-subscription-writes"] == "0"
        assert other_subscription["x-ms-ratelimit-remaining-subscription-writes"] == "0"
        assert reads == {"x-ms-ratelimit-remaining-subscription-reads": "249"}

    def test_a_bucket_set_to_start_drained_grants_only_its_refill(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(clock)
        settings = small(writes=(200, 10.0))
        settings.buckets["writes"]["initial"] = 0

        with pytest.raises(ArmError):
            buckets.take(settings, SUB, "p", "writes")
        clock.now += 0.5  # five tokens back
        granted = [buckets.take(settings, SUB, "p", "writes") for _ in range(5)]
        with pytest.raises(ArmError):
            buckets.take(settings, SUB, "p", "writes")

        assert [h["x-ms-ratelimit-remaining-subscription-writes"] for h in granted] == ["4", "3", "2", "1", "0"]

    def test_each_bucket_counts_what_it_answered_and_when(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(clock)
        settings = small(writes=(2, 1.0))
        for _ in range(2):
            buckets.take(settings, SUB, "p", "writes")
        clock.now += 0.25
        with pytest.raises(ArmError):
            buckets.take(settings, SUB, "p", "writes")
        clock.now += 1.0
        buckets.take(settings, SUB, "p", "writes")
        buckets.take(settings, OTHER_SUB, "p", "reads")

        stats = buckets.stats(SUB)

        assert stats == [
            {
                "subscription_id": SUB,
                "principal": "p",
                "kind": "writes",
                "tokens": 0,
                "granted": 3,
                "throttled": 1,
                "first_request_at": 1000.0,
                "last_granted_at": 1001.25,
            }
        ]
        assert [(s["kind"], s["granted"]) for s in buckets.stats()] == [("writes", 3), ("reads", 1)]
        buckets.reset()
        assert buckets.stats() == []

    def test_kinds_by_method(self) -> None:
        assert [kind_of(m) for m in ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE")] == [
            "reads",
            "reads",
            "writes",
            "writes",
            "writes",
            "deletes",
        ]

    def test_azure_defaults(self) -> None:
        assert Throttle().enabled
        assert Throttle().buckets == {
            "reads": {"bucket": 250, "refill_per_s": 25.0},
            "writes": {"bucket": 200, "refill_per_s": 10.0},
            "deletes": {"bucket": 200, "refill_per_s": 10.0},
        }
