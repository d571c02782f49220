"""A key-encryption key for azure-storage-blob's client-side encryption over a local vault key version.

Wrap runs locally with the public key (as ``CryptographyClient`` does), unwrap in the vault. Used by
tests and benchmarks to write and read client-side-encrypted blobs against the Key Vault emulator.
"""

from __future__ import annotations

from typing import Any

from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from rotation.adapters.local_credential import LocalDevelopmentCredential


class VaultKek:
    """azure-storage-blob's KeyEncryptionKey duck type over one key version (``kid``)."""

    def __init__(self, kid: str, ca: str, principal: str, **client_kwargs: Any) -> None:
        self.kid = kid
        self.client = CryptographyClient(
            kid, LocalDevelopmentCredential(principal), connection_verify=ca, verify_challenge_resource=False,
            **client_kwargs,
        )  # fmt: skip

    def wrap_key(self, key: bytes) -> bytes:
        return self.client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, key).encrypted_key

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes:
        return self.client.unwrap_key(KeyWrapAlgorithm(algorithm), key).key

    def get_kid(self) -> str:
        return self.kid

    def get_key_wrap_algorithm(self) -> str:
        return "RSA-OAEP-256"
