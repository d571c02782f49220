"""Finding 5: event key names, the local server's Host check, RSA1_5 / SHA-1 OAEP, and 400 bodies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulators.localazure import free_port
from rotation import bootstrap
from rotation.domain.events import EventScope, KeyVaultEvent, parse_event
from rotation.domain.model import KeyRef
from rotation.errors import SettingsError
from rotation.rewrap.metadata import parse_wrapped_key
from rotation.rewrap.scan import ListedBlob, Status, classify
from rotation.settings import load_settings
from tests.fakes.estate import Estate, standard_estate
from tests.functions_host import http
from tests.unit.eventgrid_payloads import KEY_URI, VAULT_URL, key_event

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


class TestEventKeyNamesAreCaseInsensitive:
    """An event for ``CMK`` acts on the configured ``cmk`` (Key Vault key names are case-insensitive)."""

    @pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
    def test_event_with_other_case_is_acted_on_as_the_configured_key(self, schema: str) -> None:
        scope = EventScope.from_settings([KEY_URI], [])
        event = key_event("KeyNearExpiry", schema=schema, name=KEY_URI.rsplit("/", 1)[1].upper())

        parsed = parse_event(event, scope)

        assert isinstance(parsed, KeyVaultEvent)
        assert parsed.key == KeyRef(VAULT_URL, KEY_URI.rsplit("/", 1)[1])

    def test_another_key_is_still_ignored(self) -> None:
        scope = EventScope.from_settings([KEY_URI], [])

        parsed = parse_event(key_event("KeyNearExpiry", name="other-key"), scope)

        assert not isinstance(parsed, KeyVaultEvent)


class TestWrapAlgorithms:
    """Settings refuse RSA1_5 and SHA-1 OAEP for new wraps; blob metadata cannot choose RSA1_5 for unwrap,
    while RSA-OAEP (what earlier client libraries wrote) is still read."""

    @pytest.mark.parametrize("algorithm", ["RSA1_5", "RSA-OAEP"])
    def test_weak_wrap_algorithms_are_refused(self, algorithm: str) -> None:
        with pytest.raises(SettingsError) as caught:
            load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ROTATION_WRAP_ALGORITHM": algorithm})

        assert caught.value.setting == "ROTATION_WRAP_ALGORITHM"

    @pytest.mark.parametrize(("algorithm", "status"), [("RSA1_5", Status.FAILED), ("RSA-OAEP", Status.OLD)])
    def test_metadata_choice_of_unwrap_algorithm(self, algorithm: str, status: Status) -> None:
        key = KeyRef("https://kv.vault.azure.net", "cmk")
        document = {  # the shape azure-storage-blob 12.31.1 writes for protocol 2.0
            "WrappedContentKey": {"KeyId": key.version_uri("0" * 32), "EncryptedKey": "AAAA", "Algorithm": algorithm},
            "EncryptionAgent": {"Protocol": "2.0", "EncryptionAlgorithm": "AES_GCM_256"},
            "EncryptedRegionInfo": {"DataLength": 4194304, "NonceLength": 12},
            "KeyWrappingMetadata": {"EncryptionLibrary": "Python 12.31.1"},
            "EncryptionMode": "FullBlob",
        }
        blob = ListedBlob("b", '"etag"', {"encryptiondata": json.dumps(document)})
        assert parse_wrapped_key(blob.metadata) is not None

        verdict = classify(blob, key, "f" * 32)

        assert verdict.status is status
        if status is Status.FAILED:
            assert "RSA1_5" in verdict.reason


@pytest.fixture
def estate() -> Iterator[tuple[Estate, str]]:
    arranged = standard_estate()
    bootstrap.override_dependencies(arranged[0].deps())
    yield arranged
    bootstrap.override_dependencies(None)


class TestErrorBodiesDoNotEchoInput:
    """A 400 carries at most a short, escaped excerpt of what the caller sent."""

    @pytest.mark.parametrize(
        "path",
        [
            "/api/keys/plan?key=https%3A%2F%2Fkv.vault.azure.net%2Fnot-keys%2F{junk}",
            "/api/rotations?key=https%3A%2F%2Fkv.vault.azure.net%2Fkeys%2F{junk}",
        ],
    )
    def test_long_key_is_not_echoed(self, estate: tuple[Estate, str], path: str) -> None:
        junk = "A" * 1500 + "%3Cscript%3E"

        resp = http("GET", path.format(junk=junk))

        body = resp.get_body().decode()
        assert resp.status_code == 400
        assert len(json.loads(body)["error"]["message"]) <= 300
        assert "A" * 100 not in body
        assert "<script>" not in body

    def test_post_body_key_is_not_echoed(self, estate: tuple[Estate, str]) -> None:
        key = "https://kv.vault.azure.net/keys/" + "B" * 1900 + "\u0007"

        resp = http("POST", "/api/rotations", body=json.dumps({"key": key}).encode(),
                    headers={"content-type": "application/json"})  # fmt: skip

        body = resp.get_body().decode()
        assert resp.status_code == 400
        assert "B" * 100 not in body
        assert "\\u0007" not in body
        assert "\u0007" not in body


@pytest.fixture(scope="module")
def local_server() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true", "ROTATION_LOG_FORMAT": "console"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotation.api", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/nothing-here", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the local server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.integration
class TestLocalServerHostCheck:
    """``python -m rotation.api`` refuses requests whose Host is not a loopback name (DNS rebinding)."""

    @pytest.mark.parametrize("host", ["evil.example", "evil.example:7071", "127.0.0.1.nip.io", ""])
    def test_foreign_host_is_refused(self, local_server: str, host: str) -> None:
        resp = httpx.get(local_server + "/api/rotations", headers={"Host": host})

        assert resp.status_code == 421
        assert resp.json()["error"]["code"] == "MisdirectedRequest"

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost:7071", "[::1]:7071"])
    def test_loopback_names_pass(self, local_server: str, host: str) -> None:
        resp = httpx.get(local_server + "/nothing-here", headers={"Host": host})

        assert resp.status_code == 404
