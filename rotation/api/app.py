"""The ASGI application behind every HTTP route.

The Functions host serves it through ``func.AsgiFunctionApp`` (``function_app.py``, auth level
FUNCTION: every route needs a function key); locally the same object is served by uvicorn
(``python -m rotation.api``). One code path either way.

Routes (all JSON; OpenAPI at ``/api/openapi.json``):

- ``POST /api/rotations`` ``{key, reason, dry_run}`` -> 202 ``{rotation_id, status_url, status, rotation}``
- ``GET /api/rotations/{id}``, ``GET /api/rotations?key=&active_only=&limit=``
- ``GET /api/keys/plan?key=``
- ``GET /api/health``
- ``GET /api/audit``, ``/api/audit/{id}``, ``/api/audit/verify`` (``rotation.api.audit_routes``, when present)
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from rotation import __version__
from rotation.api.errors import MAX_BODY_BYTES, BodyLimit, install_error_handlers
from rotation.api.models import ErrorBody, Health
from rotation.errors import SettingsError
from rotation.logs import get_logger

log = get_logger("rotation.api")

_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Health, "description": "Healthy"},
    503: {"model": Health, "description": "Unhealthy: a setting is wrong or storage is unreachable"},
    413: {"model": ErrorBody, "description": "Request body too large"},
}


def create_app() -> FastAPI:
    """Build the API. Routes reach services through ``rotation.bootstrap.dependencies()`` at request time."""
    api = FastAPI(
        title="CMK rotation service",
        version=__version__,
        description=(
            "Rotates customer-managed keys for Azure ML and every consumer of them. In Azure every route "
            "needs a function key (`x-functions-key` header or `code` query parameter)."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    install_error_handlers(api)
    api.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @api.get(
        "/api/health",
        tags=["operations"],
        summary="Version and dependency health",
        response_model=None,
        responses=_HEALTH_RESPONSES,
    )
    def health() -> JSONResponse:
        from rotation import bootstrap

        body: dict[str, Any] = {"version": __version__}
        try:
            boot = bootstrap.current()
        except SettingsError as exc:
            body |= {"status": "unhealthy", "storage": "unknown", "problem": exc.message}
            log.warning("health_settings_invalid", setting=exc.setting)
            return JSONResponse(body, status_code=503)
        reachable = boot.storage_reachable()
        body |= {
            "status": "healthy" if reachable else "unhealthy",
            "storage": "reachable" if reachable else "unreachable",
        }
        return JSONResponse(body, status_code=200 if reachable else 503)

    from rotation.api.routes import router

    api.include_router(router)
    if importlib.util.find_spec("rotation.api.audit_routes") is not None:
        api.include_router(importlib.import_module("rotation.api.audit_routes").router)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}
            }
            schema["security"] = [{"functionKey": []}]
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api
