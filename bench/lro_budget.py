"""The estate benchmark's ``budget`` section: a rotation whose workspace updates outlast the invocation budget.

The ARM emulator makes every workspace key update an operation of ``polls`` polls ``retry_after_s`` apart
whose new key shows only when it ends (``ml_update_applies: completed``); the Function app's wiring
(queued dispatch on Azurite, ``ROTATION_INVOCATION_BUDGET_SECONDS``) runs each invocation from a real
``rotation-run`` message through the ``run_rotation`` trigger, as the host would. Reported: invocations
used, and PATCHes per workspace from the emulator's counters (``Workspaces_Update``: every workspace moved
and as many PATCHes as workspaces means exactly one each).
"""

from __future__ import annotations

from typing import Any


def measure_budget(
    endpoints: dict[str, Any], *, workspaces: int, retry_after_s: int, polls: int, budget_s: int
) -> dict[str, Any]:
    from rotation.bootstrap import Bootstrap, build_dependencies
    from rotation.domain.model import RotationStatus, Trigger, TriggerKind
    from rotation.service import get_rotation, start_rotation
    from tests.integration.workflow.estate import build_estate
    from tests.integration.workflow.run_messages import deliver_until_settled, run_queue

    estate = build_estate(endpoints, pinned=0, versionless=0, workspaces=workspaces)
    admin = estate.arm_admin
    with admin.lro_settings(
        retry_after_s=retry_after_s, polls_until_done=polls, ml_update="async-succeeded", ml_update_applies="completed"
    ):
        settings = estate.settings(ROTATION_INVOCATION_BUDGET_SECONDS=str(budget_s), ROTATION_LOG_LEVEL="WARNING")
        deps = build_dependencies(Bootstrap(settings), inline=False)
        admin.reset_counters()
        view = start_rotation(deps, estate.key.uri, Trigger(TriggerKind.HTTP, caller="bench"), reason="bench")
        queue = run_queue(endpoints["storage"]["connection_string"])
        invocations = deliver_until_settled(queue, deps, view.rotation_id, limit=200, wait_s=retry_after_s + 15)
        counters = admin.counters()
        final = get_rotation(deps, view.rotation_id)
    new = final.new_version or "?"
    moved = sum(estate.workspace_key(w).endswith("/" + new) for w in estate.workspaces)
    patches = counters.get("Workspaces_Update", 0)
    return {
        "workspaces": workspaces,
        "lro": {"retry_after_s": retry_after_s, "polls_until_done": polls, "one_update_s": retry_after_s * polls},
        "invocation_budget_s": budget_s,
        "invocations": invocations,
        "patches": patches,
        "patches_per_workspace": round(patches / workspaces, 2),
        "polls": counters.get("Workspaces_OperationStatus", 0),
        "moved": moved,
        "status": final.status.value,
        "rotation_s": round((final.updated_at - final.started_at).total_seconds(), 1),  # start to cut-over
        "ok": final.status == RotationStatus.AWAITING_RETIREMENT and moved == workspaces and patches == workspaces,
    }
