"""Unwrap through Key Vault (one ``unwrapKey`` per blob), wrap locally with the new version's public key.

Key Vault never sees a wrapKey call: the new version's public key is fetched once per rotation
(``KeyClient.get_key``, keys/read) and RSA-OAEP(-256) runs here with ``cryptography``. Unwrapping needs
the private key, so it is a Key Vault call (keys/unwrap/action) to the exact version named in the
blob's KeyId, through one cached ``CryptographyClient`` per version.

Retries of unwrap calls are owned by the re-wrap limiter (``throttle``), not azure-core: the clients
are built with ``retry_total=0`` so a 429 reaches the limiter with its Retry-After.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from rotation.adapters.http_session import direct_session_kwargs
from rotation.domain.model import KeyRef
from rotation.errors import InputError, PermissionDenied, PreconditionFailed, ThrottledError, TransientError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

# What a blob's ``Algorithm`` may name for unwrap, and what a re-wrap may write. RSA1_5 is never accepted
# (PKCS#1 v1.5 padding: an unwrap oracle, and "[Not recommended]" in Key Vault's keys.json). RSA-OAEP (SHA-1
# OAEP) is what earlier client libraries wrote (the .NET v11 tutorial's ``RsaKey``, MicrosoftDocs azure-docs
# articles/storage/blobs/storage-encrypt-decrypt-blobs-key-vault.md), so blobs wrapped with it are read and
# keep it when re-wrapped, since readers may pass a fixed algorithm; settings never choose it for new wraps.
UNWRAP_ALGORITHMS = ("RSA-OAEP-256", "RSA-OAEP")
WRAP_ALGORITHMS = UNWRAP_ALGORITHMS

_READ = "Microsoft.KeyVault/vaults/keys/read"
_UNWRAP = "Microsoft.KeyVault/vaults/keys/unwrap/action"

#: The Key Vault data actions each call needs, on the managed key.
ACTIONS: Mapping[str, frozenset[str]] = {
    "fetch_wrapper": frozenset({_READ}),
    # CryptographyClient reads the version once (GET), then unwraps in Key Vault.
    "KeyVaultUnwrapper.unwrap": frozenset({_READ, _UNWRAP}),
}


class UnwrapRefused(Exception):
    """The vault refused to unwrap this blob's key (permanent for this blob); ``reason`` is log-safe."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unwrapper(Protocol):
    """Unwraps a wrapped content key with the key version named by ``key_id``."""

    def unwrap(self, key_id: str, algorithm: str, encrypted_key: bytes) -> bytes:
        """Raises UnwrapRefused (this blob only), ThrottledError/TransientError (retry) or PermissionDenied."""
        ...


class Wrapper(Protocol):
    """Wraps content keys for one key version, locally.

    ``key_id`` is the version's ``kid`` exactly as Key Vault returns it (readers require
    ``KeyId == kek.get_kid()``); ``algorithm`` is the algorithm every re-wrap uses, or None to keep
    each blob's own.
    """

    key_id: str
    algorithm: str | None

    def wrap(self, content_key: bytes, algorithm: str) -> bytes: ...


class PublicKeyWrapper:
    """RSA wrap with a public key: no Key Vault call."""

    def __init__(self, key_id: str, public_key: rsa.RSAPublicKey, algorithm: str | None = None) -> None:
        if algorithm is not None:
            _check_wrap_algorithm(algorithm)
        self.key_id = key_id
        self.algorithm = algorithm
        self._public_key = public_key

    def wrap(self, content_key: bytes, algorithm: str) -> bytes:
        _check_wrap_algorithm(algorithm)
        return self._public_key.encrypt(content_key, _padding(algorithm))

    @classmethod
    def from_jwk(cls, key_id: str, n: bytes, e: bytes, algorithm: str | None) -> PublicKeyWrapper:
        numbers = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big"))
        return cls(key_id, numbers.public_key(), algorithm)


def _check_wrap_algorithm(algorithm: str) -> None:
    if algorithm not in WRAP_ALGORITHMS:
        raise PreconditionFailed(f"wrap algorithm {algorithm[:24]!r} is not accepted; use one of {WRAP_ALGORITHMS}")


def _padding(algorithm: str) -> padding.AsymmetricPadding:
    if algorithm == "RSA-OAEP-256":
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 - kept for blobs already wrapped with it


