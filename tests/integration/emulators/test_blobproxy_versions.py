"""Blob versioning and soft delete in the blob proxy, through the official SDK clients, unmodified.

Azurite 3.35 has neither; the proxy models them (``emulators/blobproxy/versions.py``, sources in
``docs/emulators/blobproxy.md``). Both are off unless the admin API turns them on, account-wide.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobSasPermissions, ContainerClient, generate_blob_sas

from emulators.admin_http import AdminApiError
from tests.integration.emulators.test_blobproxy import proxied

HISTORY = ["metadata", "snapshots", "versions", "deleted"]
__all__ = ["proxied"]  # the fixture, imported for this module


def _listed(container: ContainerClient, include: list[str] | None = None) -> list[tuple[Any, ...]]:
    return [
        (b.name, b.snapshot, b.version_id, b.is_current_version, bool(b.deleted), dict(b.metadata or {}))
        for b in container.list_blobs(include=include or HISTORY)
    ]


def _version(container: ContainerClient, name: str, version_id: str) -> BlobClient:
    return BlobClient.from_blob_url(
        container.get_blob_client(name).url, credential=container.credential, version_id=version_id
    )


class TestOffByDefault:
    def test_no_versions_no_soft_delete(self, proxied: ContainerClient, blob_proxy_admin: Any) -> None:
        blob = proxied.get_blob_client("a")
        written = blob.upload_blob(b"one", metadata={"n": "1"})
        blob.set_blob_metadata({"n": "2"})
        blob.delete_blob()

        assert blob_proxy_admin.blob_service() == {"versioning": False, "soft_delete_days": None}
        assert written.get("version_id") is None
        assert _listed(proxied) == []

    def test_a_wrong_mode_is_refused_by_name(self, blob_proxy_admin: Any) -> None:
        with pytest.raises(AdminApiError) as refused:
            blob_proxy_admin.set_blob_service(soft_delete_days=0)

        assert refused.value.status == 400
        assert "soft_delete_days" in str(refused.value)
        assert blob_proxy_admin.blob_service() == {"versioning": False, "soft_delete_days": None}


class TestVersioning:
    """Every write that changes a blob keeps the previous state as a version, named by ``x-ms-version-id``."""

    def test_writes_make_versions(self, proxied: ContainerClient, blob_proxy_admin: Any) -> None:
        blob_proxy_admin.set_blob_service(versioning=True)
        blob = proxied.get_blob_client("data.bin")

        first = blob.upload_blob(b"one", metadata={"n": "1"})["version_id"]
        second = blob.set_blob_metadata({"n": "2"})["version_id"]
        third = blob.upload_blob(b"three", overwrite=True, metadata={"n": "3"})["version_id"]
        props = blob.get_blob_properties()
        listed = _listed(proxied)
        old = _version(proxied, "data.bin", first)
        old_props = old.get_blob_properties()

        assert first < second < third
        assert props.version_id == third
        assert props.is_current_version is True
        assert listed == [
            ("data.bin", None, first, None, False, {"n": "1"}),
            ("data.bin", None, second, None, False, {"n": "2"}),
            ("data.bin", None, third, True, False, {"n": "3"}),
        ]
        assert old.download_blob().readall() == b"one"
        assert old_props.metadata == {"n": "1"}
        assert old_props.is_current_version is False
        assert _version(proxied, "data.bin", second).download_blob().readall() == b"one"
        assert [b.name for b in proxied.list_blobs(include=["metadata"])] == ["data.bin"]

    def test_a_version_cannot_be_written_and_the_current_one_not_deleted_by_id(
        self, proxied: ContainerClient, blob_proxy_admin: Any, local_azure: dict[str, Any]
    ) -> None:
        blob_proxy_admin.set_blob_service(versioning=True)
        blob = proxied.get_blob_client("b")
        first = blob.upload_blob(b"one")["version_id"]
        current = blob.set_blob_metadata({"n": "2"})["version_id"]

        # The SDK sends no versionid on Set Blob Metadata; Azure refuses the raw request.
        sas_url = _signed_url(proxied, "b") + f"&comp=metadata&versionid={first}"
        refused_write = httpx.put(sas_url, headers={"x-ms-version": "2025-11-05", "x-ms-meta-n": "9"})
        with pytest.raises(HttpResponseError) as root:
            _version(proxied, "b", current).delete_blob()

        assert refused_write.status_code == 400
        assert refused_write.headers["x-ms-error-code"] == "InvalidQueryParameterValue"
        assert (root.value.status_code, root.value.error_code) == (403, "OperationNotAllowedOnRootBlob")
        assert _version(proxied, "b", first).get_blob_properties().metadata == {}

    def test_delete_keeps_versions_and_a_version_can_be_deleted(
        self, proxied: ContainerClient, blob_proxy_admin: Any
    ) -> None:
        blob_proxy_admin.set_blob_service(versioning=True)
        blob = proxied.get_blob_client("c")
        first = blob.upload_blob(b"one")["version_id"]
        second = blob.upload_blob(b"two", overwrite=True)["version_id"]

        blob.delete_blob()
        after_delete = _listed(proxied)
        with pytest.raises(ResourceNotFoundError):
            blob.get_blob_properties()
        _version(proxied, "c", first).delete_blob()
        after_version_delete = _listed(proxied)
        recreated = blob.upload_blob(b"three")["version_id"]

        assert after_delete == [("c", None, first, None, False, {}), ("c", None, second, None, False, {})]
        assert after_version_delete == [("c", None, second, None, False, {})]
        assert _version(proxied, "c", second).download_blob().readall() == b"two"
        assert _listed(proxied)[-1] == ("c", None, recreated, True, False, {})
        assert blob.download_blob().readall() == b"three"

    def test_snapshots_stay_snapshots(self, proxied: ContainerClient, blob_proxy_admin: Any) -> None:
        blob_proxy_admin.set_blob_service(versioning=True)
        blob = proxied.get_blob_client("d")
        first = blob.upload_blob(b"one")["version_id"]
        snapshot = blob.create_snapshot()["snapshot"]
        blob.set_blob_metadata({"n": "2"})

        entries = [(b.snapshot, b.version_id) for b in proxied.list_blobs(include=HISTORY)]
        snapshots_only = [(b.snapshot, b.version_id) for b in proxied.list_blobs(include=["snapshots"])]

        assert (snapshot, None) in entries
        assert (None, first) in entries
        assert [s for s, _ in snapshots_only] == [snapshot, None]
        assert proxied.get_blob_client("d", snapshot=snapshot).download_blob().readall() == b"one"


class TestSoftDelete:
    """A deleted blob, snapshot or version is kept for the retention days, listed with ``include=deleted``,
    restored by Undelete Blob, and gone once the retention period is over."""

    def test_deleted_blob_and_snapshots_undelete(self, proxied: ContainerClient, blob_proxy_admin: Any) -> None:
        blob_proxy_admin.set_blob_service(soft_delete_days=7)
        blob = proxied.get_blob_client("e")
        blob.upload_blob(b"one", metadata={"n": "1"})
        snapshot = blob.create_snapshot()["snapshot"]

        blob.delete_blob(delete_snapshots="include")
        listed = list(proxied.list_blobs(include=HISTORY))
        plain = [b.name for b in proxied.list_blobs()]
        with pytest.raises(ResourceNotFoundError):
            blob.download_blob()
        blob.undelete_blob()

        assert plain == []
        assert [(b.snapshot, b.deleted, b.remaining_retention_days) for b in listed] == [
            (snapshot, True, 7),
            (None, True, 7),
        ]
        assert all(b.deleted_time is not None for b in listed)
        assert blob.download_blob().readall() == b"one"
        assert [(b.snapshot, bool(b.deleted)) for b in proxied.list_blobs(include=HISTORY)] == [
            (snapshot, False),
            (None, False),
        ]

    def test_overwrite_keeps_a_soft_deleted_snapshot_metadata_write_does_not(
        self, proxied: ContainerClient, blob_proxy_admin: Any
    ) -> None:
        blob_proxy_admin.set_blob_service(soft_delete_days=3)
        blob = proxied.get_blob_client("f")
        blob.upload_blob(b"one")
        blob.set_blob_metadata({"n": "2"})
        blob.upload_blob(b"two", overwrite=True)

        listed = [(bool(b.snapshot), bool(b.deleted)) for b in proxied.list_blobs(include=HISTORY)]

        assert listed == [(True, True), (False, False)]

    def test_retention_runs_out(self, proxied: ContainerClient, blob_proxy_admin: Any) -> None:
        blob_proxy_admin.set_blob_service(soft_delete_days=1)
        blob = proxied.get_blob_client("g")
        blob.upload_blob(b"one")
        blob.delete_blob()
        kept = _listed(proxied)

        blob_proxy_admin.advance_clock(86400 + 60)

        assert [(n, d) for n, _, _, _, d, _ in kept] == [("g", True)]
        assert _listed(proxied) == []
        with pytest.raises(ResourceNotFoundError):
            blob.undelete_blob()

    def test_with_versioning_a_deleted_version_is_soft_deleted(
        self, proxied: ContainerClient, blob_proxy_admin: Any
    ) -> None:
        blob_proxy_admin.set_blob_service(versioning=True, soft_delete_days=7)
        blob = proxied.get_blob_client("h")
        first = blob.upload_blob(b"one")["version_id"]
        blob.upload_blob(b"two", overwrite=True)

        _version(proxied, "h", first).delete_blob()
        listed = [(b.version_id, bool(b.deleted)) for b in proxied.list_blobs(include=HISTORY)]
        with pytest.raises(ResourceNotFoundError):
            _version(proxied, "h", first).download_blob()
        blob.undelete_blob()

        assert listed[0] == (first, True)
        assert _version(proxied, "h", first).download_blob().readall() == b"one"


def _signed_url(container: ContainerClient, name: str) -> str:
    credential = container.credential
    sas = generate_blob_sas(
        credential.account_name,
        container.container_name,
        name,
        account_key=credential.account_key,
        permission=BlobSasPermissions(read=True, write=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{container.get_blob_client(name).url}?{sas}"
