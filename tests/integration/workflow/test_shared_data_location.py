"""One data location shared by several keys: a rotation of key A re-wraps A's blobs only.

Blobs in ``ROTATION_DATA_LOCATIONS`` are written with azure-storage-blob's client-side encryption (protocol
2.0) under three keys of the estate's vault: A and B (both in ``ROTATION_MANAGED_KEYS``) and a key the
service does not manage. A's rotation re-wraps A's blobs, counts the others as out of scope (``other_keys``
in its status and audit records, never as failures), retires A's old version without waiting for them,
and B's and the unmanaged key's blobs still decrypt afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from azure.storage.blob import ContainerClient

from emulators.keyvault.kek import VaultKek
from rotation.domain.model import RotationStatus
from rotation.service import get_rotation, plan, start_rotation, sweep
from tests.integration.rewrap_helpers import decrypting_client, encrypted_client
from tests.integration.workflow.estate import OPERATOR, RealEstate, build_estate, start_and_run_past_waiting
from tests.triggers import CLI, TIMER


def _write(estate: RealEstate, container: ContainerClient, kid: str, names: list[str]) -> dict[str, bytes]:
    """``names`` written with client-side encryption under ``kid``; what each holds."""
    writer = encrypted_client(container, VaultKek(kid, estate.ca, OPERATOR), "2.0")
    payloads = {name: os.urandom(1000 + i) for i, name in enumerate(names)}
    for name, data in payloads.items():
        writer.upload_blob(name, data)
    return payloads


def _only(estate: RealEstate, kid: str) -> Callable[[str], VaultKek | None]:
    """A key resolver that knows ``kid`` and nothing else."""
    return lambda asked: VaultKek(asked, estate.ca, OPERATOR) if asked == kid else None


def _read(container: ContainerClient, resolver: Callable[[str], Any], names: Mapping[str, bytes]) -> dict[str, bytes]:
    reader = decrypting_client(container, resolver)
    return {name: reader.download_blob(name).readall() for name in names}


class TestKeysSharingADataLocation:
    """A's rotation, plan and dry run count B's and the unmanaged key's blobs as other keys' (out of scope,
    not failures); A retires without waiting for them; every blob still decrypts with the key that wraps it."""

    def test_rotation_of_one_key_leaves_the_other_keys_blobs_alone(self, local_azure: dict[str, Any]) -> None:
        estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=0)
        a, b = estate.key, estate.other_key
        container, a_payloads = estate.container_of_old_version_blobs(
            local_azure["storage"]["connection_string"], "shared", range(1500, 1503)
        )
        keys = estate.keys()
        a_old_kid = str(keys.get_key(a.name).id)
        b_kid = str(keys.get_key(b.name).id)
        unmanaged_kid = str(keys.create_rsa_key(f"unmanaged-{uuid.uuid4().hex[:6]}", size=2048).id)
        b_payloads = _write(estate, container, b_kid, ["b-0", "b-1"])
        unmanaged_payloads = _write(estate, container, unmanaged_kid, ["u-0"])
        others = {**b_payloads, **unmanaged_payloads}
        b_etags = {n: container.get_blob_client(n).get_blob_properties().etag for n in others}
        deps = estate.deps(
            ROTATION_MANAGED_KEYS=f"{a.uri},{b.uri}",
            ROTATION_DATA_LOCATIONS=container.url,
            ROTATION_RETIRE_GRACE_HOURS="0",
        )

        try:
            planned = plan(deps, a.uri).to_dict()
            dry = start_rotation(deps, a.uri, CLI, dry_run=True)
            view = start_and_run_past_waiting(deps, a.uri, CLI)
            sweep(deps, TIMER)
            retired = get_rotation(deps, view.rotation_id)
            a_new_kid = a.version_uri(str(view.new_version))
            a_read = _read(container, _only(estate, a_new_kid), a_payloads)
            b_read = _read(container, _only(estate, b_kid), b_payloads)
            unmanaged_read = _read(container, _only(estate, unmanaged_kid), unmanaged_payloads)
            etags_after = {n: container.get_blob_client(n).get_blob_properties().etag for n in others}
            records = list(deps.audit.records(key_uri=a.uri))
            a_versions = {str(v.version): bool(v.enabled) for v in estate.versions()}
            b_versions = {str(v.version): bool(v.enabled) for v in estate.versions(b)}
        finally:
            container.delete_container()

        [planned_blobs] = [c for c in planned["consumers"] if c["kind"] == "data_location"]
        assert "3 blobs to re-wrap; 0 blobs with problems; 3 blobs of other keys" in planned_blobs["detail"]
        assert dry.status == RotationStatus.DRY_RUN
        assert "3 blobs of other keys" in [s for s in dry.steps if s.name == "rewrap"][-1].detail
        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert view.rewrap is not None
        assert (view.rewrap.rewrapped, view.rewrap.other_keys, view.rewrap.failed) == (3, 3, ())
        assert retired.status == RotationStatus.RETIRED
        assert a_versions == {a_old_kid.rsplit("/", 1)[-1]: False, view.new_version: True}
        assert b_versions == {b_kid.rsplit("/", 1)[-1]: True}
        assert a_read == a_payloads
        assert b_read == b_payloads
        assert unmanaged_read == unmanaged_payloads
        assert etags_after == b_etags  # the other keys' blobs were never written
        assert retired.evidence is not None
        [blobs] = [k.blobs for k in retired.evidence.kinds if k.blobs is not None]
        assert (blobs.surveyed, blobs.by_version, blobs.other_keys) == (6, ((str(view.new_version), 3),), 3)
        by_outcome = {r.outcome: r for r in records if r.rotation_id == view.rotation_id}
        assert by_outcome["succeeded"].rewrap is not None
        assert by_outcome["succeeded"].rewrap.other_keys == 3
        assert by_outcome["succeeded"].rewrap.failed == ()
        assert "3 blobs of other keys" in by_outcome["retired"].reason
