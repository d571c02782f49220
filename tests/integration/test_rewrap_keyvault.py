"""Re-wrap end to end against the Key Vault emulator and Azurite, through the official SDK clients."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient, KeyVaultKey
from azure.storage.blob import ContainerClient

from emulators.keyvault.admin_client import KeyVaultAdmin
from emulators.keyvault.kek import VaultKek
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.domain.model import SURVEY_OTHER_KEYS, KeyRef
from rotation.rewrap.adapter import BlobDataKeys
from rotation.rewrap.throttle import AdaptiveLimiter
from rotation.settings import HostStorageSettings, Settings
from tests.integration.rewrap_helpers import decrypting_client, encrypted_client, location_of
from tests.integration.vaults import new_vault

PRINCIPAL = "rewrap-tests"


@dataclass
class Vault:
    """A fresh vault in the Key Vault emulator: its admin client and name, a key client acting as PRINCIPAL,
    and the CA bundle that trusts it."""

    admin: KeyVaultAdmin
    name: str
    keys: KeyClient
    ca: str

    def blobs_then_new_version(
        self,
        container: ContainerClient,
        payloads: Mapping[str, bytes],
        protocol_of: Callable[[str], str] = lambda _name: "2.0",
    ) -> tuple[KeyVaultKey, KeyVaultKey, KeyRef]:
        """A version of ``cmk`` wraps ``payloads`` (the SDK's client-side encryption, the protocol by blob
        name), then the next version is made: (old, new, the key)."""
        old = self.keys.create_rsa_key("cmk", size=2048)
        for name, data in payloads.items():
            writer = encrypted_client(container, VaultKek(str(old.id), self.ca, PRINCIPAL), protocol_of(name))
            writer.upload_blob(name, data)
        new = self.keys.create_rsa_key("cmk", size=2048)
        key, _ = KeyRef.parse(str(new.id))
        return old, new, key

    def reader_knowing_only(self, version: KeyVaultKey, container: ContainerClient) -> ContainerClient:
        """The container read through client-side decryption that resolves ``version`` and nothing else."""
        kek = VaultKek(str(version.id), self.ca, PRINCIPAL)
        return decrypting_client(container, lambda kid: kek if kid == kek.kid else None)


@pytest.fixture
def vault(local_azure: dict[str, Any]) -> Iterator[Vault]:
    admin, created, client = new_vault(local_azure, "rw", PRINCIPAL)
    yield Vault(admin, created["name"], client, local_azure["ca_bundle"])
    admin.clear_faults()
    client.close()


def data_keys(
    local_azure: dict[str, Any],
    key: KeyRef,
    container: ContainerClient,
    *,
    also_managed: tuple[KeyRef, ...] = (),
    **kwargs: Any,
) -> BlobDataKeys:
    """The inline re-wrap, scoped (managed keys, data locations) to ``key`` (and ``also_managed``) and
    ``container``."""
    settings = Settings(
        storage=HostStorageSettings(connection_string=local_azure["storage"]["connection_string"]),
        managed_keys=(key.uri, *(k.uri for k in also_managed)),
        data_locations=(location_of(container),),
        ca_bundle=local_azure["ca_bundle"],
        verify_challenge_resource=False,
        rewrap_concurrency=8,
    )
    return BlobDataKeys(
        settings,
        LocalDevelopmentCredential(PRINCIPAL),
        {"connection_verify": local_azure["ca_bundle"]},
        inline=True,
        **kwargs,
    )


@pytest.mark.filterwarnings("ignore:This client has been configured to use encryption with version 1.0")
class TestRewrapWithKeyVault:
    """Protocol 1.0 and 2.0 blobs written under the old version decrypt with only the new version after the
    re-wrap; each blob cost exactly one unwrapKey and no wrapKey; with the old version disabled every blob
    still reads."""

    def test_rewrap_then_disable_the_old_version(
        self,
        local_azure: dict[str, Any],
        vault: Vault,
        container: ContainerClient,
    ) -> None:
        payloads = {f"p{protocol}-{i}": os.urandom(3000 + i) for protocol in ("1.0", "2.0") for i in range(4)}
        old, new, key = vault.blobs_then_new_version(container, payloads, lambda name: name[1:4])
        vault.admin.reset_counters()
        adapter = data_keys(local_azure, key, container)

        adapter.begin_rewrap("rot-kv", key, str(new.properties.version), [location_of(container)])
        done, summary = adapter.rewrap_progress("rot-kv")
        counters = vault.admin.counters().get(vault.name, {})
        probe = VaultKek(str(old.id), vault.ca, PRINCIPAL).wrap_key(os.urandom(32))
        vault.keys.update_key_properties("cmk", str(old.properties.version), enabled=False)

        assert done is True
        assert summary.rewrapped == 8
        assert counters.get("unwrapKey") == 8
        assert counters.get("wrapKey", 0) == 0
        assert counters.get("getKey") == 2  # the new version's public key, and the old version's client once
        reader = vault.reader_knowing_only(new, container)
        for name, data in payloads.items():
            assert reader.download_blob(name).readall() == data
        with pytest.raises(HttpResponseError):  # the old version really is disabled
            VaultKek(str(old.id), vault.ca, PRINCIPAL).unwrap_key(probe, "RSA-OAEP-256")
        adapter.close()


class TestSharedLocation:
    """Two managed keys wrap blobs in one container: the re-wrap of ``cmk`` re-wraps its blobs, leaves the
    other key's untouched and counts them (not failures, no unwrap), and still reports every blob whose
    metadata is broken or names ``cmk`` without a usable version."""

    def test_other_keys_blobs_are_counted_and_broken_ones_reported(
        self, local_azure: dict[str, Any], vault: Vault, container: ContainerClient
    ) -> None:
        mine = {f"mine-{i}": os.urandom(2000 + i) for i in range(3)}
        old, new, key = vault.blobs_then_new_version(container, mine)
        theirs_version = vault.keys.create_rsa_key("theirs", size=2048)
        theirs = {f"theirs-{i}": os.urandom(1000 + i) for i in range(2)}
        writer = encrypted_client(container, VaultKek(str(theirs_version.id), vault.ca, PRINCIPAL), "2.0")
        for name, data in theirs.items():
            writer.upload_blob(name, data)
        # Forged from a healthy blob of the key: a version Key Vault never made, no version, metadata not JSON.
        healthy = json.loads(container.get_blob_client("mine-0").get_blob_properties().metadata["encryptiondata"])
        unknown = uuid.uuid4().hex
        for name, kid in (("unknown-version", key.version_uri(unknown)), ("versionless", key.uri)):
            forged = {**healthy, "WrappedContentKey": {**healthy["WrappedContentKey"], "KeyId": kid}}
            container.upload_blob(name, b"x", metadata={"encryptiondata": json.dumps(forged)})
        container.upload_blob("malformed", b"x", metadata={"encryptiondata": "{not json"})
        untouched = {n: container.get_blob_client(n).get_blob_properties().etag for n in theirs}
        theirs_key, _ = KeyRef.parse(str(theirs_version.id))
        adapter = data_keys(local_azure, key, container, also_managed=(theirs_key,))
        vault.admin.reset_counters()

        adapter.begin_rewrap("rot-shared", key, str(new.properties.version), [location_of(container)])
        done, summary = adapter.rewrap_progress("rot-shared")
        unwraps = vault.admin.counters().get(vault.name, {}).get("unwrapKey")
        survey = adapter.survey(key, [location_of(container)])
        adapter.close()

        assert done is True
        assert (summary.rewrapped, summary.other_keys) == (3, 2)
        reasons = {f.blob: f.reason for f in summary.failed}
        assert sorted(reasons) == ["malformed", "unknown-version", "versionless"]
        assert reasons["unknown-version"].startswith("unwrap failed")
        assert "no key version" in reasons["versionless"]
        assert unwraps == 4  # cmk's three blobs and the refused unknown version; never the other key's blobs
        assert {n: container.get_blob_client(n).get_blob_properties().etag for n in theirs} == untouched
        theirs_reader = decrypting_client(
            container, lambda kid: VaultKek(kid, vault.ca, PRINCIPAL) if kid == str(theirs_version.id) else None
        )
        assert {n: theirs_reader.download_blob(n).readall() for n in theirs} == theirs
        mine_reader = vault.reader_knowing_only(new, container)
        assert {n: mine_reader.download_blob(n).readall() for n in mine} == mine
        assert survey == {str(new.properties.version): 3, unknown: 1, "": 2, SURVEY_OTHER_KEYS: 2}
        assert str(old.properties.version) not in survey


class TestThrottledVault:
    """Key Vault 429s (with Retry-After) slow the re-wrap down but lose no blob: every blob ends re-wrapped
    and the limiter recorded the throttling."""

    def test_throttling_is_absorbed(
        self,
        local_azure: dict[str, Any],
        vault: Vault,
        container: ContainerClient,
    ) -> None:
        _, new, key = vault.blobs_then_new_version(container, {f"t{i:02d}": b"t%d" % i for i in range(30)})
        vault.admin.set_faults(
            {"rate": 0.3, "kind": "status", "status": 429, "retry_after": 0, "operations": ["unwrapKey"], "count": 12}
        )
        limiter = AdaptiveLimiter(8)
        adapter = data_keys(local_azure, key, container, limiter=limiter)

        adapter.begin_rewrap("rot-429", key, str(new.properties.version), [location_of(container)])
        done, summary = adapter.rewrap_progress("rot-429")

        assert done is True
        assert summary.rewrapped == 30
        assert summary.failed == ()
        assert limiter.stats().throttled > 0
        assert vault.admin.counters()[vault.name].get("unwrapKey") == 30
        adapter.close()


class TestQueueTrigger:
    """The ``rewrap_worker`` queue trigger, invoked as the Functions host would with each queued message,
    walks the listing page by page (each page hands on the next) until the rotation's re-wrap is done."""

    def test_worker_function_drives_the_queue(
        self,
        local_azure: dict[str, Any],
        vault: Vault,
        container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import azure.functions as func

        from rotation import bootstrap
        from rotation.rewrap.queue import storage_queue
        from rotation.settings import load_settings
        from tests.functions_host import invoke

        ca = vault.ca
        _, new, key = vault.blobs_then_new_version(container, {f"w{i}": b"w%d" % i for i in range(7)})
        queue_name = f"rewrap-{uuid.uuid4().hex[:8]}"
        env = {
            "AzureWebJobsStorage": local_azure["storage"]["connection_string"],
            "ROTATION_LOCAL_PRINCIPAL": PRINCIPAL,
            "ROTATION_CA_BUNDLE": ca,
            "ROTATION_VERIFY_CHALLENGE_RESOURCE": "false",
            "ROTATION_ARM_ENDPOINT": "https://127.0.0.1:9",
            "ROTATION_REWRAP_QUEUE": queue_name,
            "ROTATION_MANAGED_KEYS": key.uri,
            "ROTATION_DATA_LOCATIONS": container.url,
            "ROTATION_LOG_FORMAT": "console",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        starter = BlobDataKeys(settings, LocalDevelopmentCredential(PRINCIPAL), {"connection_verify": ca}, inline=False)
        starter.page_size = 3
        starter.begin_rewrap("rot-trigger", key, str(new.properties.version), [location_of(container)])
        queue = storage_queue(str(settings.storage.connection_string), queue_name)
        bootstrap.reset_rewrap_data_keys()
        invocations = 0

        while messages := list(queue.receive_messages(max_messages=1)):
            for message in messages:
                bootstrap.rewrap_data_keys().page_size = 3
                invoke("rewrap_worker", func.QueueMessage(id=message.id, body=message.content.encode()))
                queue.delete_message(message)
                invocations += 1
        done, summary = starter.rewrap_progress("rot-trigger")
        bootstrap.reset_rewrap_data_keys()

        assert invocations == 3
        assert done is True
        assert summary.rewrapped == 7
        reader = vault.reader_knowing_only(new, container)
        assert [reader.download_blob(f"w{i}").readall() for i in range(7)] == [b"w%d" % i for i in range(7)]
        starter.close()
