"""The rotation routes through the Function app's HTTP function (real func.HttpRequest), over in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from rotation import bootstrap
from rotation.api.identity import ANONYMOUS_CALLER
from rotation.domain.model import RotationStatus
from rotation.errors import ThrottledError
from tests.fakes.estate import KEY, Estate, hosted_standard_estate
from tests.functions_host import http

JSON = {"content-type": "application/json"}


@pytest.fixture
def estate() -> Iterator[tuple[Estate, str]]:
    yield from hosted_standard_estate()


def _post(body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = http("POST", "/api/rotations", body=raw, headers={**JSON, **(headers or {})})
    return resp.status_code, json.loads(resp.get_body()), {k.lower(): v for k, v in resp.headers.items()}


def _get(path: str, params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    query = f"?{urlencode(params)}" if params else ""  # the ASGI bridge reads the query from the URL
    resp = http("GET", path + query)
    return resp.status_code, json.loads(resp.get_body())


class TestStartRotation:
    """POST /api/rotations answers 202 with the id and a status URL; the caller is recorded."""

    def test_accepted_with_status_url(self, estate: tuple[Estate, str]) -> None:
        fakes, old = estate

        status, body, headers = _post({"key": KEY.uri, "reason": "quarterly"})

        assert status == 202
        assert body["rotation_id"].startswith("rot-")
        assert body["status_url"].endswith(f"/api/rotations/{body['rotation_id']}")
        assert headers["location"] == body["status_url"]
        assert body["rotation"]["old_version"] == old
        state = fakes.journal.list(KEY.uri)[0]
        assert state.reason == "quarterly"
        assert state.trigger.caller == ANONYMOUS_CALLER

    def test_status_url_answers(self, estate: tuple[Estate, str]) -> None:
        _, body, _ = _post({"key": KEY.uri})

        status, rotation = _get(f"/api/rotations/{body['rotation_id']}")

        assert status == 200
        assert rotation["rotation_id"] == body["rotation_id"]
        assert [s["name"] for s in rotation["steps"]][:2] == ["plan", "new_version"]
        assert rotation["consumers"]

    def test_dry_run_changes_nothing(self, estate: tuple[Estate, str]) -> None:
        fakes, old = estate

        status, body, _ = _post({"key": KEY.uri, "dry_run": True})

        assert status == 202
        assert body["status"] == RotationStatus.DRY_RUN.value
        assert fakes.keys.latest(KEY).version == old

    def test_trusted_principal_headers_name_the_caller(self, estate: tuple[Estate, str]) -> None:
        fakes, _ = estate
        deps = fakes.deps()
        deps.settings = type(deps.settings)(**{**deps.settings.__dict__, "trust_client_principal_headers": True})
        bootstrap.override_dependencies(deps)

        _post({"key": KEY.uri}, {"X-MS-CLIENT-PRINCIPAL-NAME": "oncall@contoso.com", "X-MS-CLIENT-PRINCIPAL-ID": "42"})

        assert fakes.journal.list(KEY.uri)[0].trigger.caller == "oncall@contoso.com (42)"

    def test_principal_headers_ignored_unless_trusted(self, estate: tuple[Estate, str]) -> None:
        fakes, _ = estate

        _post({"key": KEY.uri}, {"X-MS-CLIENT-PRINCIPAL-NAME": "spoofed@contoso.com"})

        assert fakes.journal.list(KEY.uri)[0].trigger.caller == ANONYMOUS_CALLER


class TestRefusals:
    """Every bad input is a 4xx with the reason in the one error shape; nothing is started."""

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            (b"{not json", "not valid JSON"),
            ({}, "body.key: Field required"),
            ({"key": 42}, "body.key"),
            ({"key": KEY.uri, "dry_run": "yes"}, "body.dry_run"),
            ({"key": KEY.uri, "reason": "x" * 501}, "body.reason"),
            ({"key": KEY.uri, "extra": 1}, "body.extra"),
            ({"key": "https://kv-main.vault.azure.net/secrets/cmk"}, "not a Key Vault key URI"),
            ({"key": KEY.version_uri("abc123")}, "versionless"),
            ([KEY.uri], "must be a JSON object"),
        ],
    )
    def test_malformed_body_is_400(self, estate: tuple[Estate, str], body: Any, fragment: str) -> None:
        fakes, _ = estate

        status, reply, _ = _post(body)

        assert status == 400
        assert fragment in reply["error"]["message"]
        assert "Traceback" not in json.dumps(reply)
        assert fakes.journal.list() == []

    def test_body_without_json_content_type_is_explained(self, estate: tuple[Estate, str]) -> None:
        resp = http("POST", "/api/rotations", body=json.dumps({"key": KEY.uri}).encode(), headers={})

        assert resp.status_code == 400
        assert "Content-Type: application/json" in json.loads(resp.get_body())["error"]["message"]

    def test_unknown_key_is_404(self, estate: tuple[Estate, str]) -> None:
        status, reply, _ = _post({"key": "https://kv-main.vault.azure.net/keys/nobody"})

        assert status == 404
        assert reply["error"]["code"] == "UnknownKey"

    def test_rotation_in_progress_is_409_with_its_id(self, estate: tuple[Estate, str]) -> None:
        fakes, _ = estate
        queued = fakes.deps(inline=False)  # the first rotation stays running: nothing drives it
        bootstrap.override_dependencies(queued)
        _, first, _ = _post({"key": KEY.uri})

        status, reply, _ = _post({"key": KEY.uri})

        assert status == 409
        assert reply["error"]["code"] == "RotationInProgress"
        assert reply["error"]["rotation_id"] == first["rotation_id"]

    def test_unknown_rotation_is_404(self, estate: tuple[Estate, str]) -> None:
        status, reply = _get("/api/rotations/rot-20260101T000000Z-deadbeef")

        assert status == 404
        assert reply["error"]["code"] == "RotationNotFound"

    def test_malformed_rotation_id_is_400(self, estate: tuple[Estate, str]) -> None:
        status, _ = _get("/api/rotations/..%2F..%2Fetc")

        assert status in (400, 404)

    def test_throttled_service_is_503_with_retry_after(self, estate: tuple[Estate, str]) -> None:
        fakes, _ = estate

        bootstrap.override_dependencies(
            fakes.deps_with_lock_check_failing(ThrottledError("slow down", retry_after=7.2))
        )

        resp = http("POST", "/api/rotations", body=json.dumps({"key": KEY.uri}).encode(), headers=JSON)

        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "8"

    def test_unexpected_exception_is_500_without_trace(self, estate: tuple[Estate, str]) -> None:
        fakes, _ = estate

        bootstrap.override_dependencies(fakes.deps_with_lock_check_failing(ZeroDivisionError("secret internals")))

        with capture_logs() as logs:
            status, reply, headers = _post({"key": KEY.uri})

        assert logs[-1]["event"] == "api_unhandled_exception"
        assert status == 500
        assert reply["error"]["code"] == "InternalError"
        assert "secret internals" not in json.dumps(reply)
        assert reply["error"]["request_id"] == headers["x-request-id"]


class TestReads:
    """Listing rotations and planning a key."""

    def test_list_by_key(self, estate: tuple[Estate, str]) -> None:
        _post({"key": KEY.uri})

        status, body = _get("/api/rotations", {"key": KEY.uri})

        assert status == 200
        assert len(body["rotations"]) == 1

    def test_list_of_unmanaged_key_is_404(self, estate: tuple[Estate, str]) -> None:
        status, body = _get("/api/rotations", {"key": "https://kv-main.vault.azure.net/keys/nobody"})

        assert status == 404
        assert body["error"]["code"] == "UnknownKey"

    def test_limit_is_bounded(self, estate: tuple[Estate, str]) -> None:
        status, body = _get("/api/rotations", {"limit": "100000"})

        assert status == 400
        assert "limit" in body["error"]["message"]

    def test_plan(self, estate: tuple[Estate, str]) -> None:
        _, old = estate

        status, body = _get("/api/keys/plan", {"key": KEY.uri})

        assert status == 200
        assert body["key_uri"] == KEY.uri
        assert body["old_version"] == old
        assert len(body["consumers"]) == 5

    def test_plan_of_unmanaged_key_is_404(self, estate: tuple[Estate, str]) -> None:
        status, body = _get("/api/keys/plan", {"key": "https://kv-main.vault.azure.net/keys/nobody"})

        assert status == 404
        assert body["error"]["code"] == "UnknownKey"


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=50),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


class TestFuzzedBodies:
    """No request body makes the API answer 5xx or leak a stack trace."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        body=st.one_of(
            st.binary(max_size=200),
            st.fixed_dictionaries({}, optional={"key": _values, "reason": _values, "dry_run": _values}).map(
                lambda d: json.dumps(d).encode()
            ),
        )
    )
    def test_no_server_error(self, estate: tuple[Estate, str], body: bytes) -> None:
        fakes, _ = estate
        bootstrap.override_dependencies(fakes.deps(inline=False))

        resp = http("POST", "/api/rotations", body=body, headers=JSON)

        assert resp.status_code in (202, 400, 404, 409)
        assert "Traceback" not in resp.get_body().decode(errors="replace")
