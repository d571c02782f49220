"""A rotation whose data location holds a blob that refuses Set Blob Metadata (a legal hold, answered by the
blob proxy in front of Azurite as Azure answers it) does not wait forever and does not retire the old version:
it cuts over with the blob listed as failed, and the sweep keeps the old version enabled because of it."""

from __future__ import annotations

from typing import Any

from emulators.keyvault.kek import VaultKek
from rotation.domain.model import ConsumerKind, RotationStatus, Trigger, TriggerKind
from rotation.service import get_rotation, sweep
from tests.integration.rewrap_helpers import decrypting_client
from tests.integration.workflow.estate import OPERATOR, build_estate, start_and_run_past_waiting

CLI = Trigger(TriggerKind.CLI, caller="integration-test")
HELD = "blob-3"


class TestABlobUnderLegalHold:
    """The re-wrap finishes with the held blob listed by name and code; the rotation reaches cut-over (its
    data location marked failed); the sweep, grace period over, leaves the old version enabled and names
    the failure as the blocker; every other blob reads with the new version only."""

    def test_rotation_cuts_over_and_retirement_waits(self, local_azure: dict[str, Any]) -> None:
        estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=0)
        proxied = local_azure["storage"]["proxy_connection_string"]
        container, payloads = estate.container_of_old_version_blobs(proxied, "held", range(1500, 1506))
        container.get_blob_client(HELD).set_legal_hold(True)
        location = f"{local_azure['storage']['blob_proxy']}/{container.container_name}"
        deps = estate.deps(
            AzureWebJobsStorage=proxied, ROTATION_DATA_LOCATIONS=location, ROTATION_RETIRE_GRACE_HOURS="0"
        )

        try:
            view = start_and_run_past_waiting(deps, estate.key.uri, CLI)
            sweep(deps, Trigger(TriggerKind.TIMER))
            after_sweep = get_rotation(deps, view.rotation_id)
            versions = estate.versions()
        finally:
            container.get_blob_client(HELD).set_legal_hold(False)

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert view.rewrap is not None
        assert view.rewrap.rewrapped == len(payloads) - 1
        assert view.rewrap.poison_messages == 0
        assert [(f.blob, f.reason.split(" (")[0]) for f in view.rewrap.failed] == [
            (HELD, "Set Blob Metadata refused: HTTP 409 BlobImmutableDueToLegalHold")
        ]
        data_locations = [c for c in view.consumers if c.kind == ConsumerKind.DATA_LOCATION]
        assert [c.status for c in data_locations] == ["failed"]
        assert after_sweep.status == RotationStatus.AWAITING_RETIREMENT
        retire = [s for s in after_sweep.steps if s.name == "retire"][-1]
        assert retire.status == "waiting"
        assert "1 blobs failed to re-wrap" in retire.detail
        assert [v.enabled for v in versions] == [True, True]
        new_kid = estate.key.version_uri(str(view.new_version))
        reader = decrypting_client(
            container, lambda kid: VaultKek(kid, estate.ca, OPERATOR) if kid == new_kid else None
        )
        for name, data in payloads.items():
            if name != HELD:
                assert reader.download_blob(name).readall() == data
        container.delete_container()
