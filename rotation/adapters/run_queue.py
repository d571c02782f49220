"""The ``rotation-run`` queue: where a started rotation is handed to the ``run_rotation`` queue trigger.

Importing this module loads no SDK (the composition root imports it lazily, but stays cheap either
way); the queue client is built when a :class:`QueueDispatcher` is.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import TYPE_CHECKING, Any

from rotation.settings import RUN_QUEUE

if TYPE_CHECKING:
    from rotation.adapters.host_storage import StorageConnection

#: What enqueueing needs on AzureWebJobsStorage (named in the error when it is refused).
ENQUEUE_ACTION = "Microsoft.Storage/storageAccounts/queueServices/queues/write"
_MAX_VISIBILITY_DELAY_S = 7 * 24 * 3600


class QueueDispatcher:
    """Enqueues ``{"rotation_id": ...}`` on the ``rotation-run`` queue for the queue trigger."""

    def __init__(self, connection: StorageConnection, queue_name: str = RUN_QUEUE, **client_kwargs: Any) -> None:
        from azure.storage.queue import TextBase64EncodePolicy  # noqa: PLC0415 - see the module docstring

        from rotation.adapters.host_storage import host_storage  # noqa: PLC0415 - see the module docstring

        self._client = host_storage(connection).queue_client(
            queue_name, message_encode_policy=TextBase64EncodePolicy(), **client_kwargs
        )
        self._created = False

    def dispatch(self, rotation_id: str, delay_seconds: float = 0.0) -> None:
        """Enqueue the run; with ``delay_seconds`` the message stays invisible that long (at most 7 days, the
        queue's limit on a visibility timeout)."""
        from azure.core.exceptions import ResourceExistsError  # noqa: PLC0415 - see the module docstring

        from rotation.adapters.azure_errors import translated  # noqa: PLC0415 - see the module docstring

        with translated("enqueue the rotation run", ENQUEUE_ACTION):
            if not self._created:
                with contextlib.suppress(ResourceExistsError):
                    self._client.create_queue()
                self._created = True
            delay = max(0, min(math.ceil(delay_seconds), _MAX_VISIBILITY_DELAY_S))
            self._client.send_message(json.dumps({"rotation_id": rotation_id}), visibility_timeout=delay or None)
