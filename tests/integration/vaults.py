"""A fresh vault in the Key Vault emulator, with a data-plane key client acting as a test principal."""

from __future__ import annotations

import uuid
from typing import Any

from azure.keyvault.keys import KeyClient

from emulators.keyvault.admin_client import KeyVaultAdmin
from rotation.adapters.local_credential import LocalDevelopmentCredential


def new_vault(
    local_azure: dict[str, Any], prefix: str, principal: str
) -> tuple[KeyVaultAdmin, dict[str, Any], KeyClient]:
    """(emulator admin, the created vault's description, a key client for it acting as ``principal``);
    the vault's name is ``prefix`` and random hex. The caller closes the client."""
    admin = KeyVaultAdmin(local_azure["keyvault"]["admin"], local_azure["ca_bundle"])
    created = admin.create_vault(f"{prefix}{uuid.uuid4().hex[:10]}")
    client = KeyClient(
        created["url"],
        LocalDevelopmentCredential(principal),
        connection_verify=local_azure["ca_bundle"],
        verify_challenge_resource=False,
    )
    return admin, created, client
