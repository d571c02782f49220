"""The one place that builds real clients, lazily, from validated settings.

Nothing here runs at import time: ``function_app`` imports this module, and the Functions host
must index the app quickly. Each accessor builds its client on first use and caches it for the
life of the worker process.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rotation.logs import configure_logging
from rotation.settings import Settings, load_settings

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
        """Keyword arguments every Azure SDK client gets (the CA bundle for the local emulators)."""
        return {"connection_verify": self.settings.ca_bundle} if self.settings.ca_bundle else {}

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


_lock = threading.Lock()
_current: Bootstrap | None = None


def current() -> Bootstrap:
    """The process-wide bootstrap, built from the environment on first use.

    Raises:
        SettingsError: a setting is missing or malformed.
    """
    global _current
    with _lock:
        if _current is None:
            settings = load_settings()
            configure_logging(settings.log_format, settings.log_level)
            _current = Bootstrap(settings)
        return _current


def override(bootstrap: Bootstrap | None) -> None:
    """Replace the process-wide bootstrap (tests, the local server, the CLI)."""
    global _current
    with _lock:
        _current = bootstrap
