"""Finding 4: the emulator escape hatches are refused unless every endpoint is loopback, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotation.errors import SettingsError
from rotation.settings import load_settings

pytestmark = pytest.mark.unit

LOCAL = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "ROTATION_ARM_ENDPOINT": "https://127.0.0.1:9443",
    "ROTATION_MANAGED_KEYS": "https://127.0.0.1:8443/keys/cmk",
}
REMOTE_ENDPOINTS = {
    "ROTATION_ARM_ENDPOINT": "https://management.azure.com",
    "ROTATION_MANAGED_KEYS": "https://kv.vault.azure.net/keys/cmk",
    "ROTATION_ALLOWED_VAULTS": "https://kv.vault.azure.net",
    "ROTATION_DATA_LOCATIONS": "https://acct.blob.core.windows.net/data",
    "ROTATION_AUDIT_SIGNING_KEY": "https://kv.vault.azure.net/keys/audit",
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5",
}


@pytest.fixture
def ca_bundle(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return str(path)


def hatch(name: str, ca_bundle: str) -> dict[str, str]:
    return {
        "ROTATION_VERIFY_CHALLENGE_RESOURCE": {"ROTATION_VERIFY_CHALLENGE_RESOURCE": "false"},
        "ROTATION_CA_BUNDLE": {"ROTATION_CA_BUNDLE": ca_bundle},
        "ROTATION_LOCAL_PRINCIPAL": {"ROTATION_LOCAL_PRINCIPAL": "rotator"},
    }[name]


HATCHES = ("ROTATION_VERIFY_CHALLENGE_RESOURCE", "ROTATION_CA_BUNDLE", "ROTATION_LOCAL_PRINCIPAL")


class TestLocalOnlySettingsRefusedAgainstAzure:
    """Each local-only setting, with one endpoint that is not loopback, is refused with an error naming it."""

    @pytest.mark.parametrize("setting", HATCHES)
    @pytest.mark.parametrize("endpoint", sorted(REMOTE_ENDPOINTS))
    def test_one_remote_endpoint_refuses_the_setting(self, setting: str, endpoint: str, ca_bundle: str) -> None:
        env = LOCAL | hatch(setting, ca_bundle) | {endpoint: REMOTE_ENDPOINTS[endpoint]}

        with pytest.raises(SettingsError) as caught:
            load_settings(env)

        assert caught.value.setting == setting
        assert "loopback" in str(caught.value)

    @pytest.mark.parametrize("setting", HATCHES)
    def test_identity_based_storage_in_azure_refuses_the_setting(self, setting: str, ca_bundle: str) -> None:
        env = {k: v for k, v in LOCAL.items() if k != "AzureWebJobsStorage"}
        env |= {"AzureWebJobsStorage__accountName": "stcmkrot01"} | hatch(setting, ca_bundle)

        with pytest.raises(SettingsError) as caught:
            load_settings(env)

        assert caught.value.setting == setting


class TestLocalOnlySettingsAllowedOnLoopback:
    """With every endpoint on loopback (the emulators) all three settings load."""

    def test_all_three_on_loopback(self, ca_bundle: str) -> None:
        env = LOCAL | {
            "ROTATION_VERIFY_CHALLENGE_RESOURCE": "false",
            "ROTATION_CA_BUNDLE": ca_bundle,
            "ROTATION_LOCAL_PRINCIPAL": "rotator",
            "ROTATION_DATA_LOCATIONS": "http://127.0.0.1:10000/devstoreaccount1/enc",
        }

        settings = load_settings(env)

        assert (settings.verify_challenge_resource, settings.ca_bundle, settings.local_principal) == (
            False,
            ca_bundle,
            "rotator",
        )
