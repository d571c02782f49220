"""Rotations against local Azure (Key Vault and ARM emulators, Azurite) through the real adapters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.errors import RotationInProgress
from rotation.service import get_rotation, plan, start_rotation, sweep
from tests.integration.workflow.estate import RealEstate, build_estate

CLI = Trigger(TriggerKind.CLI, caller="integration-test")


@pytest.fixture
def estate(local_azure: dict[str, Any]) -> RealEstate:
    return build_estate(local_azure)


class TestRotationOnLocalAzure:
    """A rotation moves exactly the key's consumers, creates exactly one version, and retires later."""

    def test_plan_finds_exactly_the_consumers(self, estate: RealEstate) -> None:
        deps = estate.deps()

        result = plan(deps, estate.key.uri)

        assert result.ok, result.problems
        ids = {c.resource_id.lower() for c in result.consumers}
        assert ids == {i.lower() for i in estate.pinned + estate.versionless + estate.workspaces}
        assert result.unrelated_consumers == 2

    def test_rotation_moves_consumers_then_retires(self, estate: RealEstate) -> None:
        deps = estate.deps()
        before = estate.versions()
        unrelated_before = [estate.account_version(estate.unrelated[0]), estate.workspace_key(estate.unrelated[1])]

        view = start_rotation(deps, estate.key.uri, CLI, reason="integration")

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        after = estate.versions()
        assert len(after) == len(before) + 1
        new = view.new_version
        assert new == after[-1].version
        assert after[-1].tags == {"rotation-id": view.rotation_id}
        for account in estate.pinned:
            assert estate.account_version(account) == (new, new)
        for account in estate.versionless:
            assert estate.account_version(account)[0] == ""
        for workspace in estate.workspaces:
            assert estate.workspace_key(workspace).endswith("/" + str(new))
        assert [estate.account_version(estate.unrelated[0]), estate.workspace_key(estate.unrelated[1])] == (
            unrelated_before
        )
        assert len(estate.versions(estate.other_key)) == 1
        with pytest.raises(RotationInProgress):
            start_rotation(deps, estate.key.uri, CLI)

        waiting = sweep(deps, Trigger(TriggerKind.TIMER))
        deps.clock = _Shifted(timedelta(hours=25))
        not_adopted = sweep(deps, Trigger(TriggerKind.TIMER))
        estate.arm_admin.advance_clock(86400 * 2)  # Storage's daily check adopts the new version
        retired = sweep(deps, Trigger(TriggerKind.TIMER))

        assert waiting.count("waiting") == 1
        assert not_adopted.count("waiting") == 1
        assert "versionless" in not_adopted.items[0].detail
        assert retired.count("retired") == 1, retired.items
        old = next(v for v in estate.versions() if v.version == view.old_version)
        assert old.enabled is False
        assert get_rotation(deps, view.rotation_id).status == RotationStatus.RETIRED
        for account in estate.versionless:
            assert estate.account_version(account) == ("", new)

    def test_dry_run_changes_nothing(self, estate: RealEstate) -> None:
        deps = estate.deps()
        before = estate.versions()

        view = start_rotation(deps, estate.key.uri, CLI, dry_run=True)

        assert view.status == RotationStatus.DRY_RUN
        assert len(estate.versions()) == len(before)
        assert sum(c.status == "planned" for c in view.consumers) == 4
        assert all(estate.account_version(a)[0] == before[-1].version for a in estate.pinned)


class _Shifted:
    """A clock ahead of real time (the grace period passes without waiting for it)."""

    def __init__(self, ahead: timedelta) -> None:
        self.ahead = ahead

    def now(self):  # type: ignore[no-untyped-def]
        from datetime import UTC, datetime

        return datetime.now(UTC) + self.ahead
