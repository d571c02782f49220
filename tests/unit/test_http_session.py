"""``DirectSession`` under azure-core's own ``RequestsTransport``: same requests on the wire, same errors."""

from __future__ import annotations

import http.server
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

from rotation.adapters.http_session import DirectSession, direct_session_kwargs
from tests.local_http import serving


class _Echo(http.server.BaseHTTPRequestHandler):
    """Records each request; answers with 12,000 bytes (after 2 s for ``/slow``) and sets a cookie."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            {"line": self.requestline, "headers": dict(self.headers), "body": body, "port": self.client_address[1]}
        )
        if self.path.startswith("/slow"):
            time.sleep(2)
        payload = b"0123456789ab" * 1000
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Set-Cookie", "tracking=1")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = _answer  # noqa: N815 - http.server's handler names

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with serving(type("Handler", (_Echo,), {"seen": seen})) as url:
        yield url, seen


def _client(url: str, **transport: Any) -> PipelineClient[Any, Any]:
    return PipelineClient(url, transport=RequestsTransport(session=DirectSession(4), **transport))


class TestDirectSessionOnTheWire:
    def test_method_query_headers_and_body_arrive_as_sent(self, server: tuple[str, list[dict[str, Any]]]) -> None:
        url, seen = server
        with _client(url) as client:
            request = HttpRequest(
                "PUT", f"{url}/c/blob", params={"comp": "metadata"}, headers={"x-ms-meta-a": "1"}, content=b"abc"
            )
            response = client.send_request(request)

        assert response.status_code == 200
        assert response.content == b"0123456789ab" * 1000
        assert seen[0]["line"] == "PUT /c/blob?comp=metadata HTTP/1.1"
        assert seen[0]["headers"]["x-ms-meta-a"] == "1"
        assert seen[0]["body"] == b"abc"

    def test_connections_are_reused(self, server: tuple[str, list[dict[str, Any]]]) -> None:
        url, seen = server
        session = DirectSession(2)
        with PipelineClient(url, transport=RequestsTransport(session=session, session_owner=False)) as client:
            for _ in range(5):
                assert client.send_request(HttpRequest("GET", f"{url}/x")).status_code == 200
        session.close()

        assert len(seen) == 5
        assert len({request["port"] for request in seen}) == 1  # one keep-alive connection

    def test_cookies_are_neither_kept_nor_sent(self, server: tuple[str, list[dict[str, Any]]]) -> None:
        url, seen = server
        session = DirectSession()
        with PipelineClient(url, transport=RequestsTransport(session=session, session_owner=False)) as client:
            client.send_request(HttpRequest("GET", f"{url}/a"))
            client.send_request(HttpRequest("GET", f"{url}/b"))

        assert "Cookie" not in seen[1]["headers"]
        assert len(session.cookies) == 0
        session.close()

    def test_streamed_bodies_are_read_on_demand(self, server: tuple[str, list[dict[str, Any]]]) -> None:
        url, _ = server
        with _client(url) as client:
            response = client.send_request(HttpRequest("GET", f"{url}/big"), stream=True)
            body = b"".join(response.iter_bytes())

        assert len(body) == 12_000

    def test_environment_proxies_are_ignored(
        self, server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url, seen = server
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        with _client(url) as client:
            assert client.send_request(HttpRequest("GET", f"{url}/direct")).status_code == 200
        assert seen[0]["line"] == "GET /direct HTTP/1.1"


class TestDirectSessionErrors:
    """azure-core maps the session's failures to the same error types as with a plain session."""

    def test_refused_connection_is_a_service_request_error(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with _client(f"http://127.0.0.1:{port}") as client, pytest.raises(ServiceRequestError):
            client.send_request(HttpRequest("GET", f"http://127.0.0.1:{port}/"))

    def test_read_timeout_is_a_service_response_error(self, server: tuple[str, list[dict[str, Any]]]) -> None:
        url, _ = server
        with _client(url, read_timeout=0.3) as client, pytest.raises(ServiceResponseError):
            client.send_request(HttpRequest("GET", f"{url}/slow"))

    @pytest.mark.parametrize("extra", [{"cookies": {"a": "b"}}, {"auth": ("u", "p")}, {"allow_redirects": True}])
    def test_features_it_does_not_carry_are_refused(self, extra: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="without cookies, auth, hooks or redirects"):
            DirectSession().request("GET", "http://127.0.0.1:9/", **extra)


class TestDirectSessionKwargs:
    def test_added_when_the_environment_is_not_used(self) -> None:
        kwargs = direct_session_kwargs({"use_env_settings": False, "connection_verify": "/ca.pem"}, 12)

        assert isinstance(kwargs["session"], DirectSession)
        assert kwargs["session"].get_adapter("https://x")._pool_maxsize == 12
        assert kwargs["connection_verify"] == "/ca.pem"

    def test_each_call_gets_its_own_session(self) -> None:
        base = {"use_env_settings": False}

        assert direct_session_kwargs(base, 4)["session"] is not direct_session_kwargs(base, 4)["session"]
        assert "session" not in base

    @pytest.mark.parametrize(
        "given",
        [{}, {"connection_verify": "/ca.pem"}, {"use_env_settings": False, "transport": object()}],
    )
    def test_left_alone_with_a_proxy_or_an_explicit_transport(self, given: dict[str, Any]) -> None:
        assert direct_session_kwargs(given, 4) == given
