"""Timer trigger ``reconcile``: the sweep that catches what events missed.

Schedule: the app setting ``ROTATION_RECONCILE_SCHEDULE`` (NCRONTAB with seconds, default
``0 */15 * * * *``). When the setting is present the binding names it (``%ROTATION_RECONCILE_SCHEDULE%``)
and the Functions host resolves it; when it is absent the default is bound directly, so a deployment
that omits the setting still indexes (an unresolvable ``%...%`` would stop the host indexing the app).

The sweep (``rotation.service.sweep``) rotates managed keys inside the near-expiry window whose
event was missed, resumes unfinished rotations and performs due retirements. Each key is its own
error boundary inside the sweep; a failure of the sweep as a whole (settings, storage down) is
logged and re-raised so the invocation shows as failed; the next tick tries again.
"""

from __future__ import annotations

import os
from typing import Any

import azure.functions as func

from rotation import bootstrap
from rotation.domain.model import Trigger, TriggerKind
from rotation.errors import RotationError
from rotation.logs import bound, get_logger

log = get_logger("rotation.triggers.timer")

SCHEDULE_SETTING = "ROTATION_RECONCILE_SCHEDULE"
DEFAULT_SCHEDULE = "0 */15 * * * *"

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


def schedule_binding(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The timer binding's schedule: the app setting by reference when set, else the default."""
    return f"%{SCHEDULE_SETTING}%" if env.get(SCHEDULE_SETTING, "").strip() else DEFAULT_SCHEDULE


@bp.function_name("reconcile")
@bp.timer_trigger(arg_name="timer", schedule=schedule_binding(), run_on_startup=False, use_monitor=True)
def reconcile(timer: func.TimerRequest) -> None:
    """One tick of the reconciler."""
    run_sweep(past_due=timer.past_due)


def run_sweep(*, past_due: bool = False) -> dict[str, Any]:
    """Sweep the managed keys once and log a summary; return the report as a dict.

    Raises:
        RotationError: the sweep as a whole failed (individual keys fail inside the report).
    """
    from rotation import service  # noqa: PLC0415 - imported per call to keep `import function_app` fast

    with bound(trigger="timer"):
        if past_due:
            log.warning("reconcile_past_due")
        try:
            report = service.sweep(bootstrap.dependencies(), Trigger(kind=TriggerKind.TIMER))
        except RotationError as exc:
            log.error("reconcile_failed", code=exc.code, message=exc.message)
            raise
        summary = report.to_dict()
        counts: dict[str, int] = {}
        for item in summary.get("items", []):
            counts[item["action"]] = counts.get(item["action"], 0) + 1
        log.info(
            "reconcile_finished",
            items=len(summary.get("items", [])),
            list_calls=summary.get("list_calls"),
            key_reads=summary.get("key_reads"),
            deferred=len(summary.get("deferred", ())),
            **counts,
        )
        for item in summary.get("items", []):
            if item["action"] == "failed":
                log.error("reconcile_key_failed", key=item["key_uri"], detail=item.get("detail", ""))
        return summary
