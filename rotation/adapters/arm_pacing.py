"""Pace ARM requests from ARM's own rate-limit headers instead of discovering the limit by 429s.

Azure Resource Manager throttles with a token bucket per subscription, principal and kind of request
(reads: 250, refilled 25/s; writes: 200, refilled 10/s; deletes: 200, refilled 10/s — learn.microsoft.com,
"Understand how Azure Resource Manager throttles requests") and reports what is left on each answer in
``x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}``.

:class:`ArmPacer` remembers, per subscription and kind, the last count ARM reported and when. Before a
request it estimates what is left now (that count, plus the refill since, minus this process's requests
still unanswered); unless a whole request's worth is left above ``reserve``, it waits for the refill first. The estimate
never overstates what ARM has (the count was taken before the answer reached us), so a process that is
alone on its principal is not throttled. azure-core's retry policy still owns a 429 if one happens (other
processes sharing the principal): the pacer only reads it as "nothing left".

Concurrent requests (a step re-points several consumers at once, each thread through the same pacer):

- before ARM reported anything for a bucket, one request goes first and the others wait for its answer
  (the bucket may be nearly empty: a burst of unknowns would be a burst of 429s);
- answers come back out of order: a count is taken only from an answer to a request sent after the one
  whose count is known (a late answer to an earlier request reports an older, higher count).

:class:`ArmPacingPolicy` is the azure-core policy the ARM adapters put right after their retry policy,
so every attempt (and every LRO poll) is paced and observed. One process-wide pacer is shared by all
ARM adapters (:func:`shared_pacer`), since they spend the same buckets.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from rotation.logs import get_logger

#: ARM's refill rates per second, by kind of request (the bucket sizes are not needed: ARM reports what is left).
ARM_REFILL_PER_S: Mapping[str, float] = {"reads": 25.0, "writes": 10.0, "deletes": 10.0}
DEFAULT_RESERVE = 10
MAX_WAIT_S = 30.0
#: How often a request waiting for the first answer of a bucket looks again.
FIRST_ANSWER_POLL_S = 0.02

_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/?]+)", re.IGNORECASE)
_log = get_logger("rotation.arm_pacing")


def kind_of(method: str) -> str:
    """The bucket a request spends: GET/HEAD read, DELETE deletes, anything else writes."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        return "reads"
    return "deletes" if method == "DELETE" else "writes"


def remaining_header(kind: str) -> str:
    return f"x-ms-ratelimit-remaining-subscription-{kind}"


@dataclass
class _Budget:
    remaining: float | None = None  # what ARM last reported
    seen_at: float = 0.0
    in_flight: int = 0  # requests sent, not yet answered
    answered: bool = False  # ARM answered one (with or without a count)
    sent: int = 0  # requests sent so far: each one's number orders the answers
    counted: int = 0  # the number of the request whose answer gave ``remaining``


