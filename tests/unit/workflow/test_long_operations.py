"""Long-running operations that outlive an invocation, with fakes and a fake clock.

A workspace key update is an operation that needs several polls ``Retry-After`` apart; with an
invocation budget shorter than that, ``run_rotation`` journals each accepted operation's polling URL,
pauses, re-enqueues its continuation, and the next invocation polls on: one PATCH per workspace,
whatever happens in between. A journalled URL is input: one that does not point at the configured
ARM endpoint under the workspace's subscription and provider is refused before anything is sent.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rotation.consumers import RUN_STEPS
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.domain.operations import polling_url_problem
from rotation.domain.steps import RotationState, guard
from rotation.service import get_rotation, run_rotation, start_rotation, sweep
from rotation.service.deps import Dependencies
from tests.fakes.arm import arm_id_of
from tests.fakes.estate import KEY, LOCATION, Estate, standard_estate

CLI = Trigger(TriggerKind.CLI)
RETRY_AFTER = 30.0
BUDGET = 45.0  # one poll fits, the second does not: each batch of updates takes two invocations
WORKSPACES = ("ws1", "ws2")
_WORKSPACE_PREFIX = arm_id_of("Microsoft.MachineLearningServices/workspaces", "")


def _lro_estate(polls: int = 2, *, apply_at_completion: bool = True) -> Estate:
    estate, _ = standard_estate()
    estate.workspaces.lro_polls = polls
    estate.workspaces.retry_after_s = RETRY_AFTER
    estate.workspaces.apply_at_completion = apply_at_completion
    return estate


def _queued(estate: Estate, owner: str = "invocation") -> Dependencies:
    """The Function app's dependencies: dispatches are queued (recorded), invocations have a budget."""
    deps = estate.deps(owner=owner, inline=False)
    deps.invocation_budget_seconds = BUDGET
    return deps


def _invoke_until_settled(estate: Estate, rotation_id: str, limit: int = 12) -> int:
    """Deliver each continuation as the queue would (after its delay), until none is enqueued; the invocations used."""
    deps = _queued(estate)
    dispatcher = deps.dispatcher
    invocations = 0
    estate.clock.advance(timedelta(seconds=RETRY_AFTER + 1))  # a continuation enqueued before is due
    while invocations < limit:
        before = len(dispatcher.dispatched)  # type: ignore[attr-defined]
        run_rotation(deps, rotation_id)
        invocations += 1
        if len(dispatcher.dispatched) == before:  # type: ignore[attr-defined]
            return invocations
        estate.clock.advance(timedelta(seconds=dispatcher.delays[-1] + 1))  # type: ignore[attr-defined]
    raise AssertionError(f"still continuing after {limit} invocations")


def _started(estate: Estate) -> str:
    return start_rotation(_queued(estate), KEY.uri, CLI).rotation_id


def _state(estate: Estate, rotation_id: str) -> RotationState:
    return estate.journal.load(rotation_id)[0]


def _workspace_patches(estate: Estate) -> dict[str, int]:
    return {w.rsplit("/", 1)[-1]: n for w, n in estate.workspaces.patches.items()}


def _tamper(estate: Estate, rotation_id: str, url: str) -> None:
    """Someone with write access to the journal table points the first journalled operation elsewhere."""
    state, etag = estate.journal.load(rotation_id)
    first, *rest = state.in_flight
    assert first.operation is not None
    tampered = replace(first, operation=replace(first.operation, url=url))
    estate.journal.save(replace(state, in_flight=(tampered, *rest)), etag)


