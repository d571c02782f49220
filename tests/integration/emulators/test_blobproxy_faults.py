"""The blob proxy's transient faults (``/admin/faults``): the next N matching requests answer Azure
Storage's 503 ``ServerBusy`` or 500 ``OperationTimedOut``, in Azure's error shape, through the official SDK."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient, ExponentialRetry

from emulators.admin_http import AdminApiError

BUSY = "The server is currently unable to receive requests. Please retry your request."


def _container(local_azure: dict[str, Any], name: str, **kwargs: Any) -> ContainerClient:
    connection = local_azure["storage"]["proxy_connection_string"]
    return BlobServiceClient.from_connection_string(connection, **kwargs).get_container_client(name)


@pytest.fixture
def names(local_azure: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Two new containers, each with one blob ``data.bin`` (metadata ``owner=team-a``)."""
    created = []
    for _ in range(2):
        client = _container(local_azure, f"fault{uuid.uuid4().hex[:12]}")
        client.create_container()
        client.upload_blob("data.bin", b"x" * 100, metadata={"owner": "team-a"})
        created.append(client)
    yield created[0].container_name, created[1].container_name
    for client in created:
        client.delete_container()


def test_the_next_matching_requests_answer_the_fault(
    local_azure: dict[str, Any], blob_proxy_admin: Any, names: tuple[str, str]
) -> None:
    faulted, other = names
    rules = blob_proxy_admin.set_faults(
        {"code": "ServerBusy", "count": 1, "operations": ["SetBlobMetadata"], "containers": [faulted]}
    )
    assert rules == [
        {"code": "ServerBusy", "status": 503, "count": 1, "operations": ["SetBlobMetadata"],
         "containers": [faulted], "answered": 0},
    ]  # fmt: skip
    blob = _container(local_azure, faulted, retry_total=0).get_blob_client("data.bin")
    # another container and another operation are not matched
    _container(local_azure, other, retry_total=0).get_blob_client("data.bin").set_blob_metadata({"owner": "b"})
    assert blob.get_blob_properties().metadata == {"owner": "team-a"}

    with pytest.raises(HttpResponseError) as refused:
        blob.set_blob_metadata({"owner": "team-b"})

    error = refused.value
    assert (error.status_code, error.error_code) == (503, "ServerBusy")
    assert error.response is not None
    assert error.response.headers["x-ms-error-code"] == "ServerBusy"
    assert error.response.headers["content-type"] == "application/xml"
    assert f"<Code>ServerBusy</Code><Message>{BUSY}\nRequestId:" in error.response.text()
    assert blob.get_blob_properties().metadata == {"owner": "team-a"}  # Azurite never saw the write
    blob.set_blob_metadata({"owner": "team-b"})  # the rule's count is spent: the fault has ended
    assert blob.get_blob_properties().metadata == {"owner": "team-b"}
    assert [r["answered"] for r in blob_proxy_admin.faults()] == [1]


def test_a_head_request_carries_the_code_in_its_header(
    local_azure: dict[str, Any], blob_proxy_admin: Any, names: tuple[str, str]
) -> None:
    blob_proxy_admin.set_faults({"code": "OperationTimedOut", "count": 1, "operations": ["GetBlobProperties"]})
    blob = _container(local_azure, names[0], retry_total=0).get_blob_client("data.bin")

    with pytest.raises(HttpResponseError) as refused:
        blob.get_blob_properties()

    assert (refused.value.status_code, refused.value.error_code) == (500, "OperationTimedOut")
    assert blob.get_blob_properties().metadata == {"owner": "team-a"}


def test_the_sdk_retry_policy_absorbs_a_transient_fault(
    local_azure: dict[str, Any], blob_proxy_admin: Any, names: tuple[str, str]
) -> None:
    """azure-storage-blob retries ServerBusy and OperationTimedOut (any 5xx but 501 and 505): a listing
    and a metadata write meeting two faults each still succeed (back-off set to 0 for the test)."""
    faulted = names[0]
    blob_proxy_admin.set_faults(
        {"code": "ServerBusy", "count": 2, "operations": ["ListBlobs"], "containers": [faulted]},
        {"code": "OperationTimedOut", "count": 2, "operations": ["SetBlobMetadata"], "containers": [faulted]},
    )
    quick = ExponentialRetry(initial_backoff=0, increment_base=0, random_jitter_range=0, retry_total=3)
    container = _container(local_azure, faulted, retry_policy=quick)

    assert [b.name for b in container.list_blobs()] == ["data.bin"]
    container.get_blob_client("data.bin").set_blob_metadata({"owner": "team-c"})

    assert [r["answered"] for r in blob_proxy_admin.faults()] == [2, 2]
    assert container.get_blob_client("data.bin").get_blob_properties().metadata == {"owner": "team-c"}


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ({"code": "Busy", "count": 1}, "code must be one of"),
        ({"code": "ServerBusy", "count": 0}, "count must be a positive integer"),
        ({"code": "ServerBusy", "count": 1, "operations": ["SetBlobTier"]}, "unknown operations ['SetBlobTier']"),
        ({"code": "ServerBusy", "count": 1, "rate": 0.5}, "a fault rule is"),
    ],
)
def test_a_wrong_rule_is_refused_by_name(blob_proxy_admin: Any, rule: dict[str, Any], named: str) -> None:
    blob_proxy_admin.set_faults({"code": "ServerBusy", "count": 3})
    with pytest.raises(AdminApiError) as refused:
        blob_proxy_admin.set_faults({"code": "ServerBusy", "count": 1}, rule)
    assert refused.value.status == 400
    assert named in str(refused.value)
    assert [(r["code"], r["count"]) for r in blob_proxy_admin.faults()] == [("ServerBusy", 3)]  # unchanged
