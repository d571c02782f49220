"""The HTTP API served for real (uvicorn, the same ``create_app()`` as the Function app) and spoken to over HTTP.

Rotations run over the in-memory fakes (``tests/fakes``); health and audit reads use Azurite. The
OpenAPI document the server serves is checked against the OpenAPI meta-schema and then used by
schemathesis to generate requests: every answer must match the document and none may be a 5xx.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR, OPENAPI_31_VALIDATOR

from emulators.localazure import free_port
from rotation import bootstrap
from rotation.api.app import create_app
from tests.fakes.estate import KEY, Estate, standard_estate


class _Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(), host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    with _Server() as running:
        yield running


@pytest.fixture
def estate(local_azure: dict[str, Any], server: _Server) -> Iterator[Estate]:
    os.environ["AzureWebJobsStorage"] = local_azure["storage"]["connection_string"]
    os.environ["ROTATION_LOG_FORMAT"] = "console"
    fakes, _ = standard_estate()
    bootstrap.override_dependencies(fakes.deps())
    yield fakes
    bootstrap.override_dependencies(None)


class TestOverHttp:
    """The served API answers real HTTP requests as documented."""

    def test_rotation_round_trip(self, server: _Server, estate: Estate) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            accepted = client.post("/api/rotations", json={"key": KEY.uri, "reason": "over http"})
            status = client.get(accepted.json()["status_url"])

        assert accepted.status_code == 202
        assert accepted.headers["location"].startswith(server.base_url)
        assert status.status_code == 200
        assert status.json()["status"] == "awaiting_retirement"
        assert status.json()["reason"] == "over http"

    def test_streamed_oversized_body_is_413(self, server: _Server, estate: Estate) -> None:
        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                yield b" " * 4096

        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            response = client.post("/api/rotations", content=chunks(), headers={"content-type": "application/json"})

        assert response.status_code == 413
        assert response.json()["error"]["code"] == "PayloadTooLarge"
        assert estate.journal.list() == []

    def test_health_with_azurite(self, server: _Server, estate: Estate) -> None:
        response = httpx.get(f"{server.base_url}/api/health", timeout=30)

        assert response.status_code == 200
        assert response.json()["storage"] == "reachable"

    def test_openapi_document_is_valid_and_matches_the_routes(self, server: _Server, estate: Estate) -> None:
        document = httpx.get(f"{server.base_url}/api/openapi.json", timeout=30).json()
        answers = {}
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for path, operations in document["paths"].items():
                concrete = path.replace("{rotation_id}", "rot-1").replace("{record_id}", "1")
                for method in operations:
                    answers[(method, path)] = client.request(method.upper(), concrete, json={}).status_code

        validator = OPENAPI_31_VALIDATOR if document["openapi"].startswith("3.1") else OPENAPI_30_VALIDATOR
        validator.validate(document)
        assert set(document["paths"]) == DOCUMENTED_PATHS
        # Every documented operation is served: no "no such route" 404 and no 405 for a documented method.
        assert all(status != 405 for status in answers.values())
        assert answers[("get", "/api/health")] == 200
        assert answers[("post", "/api/rotations")] == 400


DOCUMENTED_PATHS = {
    "/api/health",
    "/api/rotations",
    "/api/rotations/{rotation_id}",
    "/api/rotations/{rotation_id}/retry",
    "/api/rotations/{rotation_id}/abandon",
    "/api/keys/unretire",
    "/api/keys/plan",
    "/api/audit",
    "/api/audit/verify",
    "/api/audit/{record_id}",
}
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


class TestSchemathesis:
    """Requests generated from the served OpenAPI document: no 5xx, every answer as documented."""

    def test_generated_requests(self, server: _Server, estate: Estate) -> None:
        schema = schemathesis.openapi.from_url(f"{server.base_url}/api/openapi.json")
        failures: list[str] = []
        exercised: list[str] = []
        statuses: dict[int, int] = {}
        for result in schema.get_all_operations():
            operation = result.ok()
            exercised.append(operation.label)
            strategy = operation.as_strategy()

            @settings(
                max_examples=int(os.environ.get("API_FUZZ_EXAMPLES", "25")),
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.base_url)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                # /api/health answers a documented 503 when Azurite is slow to answer on a loaded machine.
                if response.status_code >= 500 and not (case.path == "/api/health" and response.status_code == 503):
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                    )
                case.validate_response(response, checks=CHECKS)

            run()

        assert len(exercised) == 11
        assert failures == []
        assert sum(statuses.values()) >= 100
        assert {200, 400, 404} <= set(statuses)


class TestLocalServerCommand:
    """``python -m rotation.api`` serves the app on loopback and refuses anything else."""

    def test_serves_health_and_openapi(self, local_azure: dict[str, Any]) -> None:
        port = free_port()
        env = {**os.environ, "AzureWebJobsStorage": local_azure["storage"]["connection_string"]}
        process = subprocess.Popen(
            [sys.executable, "-m", "rotation.api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            health = None
            deadline = time.monotonic() + 30
            while health is None and time.monotonic() < deadline:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10)
                except httpx.TransportError:
                    time.sleep(0.1)
            document = httpx.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=10).json()
        finally:
            process.terminate()
            process.wait(timeout=10)

        assert health is not None
        assert health.status_code == 200
        assert set(document["paths"]) == DOCUMENTED_PATHS

    def test_refuses_a_non_loopback_address(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "rotation.api", "--host", "0.0.0.0"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert result.returncode == 2
        assert "loopback" in result.stderr