class TestARotationAcrossInvocations:
    """Updates that outlast the budget finish across invocations with exactly one PATCH per workspace."""

    def test_completes_with_one_patch_per_workspace(self) -> None:
        estate = _lro_estate(polls=4)
        rotation_id = _started(estate)

        invocations = _invoke_until_settled(estate, rotation_id)

        state = _state(estate, rotation_id)
        assert state.status == RotationStatus.AWAITING_RETIREMENT, state.error
        # Four polls 30 s apart, 45 s per invocation: at most one poll after the PATCH, then at most two per
        # invocation (one at once, one 30 s later): at least three invocations.
        assert invocations >= 3
        assert _workspace_patches(estate) == {"ws1": 1, "ws2": 1}
        assert all(state.step_done(s) for s in RUN_STEPS)
        assert state.in_flight == ()
        new = state.new_version
        assert new is not None
        assert all(
            w.key_identifier.endswith(new) for w in estate.workspaces.workspaces.values() if "cmk" in w.key_identifier
        )

    def test_a_paused_invocation_journals_what_awaits_which_operation(self) -> None:
        estate = _lro_estate()
        rotation_id = _started(estate)
        deps = _queued(estate)

        run_rotation(deps, rotation_id)

        state = _state(estate, rotation_id)
        guard(state)
        assert state.status == RotationStatus.RUNNING
        step = next(s for s in state.steps if s.name == "repoint_workspaces")
        assert step.status == "waiting"
        assert "ws1" in step.detail
        assert "ws2" in step.detail
        awaited = {i.target.rsplit("/", 1)[-1]: i.operation for i in state.in_flight}
        assert set(awaited) == set(WORKSPACES)
        assert all(op is not None and op.url in estate.workspaces.operations for op in awaited.values())
        assert deps.dispatcher.delays == [RETRY_AFTER]  # type: ignore[attr-defined]
        assert state.lease_expires is not None  # held until the continuation is due: the sweep leaves it be
        view = get_rotation(deps, rotation_id)
        assert view.waiting_for.startswith("repoint_workspaces: 2 workspaces awaiting their update operations")

    def test_the_claim_is_kept_until_the_continuation_is_due(self) -> None:
        estate = _lro_estate()
        rotation_id = _started(estate)
        run_rotation(_queued(estate), rotation_id)
        polls = len(estate.workspaces.polls)

        run_rotation(_queued(estate, "early"), rotation_id)  # a duplicate delivery before the delay

        assert len(estate.workspaces.polls) == polls
        estate.clock.advance(timedelta(seconds=RETRY_AFTER + 1))
        run_rotation(_queued(estate, "continuation"), rotation_id)
        assert len(estate.workspaces.polls) > polls

    def test_a_lost_continuation_is_resumed_by_the_sweep(self) -> None:
        """The continuation message is lost: the reconciler leaves the rotation alone while its claim holds,
        then dispatches it; the resumed invocation polls the journalled operations on."""
        estate = _lro_estate()
        rotation_id = _started(estate)
        run_rotation(_queued(estate), rotation_id)  # pauses; its continuation is never delivered
        sweeper = _queued(estate, "sweeper")

        sweep(sweeper, Trigger(TriggerKind.TIMER))
        early = list(sweeper.dispatcher.dispatched)  # type: ignore[attr-defined]
        estate.clock.advance(timedelta(seconds=RETRY_AFTER + 1))
        sweep(sweeper, Trigger(TriggerKind.TIMER))
        late = list(sweeper.dispatcher.dispatched)  # type: ignore[attr-defined]
        _invoke_until_settled(estate, rotation_id)

        assert early == []  # the claim is held until the continuation is due
        assert late == [rotation_id]
        assert _state(estate, rotation_id).status == RotationStatus.AWAITING_RETIREMENT
        assert _workspace_patches(estate) == {"ws1": 1, "ws2": 1}

    def test_without_a_budget_the_operations_are_polled_to_the_end(self) -> None:
        """The CLI and the local server: one invocation, no continuation."""
        estate = _lro_estate(polls=4)
        deps = estate.deps(inline=False)

        rotation_id = start_rotation(deps, KEY.uri, CLI).rotation_id
        run_rotation(deps, rotation_id)

        assert _state(estate, rotation_id).status == RotationStatus.AWAITING_RETIREMENT
        assert deps.dispatcher.delays == [0.0]  # type: ignore[attr-defined]  # the start only
        assert _workspace_patches(estate) == {"ws1": 1, "ws2": 1}


class TestHowAnOperationEnds:
    """Failed rolls back what moved; a 404 (the record expired) is judged by reading the workspace back."""

    def test_a_failed_operation_rolls_back(self) -> None:
        estate = _lro_estate()
        rotation_id = _started(estate)
        run_rotation(_queued(estate), rotation_id)
        new = _state(estate, rotation_id).new_version
        assert new is not None
        estate.workspaces.fail_versions.add(new)

        _invoke_until_settled(estate, rotation_id)

        state = _state(estate, rotation_id)
        assert state.status == RotationStatus.ROLLED_BACK
        assert {c.resource_id.rsplit("/", 1)[-1] for c in state.consumers if c.status == "rolled_back"} >= {"ws1"}
        for workspace in estate.workspaces.workspaces.values():
            assert not workspace.key_identifier.endswith(new)
        assert max(_workspace_patches(estate).values()) == 1  # the failed update kept the old key: nothing to undo

    def test_a_gone_operation_whose_workspace_moved_counts_as_done(self) -> None:
        estate = _lro_estate(apply_at_completion=False)
        rotation_id = _started(estate)
        run_rotation(_queued(estate), rotation_id)
        estate.workspaces.operations.clear()  # ARM no longer keeps the records: polls answer 404

        _invoke_until_settled(estate, rotation_id)

        assert _state(estate, rotation_id).status == RotationStatus.AWAITING_RETIREMENT
        assert _workspace_patches(estate) == {"ws1": 1, "ws2": 1}

    def test_a_gone_operation_whose_workspace_did_not_move_is_rolled_back(self) -> None:
        estate = _lro_estate(apply_at_completion=True)
        rotation_id = _started(estate)
        run_rotation(_queued(estate), rotation_id)
        estate.workspaces.operations.clear()

        _invoke_until_settled(estate, rotation_id)

        state = _state(estate, rotation_id)
        assert state.status == RotationStatus.ROLLED_BACK
        assert "reads back another key" in (state.error or ("", ""))[1]
        assert _workspace_patches(estate) == {"ws1": 1, "ws2": 1}  # never a second PATCH


