"""The blob proxy in front of Azurite: Azure's refusals for immutability policies, legal holds and the archive
tier, through the official SDK clients; everything else is Azurite's own answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, ImmutabilityPolicy


def _container(connection_string: str, name: str) -> ContainerClient:
    return BlobServiceClient.from_connection_string(connection_string).get_container_client(name)


@pytest.fixture
def proxied(local_azure: dict[str, Any]) -> Iterator[ContainerClient]:
    """A new container, reached through the proxy."""
    client = _container(local_azure["storage"]["proxy_connection_string"], f"proxy{uuid.uuid4().hex[:12]}")
    client.create_container()
    yield client
    client.delete_container()


def _blob(container: ContainerClient, name: str = "data.bin") -> BlobClient:
    blob = container.get_blob_client(name)
    blob.upload_blob(b"x" * 100, metadata={"owner": "team-a"})
    return blob


def _refused(call: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as refused:
        call()
    return refused.value


def _assert_azure_shape(error: HttpResponseError, status: int, code: str, message: str) -> None:
    assert error.status_code == status
    assert error.error_code == code
    assert error.response is not None
    assert error.response.headers["x-ms-error-code"] == code
    assert error.response.headers["content-type"] == "application/xml"
    assert error.response.headers["x-ms-request-id"]
    body = error.response.text()
    assert body.startswith('<?xml version="1.0" encoding="utf-8"?><Error>')
    assert f"<Code>{code}</Code><Message>{message}\nRequestId:" in body


class TestForwarding:
    """Everything the proxy does not model is Azurite's answer: content, metadata, listing, leases."""

    def test_azurite_behind_the_proxy(self, local_azure: dict[str, Any], proxied: ContainerClient) -> None:
        blob = _blob(proxied, "dir/a b.bin")
        direct = _container(local_azure["storage"]["connection_string"], proxied.container_name)

        lease = blob.acquire_lease(lease_duration=-1)
        leased = _refused(lambda: blob.set_blob_metadata({"owner": "team-b"}))
        blob.set_blob_metadata({"owner": "team-b"}, lease=lease)
        lease.release()

        assert blob.download_blob().readall() == b"x" * 100
        assert [b.name for b in proxied.list_blobs(include=["metadata"])] == ["dir/a b.bin"]
        assert direct.get_blob_client("dir/a b.bin").get_blob_properties().metadata == {"owner": "team-b"}
        assert (leased.status_code, leased.error_code) == (412, "LeaseIdMissing")


class TestLegalHold:
    """Set Blob Legal Hold is kept by the proxy; while it is set, Set Blob Metadata, Set Blob Properties,
    Put Blob and Delete Blob answer 409 ``BlobImmutableDueToLegalHold``; cleared, they work again."""

    def test_legal_hold(self, proxied: ContainerClient) -> None:
        blob = _blob(proxied)

        answer = blob.set_legal_hold(True)
        held = blob.get_blob_properties()
        refusals = [
            _refused(lambda: blob.set_blob_metadata({"owner": "team-b"})),
            _refused(lambda: blob.upload_blob(b"y", overwrite=True)),
            _refused(blob.delete_blob),
        ]
        blob.set_legal_hold(False)
        blob.set_blob_metadata({"owner": "team-b"})

        assert answer["legal_hold"] is True
        assert held.has_legal_hold is True
        message = "This operation is not permitted as the blob is immutable due to one or more legal holds."
        for error in refusals:
            assert isinstance(error, ResourceExistsError)
            _assert_azure_shape(error, 409, "BlobImmutableDueToLegalHold", message)
        assert blob.get_blob_properties().metadata == {"owner": "team-b"}
        assert not blob.get_blob_properties().has_legal_hold

    def test_unknown_blob(self, proxied: ContainerClient) -> None:
        with pytest.raises(ResourceNotFoundError):
            proxied.get_blob_client("missing").set_legal_hold(True)


class TestImmutabilityPolicy:
    """Set Blob Immutability Policy is kept by the proxy; until its date, writes answer 409
    ``BlobImmutableDueToPolicy``; after Delete Blob Immutability Policy they work again."""

    def test_policy(self, proxied: ContainerClient) -> None:
        blob = _blob(proxied)
        until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)

        answer = blob.set_immutability_policy(ImmutabilityPolicy(expiry_time=until, policy_mode="Unlocked"))
        props = blob.get_blob_properties()
        refused = _refused(lambda: blob.set_blob_metadata({"owner": "team-b"}))
        blob.delete_immutability_policy()
        blob.set_blob_metadata({"owner": "team-b"})

        assert answer["immutability_policy_until_date"] == until
        assert props.immutability_policy.expiry_time == until
        assert str(props.immutability_policy.policy_mode).lower() == "unlocked"
        _assert_azure_shape(
            refused,
            409,
            "BlobImmutableDueToPolicy",
            "This operation is not permitted as the blob is immutable due to a policy.",
        )
        assert blob.get_blob_properties().metadata == {"owner": "team-b"}

    def test_a_policy_whose_date_has_passed_refuses_nothing(self, proxied: ContainerClient) -> None:
        blob = _blob(proxied)
        past = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)

        blob.set_immutability_policy(ImmutabilityPolicy(expiry_time=past, policy_mode="Unlocked"))
        blob.set_blob_metadata({"owner": "team-b"})

        assert blob.get_blob_properties().metadata == {"owner": "team-b"}
        blob.delete_immutability_policy()


class TestArchiveTier:
    """Azurite 3.35 keeps the Archive tier and refuses reads, but lets Set Blob Metadata through; behind the
    proxy it answers 409 ``BlobArchived``, as Azure does; properties and listing still work."""

    def test_metadata_write_on_an_archived_blob(self, local_azure: dict[str, Any], proxied: ContainerClient) -> None:
        blob = _blob(proxied)
        direct = _container(local_azure["storage"]["connection_string"], proxied.container_name).get_blob_client(
            blob.blob_name
        )

        blob.set_standard_blob_tier("Archive")
        refused = _refused(lambda: blob.set_blob_metadata({"owner": "team-b"}))
        azurite_alone = direct.set_blob_metadata({"owner": "written-directly"})

        _assert_azure_shape(refused, 409, "BlobArchived", "This operation is not permitted on an archived blob.")
        assert azurite_alone["etag"]
        assert blob.get_blob_properties().blob_tier == "Archive"
        assert [b.name for b in proxied.list_blobs()] == [blob.blob_name]
