"""A bounded pool for a step's per-consumer work: at most ``bound`` at once, none started after a failure.

Each item runs in a worker thread with a copy of the caller's context (its log fields). When one
raises, the items already running finish what they started and no further item starts; the caller
gets every outcome, in the order they finished, and decides (roll back, retry, stop).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Outcome(Generic[Item, Result]):
    """What one item's work came to: its result, or the exception it raised."""

    item: Item
    result: Result | None = None
    error: BaseException | None = None


def run_bounded(items: Iterable[Item], work: Callable[[Item], Result], bound: int) -> list[Outcome[Item, Result]]:
    """``work(item)`` for each item, at most ``bound`` at a time; stop starting new ones after a failure.

    ``bound`` 1 runs them one after another in the caller's thread.
    """
    if bound < 1:
        raise ValueError(f"bound must be at least 1, not {bound}")
    outcomes: list[Outcome[Item, Result]] = []
    queue = iter(items)
    if bound == 1:
        for item in queue:
            try:
                outcomes.append(Outcome(item, work(item)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises or decides
                outcomes.append(Outcome(item, error=exc))
                break
        return outcomes
    running: dict[Future[Result], Item] = {}
    failed = False
    with ThreadPoolExecutor(max_workers=bound, thread_name_prefix="repoint") as pool:

        def fill() -> None:
            while not failed and len(running) < bound:
                try:
                    item = next(queue)
                except StopIteration:
                    return
                context = contextvars.copy_context()
                running[pool.submit(context.run, work, item)] = item

        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                error = future.exception()
                outcomes.append(Outcome(item, error=error) if error is not None else Outcome(item, future.result()))
                failed = failed or error is not None
            fill()
    return outcomes
