"""The HTTP API's contract independent of the service: body cap, error shape, identity, OpenAPI document."""

from __future__ import annotations

import json

import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR, OPENAPI_31_VALIDATOR

from rotation.api.errors import MAX_BODY_BYTES, status_for
from rotation.api.identity import ANONYMOUS_CALLER, caller_identity
from rotation.errors import (
    InputError,
    NeedsHuman,
    RotationInProgress,
    RotationNotFound,
    SettingsError,
    ThrottledError,
    TransientError,
    UnknownKeyError,
    VerificationFailed,
)
from tests.functions_host import http


class TestBodyCap:
    """Bodies over 64 KiB are refused with 413 before anything parses them, whatever the route."""

    def test_declared_length_over_cap(self) -> None:
        body = b"x" * (MAX_BODY_BYTES + 1)

        resp = http("POST", "/api/rotations", body=body, headers={"content-type": "application/json"})

        assert resp.status_code == 413
        assert json.loads(resp.get_body())["error"]["code"] == "PayloadTooLarge"

    def test_cap_applies_to_unknown_routes_too(self) -> None:
        body = b"{" * (MAX_BODY_BYTES * 4)

        resp = http("PUT", "/api/anything", body=body)

        assert resp.status_code == 413


class TestErrorShape:
    """Every error, including the framework's own 404/405, is {"error": {code, message, request_id}}."""

    def test_unknown_route(self) -> None:
        resp = http("GET", "/api/no-such-route")

        body = json.loads(resp.get_body())
        assert resp.status_code == 404
        assert body["error"]["code"] == "NotFound"
        assert body["error"]["request_id"] == resp.headers["x-request-id"]

    def test_wrong_method(self) -> None:
        resp = http("DELETE", "/api/health")

        assert resp.status_code == 405
        assert json.loads(resp.get_body())["error"]["code"] == "MethodNotAllowed"


class TestStatusMapping:
    """The service's error tree maps to HTTP statuses as documented in rotation.api.errors."""

    @pytest.mark.parametrize(
        ("error", "status"),
        [
            (InputError("bad"), 400),
            (UnknownKeyError("no"), 404),
            (RotationNotFound("r-1"), 404),
            (RotationInProgress("k", "r-1"), 409),
            (SettingsError("S", "missing", "x"), 503),
            (TransientError("later"), 503),
            (ThrottledError("slow", retry_after=3), 503),
            (VerificationFailed("bad"), 500),
            (NeedsHuman("page"), 500),
        ],
    )
    def test_status(self, error: Exception, status: int) -> None:
        assert status_for(error) == status  # type: ignore[arg-type]


class TestCallerIdentity:
    """App Service authentication headers name the caller only when trusted by configuration."""

    HEADERS = {"X-MS-CLIENT-PRINCIPAL-NAME": "oncall@contoso.com", "X-MS-CLIENT-PRINCIPAL-ID": "1234-abcd"}

    def test_untrusted_headers_are_ignored(self) -> None:
        caller = caller_identity(self.HEADERS, trust_principal_headers=False)

        assert caller == ANONYMOUS_CALLER

    def test_trusted_headers_name_the_caller(self) -> None:
        caller = caller_identity(self.HEADERS, trust_principal_headers=True)

        assert caller == "oncall@contoso.com (1234-abcd)"

    def test_trusted_but_absent(self) -> None:
        caller = caller_identity({}, trust_principal_headers=True)

        assert caller == ANONYMOUS_CALLER

    def test_hostile_header_is_cleaned_and_bounded(self) -> None:
        caller = caller_identity(
            {"x-ms-client-principal-name": "evil\n\x1b[31m" + "a" * 1000}, trust_principal_headers=True
        )

        assert "\n" not in caller
        assert "\x1b" not in caller
        assert len(caller) <= 200


class TestOpenApiDocument:
    """The served OpenAPI document validates against the OpenAPI meta-schema and lists every route."""

    def test_document_validates_and_lists_routes(self) -> None:
        resp = http("GET", "/api/openapi.json")

        document = json.loads(resp.get_body())
        validator = OPENAPI_31_VALIDATOR if document["openapi"].startswith("3.1") else OPENAPI_30_VALIDATOR
        validator.validate(document)
        assert resp.status_code == 200
        assert {"/api/health", "/api/rotations", "/api/rotations/{rotation_id}", "/api/keys/plan"} <= set(
            document["paths"]
        )
        assert set(document["paths"]["/api/rotations"]) == {"get", "post"}
        assert "409" in document["paths"]["/api/rotations"]["post"]["responses"]
        assert document["components"]["securitySchemes"]["functionKey"]["in"] == "header"
