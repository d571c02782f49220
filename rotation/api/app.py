"""The ASGI application behind every HTTP route.

The Functions host serves it through ``func.AsgiFunctionApp`` (``function_app.py``); locally the
same object is served by uvicorn. One code path either way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from rotation import __version__
from rotation.errors import SettingsError
from rotation.logs import get_logger

log = get_logger("rotation.api")


def create_app() -> FastAPI:
    """Build the API. Routes reach services through ``rotation.bootstrap.current()`` at request time."""
    api = FastAPI(
        title="CMK rotation service",
        version=__version__,
        description="Rotates customer-managed keys for Azure ML and every consumer of them.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )

    @api.get("/api/health", tags=["operations"], summary="Version and dependency health")
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

    return api
