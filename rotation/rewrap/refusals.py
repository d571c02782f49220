"""Which refusals of ``Set Blob Metadata`` belong to one blob, and how each is reported.

A blob can refuse the metadata write because of its own state while every other blob of the page
accepts it. Such a refusal is that blob's failure: it is recorded by name and error code, the page
goes on, and the old key version stays enabled (the failure blocks retirement). Anything else (an
identity without permission, a malformed request, throttling, a dead connection) concerns every blob
and is raised, so the work item is retried.

Blob's state, from Azure's "Blob Storage error codes" (learn.microsoft.com/rest/api/storageservices/
blob-service-error-codes):

- **412 ``LeaseIdMissing``**: the blob has an active lease and the request named none. The re-wrap
  never takes a lease it does not own.
- **409 ``BlobImmutableDueToPolicy``** / **``BlobImmutableDueToLegalHold``**: immutable storage forbids
  Set Blob Metadata while a time-based retention interval runs or a legal hold is set
  (learn.microsoft.com/azure/storage/blobs/immutable-storage-overview).
- **409 ``BlobArchived``**: "Setting or modifying the blob metadata while in archive isn't allowed"
  (learn.microsoft.com/azure/storage/blobs/access-tiers-overview); the blob must be rehydrated first.
- **409 ``BlobBeingRehydrated``**: the blob is on its way back from archive.

Any other 409 (a conflict with the blob's state) and any 412 but ``ConditionNotMet`` (an ETag race,
handled by the re-wrap itself) are treated the same way, reported with their code.
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError

_EXPLAINED = {
    "LeaseIdMissing": "the blob is leased; the re-wrap never takes a lease it does not hold",
    "LeaseIdMismatchWithBlobOperation": "the blob is leased by someone else",
    "BlobImmutableDueToPolicy": "the blob is immutable under a time-based retention policy",
    "BlobImmutableDueToLegalHold": "the blob is under a legal hold",
    "BlobArchived": "the blob is in the archive tier; its metadata is read-only until it is rehydrated",
    "BlobBeingRehydrated": "the blob is being rehydrated from the archive tier",
}
_BLOB_STATE_STATUSES = frozenset({409, 412})
_ETAG_RACE = "ConditionNotMet"


def error_code(exc: HttpResponseError) -> str:
    """The storage error code (``x-ms-error-code``), or ``"Unknown"``."""
    code = getattr(exc, "error_code", None)
    response: Any = exc.response
    if not code and response is not None:
        code = response.headers.get("x-ms-error-code")
    return str(getattr(code, "value", code) or "Unknown")


def blob_write_refusal(exc: HttpResponseError) -> str | None:
    """The log-safe reason when ``exc`` is a refusal by this blob's own state; None when it is not.

    The reason names the status and the error code only: never the service's message or any header.
    """
    status = exc.status_code or 0
    code = error_code(exc)
    if status not in _BLOB_STATE_STATUSES or code == _ETAG_RACE:
        return None
    explanation = _EXPLAINED.get(code, "the blob's state refuses metadata writes")
    return f"Set Blob Metadata refused: HTTP {status} {code} ({explanation})"
