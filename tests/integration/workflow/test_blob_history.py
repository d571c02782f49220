"""Blob snapshots, versions and soft-deleted blobs keep the old version enabled (issue 16 item 4): a
rotation re-wraps the current blobs (Azure writes nothing to a snapshot or a previous version), retirement
waits for and names each one still wrapped by the old version, and retires once they are resolved. Every
blob, version and snapshot reads back with the SDK's client-side decryption before and after retirement.

Snapshots are Azurite's own; blob versioning and soft delete are the blob proxy's account modes
(``docs/emulators/blobproxy.md``; Azurite 3.35 has neither), switched on for the test that needs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from azure.storage.blob import ContainerClient

from emulators.keyvault.kek import VaultKek
from rotation.domain.model import RotationStatus
from rotation.service import get_rotation, sweep
from rotation.service.deps import Dependencies
from tests.integration.rewrap_helpers import decrypting_client, read_every_entry
from tests.integration.workflow.estate import OPERATOR, RealEstate, build_estate, start_and_run_past_waiting
from tests.triggers import CLI, TIMER

HISTORY = ["metadata", "snapshots", "versions", "deleted"]


def _through_proxy(
    local_azure: dict[str, Any], estate: RealEstate, prefix: str, sizes: range
) -> tuple[ContainerClient, dict[str, bytes], Dependencies]:
    """A container of old-version blobs reached through the blob proxy, and the service's dependencies with
    it as the data location (AzureWebJobsStorage through the proxy too: its shared key signs the re-wrap)."""
    proxied = local_azure["storage"]["proxy_connection_string"]
    container, payloads = estate.container_of_old_version_blobs(proxied, prefix, sizes)
    location = f"{local_azure['storage']['blob_proxy']}/{container.container_name}"
    deps = estate.deps(AzureWebJobsStorage=proxied, ROTATION_DATA_LOCATIONS=location, ROTATION_RETIRE_GRACE_HOURS="0")
    return container, payloads, deps


def _resolver(estate: RealEstate, *kids: str) -> Callable[[str], VaultKek | None]:
    """Key Vault unwrap for ``kids`` only (every version of the key when none are given)."""
    return lambda kid: VaultKek(kid, estate.ca, OPERATOR) if not kids or kid in kids else None


def _enabled(estate: RealEstate) -> dict[str, bool]:
    """Whether each version of the key is enabled, by version (creation times can tie within a second)."""
    return {str(v.version): bool(v.enabled) for v in estate.versions()}


def _sweep_and_read(
    deps: Dependencies, estate: RealEstate, rotation_id: str, container: ContainerClient
) -> tuple[Any, dict[str, bool], dict[tuple[str, str], bytes]]:
    """Sweep once; the rotation, each key version's enabled state, and every entry read with any version."""
    sweep(deps, TIMER)
    return get_rotation(deps, rotation_id), _enabled(estate), read_every_entry(container, _resolver(estate))


def _retire_step(deps: Dependencies, rotation_id: str) -> Any:
    return [s for s in get_rotation(deps, rotation_id).steps if s.name == "retire"][-1]


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
            versions_while_held = _enabled(estate)

            for name in snapshots:
                container.get_blob_client(name).delete_blob(delete_snapshots="only")
            sweep(deps, TIMER)
            retired = get_rotation(deps, view.rotation_id)
            versions_after = _enabled(estate)
            for name, data in payloads.items():
                assert new_only.download_blob(name).readall() == data
        finally:
            container.delete_container()

        assert waiting.status == RotationStatus.AWAITING_RETIREMENT
        assert retire.status == "waiting"
        assert "2 blob versions, snapshots or soft-deleted blobs are wrapped by it" in retire.detail
        for name, snapshot in snapshots.items():
            assert f"{name} (snapshot {snapshot})" in retire.detail
        assert versions_while_held == {old_kid.rsplit("/", 1)[-1]: True, view.new_version: True}
        assert retired.status == RotationStatus.RETIRED
        assert versions_after == {old_kid.rsplit("/", 1)[-1]: False, view.new_version: True}
        final = [s for s in retired.steps if s.name == "retire"][-1]
        assert "4 blobs surveyed" in final.detail
        assert "0 snapshots" in final.detail


