"""The ARM pacer: waits for the refill when ARM's reported budget is low, on an injected clock and sleep."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

from rotation.adapters.arm_pacing import ArmPacer, ArmPacingPolicy, reported_remaining, subscription_and_kind

SUB = "00000000-0000-0000-0000-00000000000a"
OTHER = "00000000-0000-0000-0000-00000000000b"


class FakeTime:
    """A clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(time: FakeTime, reserve: int = 2, writes_per_s: float = 10.0, max_wait_s: float = 30.0) -> ArmPacer:
    return ArmPacer(
        reserve=reserve,
        refill_per_s={"reads": 25.0, "writes": writes_per_s, "deletes": 10.0},
        max_wait_s=max_wait_s,
        clock=time.clock,
        sleep=time.sleep,
    )


class TestPacer:
    """A request waits only when the estimated budget (reported, refilled, minus in flight) is at the reserve."""

    def test_sends_at_once_before_arm_reported_anything(self) -> None:
        time = FakeTime()

        waited = pacer(time).before(SUB, "writes")

        assert waited == 0
        assert time.sleeps == []

    def test_sends_at_once_while_above_the_reserve(self) -> None:
        time = FakeTime()
        paced = pacer(time)
        paced.before(SUB, "writes")
        paced.after(SUB, "writes", 50)

        waited = paced.before(SUB, "writes")

        assert waited == 0
        assert paced.estimate(SUB, "writes") == 49  # one in flight

    def test_waits_for_the_refill_when_low(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2)
        paced.before(SUB, "writes")
        paced.after(SUB, "writes", 1)  # ARM says one write left

        waited = paced.before(SUB, "writes")

        assert time.sleeps == [pytest.approx(0.2)]  # (reserve + 1 - 1) / 10 per second
        assert waited == pytest.approx(0.2)
        assert paced.waits == 1

    def test_requests_in_flight_count_against_the_budget(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2)
        paced.before(SUB, "writes")
        paced.after(SUB, "writes", 5)

        first = [paced.before(SUB, "writes") for _ in range(3)]  # 5 -> 4 -> 3 -> 2 left, none answered yet
        fourth = paced.before(SUB, "writes")

        assert first == [0, 0, 0]
        assert fourth == pytest.approx(0.1)  # at the reserve: one token of refill first

    def test_the_refill_since_the_last_answer_counts(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2)
        paced.before(SUB, "writes")
        paced.after(SUB, "writes", 0)
        time.now += 0.3  # three writes refilled

        waited = paced.before(SUB, "writes")

        assert waited == 0

    def test_buckets_are_per_subscription_and_kind(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2)
        paced.before(SUB, "writes")
        paced.after(SUB, "writes", 0)

        assert paced.before(SUB, "reads") == 0
        assert paced.before(OTHER, "writes") == 0
        assert time.sleeps == []

    def test_a_429_without_a_count_means_nothing_left(self) -> None:
        assert reported_remaining(429, {}, "writes") == 0
        assert reported_remaining(200, {}, "writes") is None
        assert reported_remaining(200, {"x-ms-ratelimit-remaining-subscription-writes": "17"}, "writes") == 17

    def test_waits_no_longer_than_the_cap(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2, writes_per_s=0.001, max_wait_s=5.0)
        paced.before(SUB, "writes")
        paced.after(SUB, "writes", 0)

        waited = paced.before(SUB, "writes")

        assert waited == pytest.approx(5.0)
        assert sum(time.sleeps) == pytest.approx(5.0)

    def test_a_steady_stream_runs_at_the_refill_rate(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2, writes_per_s=10.0)
        remaining = 5.0  # the server's bucket, refilled at the same rate
        server_at = time.now
        throttled = 0

        for _ in range(50):
            paced.before(SUB, "writes")
            remaining = min(200.0, remaining + 10.0 * (time.now - server_at))
            server_at = time.now
            if remaining < 1:
                throttled += 1
                paced.after(SUB, "writes", 0)
                continue
            remaining -= 1
            paced.after(SUB, "writes", int(remaining))

        assert throttled == 0
        burst = 5 - 2  # what was left above the reserve goes at once
        rate = (50 - burst) / (time.now - 100.0)
        assert 9.5 <= rate <= 10.0 + 1e-9  # then the refill rate (ARM's whole-token counts cost a little)

    def test_before_any_count_the_first_request_goes_alone(self) -> None:
        time = FakeTime()
        pending: list[int] = []

        def answer_while_waiting(seconds: float) -> None:  # the first request's answer arrives meanwhile
            time.sleep(seconds)
            while pending:
                paced.after(SUB, "writes", 45, pending.pop())

        paced = ArmPacer(reserve=2, refill_per_s={"writes": 10.0}, clock=time.clock, sleep=answer_while_waiting)
        first_waited, first = paced.acquire(SUB, "writes")
        pending.append(first)

        second_waited = paced.before(SUB, "writes")

        assert first_waited == 0
        assert time.sleeps == [pytest.approx(0.02)]  # it waited for the first answer, not for a refill
        assert second_waited == pytest.approx(0.02)
        assert paced.estimate(SUB, "writes") == pytest.approx(44)  # 45 reported, the second in flight

    def test_an_answer_without_a_count_releases_the_others(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2)
        _, first = paced.acquire(SUB, "writes")
        paced.after(SUB, "writes", None, first)

        assert paced.before(SUB, "writes") == 0
        assert paced.before(SUB, "writes") == 0
        assert time.sleeps == []

    def test_a_late_answer_to_an_earlier_request_is_not_believed(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2)
        _, probe = paced.acquire(SUB, "writes")
        paced.after(SUB, "writes", 20, probe)
        _, earlier = paced.acquire(SUB, "writes")
        _, later = paced.acquire(SUB, "writes")

        paced.after(SUB, "writes", 18, later)  # ARM took both; the later one's answer comes first
        paced.after(SUB, "writes", 19, earlier)

        assert paced.estimate(SUB, "writes") == 18

    def test_threads_share_one_budget(self) -> None:
        """Re-point threads share the pacer: their requests in flight all count against one bucket."""
        time = FakeTime()
        paced = pacer(time, reserve=2)
        _, probe = paced.acquire(SUB, "writes")
        paced.after(SUB, "writes", 6, probe)

        def send() -> None:
            paced.acquire(SUB, "writes")

        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert paced.estimate(SUB, "writes") == pytest.approx(2, abs=1e-6)  # 6 - 4 in flight, none answered
        assert time.sleeps == []

    def test_rejects_a_negative_reserve(self) -> None:
        with pytest.raises(ValueError, match="reserve"):
            ArmPacer(reserve=-1)


