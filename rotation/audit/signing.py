"""Checkpoint signing: the ``CheckpointSigner`` port and its Key Vault adapter.

A checkpoint anchors the chain: a signature over (seq, head hash, time) made with a key only the
service's identity can use for ``sign``. Rewriting the whole chain then needs that key too.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

from rotation.adapters.azure_errors import NotFound, translated
from rotation.adapters.client_cache import ClientCache
from rotation.domain.model import KeyRef
from rotation.errors import InputError, excerpt

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

RS256 = "RS256"

_READ = "Microsoft.KeyVault/vaults/keys/read"
_SIGN = "Microsoft.KeyVault/vaults/keys/sign/action"
_VERIFY = "Microsoft.KeyVault/vaults/keys/verify/action"

#: The Key Vault data actions each method needs, on the audit signing key (``CryptographyClient`` reads
#: the key version first).
ACTIONS: Mapping[str, frozenset[str]] = {
    "KeyVaultCheckpointSigner.sign": frozenset({_READ, _SIGN}),
    "KeyVaultCheckpointSigner.verify": frozenset({_READ, _VERIFY}),
}


@dataclass(frozen=True)
class Signature:
    key_id: str  # the versioned key identifier that made it
    algorithm: str
    value: bytes


class CheckpointSigner(Protocol):
    """Signs checkpoint digests and checks signatures made earlier (perhaps by an older key version)."""

    def sign(self, digest: bytes) -> Signature:
        """Sign a SHA-256 ``digest``. NOT free: one Key Vault operation. Safe to repeat."""
        ...

    def verify(self, key_id: str, algorithm: str, digest: bytes, signature: bytes) -> bool:
        """True only if ``signature`` over ``digest`` verifies with ``key_id``, a version of this signer's key."""
        ...


class KeyVaultCheckpointSigner:
    """Signs with the latest version of a Key Vault RSA key (RS256); verifies with any of its versions.

    Permissions: keys/sign/action to sign; keys/read (public key, verified locally) or
    keys/verify/action to verify. Errors are translated to ``rotation.errors``.
    """

    def __init__(
        self,
        key_uri: str,
        credential: TokenCredential,
        transport_kwargs: dict[str, Any],
        verify_challenge_resource: bool,
    ) -> None:
        key, version = KeyRef.parse(key_uri)
        if version is not None:
            raise InputError(f"the audit signing key must be versionless, not {excerpt(key_uri)}")
        self.key = key
        self._credential = credential
        self._client_kwargs: dict[str, Any] = {
            **transport_kwargs,
            "verify_challenge_resource": verify_challenge_resource,
        }
        self._client: ClientCache[str, CryptographyClient] = ClientCache(
            lambda key_id: CryptographyClient(key_id, self._credential, **self._client_kwargs)
        )

    def sign(self, digest: bytes) -> Signature:
        # A fresh client each time: one built on the versionless id pins the version it first
        # resolved, and checkpoints must follow the signing key when it rotates.
        with (
            _translated("sign an audit checkpoint", "keys/sign/action", self.key.uri),
            CryptographyClient(self.key.uri, self._credential, **self._client_kwargs) as client,
        ):
            result = client.sign(SignatureAlgorithm.rs256, digest)
        key_id = result.key_id or self.key.uri
        return Signature(key_id=key_id, algorithm=RS256, value=result.signature)

    def verify(self, key_id: str, algorithm: str, digest: bytes, signature: bytes) -> bool:
        try:
            key, version = KeyRef.parse(key_id)
        except InputError:
            return False
        if key != self.key or version is None or algorithm != RS256:
            return False  # signed by some other key: not an anchor this service trusts
        try:
            with _translated("verify an audit checkpoint", "keys/verify/action", key_id):
                return bool(self._client(key_id).verify(SignatureAlgorithm.rs256, digest, signature).is_valid)
        except NotFound:
            return False  # that version no longer exists: the signature cannot be vouched for


def _translated(action: str, permission: str, key_id: str) -> AbstractContextManager[None]:
    """Turn azure-core errors into ``rotation.errors`` naming ``permission`` as this signer's docs do."""
    return translated(
        f"{action} with {key_id}",
        permission,
        named_action=False,
        credential_failure_denied=True,
        refused_key_fails_verification=False,
    )