def fetch_wrapper(
    key: KeyRef,
    version: str,
    credential: TokenCredential,
    transport_kwargs: dict[str, Any],
    algorithm: str | None,
    *,
    verify_challenge_resource: bool = True,
) -> PublicKeyWrapper:
    """The new version's public key, read once (keys/read). Raises PreconditionFailed for a non-RSA key.

    The wrapper's ``key_id`` is the ``kid`` Key Vault returned, byte for byte (host, port and name case
    as the vault writes them), since azure-storage-blob's reader requires ``KeyId == kek.get_kid()``
    and the SDK's own KeyWrapper sample returns ``key.id``. It must still name ``version`` of ``key``.
    """
    client = KeyClient(
        key.vault_url, credential, verify_challenge_resource=verify_challenge_resource, **transport_kwargs
    )
    try:
        found = client.get_key(key.name, version)
    except AzureError as exc:
        raise _translate(exc, "reading the new key version") from None
    finally:
        client.close()
    jwk = found.key
    n, e, kty = getattr(jwk, "n", None), getattr(jwk, "e", None), getattr(jwk, "kty", None)
    kty_name = str(getattr(kty, "value", kty)).upper()
    if not isinstance(n, bytes) or not isinstance(e, bytes) or kty_name not in ("RSA", "RSA-HSM"):
        raise PreconditionFailed(f"{key.version_uri(version)} is not an RSA key; client-side re-wrap needs RSA")
    kid = str(getattr(jwk, "kid", None) or found.id or "")
    try:
        named, named_version = KeyRef.parse(kid)
    except InputError:
        named, named_version = None, None
    if named is None or not key.same_key(named) or (named_version or "").lower() != version.lower():
        raise PreconditionFailed(f"Key Vault answered for {key.version_uri(version)} with another kid")
    return PublicKeyWrapper.from_jwk(kid, n, e, algorithm)


class KeyVaultUnwrapper:
    """``Unwrapper`` over Key Vault: one ``CryptographyClient`` per version, cached for the process."""

    def __init__(
        self,
        credential: TokenCredential,
        transport_kwargs: dict[str, Any],
        *,
        verify_challenge_resource: bool = True,
        client_factory: Callable[[str], CryptographyClient] | None = None,
        pool_maxsize: int = 10,
    ) -> None:
        self._credential = credential
        self._pool_maxsize = pool_maxsize
        self._transport_kwargs = transport_kwargs
        self._verify = verify_challenge_resource
        self._clients: dict[str, CryptographyClient] = {}
        self._ready: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._factory = client_factory or self._build

    def _build(self, key_id: str) -> CryptographyClient:
        kwargs = direct_session_kwargs(self._transport_kwargs, self._pool_maxsize)
        return CryptographyClient(
            key_id, self._credential, verify_challenge_resource=self._verify, retry_total=0, **kwargs
        )

    def _client(self, key_id: str) -> tuple[CryptographyClient, bool]:
        """The version's client, and whether this caller created it (and so makes its first call)."""
        client = self._clients.get(key_id)
        if client is not None:
            return client, False
        with self._lock:
            client = self._clients.get(key_id)
            if client is not None:
                return client, False
            self._ready[key_id] = threading.Event()
            client = self._clients[key_id] = self._factory(key_id)
            return client, True

    def unwrap(self, key_id: str, algorithm: str, encrypted_key: bytes) -> bytes:
        try:
            if algorithm not in UNWRAP_ALGORITHMS:
                raise ValueError(algorithm)
            alg = KeyWrapAlgorithm(algorithm)
        except ValueError:
            raise UnwrapRefused(f"unsupported wrap algorithm {algorithm[:24]!r}") from None
        client, first = self._client(key_id)
        if not first:
            # The client reads the key (GET) on its first call; let that one call finish first so the
            # read happens once per version, not once per thread.
            self._ready[key_id].wait(timeout=30)
        try:
            return bytes(client.unwrap_key(alg, encrypted_key).key)
        except AzureError as exc:
            error = _translate(exc, "unwrapping a content key")
            if isinstance(error, TransientError | PermissionDenied):
                raise error from None
            raise UnwrapRefused(str(error)) from None
        except ValueError as exc:  # raised locally by the SDK, e.g. an expired or not-yet-valid version
            raise UnwrapRefused(f"unwrap refused by the client: {str(exc)[:120]}") from None
        finally:
            if first:
                self._ready[key_id].set()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _translate(exc: Exception, doing: str) -> Exception:
    """Map an azure-core error to the service's error tree (log-safe messages only)."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"Key Vault unreachable while {doing}: {type(exc).__name__}")
    if isinstance(exc, HttpResponseError) and exc.response is not None:
        status = exc.status_code or 0
        code = (exc.error.code if exc.error else None) or exc.reason or "error"
        if status == 429:
            header = getattr(exc.response, "headers", {}).get("Retry-After")
            retry_after = parse_retry_after(header) if header else None
            return ThrottledError(f"Key Vault throttled {doing} ({code})", retry_after)
        if status >= 500 or status == 408:
            return TransientError(f"Key Vault HTTP {status} while {doing} ({code})")
        if status == 401 or (status == 403 and "disabled" not in str(exc.message).lower()):
            return PermissionDenied(f"Key Vault HTTP {status} ({code}) while {doing}", _UNWRAP)
        return PreconditionFailed(f"Key Vault HTTP {status} ({code}) while {doing}")
    return TransientError(f"Key Vault call failed while {doing}: {type(exc).__name__}")


def parse_retry_after(value: str) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110); None when unreadable."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
