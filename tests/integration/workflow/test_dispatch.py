"""Queued dispatch: a started rotation is enqueued on ``rotation-run`` (Azurite) and the queue trigger runs it."""

from __future__ import annotations

import base64
import json
from typing import Any

import azure.functions as func
from azure.storage.queue import QueueClient

from rotation import bootstrap
from rotation.bootstrap import Bootstrap, build_dependencies
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import get_rotation, start_rotation
from rotation.settings import RUN_QUEUE
from rotation.triggers.runner import run_rotation_message
from tests.integration.workflow.estate import build_estate


class TestQueuedDispatch:
    """HTTP/event starts enqueue; the ``run_rotation`` function drives the rotation from the message."""

    def test_enqueue_then_run(self, local_azure: dict[str, Any]) -> None:
        estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=1)
        deps = build_dependencies(Bootstrap(estate.settings()), inline=False)
        queue = QueueClient.from_connection_string(local_azure["storage"]["connection_string"], RUN_QUEUE)

        view = start_rotation(deps, estate.key.uri, Trigger(TriggerKind.HTTP, caller="tester"))
        messages = [m for m in queue.receive_messages(max_messages=32) if view.rotation_id in _decode(m.content)]
        assert len(messages) == 1
        body = _decode(messages[0].content)
        queue.delete_message(messages[0])
        bootstrap.override_dependencies(deps)
        try:
            run_rotation_message(func.QueueMessage(body=body.encode()))
        finally:
            bootstrap.override_dependencies(None)

        assert view.status == RotationStatus.RUNNING
        assert json.loads(body) == {"rotation_id": view.rotation_id}
        final = get_rotation(deps, view.rotation_id)
        assert final.status == RotationStatus.AWAITING_RETIREMENT, final.error
        assert estate.account_version(estate.pinned[0])[0] == final.new_version


def _decode(content: str) -> str:
    try:
        return base64.b64decode(content).decode()
    except ValueError:
        return content
