"""The ``Vaults`` port: a vault's protection settings through ARM (``Microsoft.KeyVault/vaults/read``).

azure-mgmt-keyvault is not a dependency for one list call; this uses azure-mgmt-core's ARM pipeline
(ARM challenge authentication, retries, pacing) through ``ArmRest``, at a current api-version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rotation.adapters.arm_rest import ArmRestAdapter, json_object
from rotation.domain.model import KeyRef, VaultProperties
from rotation.errors import PreconditionFailed

API_VERSION = "2024-11-01"
_READ = "Microsoft.KeyVault/vaults/read"

#: The ARM actions each method needs, on the consumer subscriptions (list vaults by subscription).
ACTIONS: Mapping[str, frozenset[str]] = {"get_vault": frozenset({_READ})}


def _normalised(vault_uri: str) -> str:
    return KeyRef.parse(f"{vault_uri.rstrip('/')}/keys/x")[0].vault_url


class ArmVaults(ArmRestAdapter):
    """Implements ``rotation.ports.Vaults``."""

    def get_vault(self, vault_url: str, subscriptions: Sequence[str]) -> VaultProperties:
        wanted = _normalised(vault_url)
        for subscription in subscriptions:
            what = f"list vaults in subscription {subscription}"
            url: str | None = self._rest.url(
                f"/subscriptions/{subscription}/providers/Microsoft.KeyVault/vaults", API_VERSION
            )
            while url:
                page = json_object(self._rest.send("GET", url, what, _READ).http_response)
                for vault in page.get("value") or []:
                    props = vault.get("properties") or {}
                    uri = props.get("vaultUri") or ""
                    if uri and _normalised(uri) == wanted:
                        return VaultProperties(
                            vault_url=wanted,
                            arm_id=str(vault.get("id", "")),
                            soft_delete_enabled=bool(props.get("enableSoftDelete", True)),
                            purge_protection_enabled=bool(props.get("enablePurgeProtection", False)),
                        )
                url = page.get("nextLink") or None
        raise PreconditionFailed(f"vault {vault_url} was not found in the configured subscriptions")
