"""Concurrency, injected faults and reconciler cost, against local Azure through the real adapters."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.adapters.sweep_memory import TableSweepMemory
from rotation.domain.model import KeyRef, KeyVaultEvent, RotationStatus, Trigger, TriggerKind
from rotation.errors import RotationInProgress
from rotation.service import handle_key_event, list_rotations, start_rotation, sweep
from tests.integration.workflow.estate import RealEstate, build_estate, build_storage_estate


@pytest.fixture
def estate(local_azure: dict[str, Any]) -> RealEstate:
    return build_estate(local_azure, pinned=2, versionless=1, workspaces=1)


def _on_new_version(estate: RealEstate, new: str) -> None:
    for account in estate.pinned:
        assert estate.account_version(account) == (new, new)
    for workspace in estate.workspaces:
        assert estate.workspace_key(workspace).endswith("/" + new)


class TestConcurrentTriggers:
    """Event, timer and HTTP for the same key at once give one rotation and one new version."""

    def test_three_triggers_one_rotation(self, estate: RealEstate) -> None:
        client = estate.keys()
        current = client.get_key(estate.key.name)
        soon = datetime.now(UTC) + timedelta(days=3)
        client.update_key_properties(estate.key.name, current.properties.version, expires_on=soon)
        event = KeyVaultEvent(
            str(uuid.uuid4()), "KeyNearExpiry", estate.key, current.properties.version, "kv", None, soon, None
        )
        barrier = threading.Barrier(3)
        outcomes: dict[str, str] = {}

        def by_event() -> None:
            deps = estate.deps(owner="event-worker")
            barrier.wait()
            outcomes["event"] = handle_key_event(deps, event).outcome

        def by_timer() -> None:
            deps = estate.deps(owner="timer-worker")
            barrier.wait()
            report = sweep(deps, Trigger(TriggerKind.TIMER))
            outcomes["timer"] = ",".join(sorted({i.action for i in report.items})) or "nothing"

        def by_http() -> None:
            deps = estate.deps(owner="http-worker")
            barrier.wait()
            try:
                outcomes["http"] = start_rotation(deps, estate.key.uri, Trigger(TriggerKind.HTTP)).status.value
            except RotationInProgress:
                outcomes["http"] = "in_progress"

        threads = [threading.Thread(target=f) for f in (by_event, by_timer, by_http)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        print(f"\nconcurrent triggers: {outcomes}")
        rotations = list_rotations(estate.deps(), estate.key.uri)
        assert len(rotations) == 1, outcomes
        assert len(estate.versions()) == 2
        final = list_rotations(estate.deps(), estate.key.uri)[0]
        if final.status != RotationStatus.AWAITING_RETIREMENT:  # the winner may still be finishing
            sweep(estate.deps(), Trigger(TriggerKind.TIMER))
            final = list_rotations(estate.deps(), estate.key.uri)[0]
        assert final.status == RotationStatus.AWAITING_RETIREMENT
        _on_new_version(estate, str(final.new_version))


class TestFaultInjection:
    """429 bursts, 5xx, latency and dropped connections from both emulators: the rotation completes."""

    def test_rotation_completes_under_faults(self, estate: RealEstate) -> None:
        kv, arm = estate.kv_admin, estate.arm_admin
        vault = estate.vault["name"]
        kv.reset_counters()
        kv_rules = [
            {"rate": 1.0, "kind": "status", "status": 429, "retry_after": 1, "count": 3, "vault": vault,
             "operations": ["createKey"]},
            {"rate": 1.0, "kind": "status", "status": 503, "count": 2, "vault": vault, "operations": ["getKey"]},
            {"rate": 1.0, "kind": "drop", "count": 1, "vault": vault, "operations": ["getKeyVersions"]},
            {"rate": 1.0, "kind": "latency", "latency_ms": 300, "count": 2, "vault": vault,
             "operations": ["unwrapKey"]},
        ]  # fmt: skip
        arm_rules = [
            {"rate": 1.0, "kind": "status", "status": 503, "count": 2, "operations": ["StorageAccounts_Update"]},
            {"rate": 1.0, "kind": "status", "status": 429, "retry_after": 1, "count": 2,
             "operations": ["StorageAccounts_GetProperties"]},
            {"rate": 1.0, "kind": "drop", "count": 1, "operations": ["Workspaces_Update"]},
            {"rate": 1.0, "kind": "latency", "latency_ms": 300, "count": 2, "operations": ["Workspaces_Get"]},
            {"rate": 1.0, "kind": "status", "status": 500, "count": 1, "operations": ["Workspaces_OperationStatus"]},
        ]  # fmt: skip
        planted = sum(r["count"] for r in arm_rules)
        kv.set_faults(*kv_rules)
        arm.set_faults(*arm_rules)
        try:
            view = start_rotation(estate.deps(), estate.key.uri, Trigger(TriggerKind.CLI))
        finally:
            remaining_arm = sum(int(r.get("count") or 0) for r in arm._call("GET", "/admin/faults")["rules"])
            kv.clear_faults()
            arm.clear_faults()

        kv_injected = kv.counters().get(vault, {}).get("faults", 0)
        arm_injected = planted - remaining_arm
        print(
            f"\nfaults injected: key vault {kv_injected} (429 burst, 503, dropped connection, latency), "
            f"ARM {arm_injected} (503, 429, dropped connection, latency, LRO poll 500); "
            f"outcome: {view.status.value}, new version {view.new_version}"
        )
        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert kv_injected >= 4
        assert arm_injected >= 4
        assert len(estate.versions()) == 2
        _on_new_version(estate, str(view.new_version))


class TestReconcilerCost:
    """The reconciler's cost follows what it manages: min(managed keys, one listing page per 25 keys)."""

    def test_a_small_vault_of_many_managed_keys_is_listed(self, local_azure: dict[str, Any]) -> None:
        """100 keys, 10 managed: every tick of a new worker process (the memory is in the app's storage) is at
        most 4 calls, the first too: listing ticks of 4 pages, and between them, until the sweep knows every
        key's versions, ticks reading at most 4 keys' versions; a corrupted record costs that key's read."""
        estate = build_storage_estate(local_azure, accounts=1)
        client, kv = estate.keys(), estate.kv_admin
        kv.set_throttle(estate.vault["name"], enabled=False)  # Key Vault allows 20 creates per 10 s
        managed = [estate.key] + [KeyRef(estate.key.vault_url, f"managed-{i}") for i in range(9)]
        for key in managed[1:]:
            client.create_rsa_key(key.name, size=2048)
        fillers = [threading.Thread(target=client.create_ec_key, args=(f"filler-{i:03d}",)) for i in range(90)]
        for chunk in range(0, len(fillers), 15):
            for thread in fillers[chunk : chunk + 15]:
                thread.start()
            for thread in fillers[chunk : chunk + 15]:
                thread.join()
        kv.set_throttle(estate.vault["name"], enabled=True)
        managed_keys = ",".join(k.uri for k in managed)
        costs = []

        def cold_tick() -> None:
            """A tick of a new worker process: new dependencies, the same storage."""
            kv.reset_counters()
            report = sweep(estate.deps(ROTATION_MANAGED_KEYS=managed_keys), Trigger(TriggerKind.TIMER))
            costs.append(dict(kv.counters().get(estate.vault["name"], {})))
            assert report.items == ()

        for _ in range(7):
            cold_tick()
        memory = TableSweepMemory(local_azure["storage"]["connection_string"], estate.sweep_table)
        memory.write(estate.key.vault_url, {managed[3].uri.lower(): "{not json"})
        for _ in range(3):
            cold_tick()

        pages = {"getKeys": math.ceil(100 / 25)}
        assert costs[:7] == [pages, *[{"getKeyVersions": 4}, pages] * 2, {"getKeyVersions": 2}, pages]
        # The corrupted record: that key judged from the listing, its versions read on the next tick, once.
        assert costs[7:] == [pages, {"getKeyVersions": 1}, pages]

    def test_list_calls(self, estate: RealEstate) -> None:
        client = estate.keys()
        kv = estate.kv_admin
        kv.set_throttle(estate.vault["name"], enabled=False)  # Key Vault allows 20 creates per 10 s
        extra = 498  # 500 keys with the two of the estate: 20 pages
        threads = [
            threading.Thread(target=lambda i=i: client.create_ec_key(f"bulk-{i:04d}"))  # EC: quick to generate
            for i in range(extra)
        ]
        for chunk in range(0, extra, 20):
            for thread in threads[chunk : chunk + 20]:
                thread.start()
            for thread in threads[chunk : chunk + 20]:
                thread.join()
        kv.set_throttle(estate.vault["name"], enabled=True)
        kv.reset_counters()
        deps = estate.deps()

        report = sweep(deps, Trigger(TriggerKind.TIMER))

        counters = kv.counters().get(estate.vault["name"], {})
        keys_in_vault = extra + 2
        print(f"\nsweep over {keys_in_vault} keys: {counters}")
        managed = len(deps.settings.managed_keys)  # the estate's one key
        assert counters.get("getKeys", 0) == 0  # no listing of the vault
        assert counters.get("getKeyVersions", 0) == managed <= math.ceil(keys_in_vault / 25)  # one page each
        assert (report.list_calls, report.key_reads) == (0, managed)