def _invocations(estate: Estate, rotation_id: str, limit: int = 16) -> list[RotationState]:
    """Invocations as the queue and the sweep would make them, each ``RETRY_AFTER`` + 1 s after the last, until
    the rotation stops or cuts over; the journal after each."""
    seen: list[RotationState] = []
    for _ in range(limit):
        estate.clock.advance(timedelta(seconds=RETRY_AFTER + 1))
        run_rotation(_queued(estate), rotation_id)
        seen.append(_state(estate, rotation_id))
        if seen[-1].status not in (RotationStatus.RUNNING, RotationStatus.WAITING):
            return seen
    raise AssertionError(f"still running after {limit} invocations")


def _rollbacks_awaited(seen: list[RotationState]) -> set[str]:
    """The workspaces whose roll-back was journalled as an operation still running when an invocation ended."""
    return {
        i.target.rsplit("/", 1)[-1]
        for state in seen
        for i in state.in_flight
        if i.action == "rollback_workspace" and i.operation is not None
    }


class TestARollBackAcrossInvocations:
    """A roll-back whose update outlasts the budget follows the re-point's path: its polling URL is journalled,
    the step pauses and re-enqueues itself, the next invocation polls on; one PATCH per roll-back, and the
    rotation stops rolled back only once every roll-back has ended."""

    def test_a_failed_update_is_rolled_back_across_invocations(self) -> None:
        estate = _lro_estate(apply_at_completion=False)
        estate.workspaces.keep_key_on_failure = True  # the failed update leaves its key: there is something to undo
        rotation_id = _started(estate)
        run_rotation(_queued(estate), rotation_id)  # both updates accepted, paused at the budget
        state = _state(estate, rotation_id)
        old, new = state.old_version, state.new_version
        assert old is not None
        assert new is not None
        estate.workspaces.fail_versions.add(new)

        seen = _invocations(estate, rotation_id)

        final = seen[-1]
        assert final.status == RotationStatus.ROLLED_BACK, final.error
        assert _rollbacks_awaited(seen) == set(WORKSPACES)
        paused = [s for s in seen if any(i.action == "rollback_workspace" for i in s.in_flight)]
        assert all(next(r for r in s.steps if r.name == "repoint_workspaces").status == "waiting" for s in paused)
        assert _workspace_patches(estate) == {"ws1": 2, "ws2": 2}  # the update, then its roll-back: once each
        statuses = {
            c.resource_id.rsplit("/", 1)[-1]: c.status for c in final.consumers if "/workspaces/" in c.resource_id
        }
        assert statuses == {"ws1": "rolled_back", "ws2": "rolled_back"}
        for name in WORKSPACES:
            assert estate.workspaces.get_workspace(f"{_WORKSPACE_PREFIX}{name}").key_identifier.endswith(f"/{old}")
        assert final.in_flight == ()
        records = [r for r in estate.audit.for_rotation(rotation_id) if r.outcome == "rolled_back"]
        assert len(records) == 1
        assert all(f"/workspaces/{name}:" in records[0].reason for name in WORKSPACES)

    def test_a_roll_back_after_verification_resumes_in_the_verify_step(self) -> None:
        """A workspace that reads back another key at verification is rolled back; that roll-back outlasts the
        budget: the verify step pauses, the next invocation polls it on, and the rotation never cuts over."""
        estate = _lro_estate(apply_at_completion=False)
        estate.with_data_locations()
        old = estate.keys.all_versions(KEY)[0].version
        estate.data_keys.put_blobs(LOCATION, KEY, old, 10)
        estate.data_keys.per_poll = 4  # the re-wrap waits: verification comes in a later invocation
        rotation_id = _started(estate)
        seen = [_state(estate, rotation_id)]
        while not (seen[-1].stage == "rewrap" and seen[-1].status == RotationStatus.WAITING):
            estate.clock.advance(timedelta(seconds=RETRY_AFTER + 1))
            run_rotation(_queued(estate), rotation_id)
            seen.append(_state(estate, rotation_id))
            assert len(seen) < 12
        ws1 = f"{_WORKSPACE_PREFIX}ws1"
        drifted = estate.workspaces.workspaces[ws1.lower()]
        estate.workspaces.workspaces[ws1.lower()] = replace(drifted, key_identifier=KEY.version_uri("f" * 32))

        seen = _invocations(estate, rotation_id)

        final = seen[-1]
        assert final.status == RotationStatus.ROLLED_BACK, final.error
        assert _rollbacks_awaited(seen) == {"ws1"}
        assert any((r.name, r.status) == ("verify_consumers", "waiting") for s in seen for r in s.steps)
        assert not final.step_done("cut_over")
        assert _workspace_patches(estate) == {"ws1": 2, "ws2": 1}
        assert estate.workspaces.get_workspace(ws1).key_identifier.endswith(f"/{old}")


