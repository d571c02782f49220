"""Chaos: seeded faults, racing triggers and SIGKILLs over several keys, then the reconciler heals.

``make test`` runs the two fixed seeds below. ``make chaos SEEDS=N`` runs N more (``CHAOS_SEEDS`` lists
them, comma-separated; the Makefile prints them). A failure names its seed and how to re-run it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import driver

FIXED_SEEDS = (1, 2)


def _seeds() -> list[int]:
    listed = os.environ.get("CHAOS_SEEDS", "").strip()
    if not listed:
        return list(FIXED_SEEDS)
    return [int(s) for s in listed.split(",") if s.strip()]


@pytest.mark.parametrize("seed", _seeds())
def test_chaos_heals(seed: int, local_azure: dict[str, Any], tmp_path: Path) -> None:
    print(f"\nchaos seed {seed} ({driver.rerun_hint(seed)})")
    chaos = driver.run(local_azure, seed, tmp_path)
    print(driver.summary(chaos))
    assert chaos.observations > 0, "the monitor never observed the consumers during the run"
