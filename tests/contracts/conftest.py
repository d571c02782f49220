"""Contract suites: the same tests against each in-memory fake and its real adapter on local Azure.

Each suite's subject fixture is parametrized over ``FAKE`` and ``REAL``. The fake runs are marked
``unit`` (no processes, no network) and the real ones ``integration`` (the adapter over the official SDK
against Azurite and the emulators, via ``local_azure``), so ``-m unit`` still runs only fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from tests.contracts.arm_world import ArmWorld

FAKE = pytest.param("fake", marks=pytest.mark.unit, id="fake")
REAL = pytest.param("real", marks=pytest.mark.integration, id="real")
BOTH = (FAKE, REAL)

SubjectT = TypeVar("SubjectT")


def fake_or_real(
    request: pytest.FixtureRequest,
    fake: Callable[[], SubjectT],
    real: Callable[[dict[str, Any]], Iterator[SubjectT]],
) -> Iterator[SubjectT]:
    """The subject for the fixture's param: ``fake()``, or ``real(local_azure)`` (a generator: what follows
    its ``yield`` tears the real one down after the test)."""
    if request.param == "fake":
        yield fake()
    else:
        yield from real(request.getfixturevalue("local_azure"))


@pytest.fixture(params=BOTH)
def arm(request: pytest.FixtureRequest) -> ArmWorld:
    """The small ARM estate of ``tests/contracts/arm_world.py``, in memory or on the emulators."""
    from tests.contracts.arm_world import fake_world, real_world

    return fake_world() if request.param == "fake" else real_world(request.getfixturevalue("local_azure"))
