"""A large estate's rotation against local Azure (issue 18), everything measured side by side in one run.

    python -m bench.estate [--quick] [--sections ratio,sweep]

Starts local Azure in a temporary directory (Azurite, the Key Vault and ARM emulators) and prints
one JSON object:

- ``ratio``: for 24 storage accounts + 8 ML workspaces, and for 200 + 20, the rotation's wall time divided
  by (one workspace update + one storage update, each measured alone through the same adapters in the same
  run). A workspace update is a long-running operation of ``retry_after_s`` x ``polls_until_done`` (the ARM
  emulator's ``PUT /admin/lro``): 1 s x 3 for both estates, and for 200 + 20 also 10 s x 3, the slow LROs
  of the issue (in Azure a workspace's key update takes minutes: the service re-encrypts its own stores).
  ``one_workspace_update_s`` is azure-core's poller, which polls once as soon as the PATCH is accepted; the
  rotation polls after each ``Retry-After``, as ARM asks, and the emulator counts polls, not seconds, so its
  updates take one ``Retry-After`` longer: ``one_workspace_update_polled_as_the_rotation_polls_s`` is one
  update through the rotation's own calls, and ``ratio_to_that`` the ratio against it. ``steps_s``: the
  rotation's steps that took 50 ms or more, from its journal.
  Each estate is built by the same principal the service acts as, so ARM's token buckets are refilled
  before its measurements (a rotation does not start right after 200 creates); the ARM requests of the
  rotation (by operation) and the service's waits for ARM's buckets (``pacer``) are reported with it.
  ARM's one-minute write window is switched off: it is not Azure's token bucket (see ``bucket``).
- ``sweep``: Key Vault calls of the reconciler's ticks over a vault of 5,000 keys with 2 managed, and of
  100 keys with 10 managed, none near expiry, from a deployment's very first tick (nothing learnt) until
  the sweep knows every managed key's versions, plus one more, each tick a new worker process's (new
  dependencies, the same storage: what earlier ticks learnt is in ``ROTATION_SWEEP_TABLE``): the Key Vault
  emulator's counters by operation, per tick, each against the bound min(managed, ⌈keys / 25⌉), and the
  managed keys each tick deferred. ``key_vault_calls`` and ``within_bound`` are the worst tick's.
- ``budget``: a rotation whose workspace updates (``retry_after_s`` x ``polls_until_done``, shown when the
  operation ends) outlast ``ROTATION_INVOCATION_BUDGET_SECONDS``, driven through the real ``rotation-run``
  queue and trigger: invocations used and PATCHes per workspace (``bench/lro_budget.py``).
- ``bucket``: 500 pinned storage accounts re-pointed under the ARM emulator's token buckets (Azure's sizes:
  writes 200 refilled 10/s, reads 250 refilled 25/s), the write bucket starting **drained** (the emulator's
  ``initial`` tokens, 0) so the whole run measures the sustained rate, not the first 200 writes the bucket
  holds. ``achieved_write_rate_per_s`` = writes the emulator granted ÷ seconds from the first write request
  it saw to the last write it granted (its own clock); ``of_refill`` = that ÷ the refill rate (at most ~1 by
  construction). ``throttled_share`` = 429s the emulator answered to writes ÷ write requests it answered.
  ``failed_consumers``: consumers the rotation's journal records as ``failed`` or ``rolled_back``. The
  estate is seeded through the emulator's admin API (``POST /admin/storage-accounts``), not 500 throttled creates.

Figures are from a 2-core machine shared with other work; they are measurements, not assertions.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

SECTIONS = ("ratio", "sweep", "bucket", "budget")


def _timed(action: Any) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def measure_ratio(
    endpoints: dict[str, Any], *, storage: int, workspaces: int, lro_s: int, polls: int, concurrency: int
) -> dict[str, Any]:
    """Rotate a key used by ``storage`` pinned accounts and ``workspaces`` workspaces; compare with one of each."""
    from rotation.adapters.arm_pacing import shared_pacer
    from rotation.domain.model import RotationStatus, Trigger, TriggerKind
    from rotation.service import start_rotation
    from tests.integration.workflow.estate import build_estate

    started = time.monotonic()
    estate = build_estate(endpoints, pinned=storage, versionless=0, workspaces=workspaces)
    built_s = time.monotonic() - started
    admin = estate.arm_admin
    admin.set_throttle()  # every bucket full again, settings unchanged: the build spent them
    pacer = shared_pacer()
    before = admin.set_lro()  # the emulator's LRO settings, restored afterwards
    admin.set_lro(retry_after_s=lro_s, polls_until_done=polls)
    try:
        deps = estate.deps(ROTATION_REPOINT_CONCURRENCY=str(concurrency), ROTATION_LOG_LEVEL="WARNING")
        # Waits as long as the Function does: the test estate caps every wait at 0.2 s, which would poll a
        # workspace's operation faster than its Retry-After (the emulator counts polls, not time).
        deps.sleep = time.sleep
        # One of each alone, through the same adapters: the unrelated key's account and workspace,
        # each set to what it already names (a real PATCH, a real LRO for the workspace).
        account_id, workspace_id = estate.unrelated
        account = deps.storage_accounts.get_account(account_id)
        workspace = deps.workspaces.get_workspace(workspace_id)
        storage_s = _timed(
            lambda: deps.storage_accounts.set_key_version(
                account_id, account.vault_url, account.key_name, account.key_version
            )
        )
        workspace_s = _timed(lambda: deps.workspaces.set_key_identifier(workspace_id, workspace.key_identifier))
        admin.reset_counters()
        waits, waited_s = pacer.waits, pacer.waited_s
        view: Any = None

        def rotate() -> None:
            nonlocal view
            view = start_rotation(deps, estate.key.uri, Trigger(TriggerKind.CLI, caller="bench"), reason="bench")

        rotation_s = _timed(rotate)
        counters = admin.counters()
        # After the rotation, so that its write does not come out of the rotation's bucket.
        polled_s = _timed(
            lambda: _update_as_the_rotation_polls(deps.workspaces, workspace_id, workspace.key_identifier)
        )
    finally:
        admin.set_lro(retry_after_s=before["retry_after_s"], polls_until_done=before["polls_until_done"])
    new = (view.new_version if view else None) or ""
    steps = deps.journal.load(view.rotation_id)[0].steps if view else ()
    moved = sum(estate.account_version(a)[0] == new for a in estate.pinned)
    moved_ws = sum(estate.workspace_key(w).endswith("/" + new) for w in estate.workspaces)
    return {
        "storage_accounts": storage,
        "workspaces": workspaces,
        "repoint_concurrency": concurrency,
        "lro": {"retry_after_s": lro_s, "polls_until_done": polls},
        "one_storage_update_s": round(storage_s, 3),
        "one_workspace_update_s": round(workspace_s, 3),
        "rotation_s": round(rotation_s, 2),
        "ratio": round(rotation_s / (storage_s + workspace_s), 2),
        "one_workspace_update_polled_as_the_rotation_polls_s": round(polled_s, 3),
        "ratio_to_that": round(rotation_s / (storage_s + polled_s), 2),
        "steps_s": {
            s.name: round((s.finished_at - s.started_at).total_seconds(), 2)
            for s in steps
            if s.started_at and s.finished_at and (s.finished_at - s.started_at).total_seconds() >= 0.05
        },
        "status": view.status.value if view else None,
        "ok": bool(view and view.status == RotationStatus.AWAITING_RETIREMENT)
        and (moved, moved_ws) == (storage, workspaces),
        "moved": {"storage_accounts": moved, "workspaces": moved_ws},
        "patches": {
            "storage": counters.get("StorageAccounts_Update", 0),
            "workspaces": counters.get("Workspaces_Update", 0),
        },
        "arm_requests": dict(sorted(counters.items())),
        "pacer": {"waits": pacer.waits - waits, "waited_s": round(pacer.waited_s - waited_s, 1)},
        "estate_build_s": round(built_s, 1),
    }


def _update_as_the_rotation_polls(workspaces: Any, workspace_id: str, key_identifier: str) -> None:
    """One workspace update through the rotation's own calls: the PATCH, then a poll after each ``Retry-After``
    (the executor's ``_await``), where ``set_key_identifier`` (azure-core's poller) polls once at once. The
    emulator ends an operation after a number of polls, not of seconds, so that first poll ends it one
    ``Retry-After`` sooner; in Azure an operation's end does not depend on how often it is polled."""
    operation = workspaces.begin_key_identifier(workspace_id, key_identifier)
    wait = operation.retry_after_s if operation is not None else 0.0
    while operation is not None:
        time.sleep(wait)
        answer = workspaces.poll_key_update(workspace_id, operation)
        if answer.status != "running":
            return
        wait = answer.retry_after_s


