"""The ``Vaults`` port: a vault's protection settings through ARM (``Microsoft.KeyVault/vaults/read``).

azure-mgmt-keyvault is not a dependency for one list call; this uses azure-mgmt-core's ARM pipeline
(ARM challenge authentication, retries) directly, at a current api-version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

from rotation.adapters.arm_common import arm_scope
from rotation.adapters.arm_pacing import ArmPacer, ArmPacingPolicy, shared_pacer
from rotation.adapters.azure_errors import translated
from rotation.domain.model import KeyRef, VaultProperties
from rotation.errors import PreconditionFailed, TransientError
from rotation.retry import TRANSPORT_RETRY

API_VERSION = "2024-11-01"
_READ = "Microsoft.KeyVault/vaults/read"

#: The ARM actions each method needs, on the consumer subscriptions (list vaults by subscription).
ACTIONS: Mapping[str, frozenset[str]] = {"get_vault": frozenset({_READ})}


def _normalised(vault_uri: str) -> str:
    return KeyRef.parse(f"{vault_uri.rstrip('/')}/keys/x")[0].vault_url


class ArmVaults:
    """Implements ``rotation.ports.Vaults``."""

    def __init__(
        self,
        arm_endpoint: str,
        credential: TokenCredential,
        transport_kwargs: dict[str, Any],
        *,
        pacer: ArmPacer | None = None,
    ) -> None:
        self._endpoint = arm_endpoint.rstrip("/")
        kwargs = {**TRANSPORT_RETRY, **transport_kwargs}
        self._client: ARMPipelineClient[HttpRequest, Any] = ARMPipelineClient(
            base_url=self._endpoint,
            per_call_policies=[],
            per_retry_policies=[ArmPacingPolicy(pacer or shared_pacer())],
            policies=[
                RetryPolicy(**kwargs),
                ARMChallengeAuthenticationPolicy(credential, arm_scope(arm_endpoint)),
            ],
            **transport_kwargs,
        )

    def get_vault(self, vault_url: str, subscriptions: Sequence[str]) -> VaultProperties:
        wanted = _normalised(vault_url)
        for subscription in subscriptions:
            url: str | None = (
                f"{self._endpoint}/subscriptions/{subscription}/providers/Microsoft.KeyVault/vaults"
                f"?api-version={API_VERSION}"
            )
            while url:
                with translated(f"list vaults in subscription {subscription}", _READ):
                    response = self._client.send_request(HttpRequest("GET", url))
                    if response.status_code != 200:
                        raise HttpResponseError(response=response)
                try:
                    page = response.json()
                except ValueError:
                    raise TransientError("ARM answered a vault list with a body that is not JSON") from None
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
