"""Workspace key updates that outlast the invocation budget, against the emulators and the real queue.

The ARM emulator makes each update an operation of several polls a second apart whose new key shows only
when it completes (``ml_update_applies: completed``); the Function app's dependencies (queued dispatch,
``ROTATION_INVOCATION_BUDGET_SECONDS=1``) run each invocation from a real ``rotation-run`` message on
Azurite through the ``run_rotation`` trigger, as the host would. PATCHes and polls are counted by the
emulator (``/admin/counters``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from rotation.bootstrap import Bootstrap, build_dependencies
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import get_rotation, start_rotation
from rotation.service.deps import Dependencies
from tests.integration.workflow.estate import RealEstate, build_estate
from tests.integration.workflow.run_messages import deliver_until_settled, invoke, next_message, run_queue
from tests.integration.workflow.test_wider_estate import build_wider

POLLS = 4
HTTP = Trigger(TriggerKind.HTTP, caller="tester")


@pytest.fixture
def slow_updates(local_azure: dict[str, Any]) -> Iterator[RealEstate]:
    """Three workspaces (no storage) whose key updates take four polls a second apart, shown on completion."""
    estate = build_estate(local_azure, pinned=0, versionless=0, workspaces=3)
    admin = estate.arm_admin
    lro = {"retry_after_s": 1, "polls_until_done": POLLS, "ml_update": "async-succeeded"}
    with admin.lro_settings(**lro, ml_update_applies="completed"):
        admin.reset_counters()
        yield estate


def _queue(estate: RealEstate) -> QueueClient:
    return run_queue(estate.endpoints["storage"]["connection_string"])


def _function_app(estate: RealEstate) -> Dependencies:
    """The Function app's wiring: queued dispatch on Azurite, a one-second invocation budget."""
    deps = build_dependencies(Bootstrap(estate.settings(ROTATION_INVOCATION_BUDGET_SECONDS="1")), inline=False)
    assert deps.invocation_budget_seconds == 1.0
    return deps


class TestARotationAcrossInvocations:
    """A rotation whose workspace updates exceed the budget completes across several invocations of the queue
    trigger, with exactly one PATCH per workspace."""

    def test_one_patch_per_workspace(self, slow_updates: RealEstate) -> None:
        estate = slow_updates
        deps = _function_app(estate)

        view = start_rotation(deps, estate.key.uri, HTTP)
        invocations = deliver_until_settled(_queue(estate), deps, view.rotation_id)

        final = get_rotation(deps, view.rotation_id)
        assert final.status == RotationStatus.AWAITING_RETIREMENT, final.error
        counters = estate.arm_admin.counters()
        assert counters.get("Workspaces_Update") == len(estate.workspaces)  # one PATCH each
        assert counters.get("Workspaces_OperationStatus") == POLLS * len(estate.workspaces)
        assert invocations >= 2  # a second-long budget cannot hold four polls a second apart
        for workspace in estate.workspaces:
            assert estate.workspace_key(workspace).endswith("/" + (final.new_version or "?"))


class TestEveryKindAcrossInvocations:
    """A pinned container registry and disk encryption set move the same way: their updates' polling URLs are
    journalled and polled on across invocations, one PATCH each (the emulator's counters)."""

    def test_one_patch_per_consumer(self, local_azure: dict[str, Any]) -> None:
        wider = build_wider(local_azure)
        estate = wider.estate
        deps = _function_app(estate)

        with estate.arm_admin.lro_settings(retry_after_s=1, polls_until_done=3):
            estate.arm_admin.reset_counters()
            view = start_rotation(deps, estate.key.uri, HTTP)
            invocations = deliver_until_settled(_queue(estate), deps, view.rotation_id)
            counters = estate.arm_admin.counters()

        final = get_rotation(deps, view.rotation_id)
        assert final.status == RotationStatus.AWAITING_RETIREMENT, final.error
        statuses = {c.resource_id.lower(): c.status for c in final.consumers}
        assert statuses[wider.acr_pinned.lower()] == statuses[wider.des_pinned.lower()] == "changed"
        assert counters.get("Registries_Update") == 1
        assert counters.get("DiskEncryptionSets_Update") == 1
        assert counters.get("Workspaces_Update") == len(estate.workspaces)
        assert invocations >= 2
        history = deps.journal.load(view.rotation_id)[0].history
        journalled = {
            line.split(" accepted ", 1)[1].split(" ", 1)[0].lower() for line in history if " accepted " in line
        }
        assert {wider.acr_pinned.lower(), wider.des_pinned.lower()} <= journalled  # their polling URLs were kept