@contextmanager
def _arm_roles_restored(endpoints: dict[str, Any]) -> Iterator[None]:
    """The ARM emulator's role assignments as they were before the block (a section that grants a role
    switches RBAC on for every later section otherwise)."""
    from emulators.arm.admin_client import ArmAdmin

    arm = ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"])
    saved = arm.role_assignments()
    try:
        yield
    finally:
        arm.set_role_assignments(saved)


def measure_sweep(endpoints: dict[str, Any], *, keys: int, managed: int) -> dict[str, Any]:
    """The reconciler's ticks over a vault of ``keys`` keys, ``managed`` of them managed and none near expiry,
    from a deployment's first tick until every managed key's versions are known, plus one, each by a new
    worker process (new dependencies, the same storage): the Key Vault emulator's counters for each."""
    from bench.reconcile_cost import seed_vault
    from rotation.bootstrap import Bootstrap, build_dependencies
    from rotation.domain.model import Trigger, TriggerKind
    from rotation.service import sweep
    from rotation.settings import load_settings

    names = [f"managed-{i:03d}" for i in range(managed)]
    seeded = seed_vault(endpoints, keys, dict.fromkeys(names, timedelta(days=300)))
    vault, kv, env = seeded.vault, seeded.admin, seeded.settings
    pages = math.ceil(keys / 25)
    bound = min(managed, pages)
    ticks = []
    for _ in range(2 + 2 * math.ceil(managed / pages)):  # the first, and the catching up (sweep_cost)
        deps = build_dependencies(Bootstrap(load_settings(env)), inline=True)  # a new worker process
        kv.reset_counters()
        report = sweep(deps, Trigger(TriggerKind.TIMER))
        counters = dict(kv.counters().get(vault["name"], {}))
        calls = sum(counters.values())
        ticks.append(
            {
                "key_vault_calls": calls,
                "within_bound": calls <= bound,
                "by_operation": counters,
                "deferred": len(report.deferred),
                "actions": len(report.items),
            }
        )
    worst = max(tick["key_vault_calls"] for tick in ticks)
    return {
        "keys_in_vault": keys,
        "managed_keys": managed,
        "bound": bound,
        "key_vault_calls": worst,
        "within_bound": worst <= bound,
        "ticks": ticks,
    }


