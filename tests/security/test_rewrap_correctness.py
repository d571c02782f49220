"""Finding 6: what the re-wrap and the storage re-point write must be what real readers expect.

- KeyId is Key Vault's own ``kid`` (azure-storage-blob requires ``KeyId == kek.get_kid()``, and the SDK's
  KeyWrapper sample returns ``key.id``), not the configured name's spelling.
- Each blob keeps its wrap Algorithm (a reader may unwrap with a fixed one) unless the settings name one.
- The storage re-point keeps ``federatedIdentityClientId`` (cross-tenant CMK) and the user-assigned identity.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from azure.mgmt.storage.models import Encryption, EncryptionIdentity, StorageAccountUpdateParameters
from azure.storage.blob import ContainerClient

from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.adapters.storage_accounts import ArmStorageAccounts
from rotation.domain.model import KeyRef
from rotation.rewrap.adapter import BlobDataKeys
from rotation.settings import HostStorageSettings, Settings
from tests.integration.rewrap_helpers import (
    decrypting_client,
    encrypted_client,
    location_of,
)
from tests.integration.vaults import new_vault
from tests.integration.workflow.estate import OPERATOR, build_estate

pytestmark = pytest.mark.integration
PRINCIPAL = "security-tests"


class FixedAlgorithmKek:
    """A KeyEncryptionKey over a vault key version that wraps and unwraps with one fixed algorithm,
    whatever the blob's metadata says (as readers built on a fixed algorithm do)."""

    def __init__(self, kid: str, ca: str, algorithm: str) -> None:
        self.kid, self.algorithm = kid, KeyWrapAlgorithm(algorithm)
        self.client = CryptographyClient(
            kid, LocalDevelopmentCredential(PRINCIPAL), connection_verify=ca, verify_challenge_resource=False
        )

    def wrap_key(self, key: bytes) -> bytes:
        return self.client.wrap_key(self.algorithm, key).encrypted_key

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes:
        del algorithm  # fixed, on purpose
        return self.client.unwrap_key(self.algorithm, key).key

    def get_kid(self) -> str:
        return self.kid

    def get_key_wrap_algorithm(self) -> str:
        return str(self.algorithm.value)


@pytest.fixture
def vault(local_azure: dict[str, Any]) -> Iterator[KeyClient]:
    _, _, client = new_vault(local_azure, "sec", PRINCIPAL)
    yield client
    client.close()


def rewrap(local_azure: dict[str, Any], key: KeyRef, version: str, container: ContainerClient) -> None:
    """The inline re-wrap with default settings (no ROTATION_WRAP_ALGORITHM) through the real SDK clients."""
    settings = Settings(
        storage=HostStorageSettings(connection_string=local_azure["storage"]["connection_string"]),
        managed_keys=(key.uri,), data_locations=(location_of(container),), verify_challenge_resource=False,
        rewrap_concurrency=2,
    )  # fmt: skip
    adapter = BlobDataKeys(
        settings, LocalDevelopmentCredential(PRINCIPAL), {"connection_verify": local_azure["ca_bundle"]}
    )
    rotation_id = f"sec-{uuid.uuid4().hex[:8]}"
    adapter.begin_rewrap(rotation_id, key, version, [location_of(container)])
    done, summary = adapter.rewrap_progress(rotation_id)
    adapter.close()
    assert done is True
    assert summary.failed == ()


def wrapped_content_key(container: ContainerClient, name: str) -> dict[str, Any]:
    metadata = container.get_blob_client(name).get_blob_properties().metadata
    return dict(json.loads(metadata["encryptiondata"])["WrappedContentKey"])


class TestKeyIdIsKeyVaultsKid:
    """The key is configured as ``cmk…`` while the vault spells it ``Cmk…``: the re-wrapped blob's KeyId is
    the vault's kid, and the SDK decrypts it with a KEK whose get_kid() is that kid."""

    def test_keyid_equals_the_vaults_kid(
        self, local_azure: dict[str, Any], vault: KeyClient, container: ContainerClient
    ) -> None:
        ca = local_azure["ca_bundle"]
        name = f"Cmk{uuid.uuid4().hex[:6]}"
        old = vault.create_rsa_key(name, size=2048)
        data = os.urandom(2000)
        encrypted_client(container, FixedAlgorithmKek(str(old.id), ca, "RSA-OAEP-256"), "2.0").upload_blob("b", data)
        new = vault.create_rsa_key(name, size=2048)
        configured = KeyRef(KeyRef.parse(str(new.id))[0].vault_url, name.lower())

        rewrap(local_azure, configured, str(new.properties.version), container)

        assert wrapped_content_key(container, "b")["KeyId"] == str(new.id)
        kek = FixedAlgorithmKek(str(new.id), ca, "RSA-OAEP-256")
        reader = decrypting_client(container, lambda kid: kek if kid == kek.get_kid() else None)
        assert reader.download_blob("b").readall() == data


class TestBlobKeepsItsWrapAlgorithm:
    """A blob wrapped with RSA-OAEP stays RSA-OAEP (a fixed-algorithm reader still decrypts it); one wrapped
    with RSA-OAEP-256 stays RSA-OAEP-256."""

    @pytest.mark.parametrize("algorithm", ["RSA-OAEP", "RSA-OAEP-256"])
    def test_algorithm_is_kept(
        self, local_azure: dict[str, Any], vault: KeyClient, container: ContainerClient, algorithm: str
    ) -> None:
        ca = local_azure["ca_bundle"]
        name = f"cmk{uuid.uuid4().hex[:6]}"
        old = vault.create_rsa_key(name, size=2048)
        data = os.urandom(3000)
        encrypted_client(container, FixedAlgorithmKek(str(old.id), ca, algorithm), "2.0").upload_blob("b", data)
        new = vault.create_rsa_key(name, size=2048)

        rewrap(local_azure, KeyRef.parse(str(new.id))[0], str(new.properties.version), container)

        assert wrapped_content_key(container, "b")["Algorithm"] == algorithm
        kek = FixedAlgorithmKek(str(new.id), ca, algorithm)
        assert decrypting_client(container, lambda _kid: kek).download_blob("b").readall() == data


class TestRepointKeepsTheEncryptionIdentity:
    """Re-pointing a storage account to a new key version keeps federatedIdentityClientId and the
    user-assigned identity of its encryption block."""

    def test_federated_identity_client_id_survives(self, local_azure: dict[str, Any]) -> None:
        estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=0)
        account_id = estate.pinned[0]
        _, _, _, _, group, _, _, _, name = account_id.split("/")
        storage = estate.storage()
        current = storage.storage_accounts.get_properties(group, name).encryption
        federated = str(uuid.uuid4())
        current.encryption_identity = EncryptionIdentity(
            encryption_user_assigned_identity=estate.identity_id, encryption_federated_identity_client_id=federated
        )
        storage.storage_accounts.update(group, name, StorageAccountUpdateParameters(encryption=current))
        new = estate.keys().create_rsa_key(estate.key.name, size=2048)
        accounts = ArmStorageAccounts(
            estate.arm_url, LocalDevelopmentCredential(OPERATOR), {"connection_verify": estate.ca}
        )

        accounts.set_key_version(account_id, estate.key.vault_url, estate.key.name, str(new.properties.version))

        after: Encryption = storage.storage_accounts.get_properties(group, name).encryption
        assert after.key_vault_properties.key_version == new.properties.version
        assert after.encryption_identity.encryption_federated_identity_client_id == federated
        assert after.encryption_identity.encryption_user_assigned_identity == estate.identity_id