class TestVersionsBlockRetirement:
    """With blob versioning on, the re-wrap's own Set Blob Metadata makes each blob's old-key state a
    previous version: retirement waits for and names each; once they are deleted it retires."""

    def test_rewrap_leaves_versions_retirement_waits_then_retires(
        self, local_azure: dict[str, Any], blob_proxy_admin: Any
    ) -> None:
        blob_proxy_admin.set_blob_service(versioning=True)
        estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=0)
        container, payloads, deps = _through_proxy(local_azure, estate, "vers", range(1300, 1303))
        old_kid = str(estate.keys().get_key(estate.key.name).id)

        try:
            view = start_and_run_past_waiting(deps, estate.key.uri, CLI)
            new_kid = estate.key.version_uri(str(view.new_version))
            listed = list(container.list_blobs(include=HISTORY))
            previous = {b.name: str(b.version_id) for b in listed if not b.is_current_version}
            everything_before = read_every_entry(container, _resolver(estate, old_kid, new_kid))
            sweep(deps, TIMER)
            waiting = _retire_step(deps, view.rotation_id)
            enabled_while_held = _enabled(estate)

            for name, version_id in previous.items():
                container.get_blob_client(name).delete_blob(version_id=version_id)
            retired, enabled_after, everything_after = _sweep_and_read(deps, estate, view.rotation_id, container)
        finally:
            container.delete_container()

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert sorted(previous) == sorted(payloads)  # one version per blob: the re-wrap's own write
        wrapped_by = {(b.name, bool(b.is_current_version)): _key_id(b.metadata) for b in listed}
        assert wrapped_by == {**{(n, False): old_kid for n in payloads}, **{(n, True): new_kid for n in payloads}}
        assert everything_before == {
            **{(n, "current"): d for n, d in payloads.items()},
            **{(n, f"version {v}"): payloads[n] for n, v in previous.items()},
        }
        assert waiting.status == "waiting"
        assert f"{len(payloads)} blob versions, snapshots or soft-deleted blobs are wrapped by it" in waiting.detail
        for name, version_id in previous.items():
            assert f"{name} (version {version_id})" in waiting.detail
        assert enabled_while_held == {old_kid.rsplit("/", 1)[-1]: True, view.new_version: True}
        assert retired.status == RotationStatus.RETIRED
        assert enabled_after == {old_kid.rsplit("/", 1)[-1]: False, view.new_version: True}
        assert everything_after == {(n, "current"): d for n, d in payloads.items()}


class TestSoftDeletedBlobBlocksRetirement:
    """With soft delete on, a blob deleted before the rotation can still be undeleted with its old wrapping:
    retirement waits for and names it; once its retention period has run out it retires."""

    def test_soft_deleted_blob_waits_for_its_retention(
        self, local_azure: dict[str, Any], blob_proxy_admin: Any
    ) -> None:
        blob_proxy_admin.set_blob_service(soft_delete_days=2)
        estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=0)
        container, payloads, deps = _through_proxy(local_azure, estate, "softdel", range(1400, 1403))
        old_kid = str(estate.keys().get_key(estate.key.name).id)
        deleted = container.get_blob_client("blob-1")
        deleted.delete_blob()

        try:
            view = start_and_run_past_waiting(deps, estate.key.uri, CLI)
            new_kid = estate.key.version_uri(str(view.new_version))
            sweep(deps, TIMER)
            waiting = _retire_step(deps, view.rotation_id)
            enabled_while_held = _enabled(estate)
            deleted.undelete_blob()  # still needed: it reads with the old version, which is still enabled
            undeleted = read_every_entry(container, _resolver(estate, old_kid, new_kid))
            deleted.delete_blob()

            blob_proxy_admin.advance_clock(2 * 86400 + 60)  # the retention period runs out
            retired, enabled_after, everything_after = _sweep_and_read(deps, estate, view.rotation_id, container)
        finally:
            container.delete_container()

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert view.rewrap is not None
        assert view.rewrap.rewrapped == len(payloads) - 1
        assert waiting.status == "waiting"
        assert "blob-1 (soft-deleted)" in waiting.detail
        assert enabled_while_held == {old_kid.rsplit("/", 1)[-1]: True, view.new_version: True}
        assert undeleted == {(n, "current"): d for n, d in payloads.items()}
        assert retired.status == RotationStatus.RETIRED
        assert enabled_after == {old_kid.rsplit("/", 1)[-1]: False, view.new_version: True}
        assert everything_after == {(n, "current"): d for n, d in payloads.items() if n != "blob-1"}


def _key_id(metadata: dict[str, str] | None) -> str:
    return str(json.loads((metadata or {})["encryptiondata"])["WrappedContentKey"]["KeyId"])
