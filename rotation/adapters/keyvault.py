"""The ``KeyStore`` port over azure-keyvault-keys (``KeyClient``, ``CryptographyClient``), unmodified.

One ``KeyClient`` per vault, built on first use. Permissions are Key Vault data actions
(``Microsoft.KeyVault/vaults/keys/...``); each method names its own, and :data:`ACTIONS` declares them
all (the custom role in infra/ and docs/permissions.md are checked against it). No key material leaves
this module: the wrap/unwrap probe's random bytes are compared here and dropped.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.keyvault.keys import KeyClient, KeyProperties, KeyVaultKey
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from rotation.adapters.azure_errors import translated
from rotation.adapters.client_cache import ClientCache
from rotation.domain.model import KeyListPage, KeyRef, KeyVersion, RotationPolicy
from rotation.errors import PermissionDenied, RotationError, VerificationFailed
from rotation.logs import get_logger
from rotation.retry import TRANSPORT_RETRY

_log = get_logger(__name__)
API_VERSION = "7.6"  # spoken by Key Vault and by the local emulator
LIST_PAGE_SIZE = 25

_READ = "Microsoft.KeyVault/vaults/keys/read"
_CREATE = "Microsoft.KeyVault/vaults/keys/create/action"
_WRITE = "Microsoft.KeyVault/vaults/keys/update/action"  # UpdateKey (PATCH): tags, enabled
_POLICY = "Microsoft.KeyVault/vaults/keyrotationpolicies/read"
_WRAP = "Microsoft.KeyVault/vaults/keys/wrap/action"
_UNWRAP = "Microsoft.KeyVault/vaults/keys/unwrap/action"

#: The Key Vault data actions each method needs, on the managed key.
ACTIONS: Mapping[str, frozenset[str]] = {
    "get_key": frozenset({_READ}),
    "list_versions": frozenset({_READ}),
    "list_key_pages": frozenset({_READ}),
    "get_rotation_policy": frozenset({_POLICY}),
    "create_version": frozenset({_CREATE}),
    "update_version": frozenset({_WRITE}),
    # CryptographyClient reads the key first (public part), wraps locally, unwraps in Key Vault.
    "wrap_unwrap_probe": frozenset({_READ, _WRAP, _UNWRAP}),
}


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _key_size(key: KeyVaultKey) -> int | None:
    n = getattr(key.key, "n", None)
    return len(n) * 8 if n else None


def _from_properties(ref: KeyRef, props: KeyProperties, key: KeyVaultKey | None = None) -> KeyVersion:
    created = _utc(props.created_on) or datetime.fromtimestamp(0, UTC)
    return KeyVersion(
        key=ref,
        version=props.version or "",
        enabled=bool(props.enabled),
        created=created,
        updated=_utc(props.updated_on),
        not_before=_utc(props.not_before),
        expires=_utc(props.expires_on),
        kty=str(getattr(key.key_type, "value", key.key_type)) if key is not None and key.key_type else "RSA",
        key_size=_key_size(key) if key is not None else None,
        key_ops=tuple(str(getattr(op, "value", op)) for op in (key.key_operations or ())) if key is not None else (),
        tags=dict(props.tags or {}),
    )


class KeyVaultKeyStore:
    """Implements ``rotation.ports.KeyStore``."""

    def __init__(
        self,
        credential: TokenCredential,
        transport_kwargs: dict[str, Any],
        *,
        verify_challenge_resource: bool = True,
        probe_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """
        Args:
            probe_source: random bytes for the wrap/unwrap probe (tests record them to prove they never leak).
        """
        self._probe_source = probe_source
        self._credential = credential
        self._kwargs: dict[str, Any] = {
            **TRANSPORT_RETRY,
            **transport_kwargs,
            "api_version": API_VERSION,
            "verify_challenge_resource": verify_challenge_resource,
        }
        self._client: ClientCache[str, KeyClient] = ClientCache(
            lambda vault_url: KeyClient(vault_url, self._credential, **self._kwargs)
        )

    def close(self) -> None:
        for client in self._client.built():
            client.close()

    def get_key(self, key: KeyRef, version: str | None = None) -> KeyVersion:
        """One version (the latest without ``version``). Needs keys/read; safe to repeat.

        Azure answers a GET of a disabled *secret* version with 403 (inner ``SecretDisabled``); for keys
        that is not verified. A 403 on a version the version list shows disabled is therefore that
        version, disabled, read from the list's attributes (``kty``, size and ``key_ops`` are not in the
        list and come back as their defaults); any other 403 stays ``PermissionDenied``.
        """
        try:
            with translated(f"read {key.uri}{'/' + version if version else ''}", _READ):
                found = self._client(key.vault_url).get_key(key.name, version)
        except PermissionDenied:
            listed = self._disabled_version(key, version) if version else None
            if listed is None:
                raise
            return listed
        return _from_properties(key, found.properties, found)

    def _disabled_version(self, key: KeyRef, version: str) -> KeyVersion | None:
        """``version`` as the version list shows it, when the list shows it disabled; otherwise None."""
        try:
            listed = self.list_versions(key)
        except RotationError:
            return None  # the list is refused too: the 403 was the caller's permission, report that
        match = next((v for v in listed if KeyRef.same_version(v.version, version)), None)
        if match is None or match.enabled:
            return None
        _log.info(
            "key_version_read_from_list", key=key.uri, version=version, reason="GET of a disabled version refused"
        )
        return match

    def list_versions(self, key: KeyRef) -> list[KeyVersion]:
        with translated(f"list the versions of {key.uri}", _READ):
            props = list(self._client(key.vault_url).list_properties_of_key_versions(key.name))
        return [_from_properties(key, p) for p in props]

    def list_key_pages(self, vault_url: str) -> Iterator[KeyListPage]:
        """Every key's current attributes, ``LIST_PAGE_SIZE`` keys per list call; a page is fetched only when
        the caller asks for it, and says whether Key Vault gave a ``nextLink`` (more pages)."""
        with translated(f"list the keys of {vault_url}", _READ):
            pages = self._client(vault_url).list_properties_of_keys(max_page_size=LIST_PAGE_SIZE).by_page()
            for page in pages:
                keys = tuple(_from_properties(KeyRef(vault_url, props.name or ""), props) for props in page)
                # azure-core's PageIterator holds the nextLink it will follow (None after the last page);
                # without that attribute, more pages are assumed (the caller then reads keys on their own).
                yield KeyListPage(keys, more=getattr(pages, "continuation_token", "") is not None)

    def get_rotation_policy(self, key: KeyRef) -> RotationPolicy | None:
        with translated(f"read the rotation policy of {key.uri}", _POLICY):
            policy = self._client(key.vault_url).get_key_rotation_policy(key.name)
        rotate_after = rotate_before = notify_before = None
        for action in policy.lifetime_actions or ():
            # KeyRotationPolicyAction is a (str, Enum): str() of it is "KeyRotationPolicyAction.rotate".
            kind = str(getattr(action.action, "value", action.action)).lower()
            if kind == "rotate":
                rotate_after = action.time_after_create or rotate_after
                rotate_before = action.time_before_expiry or rotate_before
            elif kind == "notify":
                notify_before = action.time_before_expiry or notify_before
        return RotationPolicy(policy.expires_in, rotate_after, rotate_before, notify_before)

    def create_version(
        self, key: KeyRef, like: KeyVersion, tags: dict[str, str], expires: datetime | None
    ) -> KeyVersion:
        with translated(f"create a version of {key.uri}", _CREATE):
            created = self._client(key.vault_url).create_key(
                key.name,
                like.kty,
                size=like.key_size,
                key_operations=list(like.key_ops) or None,
                tags=tags,
                expires_on=expires,
            )
        return _from_properties(key, created.properties, created)

    def update_version(
        self, key: KeyRef, version: str, *, enabled: bool | None = None, tags: dict[str, str] | None = None
    ) -> KeyVersion:
        with translated(f"update {key.uri}/{version}", _WRITE):
            updated = self._client(key.vault_url).update_key_properties(key.name, version, enabled=enabled, tags=tags)
        return _from_properties(key, updated.properties, updated)

    def wrap_unwrap_probe(self, key: KeyRef, version: str) -> None:
        probe = self._probe_source(32)
        crypto = CryptographyClient(key.version_uri(version), self._credential, **self._kwargs)
        try:
            with translated(f"wrap with {key.uri}/{version}", _WRAP):
                wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, probe)
            with translated(f"unwrap with {key.uri}/{version}", _UNWRAP):
                unwrapped = crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
        finally:
            crypto.close()
        if not hmac.compare_digest(unwrapped.key, probe):
            raise VerificationFailed(f"wrap/unwrap round trip with {key.uri}/{version} did not match")