class ArmPacer:
    """Waits before an ARM request when the budget ARM reported, refilled since, is down to ``reserve``.

    Thread-safe; safe to share between clients and adapters.
    """

    def __init__(
        self,
        *,
        reserve: int = DEFAULT_RESERVE,
        refill_per_s: Mapping[str, float] = ARM_REFILL_PER_S,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """
        Args:
            reserve: requests left in a bucket that this process does not spend without waiting.
            refill_per_s: tokens ARM adds per second, by kind (``reads``, ``writes``, ``deletes``).
            max_wait_s: the longest one request waits; after that it is sent anyway (ARM may answer 429,
                which azure-core's retry policy handles).
            clock, sleep: injectable for tests.
        """
        if reserve < 0:
            raise ValueError("reserve must be 0 or more")
        self._reserve = reserve
        self._refill = dict(refill_per_s)
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self.waits = 0  # requests that waited
        self.waited_s = 0.0

    def estimate(self, subscription_id: str, kind: str) -> float | None:
        """Requests left now in the bucket, as far as this process knows; None before ARM reported any."""
        with self._lock:
            return self._estimate(self._budget(subscription_id, kind), kind, self._clock())

    def before(self, subscription_id: str, kind: str) -> float:
        """Wait until a request of ``kind`` may be sent without emptying the bucket; count it as in flight.

        Returns:
            The seconds waited (0 when the budget allows it at once).
        """
        return self.acquire(subscription_id, kind)[0]

    def acquire(self, subscription_id: str, kind: str) -> tuple[float, int]:
        """``before``, also returning the request's number in its bucket (give it back to ``after``)."""
        waited = 0.0
        while True:
            with self._lock:
                budget = self._budget(subscription_id, kind)
                left = self._estimate(budget, kind, self._clock())
                refill = self._refill.get(kind, 0.0)
                first_pending = left is None and budget.in_flight > 0 and not budget.answered
                # (a millionth of a token of slack: a refill computed from float times may fall short by a hair)
                go = left >= self._reserve + 1 - 1e-6 if left is not None else not first_pending
                if go or refill <= 0 or waited >= self._max_wait_s:
                    budget.in_flight += 1
                    budget.sent += 1
                    if waited:
                        self.waits += 1
                        self.waited_s += waited
                    return waited, budget.sent
                if left is None:  # the first request of this bucket is still unanswered: wait for its count
                    pause = min(FIRST_ANSWER_POLL_S, self._max_wait_s - waited)
                else:
                    pause = max(0.001, min((self._reserve + 1 - left) / refill, self._max_wait_s - waited))
            if left is not None:
                _log.info(
                    "arm_pacing_wait", subscription=subscription_id, kind=kind, left=int(left), wait_s=round(pause, 2)
                )
            self._sleep(pause)
            waited += pause

    def after(self, subscription_id: str, kind: str, remaining: float | None, number: int | None = None) -> None:
        """Record an answer: ``remaining`` is ARM's count for the bucket, None when it reported none.

        ``number``: the request's (from ``acquire``); a count from a request sent before the one whose count
        is known is older than it, and ignored.
        """
        with self._lock:
            budget = self._budget(subscription_id, kind)
            budget.in_flight = max(0, budget.in_flight - 1)
            budget.answered = True
            if remaining is None or (number is not None and number < budget.counted):
                return
            budget.remaining = max(0.0, remaining)
            budget.seen_at = self._clock()
            budget.counted = number if number is not None else budget.sent

    def _budget(self, subscription_id: str, kind: str) -> _Budget:
        return self._budgets.setdefault((subscription_id.lower(), kind), _Budget())

    def _estimate(self, budget: _Budget, kind: str, now: float) -> float | None:
        if budget.remaining is None:
            return None
        refilled = budget.remaining + self._refill.get(kind, 0.0) * max(0.0, now - budget.seen_at)
        return refilled - budget.in_flight


def subscription_and_kind(method: str, url: str) -> tuple[str, str] | None:
    """The (subscription, kind) an ARM request spends, or None for a request outside a subscription."""
    path = url.split("://", 1)[-1]
    path = path[path.find("/") :] if "/" in path else "/"
    match = _SUBSCRIPTION.match(path)
    return (match.group(1), kind_of(method)) if match else None


def reported_remaining(status: int, headers: Mapping[str, str], kind: str) -> float | None:
    """ARM's remaining count on an answer; a 429 without one means nothing is left."""
    value = headers.get(remaining_header(kind))
    if value is not None:
        try:
            return float(value)
        except ValueError:
            return None
    return 0.0 if status == 429 else None


class ArmPacingPolicy(HTTPPolicy[Any, Any]):
    """azure-core policy: pace each attempt with an :class:`ArmPacer` and feed it ARM's answers.

    Put it after the ``RetryPolicy`` (``per_retry_policies``), so retries are paced too.
    """

    def __init__(self, pacer: ArmPacer) -> None:
        super().__init__()
        self._pacer = pacer

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        scope = subscription_and_kind(request.http_request.method, request.http_request.url)
        if scope is None:
            return self.next.send(request)
        _, number = self._pacer.acquire(*scope)
        remaining: float | None = None
        try:
            response = self.next.send(request)
            http = response.http_response
            remaining = reported_remaining(http.status_code, http.headers, scope[1])
            return response
        finally:
            self._pacer.after(*scope, remaining, number)


_shared: ArmPacer | None = None
_shared_lock = threading.Lock()


def shared_pacer() -> ArmPacer:
    """The process-wide pacer every ARM adapter uses unless given one (they spend the same buckets)."""
    global _shared  # noqa: PLW0603 - one pacer per process, built on first use
    with _shared_lock:
        if _shared is None:
            _shared = ArmPacer()
        return _shared