class TestScope:
    """Which bucket a request spends, read from its URL and method."""

    def test_subscription_requests(self) -> None:
        url = f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/g?api-version=1"

        assert subscription_and_kind("PATCH", url) == (SUB, "writes")
        assert subscription_and_kind("GET", url) == (SUB, "reads")
        assert subscription_and_kind("DELETE", url) == (SUB, "deletes")
        assert subscription_and_kind("PUT", url) == (SUB, "writes")

    def test_requests_outside_a_subscription_are_not_paced(self) -> None:
        assert subscription_and_kind("GET", "https://management.azure.com/tenants?api-version=1") is None


class Answers(HttpTransport[Any, Any]):
    """A transport answering each request with the next (status, remaining writes) and recording the requests."""

    def __init__(self, answers: list[tuple[int, str | None]]) -> None:
        self._answers: Iterator[tuple[int, str | None]] = iter(answers)
        self.sent: list[str] = []

    def send(self, request: Any, **_kwargs: Any) -> Any:
        from azure.core.pipeline.transport import HttpResponse

        status, remaining = next(self._answers)
        self.sent.append(request.method)

        class Response(HttpResponse):
            def body(self) -> bytes:
                return b""

        response = Response(request, None)
        response.status_code = status
        response.headers = {"Retry-After": "0"} if status == 429 else {}
        if remaining is not None:
            response.headers["x-ms-ratelimit-remaining-subscription-writes"] = remaining
        return response

    def __enter__(self) -> Answers:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass


class TestPolicy:
    """In an azure-core pipeline after the retry policy, every attempt is paced and every answer observed."""

    def test_answers_feed_the_pacer_and_retries_are_paced(self) -> None:
        time = FakeTime()
        paced = pacer(time, reserve=2)
        transport = Answers([(200, "1"), (429, None), (200, "40")])
        pipeline = Pipeline(transport, [RetryPolicy(retry_total=3, retry_backoff_factor=0), ArmPacingPolicy(paced)])
        url = f"https://management.azure.com/subscriptions/{SUB}/x?api-version=1"

        first = pipeline.run(HttpRequest("PATCH", url))
        second = pipeline.run(HttpRequest("PATCH", url))

        assert first.http_response.status_code == 200
        assert second.http_response.status_code == 200
        assert transport.sent == ["PATCH", "PATCH", "PATCH"]
        assert len(time.sleeps) == 2  # before the second PATCH (1 left), and before its retry after the 429
        assert paced.estimate(SUB, "writes") == 40


class TestAdaptersArePaced:
    """The ARM adapters' pipelines carry the pacer: an answer reporting no writes left delays the next write."""

    def test_arm_rest(self) -> None:
        from rotation.adapters.arm_rest import ArmRest
        from rotation.adapters.local_credential import LocalDevelopmentCredential

        time = FakeTime()
        paced = pacer(time, reserve=0)
        transport = Answers([(200, "0"), (200, "5")])
        rest = ArmRest(
            "https://management.azure.com", LocalDevelopmentCredential("tester"), {"transport": transport}, pacer=paced
        )
        url = rest.url(f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Compute/diskEncryptionSets/d", "1")

        rest.send("PATCH", url, "update d", "Microsoft.Compute/diskEncryptionSets/write", {})
        rest.send("PATCH", url, "update d", "Microsoft.Compute/diskEncryptionSets/write", {})

        assert transport.sent == ["PATCH", "PATCH"]
        assert time.sleeps == [pytest.approx(0.1)]  # one write's refill at 10 per second
