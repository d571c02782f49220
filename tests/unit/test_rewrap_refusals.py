"""Which Set Blob Metadata failures are one blob's own (recorded, the page goes on) and which concern every blob."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from rotation.rewrap.refusals import blob_write_refusal


class _Response:
    """The few attributes azure-core's HttpResponseError reads from a response."""

    def __init__(self, status: int, code: str | None) -> None:
        self.status_code = status
        self.reason = "refused"
        self.headers: dict[str, Any] = {"x-ms-error-code": code} if code else {}
        self.request = None

    def text(self) -> str:
        return ""


def _error(status: int, code: str | None) -> HttpResponseError:
    return HttpResponseError(message="This operation is not permitted. RequestId:abc", response=_Response(status, code))


class TestBlobWriteRefusal:
    """409s and non-ETag 412s are the blob's failure, named by status and code only; ETag races, permission,
    request and service errors are not."""

    @pytest.mark.parametrize(
        ("status", "code", "reason"),
        [
            (412, "LeaseIdMissing", "Set Blob Metadata refused: HTTP 412 LeaseIdMissing (the blob is leased;"),
            (409, "BlobImmutableDueToPolicy", "Set Blob Metadata refused: HTTP 409 BlobImmutableDueToPolicy (the"),
            (409, "BlobImmutableDueToLegalHold", "Set Blob Metadata refused: HTTP 409 BlobImmutableDueToLegalHold"),
            (409, "BlobArchived", "Set Blob Metadata refused: HTTP 409 BlobArchived (the blob is in the archive"),
            (409, "SomethingNew", "Set Blob Metadata refused: HTTP 409 SomethingNew (the blob's state refuses"),
            (409, None, "Set Blob Metadata refused: HTTP 409 Unknown"),
        ],
    )
    def test_the_blobs_own_state(self, status: int, code: str | None, reason: str) -> None:
        found = blob_write_refusal(_error(status, code))

        assert found is not None
        assert found.startswith(reason)
        assert "RequestId" not in found

    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (412, "ConditionNotMet"),
            (403, "AuthorizationPermissionMismatch"),
            (401, "InvalidAuthenticationInfo"),
            (400, "InvalidHeaderValue"),
            (429, "ServerBusy"),
            (503, "ServerBusy"),
        ],
    )
    def test_everything_else(self, status: int, code: str) -> None:
        assert blob_write_refusal(_error(status, code)) is None