def measure_bucket(endpoints: dict[str, Any], *, accounts: int, concurrency: int | None = None) -> dict[str, Any]:
    """Re-point ``accounts`` pinned storage accounts with the write bucket drained; the emulator's own counts.

    ``concurrency``: ``ROTATION_REPOINT_CONCURRENCY`` (None: the service's default).
    """
    from emulators.arm.admin_client import ArmAdmin
    from rotation.domain.model import Trigger, TriggerKind
    from rotation.service import start_rotation
    from tests.integration.workflow.estate import OPERATOR, build_storage_estate

    arm = ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"])
    started = time.monotonic()
    estate = build_storage_estate(endpoints, accounts=accounts)
    subscription_id, group, key = estate.subscription_id, estate.resource_group, estate.key
    # Earlier sections may have switched ARM's RBAC on (an assignment exists): the operator's own role here.
    arm.add_role_assignment(OPERATOR, "Contributor", f"/subscriptions/{subscription_id}")
    seeded_s = time.monotonic() - started
    refill = 10.0
    arm.set_throttle(enabled=True, reads=(250, 25.0), writes=(200, refill), deletes=(200, 10.0), initial={"writes": 0})
    try:
        extra = {"ROTATION_REPOINT_CONCURRENCY": str(concurrency)} if concurrency else {}
        deps = estate.deps(ROTATION_LOG_LEVEL="WARNING", **extra)
        arm.reset_counters()
        rotation_started = time.monotonic()
        view = start_rotation(deps, key.uri, Trigger(TriggerKind.CLI, caller="bench"), reason="bench")
        rotation_s = time.monotonic() - rotation_started
        stats = [s for s in arm.throttle_stats(subscription_id) if s["principal"] == OPERATOR]
        counters = arm.counters()
    finally:
        arm.set_throttle(enabled=False, reads=(250, 25.0), writes=(200, 10.0), deletes=(200, 10.0))
    state, _ = deps.journal.load(view.rotation_id)
    failed = [c for c in state.consumers if c.status in ("failed", "rolled_back")]
    new = state.new_version or ""
    listed = estate.storage().storage_accounts.list_by_resource_group(group)
    moved = sum((a.encryption.key_vault_properties.key_version or "") == new for a in listed)
    writes = next((s for s in stats if s["kind"] == "writes"), None)
    reads = next((s for s in stats if s["kind"] == "reads"), None)
    result: dict[str, Any] = {
        "storage_accounts": accounts,
        "repoint_concurrency": deps.settings.repoint_concurrency,
        "definition": (
            "write bucket drained at the first write (emulator initial=0); rate = writes granted / seconds from"
            " the first write request to the last write granted, on the emulator's clock; throttled share ="
            " 429s answered to writes / write requests answered; failed = journal consumers failed or rolled back"
        ),
        "write_refill_per_s": refill,
        "status": view.status.value,
        "rotation_s": round(rotation_s, 1),
        "failed_consumers": len(failed),
        "moved": moved,
        "patches": counters.get("StorageAccounts_Update", 0),
        "estate_build_s": round(seeded_s, 1),
    }
    if writes is None or writes["last_granted_at"] is None:
        return {**result, "achieved_write_rate_per_s": 0.0, "of_refill": 0.0, "throttled_share": None}
    window = writes["last_granted_at"] - writes["first_request_at"]
    rate = writes["granted"] / window if window > 0 else 0.0
    answered = writes["granted"] + writes["throttled"]
    return {
        **result,
        "achieved_write_rate_per_s": round(rate, 2),
        "of_refill": round(rate / refill, 3),
        "writes": {"granted": writes["granted"], "throttled": writes["throttled"], "window_s": round(window, 1)},
        "throttled_share": round(writes["throttled"] / answered, 4) if answered else 0.0,
        "reads": {"granted": reads["granted"], "throttled": reads["throttled"]} if reads else None,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.estate")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    from emulators.localazure import LocalAzure
    from rotation.logs import configure_logging

    configure_logging("console", "WARNING", stream=sys.stderr)  # stdout carries only the JSON result
    result: dict[str, Any] = {"benchmark": "estate", "quick": args.quick}
    saved = dict(os.environ)
    try:
        with LocalAzure(Path(tempfile.mkdtemp(prefix="bench-estate-"))) as local:
            endpoints = local.endpoints
            ArmAdminThrottle(endpoints).off()
            if "ratio" in sections:
                shapes = (
                    [(2, 1, 1, 2, 4)] if args.quick else [(24, 8, 1, 3, 8), (200, 20, 1, 3, 20), (200, 20, 10, 3, 20)]
                )
                result["ratio"] = [
                    measure_ratio(endpoints, storage=s, workspaces=w, lro_s=r, polls=p, concurrency=c)
                    for s, w, r, p, c in shapes
                ]
            if "sweep" in sections:
                shapes = [(60, 2), (30, 3)] if args.quick else [(5000, 2), (100, 10)]
                with _arm_roles_restored(endpoints):
                    result["sweep"] = [measure_sweep(endpoints, keys=n, managed=m) for n, m in shapes]
            if "bucket" in sections:
                with _arm_roles_restored(endpoints):
                    result["bucket"] = measure_bucket(endpoints, accounts=12 if args.quick else 500)
            if "budget" in sections:
                from bench.lro_budget import measure_budget

                shape = (2, 1, 3, 1) if args.quick else (8, 2, 6, 5)
                workspaces, retry_after_s, polls, budget_s = shape
                result["budget"] = measure_budget(
                    endpoints, workspaces=workspaces, retry_after_s=retry_after_s, polls=polls, budget_s=budget_s
                )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return result


class ArmAdminThrottle:
    """ARM's one-minute write window, switched off for the whole run (it is not Azure's bucket)."""

    def __init__(self, endpoints: dict[str, Any]) -> None:
        from emulators.arm.admin_client import ArmAdmin

        self.admin = ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"])

    def off(self) -> None:
        self.admin.set_throttle(enabled=False)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
