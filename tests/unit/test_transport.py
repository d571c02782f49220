"""Transport settings every SDK client gets: the CA bundle, and environment lookups only when configured."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from rotation.bootstrap import transport_kwargs
from tests.local_http import serving


class _RecordingProxy(http.server.BaseHTTPRequestHandler):
    """Answers every request with 503 and records its request line (an HTTP proxy sees absolute URIs)."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.requestline)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    with serving(type("Handler", (_RecordingProxy,), {"seen": seen})) as url:
        yield url, seen


def _list_containers(kwargs: dict[str, Any]) -> None:
    client = BlobServiceClient("http://account.blob.invalid", retry_total=0, connection_timeout=2, **kwargs)
    try:
        next(iter(client.list_containers()), None)
    except AzureError:
        pass  # the proxy answers 503; with no proxy the name does not resolve
    finally:
        client.close()


class TestTransportKwargs:
    def test_no_proxy_settings_turn_environment_lookups_off(self) -> None:
        assert transport_kwargs(None, environ={"PATH": "/bin"}) == {"use_env_settings": False}

    def test_ca_bundle_is_passed(self) -> None:
        assert transport_kwargs("/tmp/ca.pem", environ={}) == {
            "use_env_settings": False,
            "connection_verify": "/tmp/ca.pem",
        }

    @pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "NO_PROXY", "all_proxy"])
    def test_proxy_variables_keep_environment_lookups(self, name: str) -> None:
        assert transport_kwargs(None, environ={name: "http://proxy.example:3128"}) == {}
        assert transport_kwargs("/ca.pem", environ={name: "x"}) == {"connection_verify": "/ca.pem"}

    def test_a_ca_bundle_from_the_environment_is_passed_explicitly(self) -> None:
        environ = {"REQUESTS_CA_BUNDLE": "/etc/ssl/a.pem", "CURL_CA_BUNDLE": "/etc/ssl/b.pem"}

        assert transport_kwargs(None, environ=environ) == {
            "use_env_settings": False,
            "connection_verify": "/etc/ssl/a.pem",
        }
        assert transport_kwargs(None, environ={"CURL_CA_BUNDLE": "/b.pem"})["connection_verify"] == "/b.pem"
        assert transport_kwargs("/local-ca.pem", environ=environ)["connection_verify"] == "/local-ca.pem"

    def test_an_empty_proxy_variable_counts_as_unset(self) -> None:
        assert transport_kwargs(None, environ={"HTTPS_PROXY": ""}) == {"use_env_settings": False}

    def test_a_configured_proxy_is_used_by_sdk_clients(
        self, proxy: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url, seen = proxy
        monkeypatch.setenv("HTTP_PROXY", url)

        _list_containers(transport_kwargs(None))

        assert seen
        assert seen[0].startswith("GET http://account.blob.invalid/?comp=list")

    def test_without_proxy_settings_clients_ignore_the_environment(
        self, proxy: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url, seen = proxy
        kwargs = transport_kwargs(None, environ={})  # read while no proxy is configured
        monkeypatch.setenv("HTTP_PROXY", url)  # set afterwards: the client must not look

        _list_containers(kwargs)

        assert seen == []
