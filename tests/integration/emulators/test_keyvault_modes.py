"""The Key Vault emulator's modes: behaviours whose Azure answer is not verified, selectable per vault.

``disabled_version_get``: ``allowed`` (the default) serves a disabled version's bundle; ``forbidden``
answers 403 as Azure answers for a disabled secret version, while the version list still shows it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient

from emulators.admin_http import AdminApiError
from emulators.keyvault.admin_client import KeyVaultAdmin


def _disabled_and_enabled(keys: KeyClient) -> tuple[str, str]:
    name = f"k{uuid.uuid4().hex[:8]}"
    old = str(keys.create_rsa_key(name, size=2048).properties.version)
    keys.create_rsa_key(name, size=2048)
    keys.update_key_properties(name, old, enabled=False)
    return name, old


class TestDisabledVersionGet:
    """GET of a disabled version: 200 by default; 403 ``Forbidden`` (inner ``KeyDisabled``) in the
    ``forbidden`` mode, for that version and for the latest when the latest is disabled; the list still
    shows the disabled version's attributes; enabled versions are unaffected."""

    def test_allowed_by_default(self, admin: KeyVaultAdmin, vault: dict[str, Any], keys: KeyClient) -> None:
        name, old = _disabled_and_enabled(keys)

        found = keys.get_key(name, old)

        assert admin.modes(vault["name"]) == {"disabled_version_get": "allowed"}
        assert found.properties.enabled is False

    def test_forbidden_mode(self, admin: KeyVaultAdmin, vault: dict[str, Any], keys: KeyClient) -> None:
        name, old = _disabled_and_enabled(keys)

        modes = admin.set_modes(vault["name"], disabled_version_get="forbidden")
        with pytest.raises(HttpResponseError) as refused:
            keys.get_key(name, old)
        latest = keys.get_key(name)
        listed = {p.version: p.enabled for p in keys.list_properties_of_key_versions(name)}
        keys.update_key_properties(name, latest.properties.version, enabled=False)
        with pytest.raises(HttpResponseError) as latest_refused:
            keys.get_key(name)

        assert modes == {"disabled_version_get": "forbidden"}
        assert admin.get_vault(vault["name"])["disabled_version_get"] == "forbidden"
        assert refused.value.status_code == 403
        assert refused.value.error is not None
        assert refused.value.error.code == "Forbidden"
        assert refused.value.error.message == "Operation get is not allowed on a disabled key."
        assert refused.value.response is not None
        assert refused.value.response.json()["error"]["innererror"] == {"code": "KeyDisabled"}
        assert latest.properties.enabled is True
        assert listed[old] is False
        assert latest_refused.value.status_code == 403

    def test_mode_chosen_when_the_vault_is_created(self, admin: KeyVaultAdmin, local_azure: dict[str, Any]) -> None:
        created = admin.create_vault(f"kvm{uuid.uuid4().hex[:10]}", disabled_version_get="forbidden")

        assert created["disabled_version_get"] == "forbidden"
        assert admin.modes(created["name"]) == {"disabled_version_get": "forbidden"}

    @pytest.mark.parametrize(
        ("modes", "message"),
        [
            ({"disabled_version_get": "sometimes"}, "mode 'disabled_version_get' must be one of"),
            ({"no_such_mode": "forbidden"}, "unknown mode 'no_such_mode'"),
        ],
    )
    def test_bad_modes_are_refused(
        self, admin: KeyVaultAdmin, vault: dict[str, Any], modes: dict[str, str], message: str
    ) -> None:
        with pytest.raises(AdminApiError) as refused:
            admin.set_modes(vault["name"], **modes)

        assert refused.value.status == 400
        assert message in str(refused.value)
        assert admin.modes(vault["name"]) == {"disabled_version_get": "allowed"}
