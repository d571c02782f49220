"""The process's identity and connections, built lazily from validated settings.

Nothing here runs at import time: ``function_app`` imports this module, and the Functions host
must index the app quickly. Each accessor builds its client on first use and caches it for the
life of the worker process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rotation.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from rotation.adapters.host_storage import HostStorage


class Bootstrap:
    """Holds settings and the clients built from them for one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def credential(self) -> TokenCredential:
        """The identity the service acts as: the managed identity in Azure, a local one for emulators."""
        if self.settings.local_principal:
            from rotation.adapters.local_credential import LocalDevelopmentCredential

            return LocalDevelopmentCredential(self.settings.local_principal)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(exclude_interactive_browser_credential=True)

    @cached_property
    def host_storage(self) -> HostStorage:
        """AzureWebJobsStorage, by connection string or (in Azure) with the app's managed identity."""
        from rotation.adapters.host_storage import HostStorage

        if self.settings.storage.identity_based:
            return HostStorage.from_settings(self.settings.storage, self.storage_credential)
        return HostStorage.from_settings(self.settings.storage, None)

    @cached_property
    def storage_credential(self) -> TokenCredential:
        """The identity for AzureWebJobsStorage (``AzureWebJobsStorage__clientId`` picks a user-assigned one)."""
        client_id = self.settings.storage.client_id
        if client_id and not self.settings.local_principal:
            from azure.identity import ManagedIdentityCredential

            return ManagedIdentityCredential(client_id=client_id)
        return self.credential

    def transport_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every Azure SDK client gets (see ``transport_kwargs``)."""
        return transport_kwargs(self.settings.ca_bundle)

    def storage_reachable(self, timeout_s: float = 3.0) -> bool:
        """True when AzureWebJobsStorage answers a blob service request."""
        from azure.core.exceptions import AzureError

        client = self.host_storage.blob_service(
            connection_timeout=timeout_s, read_timeout=timeout_s, retry_total=0, **self.transport_kwargs()
        )
        try:
            client.get_service_properties(timeout=int(max(1, timeout_s)))
        except (AzureError, ValueError, OSError):
            return False
        finally:
            client.close()
        return True


# Proxy variables the requests transport reads on every request while ``use_env_settings`` is on.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
# CA bundle variables requests honours when no bundle is passed (first set wins).
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def transport_kwargs(ca_bundle: str | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments every Azure SDK client gets.

    With a proxy variable set (``HTTPS_PROXY`` and friends, either case), the transport reads the
    environment as the SDK does by default. Without one, ``use_env_settings=False``: the requests
    transport would otherwise walk every environment variable (and look for ``~/.netrc``) on every
    request, about a tenth of the client's CPU per re-wrapped blob. A CA bundle named by
    ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` is then passed explicitly, so it is still used.
    ``ca_bundle`` (the local emulators' CA) wins over both.
    """
    env = os.environ if environ is None else environ
    if any(name.lower() in PROXY_VARIABLES and value for name, value in env.items()):
        return {"connection_verify": ca_bundle} if ca_bundle else {}
    kwargs: dict[str, Any] = {"use_env_settings": False}
    verify = ca_bundle or next((env[name] for name in CA_BUNDLE_VARIABLES if env.get(name)), None)
    if verify:
        kwargs["connection_verify"] = verify
    return kwargs
