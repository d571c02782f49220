"""Audit routes: the same reads as ``python -m rotation audit list|show|verify``.

- ``GET /api/audit?key=&since=&status=&rotation=&limit=``: records, oldest first (the newest ``limit`` matching).
- ``GET /api/audit/verify``: walk the chain and its signed checkpoints. Always 200; ``ok`` is
  false and ``problem`` names the first broken record when the chain was tampered with.
- ``GET /api/audit/{id}``: one record (by id, or by sequence number written ``#12`` or ``12``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from rotation.bootstrap import audit_log
from rotation.errors import AuditRecordNotFound

if TYPE_CHECKING:
    from rotation.audit.service import AuditReader

router = APIRouter(prefix="/api/audit", tags=["audit"])


def get_audit_log() -> AuditReader:
    """The process's audit log, from the composition root (override with ``app.dependency_overrides``)."""
    return audit_log()


Audit = Annotated["AuditReader", Depends(get_audit_log)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed query; the message says what is wrong"},
    503: {"description": "Misconfigured, or storage is unavailable (see Retry-After)"},
}


@router.get("", summary="List audit records", responses=_ERRORS)
def list_audit_records(
    *,
    audit: Audit,
    key: Annotated[str | None, Query(max_length=400, description="Versionless key URI")] = None,
    since: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD or ISO 8601 time")] = None,
    status: Annotated[str | None, Query(max_length=40, description="Outcome, e.g. failed")] = None,
    rotation: Annotated[str | None, Query(max_length=100, description="Only records of this rotation")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many (the newest)")] = 100,
) -> JSONResponse:
    from rotation.audit.service import list_records, parse_key, parse_rotation_id, parse_since, parse_status

    result = list_records(
        audit,
        key_uri=parse_key(key),
        since=parse_since(since),
        status=parse_status(status),
        rotation_id=parse_rotation_id(rotation),
        limit=limit,
    )
    return JSONResponse(result.to_dict())


@router.get("/verify", summary="Verify the audit chain and its signed checkpoints", responses=_ERRORS)
def verify_audit_chain(audit: Audit) -> JSONResponse:
    from rotation.audit.service import verify_chain

    return JSONResponse(verify_chain(audit).to_dict())


@router.get(
    "/{record_id}",
    summary="One audit record: steps with durations, consumer changes, re-wrap counts",
    responses={**_ERRORS, 404: {"description": "No audit record with that id"}},
)
def show_audit_record(
    audit: Audit,
    record_id: Annotated[str, Path(min_length=1, max_length=200, description="Record id, or #N / N")],
) -> JSONResponse:
    from rotation.audit.service import show_record

    try:
        stored = show_record(audit, record_id)
    except AuditRecordNotFound as exc:
        raise HTTPException(status_code=404, detail=exc.message) from exc
    return JSONResponse(stored.to_dict())
