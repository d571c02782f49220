"""Clients for AzureWebJobsStorage (journal, locks, audit, queues), by connection string or identity.

In Azure the deployment turns shared keys off and sets ``AzureWebJobsStorage__accountName``: the
app then reaches its storage with its managed identity (Storage Table/Queue/Blob Data roles on that
account only). Locally and in tests it is Azurite's connection string. Every adapter that writes
to the app's own storage takes a :data:`StorageConnection` and builds its clients here, so both
forms work everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union, cast

from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from rotation.settings import HostStorageSettings


@dataclass(frozen=True)
class HostStorage:
    """AzureWebJobsStorage: a connection string, or service URIs reached with a token credential."""

    connection_string: str | None = field(default=None, repr=False)
    blob_uri: str | None = None
    queue_uri: str | None = None
    table_uri: str | None = None
    credential: TokenCredential | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: HostStorageSettings, credential: TokenCredential | None) -> HostStorage:
        """Connection-string settings need no credential; identity-based ones use ``credential``."""
        if settings.connection_string is not None:
            return cls(connection_string=settings.connection_string)
        if credential is None:
            raise ValueError("identity-based AzureWebJobsStorage needs a credential")
        return cls(
            blob_uri=settings.blob_uri,
            queue_uri=settings.queue_uri,
            table_uri=settings.table_uri,
            credential=credential,
        )

    def _client(self, client_type: Any, uri: str | None, *names: str, **kwargs: Any) -> Any:
        """``client_type`` for this storage: from the connection string, or at ``uri`` with the credential.
        Every SDK client here takes the same two forms (``from_connection_string`` or URL + credential)."""
        if self.connection_string is not None:
            return client_type.from_connection_string(self.connection_string, *names, **kwargs)
        return client_type(str(uri), *names, credential=self.credential, **kwargs)

    def table_service(self, **kwargs: Any) -> TableServiceClient:
        return cast(TableServiceClient, self._client(TableServiceClient, self.table_uri, **kwargs))

    def table_client(self, table_name: str, **kwargs: Any) -> TableClient:
        return cast(TableClient, self._client(TableClient, self.table_uri, table_name, **kwargs))

    def queue_client(self, queue_name: str, **kwargs: Any) -> QueueClient:
        return cast(QueueClient, self._client(QueueClient, self.queue_uri, queue_name, **kwargs))

    def blob_service(self, **kwargs: Any) -> BlobServiceClient:
        return cast(BlobServiceClient, self._client(BlobServiceClient, self.blob_uri, **kwargs))

    def container_client(self, container: str, **kwargs: Any) -> ContainerClient:
        return cast(ContainerClient, self._client(ContainerClient, self.blob_uri, container, **kwargs))


#: What adapters of the app's own storage accept: a connection string (tests, Azurite) or a HostStorage.
StorageConnection = Union[str, HostStorage]  # noqa: UP007 - a runtime alias, read by mypy and by isinstance users


def host_storage(connection: StorageConnection) -> HostStorage:
    """Normalise a connection string or a HostStorage to a HostStorage."""
    return connection if isinstance(connection, HostStorage) else HostStorage(connection_string=connection)
