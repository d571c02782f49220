"""Queue trigger ``rewrap_worker``: runs one re-wrap work item per message.

``rewrap_worker`` listens on AzureWebJobsStorage's queue named by the app setting
``ROTATION_REWRAP_QUEUE``, or ``rotation-rewrap`` when the setting is absent. When the setting is
present the binding names it (``%ROTATION_REWRAP_QUEUE%``) and the Functions host resolves it; when it
is absent the default is bound directly: the host refuses a ``%...%`` that resolves to nothing and puts
the function in error, so binding the reference unconditionally would stop every re-wrap of a deployment
that leaves the optional setting out.

Each message names one work item (one page of one data location's listing); the function re-wraps
that page and hands the next page on as a new message, so the Functions host scales out over pages.
A failure re-raises: the host makes the message visible again and, after ``maxDequeueCount`` (5,
host.json) tries, moves it to ``<queue>-poison``, where it stays for people to read. On that last
try the worker first marks the item poisoned in the checkpoint table, so the rotation reports it
(``RewrapSummary.poison_messages``) and does not finish.

One ``BlobDataKeys`` per worker process (``rotation.bootstrap.rewrap_data_keys``), so its Key Vault
clients, the new version's public key and the adaptive limiter are shared by every invocation the
process runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import azure.functions as func

from rotation import bootstrap
from rotation.logs import bound, get_logger
from rotation.settings import DEFAULT_REWRAP_QUEUE

log = get_logger("rotation.triggers.rewrap")

QUEUE_SETTING = "ROTATION_REWRAP_QUEUE"

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


def queue_binding(env: Mapping[str, str] = os.environ) -> str:
    """The queue trigger's queue name: the app setting by reference when set, else the default."""
    return f"%{QUEUE_SETTING}%" if env.get(QUEUE_SETTING, "").strip() else DEFAULT_REWRAP_QUEUE


@bp.function_name("rewrap_worker")
@bp.queue_trigger(arg_name="msg", queue_name=queue_binding(), connection="AzureWebJobsStorage")
def rewrap_worker(msg: func.QueueMessage) -> None:
    """Run one re-wrap work item; raise to have the host retry it (and poison it after 5 tries)."""
    body = msg.get_body().decode("utf-8", errors="replace")
    with bound(trigger="queue", message_id=msg.id, dequeue_count=msg.dequeue_count):
        try:
            bootstrap.rewrap_data_keys().handle_message(body, int(msg.dequeue_count or 1))
        except ValueError:
            log.error("rewrap_message_malformed")
            raise
        except Exception as exc:
            log.warning("rewrap_item_failed", error=type(exc).__name__, code=getattr(exc, "code", None))
            raise