class TestARollBackAcrossInvocations:
    """Both workspace updates end ``Failed`` and leave the key they asked for (``ml_update_failed_keeps:
    requested``), so each is rolled back; each roll-back, longer than the one-second budget, is journalled with
    its polling URL and polled on by later invocations of the queue trigger: one roll-back PATCH per workspace
    (the emulator's counters), and the rotation ends rolled back with each workspace on its old key."""

    def test_one_roll_back_patch_per_workspace(self, local_azure: dict[str, Any]) -> None:
        estate = build_estate(local_azure, pinned=0, versionless=0, workspaces=2)
        admin = estate.arm_admin
        deps = _function_app(estate)
        queue = _queue(estate)
        lro = {"retry_after_s": 1, "polls_until_done": 3}
        with admin.lro_settings(**lro, ml_update="async-failed", ml_update_failed_keeps="requested"):
            admin.reset_counters()
            view = start_rotation(deps, estate.key.uri, HTTP)
            invoke(deps, next_message(queue, view.rotation_id, 15))  # both updates accepted; they will fail
            accepted = deps.journal.load(view.rotation_id)[0]
            admin.set_lro(ml_update="async-succeeded")  # the roll-backs' own updates succeed
            invocations = deliver_until_settled(queue, deps, view.rotation_id)
            counters = admin.counters()

        assert sorted(i.action for i in accepted.in_flight if i.operation is not None) == ["set_workspace_key"] * 2
        final = get_rotation(deps, view.rotation_id)
        assert final.status == RotationStatus.ROLLED_BACK, final.error
        assert counters.get("Workspaces_Update") == 2 * len(estate.workspaces)  # the update, then its roll-back
        assert invocations >= 2
        history = deps.journal.load(view.rotation_id)[0].history
        for workspace in estate.workspaces:
            assert estate.workspace_key(workspace).endswith("/" + (final.old_version or "?"))
            name = workspace.lower()
            rolled = next(
                i for i, line in enumerate(history) if "intent rollback_workspace" in line and name in line.lower()
            )
            assert any(" accepted " in line and name in line.lower() for line in history[rolled:]), (
                "the roll-back's polling URL was journalled"
            )


class _Listener:
    """A loopback TCP port that records every connection made to it (nothing should ever connect)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.socket.close()


class TestATamperedPollingUrl:
    """A polling URL changed in the journal table between invocations is refused: the rotation stops for a
    human naming the problem, and no request goes to the URL (nor any poll to ARM)."""

    def test_nothing_is_sent_to_it(self, slow_updates: RealEstate) -> None:
        estate = slow_updates
        deps = _function_app(estate)
        listener = _Listener()
        view = start_rotation(deps, estate.key.uri, HTTP)
        queue = _queue(estate)
        try:
            invoke(deps, next_message(queue, view.rotation_id, wait_s=15))
            state, etag = deps.journal.load(view.rotation_id)
            awaited = [i for i in state.in_flight if i.operation is not None]
            assert awaited, "the first invocation paused with operations journalled"
            operation = awaited[0].operation
            assert operation is not None
            path = operation.url.split("/subscriptions/", 1)[1]
            evil = f"https://127.0.0.1:{listener.port}/subscriptions/{path}"
            tampered = replace(awaited[0], operation=replace(operation, url=evil))
            in_flight = tuple(tampered if i is awaited[0] else i for i in state.in_flight)
            deps.journal.save(replace(state, in_flight=in_flight, lease_expires=None, lease_owner=None), etag)
            polls_before = estate.arm_admin.counters().get("Workspaces_OperationStatus", 0)
            invoke(deps, next_message(queue, view.rotation_id, wait_s=15))
        finally:
            listener.close()

        final = get_rotation(deps, view.rotation_id)
        assert final.status == RotationStatus.NEEDS_HUMAN
        assert final.error is not None
        assert "the journalled operation" in final.error["message"]
        assert "not the configured ARM endpoint" in final.error["message"]
        assert listener.connections == 0
        assert estate.arm_admin.counters().get("Workspaces_Update") == len(estate.workspaces)
        assert estate.arm_admin.counters().get("Workspaces_OperationStatus", 0) - polls_before <= len(estate.workspaces)


pytestmark = pytest.mark.timeout(300)
