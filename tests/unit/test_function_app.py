"""The Function app indexes, builds no client at import, and its health route answers."""

from __future__ import annotations

import json
import subprocess
import sys

import azure.functions as func

from tests.functions_host import functions, http


class TestIndexing:
    """The app indexes as the Functions host would, without building SDK clients."""

    def test_http_function_is_function_level(self) -> None:
        trigger = functions()["http_app_func"].get_trigger()

        assert trigger.auth_level == func.AuthLevel.FUNCTION

    def test_import_builds_no_sdk_client(self) -> None:
        code = (
            "import sys, function_app; "
            "loaded = [m for m in sys.modules if m.startswith(('azure.keyvault', 'azure.mgmt', 'azure.storage',"
            " 'azure.data', 'azure.identity'))]; print(loaded)"
        )

        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

        assert out.strip() == "[]"


class TestHealthRoute:
    """GET /api/health reports the version and whether AzureWebJobsStorage is reachable."""

    def test_unreachable_storage_is_unhealthy(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        monkeypatch.setenv(
            "AzureWebJobsStorage",
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;",
        )

        resp = http("GET", "/api/health")

        assert resp.status_code == 503
        body = json.loads(resp.get_body())
        assert body["storage"] == "unreachable"
        assert body["version"]

    def test_missing_setting_is_named(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        monkeypatch.delenv("AzureWebJobsStorage", raising=False)

        resp = http("GET", "/api/health")

        assert resp.status_code == 503
        assert "AzureWebJobsStorage" in json.loads(resp.get_body())["problem"]
