"""Blob snapshots keep the old version enabled (issue 16 item 4): a rotation re-wraps the current blobs
(Azure writes nothing to a snapshot), retirement waits for and names each snapshot still wrapped by the
old version, and retires once they are deleted. Every blob and snapshot reads back with the SDK's
client-side decryption before retirement: nothing became unreadable.

Azurite 3.35 lists snapshots (``include=snapshots``) but has no blob versions or soft delete (its
README's support matrix); those are covered over the fakes (tests/unit/workflow/test_evidence.py).
"""

from __future__ import annotations

from typing import Any

from emulators.keyvault.kek import VaultKek
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import get_rotation, sweep
from tests.integration.rewrap_helpers import decrypting_client
from tests.integration.workflow.estate import OPERATOR, build_estate, start_and_run_past_waiting

CLI = Trigger(TriggerKind.CLI, caller="integration-test")
TIMER = Trigger(TriggerKind.TIMER)


class TestSnapshotsBlockRetirement:
    def test_retirement_waits_for_and_names_snapshots_then_retires(self, local_azure: dict[str, Any]) -> None:
        estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=0)
        container, payloads = estate.container_of_old_version_blobs(
            local_azure["storage"]["connection_string"], "snaps", range(1200, 1204)
        )
        old_kid = str(estate.keys().get_key(estate.key.name).id)
        snapshots = {
            name: container.get_blob_client(name).create_snapshot()["snapshot"] for name in ("blob-0", "blob-2")
        }
        location = f"{container.url}"
        deps = estate.deps(ROTATION_DATA_LOCATIONS=location, ROTATION_RETIRE_GRACE_HOURS="0")

        try:
            view = start_and_run_past_waiting(deps, estate.key.uri, CLI)
            assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
            new_kid = estate.key.version_uri(str(view.new_version))

            # Before retirement: current blobs read with the new version only, snapshots with the old one.
            new_only = decrypting_client(
                container, lambda kid: VaultKek(kid, estate.ca, OPERATOR) if kid == new_kid else None
            )
            old_only = decrypting_client(
                container, lambda kid: VaultKek(kid, estate.ca, OPERATOR) if kid == old_kid else None
            )
            for name, data in payloads.items():
                assert new_only.download_blob(name).readall() == data
            for name, snapshot in snapshots.items():
                assert old_only.get_blob_client(name, snapshot=snapshot).download_blob().readall() == payloads[name]

            sweep(deps, TIMER)
            waiting = get_rotation(deps, view.rotation_id)
            retire = [s for s in waiting.steps if s.name == "retire"][-1]
            versions_while_held = [v.enabled for v in estate.versions()]

            for name in snapshots:
                container.get_blob_client(name).delete_blob(delete_snapshots="only")
            sweep(deps, TIMER)
            retired = get_rotation(deps, view.rotation_id)
            versions_after = [v.enabled for v in estate.versions()]
            for name, data in payloads.items():
                assert new_only.download_blob(name).readall() == data
        finally:
            container.delete_container()

        assert waiting.status == RotationStatus.AWAITING_RETIREMENT
        assert retire.status == "waiting"
        assert "2 blob versions, snapshots or soft-deleted blobs are wrapped by it" in retire.detail
        for name, snapshot in snapshots.items():
            assert f"{name} (snapshot {snapshot})" in retire.detail
        assert versions_while_held == [True, True]
        assert retired.status == RotationStatus.RETIRED
        assert versions_after == [False, True]
        final = [s for s in retired.steps if s.name == "retire"][-1]
        assert "4 blobs surveyed" in final.detail
        assert "0 snapshots" in final.detail
