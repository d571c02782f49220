"""Queue trigger ``run_rotation``: drives a started rotation, from the ``rotation-run`` queue.

``start_rotation`` (event, timer, HTTP) records the rotation and, in Azure, enqueues
``{"rotation_id": ...}`` here instead of running it inside the triggering invocation; this function
calls ``rotation.service.run_rotation``, which is idempotent and resumes wherever the journal says.
An invocation that reaches ``ROTATION_INVOCATION_BUDGET_SECONDS`` with long-running operations still
running enqueues its own continuation here (delayed by ARM's ``Retry-After``) and returns normally; the
continuation polls the journalled operations on.
A failure of the run as a whole re-raises so the host retries the message (a rotation that stops
with a reason is a normal outcome, not a failure); after ``maxDequeueCount`` tries the message goes to
``rotation-run-poison`` and the reconciler's sweep still resumes the rotation from the journal.
"""

from __future__ import annotations

import json

import azure.functions as func

from rotation import bootstrap
from rotation.errors import InputError, RotationError, RotationNotFound
from rotation.logs import bound, get_logger
from rotation.settings import RUN_QUEUE

log = get_logger("rotation.triggers.runner")

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


def rotation_id_of(body: bytes) -> str:
    """The rotation id in a ``rotation-run`` message (JSON ``{"rotation_id": ...}`` or the bare id)."""
    text = body.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            value = json.loads(text).get("rotation_id")
        except (ValueError, AttributeError):
            value = None
    else:
        value = text
    if not isinstance(value, str) or not value or len(value) > 100:
        raise InputError("a rotation-run message names no rotation id")
    return value


@bp.function_name("run_rotation")
@bp.queue_trigger(arg_name="msg", queue_name=RUN_QUEUE, connection="AzureWebJobsStorage")
def run_rotation_message(msg: func.QueueMessage) -> None:
    """Run (or resume) the rotation the message names."""
    from rotation import service  # noqa: PLC0415 - imported per call to keep `import function_app` fast

    try:
        rotation_id = rotation_id_of(msg.get_body())
    except InputError as exc:
        log.error("run_message_malformed", message_id=msg.id, error=str(exc))
        return  # retrying a malformed message cannot help
    with bound(rotation_id=rotation_id, trigger="queue"):
        try:
            view = service.run_rotation(bootstrap.dependencies(), rotation_id)
        except RotationNotFound:
            log.error("run_unknown_rotation")
            return  # nothing to run; retrying cannot help
        except RotationError as exc:
            log.error("run_failed", code=exc.code, error=exc.message, dequeue_count=msg.dequeue_count)
            raise
        log.info("run_finished", status=view.status.value, stage=view.stage)
