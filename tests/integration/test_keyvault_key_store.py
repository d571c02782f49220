"""The Key Vault key store adapter against the emulator: a GET refused for a disabled version."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.keyvault.admin_client import KeyVaultAdmin
from rotation.adapters.keyvault import KeyVaultKeyStore
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.domain.model import KeyRef
from rotation.errors import PermissionDenied
from tests.integration.vaults import key_client

PRINCIPAL = "key-store-tests"


@pytest.fixture
def admin(local_azure: dict[str, Any]) -> KeyVaultAdmin:
    return KeyVaultAdmin(local_azure["keyvault"]["admin"], local_azure["ca_bundle"])


@pytest.fixture
def store(local_azure: dict[str, Any]) -> Iterator[KeyVaultKeyStore]:
    credential = LocalDevelopmentCredential(PRINCIPAL)
    adapter = KeyVaultKeyStore(
        credential, {"connection_verify": local_azure["ca_bundle"]}, verify_challenge_resource=False
    )
    yield adapter
    adapter.close()


def _key_with_a_disabled_version(
    admin: KeyVaultAdmin, store: KeyVaultKeyStore, ca_bundle: str
) -> tuple[str, KeyRef, str]:
    """A vault in the ``disabled_version_get: forbidden`` mode, a key with two versions, the older disabled."""
    vault = admin.create_vault(f"kvs{uuid.uuid4().hex[:10]}", disabled_version_get="forbidden")
    key = KeyRef(vault["url"], f"cmk-{uuid.uuid4().hex[:6]}")
    with key_client(vault["url"], PRINCIPAL, ca_bundle) as client:
        old = str(client.create_rsa_key(key.name, size=2048).properties.version)
        client.create_rsa_key(key.name, size=2048)
    store.update_version(key, old, enabled=False)
    return str(vault["name"]), key, old


class TestGetOfADisabledVersion:
    """With GET of a disabled version refused (403), the version list says it is disabled: ``get_key``
    answers that version, disabled. A 403 for any other reason stays ``PermissionDenied``."""

    def test_a_refused_disabled_version_reads_as_disabled(
        self, local_azure: dict[str, Any], admin: KeyVaultAdmin, store: KeyVaultKeyStore
    ) -> None:
        _, key, old = _key_with_a_disabled_version(admin, store, local_azure["ca_bundle"])

        found = store.get_key(key, old)

        assert found.version == old
        assert found.enabled is False
        assert found.created.year >= 2000

    def test_a_refusal_by_rbac_stays_permission_denied(
        self, local_azure: dict[str, Any], admin: KeyVaultAdmin, store: KeyVaultKeyStore
    ) -> None:
        vault, key, old = _key_with_a_disabled_version(admin, store, local_azure["ca_bundle"])
        admin.set_role_assignments(vault, [{"principal_id": "someone-else", "role": "Key Vault Administrator"}])

        with pytest.raises(PermissionDenied) as denied:
            store.get_key(key, old)

        assert denied.value.permission == "Microsoft.KeyVault/vaults/keys/read"
