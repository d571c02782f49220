"""Retry policies, in one place.

Ownership by failure class:

- azure-core's transport retry policy owns single HTTP requests: 408/429/5xx and dropped
  connections, a few quick attempts honouring ``Retry-After`` (``TRANSPORT_RETRY``, passed to
  every SDK client).
- tenacity owns steps: when an adapter still reports a ``TransientError`` after the transport gave
  up, the whole step is repeated (steps are re-entrant: each checks "already done?" first).
- Everything else is not retried: it stops the rotation with a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from rotation.errors import ThrottledError, TransientError
from rotation.logs import get_logger

T = TypeVar("T")

#: azure-core RetryPolicy keywords for every SDK client: bounded, honours Retry-After.
TRANSPORT_RETRY: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.4,
    "retry_backoff_max": 8,
    "retry_on_status_codes": [408, 429, 500, 502, 503, 504],
}

MAX_STEP_WAIT_S = 30.0

_log = get_logger("rotation.retry")


def _wait(state: RetryCallState) -> float:
    """Exponential from 0.5 s, capped; a throttle's Retry-After hint wins when larger."""
    backoff: float = min(MAX_STEP_WAIT_S, 0.5 * 2.0 ** (state.attempt_number - 1))
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, ThrottledError) and error.retry_after is not None:
        return min(MAX_STEP_WAIT_S, max(backoff, float(error.retry_after)))
    return backoff


def _before_sleep(step: str) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        _log.warning(
            "step_retry_scheduled",
            step=step,
            attempt=state.attempt_number,
            delay_s=round(delay, 2),
            error_code=getattr(error, "code", type(error).__name__),
            error=str(error),
        )

    return log


def run_step_with_retries(step: str, fn: Callable[[], T], *, attempts: int, sleep: Callable[[float], None]) -> T:
    """Run ``fn`` (one re-entrant step), repeating it on ``TransientError`` only; re-raise the last error."""
    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(attempts),
        wait=_wait,
        sleep=sleep,
        before_sleep=_before_sleep(step),
        reraise=True,
    )
    return retrying(fn)
