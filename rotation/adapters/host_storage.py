"""Clients for AzureWebJobsStorage (journal, locks, audit, queues), by connection string or identity.

In Azure the deployment turns shared keys off and sets ``AzureWebJobsStorage__accountName``: the
app then reaches its storage with its managed identity (Storage Table/Queue/Blob Data roles on that
account only). Locally and in tests it is Azurite's connection string. Every adapter that writes
to the app's own storage takes a :data:`StorageConnection` and builds its clients here, so both
forms work everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

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

    def table_service(self, **kwargs: Any) -> TableServiceClient:
        if self.connection_string is not None:
            return TableServiceClient.from_connection_string(self.connection_string, **kwargs)
        return TableServiceClient(str(self.table_uri), credential=self.credential, **kwargs)

    def table_client(self, table_name: str, **kwargs: Any) -> TableClient:
        if self.connection_string is not None:
            return TableClient.from_connection_string(self.connection_string, table_name, **kwargs)
        return TableClient(str(self.table_uri), table_name, credential=self.credential, **kwargs)

    def queue_client(self, queue_name: str, **kwargs: Any) -> QueueClient:
        if self.connection_string is not None:
            return QueueClient.from_connection_string(self.connection_string, queue_name, **kwargs)
        return QueueClient(str(self.queue_uri), queue_name, credential=self.credential, **kwargs)

    def blob_service(self, **kwargs: Any) -> BlobServiceClient:
        if self.connection_string is not None:
            return BlobServiceClient.from_connection_string(self.connection_string, **kwargs)
        return BlobServiceClient(str(self.blob_uri), credential=self.credential, **kwargs)

    def container_client(self, container: str, **kwargs: Any) -> ContainerClient:
        if self.connection_string is not None:
            return ContainerClient.from_connection_string(self.connection_string, container, **kwargs)
        return ContainerClient(str(self.blob_uri), container, credential=self.credential, **kwargs)


#: What adapters of the app's own storage accept: a connection string (tests, Azurite) or a HostStorage.
StorageConnection = Union[str, HostStorage]  # noqa: UP007 - a runtime alias, read by mypy and by isinstance users


def host_storage(connection: StorageConnection) -> HostStorage:
    """Normalise a connection string or a HostStorage to a HostStorage."""
    return connection if isinstance(connection, HostStorage) else HostStorage(connection_string=connection)
