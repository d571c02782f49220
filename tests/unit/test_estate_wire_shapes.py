"""The estate adapters send what the official SDKs would send (they do not ship the SDKs; decision 0004)."""

from __future__ import annotations

from azure.mgmt.compute.models import (
    DiskEncryptionSetUpdate,
    DiskEncryptionSetUpdateProperties,
    KeyForDiskEncryptionSet,
    SourceVault,
)
from azure.mgmt.compute.operations._operations import build_disk_encryption_sets_update_request
from azure.mgmt.containerregistry.models import (
    EncryptionProperty,
    KeyVaultProperties,
    RegistryPropertiesUpdateParameters,
    RegistryUpdateParameters,
)
from azure.mgmt.containerregistry.operations._operations import build_registries_update_request
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions
from azure.mgmt.resourcegraph.operations._resource_graph_client_operations import build_resources_request

from rotation.adapters import disk_encryption_sets, registries, resource_graph
from rotation.domain.model import KeyRef

KEY = "https://kv.vault.azure.net/keys/cmk/0123abcd"
VAULT_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/kv"


class TestBodiesMatchTheSdkModels:
    """Each PATCH or query body equals the SDK model's serialisation of the same request."""

    def test_registry_key_update(self) -> None:
        sdk = RegistryUpdateParameters(
            properties=RegistryPropertiesUpdateParameters(
                encryption=EncryptionProperty(
                    status="enabled", key_vault_properties=KeyVaultProperties(key_identifier=KEY, identity="client")
                )
            )
        )

        assert registries.key_update_body(KEY, "client") == sdk.as_dict()

    def test_disk_encryption_set_active_key_update(self) -> None:
        sdk = DiskEncryptionSetUpdate(
            properties=DiskEncryptionSetUpdateProperties(
                active_key=KeyForDiskEncryptionSet(key_url=KEY, source_vault=SourceVault(id=VAULT_ID))
            )
        )

        assert disk_encryption_sets.active_key_body(KEY, VAULT_ID) == sdk.as_dict()

    def test_resource_graph_query(self) -> None:
        query = resource_graph.reference_query(KeyRef("https://kv.vault.azure.net", "cmk"))
        sdk = QueryRequest(
            query=query, options=QueryRequestOptions(top=1000, skip_token="t", result_format="objectArray")
        )

        assert resource_graph.query_body(query, 1000, "t") == sdk.serialize()


class TestApiVersionsMatchThePinnedSdks:
    """The adapters' api-versions are the ones the pinned SDKs send (the emulator is proven at those)."""

    def test_api_versions(self) -> None:
        """The SDKs' own request builders (read, not patched) name the api-version in the URL."""
        acr = build_registries_update_request("g", "r", "s")
        des = build_disk_encryption_sets_update_request("g", "d", "s")
        graph = build_resources_request()

        assert acr.url.endswith(f"/registries/r?api-version={registries.API_VERSION}")
        assert des.url.endswith(f"/diskEncryptionSets/d?api-version={disk_encryption_sets.API_VERSION}")
        assert graph.url.endswith(f"{resource_graph.PATH}?api-version={resource_graph.API_VERSION}")
