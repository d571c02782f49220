"""Whole rotations against ARM failure shapes: a failed workspace update rolls back, an RP-side Key Vault
outage leaves the rotation resumable (not rolled back) and it completes once the outage is over."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import run_rotation, start_rotation
from tests.integration.workflow.estate import RealEstate, build_estate

CLI = Trigger(TriggerKind.CLI, caller="integration-test")


@pytest.fixture
def estate(local_azure: dict[str, Any]) -> Iterator[RealEstate]:
    estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=1)
    yield estate
    estate.arm_admin.set_lro(ml_update="location")
    estate.arm_admin.end_keyvault_outage()


class TestWorkspaceUpdateFailedRollsBack:
    """An update whose operation ends Failed stops the rotation rolled back; the workspace stays on the old key."""

    def test_rolled_back(self, estate: RealEstate) -> None:
        old = estate.versions()[0].version
        estate.arm_admin.set_lro(
            ml_update="async-failed", error={"code": "BadArgument", "message": "the update was rejected"}
        )

        view = start_rotation(estate.deps(), estate.key.uri, CLI)

        assert view.status == RotationStatus.ROLLED_BACK, view.error
        assert "VerificationFailed" in str(view.error)
        assert "BadArgument" in str(view.error)
        assert estate.workspace_key(estate.workspaces[0]).endswith("/" + old)


class TestProviderKeyVaultOutage:
    """While Storage and ML cannot reach Key Vault the rotation stays resumable; afterwards it completes,
    reusing the version it created."""

    def test_resumes_after_the_outage(self, estate: RealEstate) -> None:
        estate.arm_admin.start_keyvault_outage(duration_s=600)

        during = start_rotation(estate.deps(), estate.key.uri, CLI)
        versions_during = [v.version for v in estate.versions()]
        estate.arm_admin.end_keyvault_outage()
        after = run_rotation(estate.deps(), during.rotation_id)

        assert during.status == RotationStatus.RUNNING, during.error
        assert "VerificationFailed" not in str(during.error)
        assert after.status == RotationStatus.AWAITING_RETIREMENT, after.error
        assert [v.version for v in estate.versions()] == versions_during  # no second new version
        new = str(after.new_version)
        assert estate.account_version(estate.pinned[0]) == (new, new)
        assert estate.workspace_key(estate.workspaces[0]).endswith("/" + new)
