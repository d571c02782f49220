"""Key Vault emulator fixtures shared by its test modules: the admin client, a fresh vault, a key client.

They run against the session's emulators (``local_azure``); a module that needs its own emulator (one
whose clock it moves) overrides ``kv_endpoints`` with that emulator's endpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.keyvault.keys import KeyClient

from emulators.keyvault.admin_client import KeyVaultAdmin
from tests.integration.vaults import key_client


@pytest.fixture(scope="module")
def kv_endpoints(local_azure: dict[str, Any]) -> dict[str, Any]:
    """The endpoints of the Key Vault emulator the module's tests use."""
    return local_azure


@pytest.fixture(scope="module")
def ca_bundle(kv_endpoints: dict[str, Any]) -> str:
    return str(kv_endpoints["ca_bundle"])


@pytest.fixture(scope="module")
def admin(kv_endpoints: dict[str, Any], ca_bundle: str) -> KeyVaultAdmin:
    return KeyVaultAdmin(kv_endpoints["keyvault"]["admin"], ca_bundle)


@pytest.fixture
def vault(admin: KeyVaultAdmin) -> dict[str, Any]:
    """A fresh vault (random name), with the emulator's defaults (soft delete, purge protection)."""
    return admin.create_vault(f"kv{uuid.uuid4().hex[:12]}")


@pytest.fixture
def keys(vault: dict[str, Any], ca_bundle: str) -> Iterator[KeyClient]:
    """A key client for ``vault``, acting as the principal ``tester``."""
    client = key_client(vault["url"], "tester", ca_bundle)
    yield client
    client.close()
