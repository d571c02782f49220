"""Helpers for the re-wrap tests: local RSA key-encryption keys that act like Key Vault key versions.

``LocalKeyRing`` holds one RSA key per versioned key id. It gives azure-storage-blob its
``key_encryption_key`` / ``key_resolver_function`` (the SDK's real client-side encryption) and stands in
for Key Vault's unwrap (the re-wrap's ``Unwrapper`` port) where a test is about storage behaviour.
Keys are generated at run time and never written anywhere.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from rotation.domain.model import KeyRef
from rotation.rewrap.keys import PublicKeyWrapper, UnwrapRefused
from rotation.settings import DataLocation

_OAEP256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class LocalKek:
    """The SDK's KeyEncryptionKey duck type over a local RSA key."""

    def __init__(self, kid: str, private_key: rsa.RSAPrivateKey) -> None:
        self.kid = kid
        self.private_key = private_key

    def wrap_key(self, key: bytes) -> bytes:
        return self.private_key.public_key().encrypt(key, _OAEP256)

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes:
        assert algorithm == "RSA-OAEP-256"
        return self.private_key.decrypt(key, _OAEP256)

    def get_kid(self) -> str:
        return self.kid

    def get_key_wrap_algorithm(self) -> str:
        return "RSA-OAEP-256"


class LocalKeyRing:
    """Versions of one key, each a local RSA key; also an ``Unwrapper`` that counts its calls."""

    def __init__(self, key: KeyRef) -> None:
        self.key = key
        self.keks: dict[str, LocalKek] = {}
        self.disabled: set[str] = set()
        self.unwrap_calls = 0
        self._lock = threading.Lock()
        self.before_unwrap: Callable[[str, bytes], None] | None = None

    def new_version(self) -> str:
        version = uuid.uuid4().hex
        kid = self.key.version_uri(version)
        self.keks[kid] = LocalKek(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return version

    def kek(self, version: str) -> LocalKek:
        return self.keks[self.key.version_uri(version)]

    def wrapper(self, version: str) -> PublicKeyWrapper:
        kek = self.kek(version)
        return PublicKeyWrapper(kek.kid, kek.private_key.public_key(), "RSA-OAEP-256")

    def resolver(self, *versions: str) -> Callable[[str], LocalKek]:
        """A key resolver that knows only ``versions``."""
        known = {self.key.version_uri(v) for v in versions}

        def resolve(kid: str) -> LocalKek:
            if kid not in known or kid in self.disabled:
                raise ValueError(f"unknown or disabled key {kid}")
            return self.keks[kid]

        return resolve

    def unwrap(self, key_id: str, algorithm: str, encrypted_key: bytes) -> bytes:
        with self._lock:
            self.unwrap_calls += 1
        if self.before_unwrap is not None:
            self.before_unwrap(key_id, encrypted_key)
        kek = self.keks.get(key_id)
        if kek is None or key_id in self.disabled:
            raise UnwrapRefused("Key Vault HTTP 404 (KeyNotFound)")
        try:
            return kek.unwrap_key(encrypted_key, algorithm)
        except ValueError:
            raise UnwrapRefused("Key Vault HTTP 400 (BadParameter)") from None


def location_of(container: ContainerClient, prefix: str = "") -> DataLocation:
    """The container as a data location (Azurite's path-style account URL)."""
    return DataLocation(container.url.rsplit("/", 1)[0], container.container_name, prefix)


def new_container(local_azure: dict[str, Any]) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(local_azure["storage"]["connection_string"])
    container = service.get_container_client(f"rewrap{uuid.uuid4().hex[:12]}")
    container.create_container()
    return container


def encrypted_client(container: ContainerClient, kek: Any, version: str) -> ContainerClient:
    """The same container through the SDK's client-side encryption with ``kek`` and protocol ``version``."""
    client = ContainerClient.from_container_url(container.url, credential=container.credential)
    client.require_encryption = True
    client.key_encryption_key = kek
    client.encryption_version = version
    return client


def decrypting_client(container: ContainerClient, resolver: Callable[[str], Any]) -> ContainerClient:
    client = ContainerClient.from_container_url(container.url, credential=container.credential)
    client.require_encryption = True
    client.key_resolver_function = resolver
    return client


def read_every_entry(container: ContainerClient, resolver: Callable[[str], Any]) -> dict[tuple[str, str], bytes]:
    """Every blob, blob version and snapshot (not soft-deleted ones: Azure serves no data for them) read
    with the SDK's client-side decryption through ``resolver``, by (name, ``current`` | ``version <id>`` |
    ``snapshot <time>``). A version or snapshot that cannot be decrypted raises."""
    found: dict[tuple[str, str], bytes] = {}
    for item in container.list_blobs(include=["snapshots", "versions"]):
        if item.snapshot:
            entry, options = f"snapshot {item.snapshot}", {"snapshot": item.snapshot}
        elif item.version_id and item.is_current_version is not True:
            entry, options = f"version {item.version_id}", {"version_id": item.version_id}
        else:
            entry, options = "current", {}
        blob = BlobClient.from_blob_url(
            container.get_blob_client(item.name).url, credential=container.credential, **options
        )
        blob.require_encryption = True
        blob.key_resolver_function = resolver
        found[(item.name, entry)] = blob.download_blob().readall()
    return found
