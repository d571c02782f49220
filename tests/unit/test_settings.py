"""Settings are validated at start; every bad value names its setting and the expected form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rotation.errors import SettingsError
from rotation.settings import FUNCTION_TIMEOUT_SECONDS, DataLocation, load_settings

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


class TestValidSettings:
    """Well-formed settings load into typed values with documented defaults."""

    def test_defaults(self) -> None:
        settings = load_settings(BASE)

        assert settings.managed_keys == ()
        assert settings.retire_grace_hours == 24.0
        assert settings.near_expiry_days == 30.0
        assert settings.arm_endpoint == "https://management.azure.com"
        assert settings.wrap_algorithm is None  # re-wrapped blobs keep their own algorithm

    def test_lists_and_numbers(self) -> None:
        env = BASE | {
            "ROTATION_MANAGED_KEYS": "https://kv1.vault.azure.net/keys/cmk-a/, https://kv2.vault.azure.net/keys/cmk-b",
            "ROTATION_SUBSCRIPTIONS": "11111111-2222-3333-4444-555555555555",
            "ROTATION_DATA_LOCATIONS": "https://acct.blob.core.windows.net/data/train;http://127.0.0.1:10000/devstoreaccount1/enc",
            "ROTATION_RETIRE_GRACE_HOURS": "48",
            "ROTATION_REWRAP_CONCURRENCY": "8",
        }

        settings = load_settings(env)

        assert settings.managed_keys == (
            "https://kv1.vault.azure.net/keys/cmk-a",
            "https://kv2.vault.azure.net/keys/cmk-b",
        )
        assert settings.data_locations == (
            DataLocation("https://acct.blob.core.windows.net", "data", "train"),
            DataLocation("http://127.0.0.1:10000/devstoreaccount1", "enc", ""),
        )
        assert settings.retire_grace_hours == 48.0
        assert settings.rewrap_concurrency == 8

    def test_repr_hides_connection_string(self) -> None:
        settings = load_settings({"AzureWebJobsStorage": "AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=x"})

        assert "c2VjcmV0" not in repr(settings)
        assert settings.storage.connection_string is not None


class TestInvocationBudget:
    """The budget of one invocation stays under host.json's functionTimeout, with room to pause cleanly."""

    def test_the_default_leaves_a_margin_under_function_timeout(self) -> None:
        host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
        hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
        timeout = hours * 3600 + minutes * 60 + seconds

        budget = load_settings(BASE).invocation_budget_seconds

        assert timeout == FUNCTION_TIMEOUT_SECONDS
        assert budget <= timeout - 300  # five minutes for the journal writes, the re-enqueue and a slow poll
        assert budget >= timeout / 2  # and most of the invocation for the work

    def test_a_budget_is_read_in_seconds(self) -> None:
        assert load_settings(BASE | {"ROTATION_INVOCATION_BUDGET_SECONDS": "90"}).invocation_budget_seconds == 90.0


class TestInvalidSettings:
    """Each malformed or missing value raises SettingsError naming the setting."""

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("AzureWebJobsStorage", ""),
            ("AzureWebJobsStorage", "not a connection string"),
            ("ROTATION_MANAGED_KEYS", "http://kv.vault.azure.net/keys/a"),
            ("ROTATION_MANAGED_KEYS", "https://kv.vault.azure.net/keys/a/0123456789abcdef"),
            ("ROTATION_MANAGED_KEYS", "https://kv.vault.azure.net/secrets/a"),
            ("ROTATION_MANAGED_KEYS", "https://kv.vault.azure.net/keys/a_b"),
            ("ROTATION_MANAGED_KEYS", "https://kv.vault.azure.net/keys/a,https://kv.vault.azure.net/keys/A"),
            ("ROTATION_SUBSCRIPTIONS", "not-a-guid"),
            ("ROTATION_DATA_LOCATIONS", "https://acct.blob.core.windows.net"),
            ("ROTATION_DATA_LOCATIONS", "http://example.com/acct/container"),
            ("ROTATION_DATA_LOCATIONS", "https://acct.blob.core.windows.net/ab"),
            ("ROTATION_ALLOWED_VAULTS", "kv.vault.azure.net"),
            ("ROTATION_ARM_ENDPOINT", "http://management.azure.com"),
            ("ROTATION_RETIRE_GRACE_HOURS", "soon"),
            ("ROTATION_RETIRE_GRACE_HOURS", "-1"),
            ("ROTATION_NEAR_EXPIRY_DAYS", "nan"),
            ("ROTATION_WRAP_ALGORITHM", "A256KW"),
            ("ROTATION_JOURNAL_TABLE", "has-dash"),
            ("ROTATION_AUDIT_TABLE", "ab"),
            ("ROTATION_SWEEP_TABLE", "9starts-with-a-digit"),
            ("ROTATION_REWRAP_QUEUE", "Upper"),
            ("ROTATION_AUDIT_SIGNING_KEY", "https://kv.vault.azure.net/keys"),
            ("ROTATION_TRUST_CLIENT_PRINCIPAL_HEADERS", "maybe"),
            ("ROTATION_LOG_FORMAT", "xml"),
            ("ROTATION_LOG_LEVEL", "LOUD"),
            ("ROTATION_CA_BUNDLE", "/nonexistent/ca.pem"),
            ("ROTATION_VERIFY_CHALLENGE_RESOURCE", "2"),
            ("ROTATION_REWRAP_CONCURRENCY", "1.5"),
            ("ROTATION_REWRAP_CONCURRENCY", "1000"),
            ("ROTATION_INVOCATION_BUDGET_SECONDS", "0"),
            ("ROTATION_INVOCATION_BUDGET_SECONDS", "1800"),
            ("ROTATION_INVOCATION_BUDGET_SECONDS", "half an hour"),
        ],
    )
    def test_names_the_setting(self, name: str, value: str) -> None:
        env = BASE | {name: value}

        with pytest.raises(SettingsError) as caught:
            load_settings(env)

        assert caught.value.setting == name
        assert str(caught.value).startswith(f"setting {name}: ")
        assert "expected" in str(caught.value)

    def test_missing_storage_is_named(self) -> None:
        with pytest.raises(SettingsError, match="setting AzureWebJobsStorage: is missing"):
            load_settings({})

    def test_local_principal_refused_against_real_azure(self) -> None:
        env = BASE | {
            "ROTATION_LOCAL_PRINCIPAL": "00000000-0000-0000-0000-00000000beef",
            "ROTATION_MANAGED_KEYS": "https://kv.vault.azure.net/keys/a",
        }

        with pytest.raises(SettingsError) as caught:
            load_settings(env)

        assert caught.value.setting == "ROTATION_LOCAL_PRINCIPAL"

    def test_local_principal_allowed_on_loopback(self) -> None:
        env = BASE | {
            "ROTATION_LOCAL_PRINCIPAL": "rotator",
            "ROTATION_MANAGED_KEYS": "https://127.0.0.1:8443/keys/a",
            "ROTATION_ARM_ENDPOINT": "https://127.0.0.1:9443",
        }

        assert load_settings(env).local_principal == "rotator"


