"""Contract suites: the same tests against each in-memory fake and its real adapter on local Azure.

Each suite's ``subject`` fixture is parametrized over ``FAKE`` and ``REAL``. The fake runs are marked
``unit`` (no processes, no network) and the real ones ``integration`` (the adapter over the official SDK
against Azurite and the emulators, via ``local_azure``), so ``-m unit`` still runs only fakes.
"""

from __future__ import annotations

import pytest

FAKE = pytest.param("fake", marks=pytest.mark.unit, id="fake")
REAL = pytest.param("real", marks=pytest.mark.integration, id="real")
BOTH = (FAKE, REAL)
