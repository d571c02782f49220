"""A fresh vault in the Key Vault emulator, with a data-plane key client acting as a test principal."""

from __future__ import annotations

import uuid
from typing import Any

from azure.keyvault.keys import KeyClient

from emulators.keyvault.admin_client import KeyVaultAdmin
from rotation.adapters.local_credential import LocalDevelopmentCredential


def key_client(vault_url: str, principal: str, ca: str, **options: Any) -> KeyClient:
    """The official data-plane key client for ``vault_url``, acting as ``principal`` and trusting ``ca`` (the
    emulators' CA bundle); ``options`` go to the client (e.g. ``api_version``)."""
    return KeyClient(
        vault_url,
        LocalDevelopmentCredential(principal),
        connection_verify=ca,
        verify_challenge_resource=False,
        **options,
    )


def new_vault(
    local_azure: dict[str, Any], prefix: str, principal: str, **client_options: Any
) -> tuple[KeyVaultAdmin, dict[str, Any], KeyClient]:
    """(emulator admin, the created vault's description, a key client for it acting as ``principal``);
    the vault's name is ``prefix`` and random hex. The caller closes the client."""
    admin = KeyVaultAdmin(local_azure["keyvault"]["admin"], local_azure["ca_bundle"])
    created = admin.create_vault(f"{prefix}{uuid.uuid4().hex[:10]}")
    return admin, created, key_client(created["url"], principal, local_azure["ca_bundle"], **client_options)