class TestIdentityBasedStorage:
    """AzureWebJobsStorage__* (the deployment's identity-based form, shared keys off) is accepted."""

    def test_account_name_gives_the_three_service_uris(self) -> None:
        settings = load_settings({"AzureWebJobsStorage__accountName": "stcmkrot01"})

        assert settings.storage.identity_based
        assert settings.storage.connection_string is None
        assert settings.storage.blob_uri == "https://stcmkrot01.blob.core.windows.net"
        assert settings.storage.queue_uri == "https://stcmkrot01.queue.core.windows.net"
        assert settings.storage.table_uri == "https://stcmkrot01.table.core.windows.net"

    def test_explicit_service_uris_and_client_id(self) -> None:
        env = {
            "AzureWebJobsStorage__blobServiceUri": "https://a.blob.core.usgovcloudapi.net/",
            "AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.usgovcloudapi.net",
            "AzureWebJobsStorage__tableServiceUri": "https://a.table.core.usgovcloudapi.net",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
        }

        settings = load_settings(env)

        assert settings.storage.blob_uri == "https://a.blob.core.usgovcloudapi.net"
        assert settings.storage.client_id == "11111111-2222-3333-4444-555555555555"

    @pytest.mark.parametrize(
        ("env", "named"),
        [
            ({"AzureWebJobsStorage__accountName": "Not_A_Name"}, "AzureWebJobsStorage__accountName"),
            (
                {"AzureWebJobsStorage__blobServiceUri": "https://a.blob.core.windows.net"},
                "AzureWebJobsStorage__queueServiceUri",
            ),
            (
                {"AzureWebJobsStorage__accountName": "abc", "AzureWebJobsStorage__tableServiceUri": "http://x"},
                "AzureWebJobsStorage__tableServiceUri",
            ),
            (
                {"AzureWebJobsStorage__accountName": "abc", "AzureWebJobsStorage__credential": "secret"},
                "AzureWebJobsStorage__credential",
            ),
        ],
    )
    def test_bad_identity_settings_are_named(self, env: dict[str, str], named: str) -> None:
        with pytest.raises(SettingsError) as caught:
            load_settings(env)

        assert caught.value.setting == named

    def test_host_storage_builds_token_clients(self) -> None:
        from azure.core.credentials import AccessToken

        from rotation.adapters.host_storage import HostStorage

        class _Credential:
            def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
                return AccessToken("t", 0)

        settings = load_settings({"AzureWebJobsStorage__accountName": "stcmkrot01"})

        storage = HostStorage.from_settings(settings.storage, _Credential())  # type: ignore[arg-type]

        assert storage.table_client("rotationjournal").url.startswith("https://stcmkrot01.table.core.windows.net")
        assert storage.queue_client("rotation-run").url == "https://stcmkrot01.queue.core.windows.net/rotation-run"
        assert (
            storage.container_client("rotation-audit").url == "https://stcmkrot01.blob.core.windows.net/rotation-audit"
        )
        with pytest.raises(ValueError, match="needs a credential"):
            HostStorage.from_settings(settings.storage, None)
