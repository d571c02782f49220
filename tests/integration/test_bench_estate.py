"""Smoke test of ``bench/estate.py`` at tiny sizes: it runs and its figures are consistent.

The benchmark itself (``python -m bench.estate``) is not part of ``make test``: benchmarks are not
timed tests. This only checks that its measurements run and report what they measured.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.estate import measure_bucket, measure_ratio, measure_sweep
from emulators.arm.admin_client import ArmAdmin


@pytest.fixture(autouse=True)
def _restore_arm_roles(local_azure: dict[str, Any]) -> Iterator[None]:
    """The benches grant roles in the session's ARM emulator; later tests expect it as it was."""
    arm = ArmAdmin(local_azure["arm"]["admin"], local_azure["ca_bundle"])
    saved = arm.role_assignments()
    yield
    arm.set_role_assignments(saved)


def test_ratio_section_rotates_and_counts_one_patch_per_consumer(local_azure: dict[str, Any]) -> None:
    result = measure_ratio(local_azure, storage=3, workspaces=2, lro_s=1, polls=1, concurrency=3)

    assert result["ok"], result
    assert result["patches"] == {"storage": 3, "workspaces": 2}
    assert result["moved"] == {"storage_accounts": 3, "workspaces": 2}
    assert result["one_workspace_update_s"] > 0
    assert result["ratio"] > 0


def test_sweep_section_counts_key_vault_calls(local_azure: dict[str, Any]) -> None:
    result = measure_sweep(local_azure, keys=30, managed=3)

    # 30 keys in 2 pages, 3 managed: listed (the first tick too), and between listings the 3 keys' versions
    # are read, 2 a tick, until all are known.
    listed, read = {"getKeys": 2}, [{"getKeyVersions": 2}, {"getKeyVersions": 1}]
    assert [tick["by_operation"] for tick in result["ticks"]] == [listed, read[0], listed, read[1], listed, listed]
    assert (result["bound"], result["key_vault_calls"], result["within_bound"]) == (2, 2, True)
    assert all(tick["within_bound"] for tick in result["ticks"])
    assert all(tick["actions"] == 0 for tick in result["ticks"])


def test_budget_section_continues_across_invocations_with_one_patch_each(local_azure: dict[str, Any]) -> None:
    from bench.lro_budget import measure_budget

    result = measure_budget(local_azure, workspaces=2, retry_after_s=1, polls=3, budget_s=1)

    assert result["ok"], result
    assert result["patches"] == 2
    assert result["patches_per_workspace"] == 1
    assert result["polls"] == 2 * 3
    assert result["invocations"] >= 2


def test_bucket_section_reports_the_emulators_counts(local_azure: dict[str, Any]) -> None:
    arm = ArmAdmin(local_azure["arm"]["admin"], local_azure["ca_bundle"])
    try:
        result = measure_bucket(local_azure, accounts=6, concurrency=3)
    finally:
        arm.reset_throttle()  # the section leaves the throttle off, as the benchmark runs it

    assert result["status"] == "awaiting_retirement"
    assert (result["moved"], result["failed_consumers"]) == (6, 0)
    assert result["writes"]["granted"] == 6
    assert result["patches"] == 6 + result["writes"]["throttled"]
    assert result["throttled_share"] == pytest.approx(result["writes"]["throttled"] / result["patches"], abs=1e-4)
    assert 0 < result["of_refill"] <= 1.1  # a drained bucket grants at most its refill (+ one token)