TAMPERED = [
    (
        "http://management.azure.com/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/x/op/1",
        "https",
    ),
    (
        "https://evil.example.net/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/x/op/1",
        "host",
    ),
    (
        "https://management.azure.com:8443/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/x/o",
        "host",
    ),
    (
        "https://management.azure.com@evil.example.net/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/x",
        "user info",
    ),
    (
        "https://management.azure.com/subscriptions/11111111-2222-3333-4444-555555555555/providers/Microsoft.MachineLearningServices/locations/x/o",
        "not under",
    ),
    (
        "https://management.azure.com/subscriptions/{sub}/providers/Microsoft.Storage/locations/x/asyncoperations/1",
        "not under",
    ),
    (
        "https://management.azure.com/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/../../x",
        "dot",
    ),
    (
        "https://management.azure.com/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/x#frag",
        "fragment",
    ),
]


class TestATamperedPollingUrl:
    """A journalled polling URL that fails the check stops the rotation for a human; nothing is sent to it."""

    @pytest.mark.parametrize(("url", "problem"), TAMPERED)
    def test_is_refused_without_a_request(self, url: str, problem: str) -> None:
        from tests.fakes.arm import SUBSCRIPTION

        estate = _lro_estate()
        rotation_id = _started(estate)
        run_rotation(_queued(estate), rotation_id)
        polled = list(estate.workspaces.polls)
        evil = url.format(sub=SUBSCRIPTION)
        _tamper(estate, rotation_id, evil)
        estate.clock.advance(timedelta(seconds=RETRY_AFTER + 1))

        run_rotation(_queued(estate), rotation_id)

        state = _state(estate, rotation_id)
        assert state.status == RotationStatus.NEEDS_HUMAN
        assert state.error is not None
        assert "refused" in state.error[1]
        assert problem in state.error[1]
        assert evil not in estate.workspaces.polls
        assert estate.workspaces.polls[: len(polled)] == polled
        assert max(_workspace_patches(estate).values()) == 1


class TestPollingUrlCheck:
    """The pure check: ARM's own operation-status paths pass, anything else is named."""

    WORKSPACE = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w"

    @pytest.mark.parametrize(
        "url",
        [
            "https://management.azure.com/subscriptions/s1/providers/Microsoft.MachineLearningServices/locations/eastus/workspaceOperationsStatus/1?api-version=2025-06-01",
            "https://MANAGEMENT.azure.com:443/subscriptions/S1/providers/microsoft.machinelearningservices/operations/x?a=b",
            "https://management.azure.com/subscriptions/s1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/operationStatuses/1",
        ],
    )
    def test_arm_operation_urls_pass(self, url: str) -> None:
        assert polling_url_problem(url, "https://management.azure.com", self.WORKSPACE) is None

    @pytest.mark.parametrize(
        "url",
        [
            None,
            "",
            42,
            "https://management.azure.com/subscriptions/s1/providers/Microsoft.MachineLearningServices/locations/x /1",
            "ftp://management.azure.com/x",
        ],
    )
    def test_anything_else_is_named(self, url: object) -> None:
        assert polling_url_problem(url, "https://management.azure.com", self.WORKSPACE) is not None

    def test_a_local_emulator_endpoint_keeps_its_port(self) -> None:
        url = "https://127.0.0.1:7443/subscriptions/s1/providers/Microsoft.MachineLearningServices/locations/x/y/1"

        assert polling_url_problem(url, "https://127.0.0.1:7443", self.WORKSPACE) is None
        assert polling_url_problem(url, "https://127.0.0.1:7444", self.WORKSPACE) is not None
