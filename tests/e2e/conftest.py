"""Fixtures of the e2e suite: the Function app running under the real worker (``tests/worker``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from demo.estate import Estate
from tests.worker.host import WorkerHost
from tests.worker.queues import QueueListener


@pytest.fixture
def worker_app(estate: Estate) -> Iterator[tuple[WorkerHost, QueueListener]]:
    """The Function app in the worker with the test's ``estate`` settings as its app settings, and the
    stand-in's queue listener on its queues. Dispatch is queued, as deployed."""
    settings = {"FUNCTIONS_WORKER_RUNTIME": "python", **estate.settings(ROTATION_LOG_LEVEL="WARNING")}
    with WorkerHost(settings) as host, QueueListener(host) as listener:
        yield host, listener
