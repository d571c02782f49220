"""Rotation routes: start a rotation, follow it, list rotations, plan a key.

Each route turns the request into a typed call of one ``rotation.service`` function and maps the
result to JSON; failures are mapped in ``rotation.api.errors``. The service is imported inside the
routes so that importing the Function app stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from rotation.api.errors import error_response
from rotation.api.identity import caller_identity
from rotation.api.models import (
    MAX_KEY_URI_CHARS,
    ROTATION_ID_PATTERN,
    AbandonRotation,
    ErrorBody,
    PlanOut,
    RetryRotation,
    RotationAccepted,
    RotationList,
    RotationOut,
    StartRotation,
    UnretireVersion,
)
from rotation.bootstrap import dependencies
from rotation.domain.model import KeyRef, Trigger, TriggerKind
from rotation.errors import InputError, PreconditionFailed, RotationInProgress

if TYPE_CHECKING:
    from rotation.service.deps import Dependencies
    from rotation.service.views import RotationView

router = APIRouter(prefix="/api", tags=["rotations"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed input; the message says what is wrong"},
    413: {"model": ErrorBody, "description": "Request body larger than 64 KiB"},
    500: {"model": ErrorBody, "description": "The service failed; code and message say how"},
    503: {"model": ErrorBody, "description": "Misconfigured, or a dependency is unavailable (see Retry-After)"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not a managed key, or no such rotation"}
}

Deps = Annotated["Dependencies", Depends(dependencies)]
KeyQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_KEY_URI_CHARS,
        description="Versionless key URI of a managed key",
        examples=["https://myvault.vault.azure.net/keys/aml-cmk"],
    ),
]
RotationId = Annotated[str, Path(pattern=ROTATION_ID_PATTERN, description="The rotation's id")]


def versionless_key(uri: str) -> str:
    """Normalise a versionless key URI; a versioned one is refused (rotations are of keys, not versions).

    Raises:
        InputError: not a key URI, or it names a version.
    """
    key, version = KeyRef.parse(uri)
    if version is not None:
        raise InputError(f"give the versionless key URI ({key.uri}), not a version of it")
    return key.uri


def _status_url(request: Request, rotation_id: str) -> str:
    return str(request.url_for("get_rotation", rotation_id=rotation_id))


@router.post(
    "/rotations",
    status_code=202,
    summary="Start a rotation of a managed key",
    response_model=None,
    responses={
        202: {"model": RotationAccepted, "description": "Accepted; follow status_url"},
        **_ERRORS,
        **_NOT_FOUND,
        409: {"model": ErrorBody, "description": "A rotation of this key is already in progress (its id is given)"},
    },
)
def start_rotation(body: StartRotation, request: Request, deps: Deps) -> JSONResponse:
    from rotation import service

    key_uri = versionless_key(body.key)
    caller = caller_identity(request.headers, trust_principal_headers=deps.settings.trust_client_principal_headers)
    trigger = Trigger(kind=TriggerKind.HTTP, caller=caller)
    view = service.start_rotation(deps, key_uri, trigger, reason=body.reason, dry_run=body.dry_run)
    rotation = view.to_dict()
    status_url = _status_url(request, view.rotation_id)
    return JSONResponse(
        {"rotation_id": view.rotation_id, "status_url": status_url, "status": rotation["status"], "rotation": rotation},
        status_code=202,
        headers={"Location": status_url},
    )


@router.get(
    "/rotations/{rotation_id}",
    summary="A rotation's status, steps and consumers",
    response_model=None,
    responses={200: {"model": RotationOut, "description": "The rotation"}, **_ERRORS, **_NOT_FOUND},
)
def get_rotation(rotation_id: RotationId, deps: Deps) -> JSONResponse:
    from rotation import service

    return JSONResponse(service.get_rotation(deps, rotation_id).to_dict())


@router.get(
    "/rotations",
    summary="Rotations, newest first",
    response_model=None,
    responses={200: {"model": RotationList, "description": "The rotations"}, **_ERRORS, **_NOT_FOUND},
)
def list_rotations(
    deps: Deps,
    key: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY_URI_CHARS)] = None,
    active_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    from rotation import service

    key_uri = versionless_key(key) if key is not None else None
    views = service.list_rotations(deps, key_uri, active_only=active_only, limit=limit)
    return JSONResponse({"rotations": [v.to_dict() for v in views]})


@router.get(
    "/keys/plan",
    summary="What a rotation of the key would do now",
    response_model=None,
    responses={200: {"model": PlanOut, "description": "The plan"}, **_ERRORS, **_NOT_FOUND},
)
def plan(key: KeyQuery, deps: Deps) -> JSONResponse:
    from rotation import service

    return JSONResponse(service.plan(deps, versionless_key(key)).to_dict())


_CONTROL: dict[int | str, dict[str, Any]] = {
    200: {"model": RotationOut, "description": "The rotation acted on (for retry: the new attempt)"},
    **_ERRORS,
    **_NOT_FOUND,
    409: {"model": ErrorBody, "description": "Not possible in the rotation's state; the message says why"},
}


def _trigger(request: Request, deps: Dependencies) -> Trigger:
    caller = caller_identity(request.headers, trust_principal_headers=deps.settings.trust_client_principal_headers)
    return Trigger(kind=TriggerKind.HTTP, caller=caller)


def _control(request: Request, act: Callable[[], RotationView]) -> JSONResponse:
    """Run an on-call control; a state that does not allow it is 409 with the reason."""
    try:
        view = act()
    except PreconditionFailed as exc:
        extra = {"rotation_id": exc.rotation_id} if isinstance(exc, RotationInProgress) else {}
        return error_response(409, exc.code, exc.message, request, **extra)
    return JSONResponse(view.to_dict())


@router.post(
    "/rotations/{rotation_id}/retry",
    summary="On-call: retry a stopped rotation now, adopting its version (or resume a running one)",
    response_model=None,
    responses=_CONTROL,
)
def retry_rotation(rotation_id: RotationId, body: RetryRotation, request: Request, deps: Deps) -> JSONResponse:
    from rotation import service

    trigger = _trigger(request, deps)
    return _control(request, lambda: service.retry_now(deps, rotation_id, trigger, reason=body.reason))


@router.post(
    "/rotations/{rotation_id}/abandon",
    summary="On-call: stop a rotation and release its key; consumers stay where they are",
    response_model=None,
    responses=_CONTROL,
)
def abandon_rotation(rotation_id: RotationId, body: AbandonRotation, request: Request, deps: Deps) -> JSONResponse:
    from rotation import service

    trigger = _trigger(request, deps)
    return _control(request, lambda: service.abandon(deps, rotation_id, trigger, reason=body.reason))


@router.post(
    "/keys/unretire",
    summary="On-call: re-enable a key version this service retired",
    response_model=None,
    responses=_CONTROL,
)
def unretire_version(body: UnretireVersion, request: Request, deps: Deps) -> JSONResponse:
    from rotation import service

    key_uri, trigger = versionless_key(body.key), _trigger(request, deps)
    return _control(request, lambda: service.unretire(deps, key_uri, body.version, trigger, reason=body.reason))
