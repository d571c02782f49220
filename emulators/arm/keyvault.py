"""Asks the Key Vault emulator whether a key is usable by an identity, as Azure Storage and ML do.

Vaults are found through the Key Vault emulator's admin API (``GET /admin/vaults``); the key is
checked through the public Key Vault REST API *as the resource's identity*: GET the key (or the
pinned version), then wrapkey + unwrapkey of random bytes. Nothing here knows the Key Vault
emulator's internals.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from emulators.auth import make_token

KV_API_VERSION = "7.6"
MIN_RSA_BITS = 2048


class KeyProblem(Exception):
    """Why a key cannot be used. ``kind`` is one of the constants below; ``message`` is log-safe."""

    VAULT_NOT_FOUND = "VaultNotFound"
    FORBIDDEN = "Forbidden"
    KEY_NOT_FOUND = "KeyNotFound"
    VERSION_NOT_FOUND = "VersionNotFound"
    DISABLED = "Disabled"
    EXPIRED = "Expired"
    NOT_YET_VALID = "NotYetValid"
    UNSUPPORTED_KEY = "UnsupportedKey"
    OPERATION_NOT_ALLOWED = "OperationNotAllowed"
    WRAP_FAILED = "WrapUnwrapFailed"
    UNAVAILABLE = "Unavailable"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class KeyVaultOutage(KeyProblem):
    """A resource provider's own key check failed because Key Vault could not be reached (an emulator mode).

    ``status`` is the HTTP status the provider answers with; ``delivery`` says whether an ML workspace
    update refuses at once (``response``) or accepts and fails its operation (``operation``).
    """

    def __init__(self, status: int, delivery: str) -> None:
        super().__init__(
            KeyProblem.UNAVAILABLE,
            "The key vault could not be reached to validate the key. The operation can be retried later.",
        )
        self.status = status
        self.delivery = delivery


@dataclass(frozen=True)
class KeyRef:
    """A key named by vault URL, key name and optional version."""

    vault_url: str
    name: str
    version: str = ""

    @property
    def versionless_id(self) -> str:
        return f"{self.vault_url}/keys/{self.name}"


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    version: str
    expires: int | None
    enabled: bool


def normalise_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no trailing slash: how vault URLs are compared."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port in (None, 443) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


class KeyVaultGateway:
    """The Key Vault emulator as the ARM emulator sees it."""

    def __init__(self, admin_url: str | None, ca_bundle: str | None) -> None:
        self.admin_url = admin_url.rstrip("/") if admin_url else None
        self._http = httpx.AsyncClient(verify=ca_bundle or True, timeout=10.0)

    async def close(self) -> None:
        await self._http.aclose()

    async def vaults(self) -> list[dict[str, Any]]:
        if not self.admin_url:
            return []
        try:
            response = await self._http.get(f"{self.admin_url}/admin/vaults")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise KeyProblem(KeyProblem.UNAVAILABLE, f"the Key Vault emulator did not answer: {exc}") from None
        return list(response.json().get("value", []))

    async def now(self) -> float:
        """The Key Vault emulator's clock (expiry is judged by the vault's time), else real time."""
        if self.admin_url:
            try:
                response = await self._http.get(f"{self.admin_url}/admin/clock")
                if response.status_code == 200:
                    return float(response.json()["now"])
            except (httpx.HTTPError, ValueError, KeyError):
                pass
        return time.time()

    async def vault_by_url(self, url: str) -> dict[str, Any] | None:
        wanted = normalise_url(url)
        for vault in await self.vaults():
            if normalise_url(str(vault.get("url", ""))) == wanted:
                return vault
        return None

    async def vault_by_arm_id(self, arm_id: str) -> dict[str, Any] | None:
        for vault in await self.vaults():
            if str(vault.get("arm_id", "")).lower() == arm_id.lower():
                return vault
        return None

    async def parse_key_id(self, key_id: str) -> tuple[dict[str, Any], KeyRef]:
        """Split a key identifier (``{vault url}/keys/{name}[/{version}]``) by the known vault URLs."""
        key_parts = urlsplit(key_id.strip())
        key_origin = normalise_url(f"{key_parts.scheme}://{key_parts.netloc}")
        for vault in await self.vaults():
            vault_parts = urlsplit(str(vault.get("url", "")))
            vault_path = vault_parts.path.rstrip("/")
            if normalise_url(f"{vault_parts.scheme}://{vault_parts.netloc}") != key_origin:
                continue
            if not key_parts.path.lower().startswith(vault_path.lower() + "/"):
                continue
            rest = [p for p in key_parts.path[len(vault_path) :].split("/") if p]
            if len(rest) in (2, 3) and rest[0].lower() == "keys":
                version = rest[2] if len(rest) == 3 else ""
                return vault, KeyRef(str(vault["url"]).rstrip("/"), rest[1], version)
        raise KeyProblem(
            KeyProblem.VAULT_NOT_FOUND, f"The key identifier '{key_id}' does not name a key in a known key vault."
        )

    async def check_key(self, ref: KeyRef, principal_id: str) -> KeyInfo:
        """GET the key (the pinned version, else the newest) and wrap + unwrap with it as ``principal_id``.

        Raises:
            KeyProblem: the key cannot be used by that identity, with the reason.
        """
        info, key = await self._get_key(ref, principal_id)
        attributes = key.get("attributes", {})
        if not attributes.get("enabled", True):
            raise KeyProblem(KeyProblem.DISABLED, f"The key version '{info.kid}' is disabled.")
        nbf = attributes.get("nbf")
        timed = info.expires is not None or isinstance(nbf, int | float)
        kv_now = await self.now() if timed else 0.0  # the vault's clock, asked only when a date is to be judged
        if info.expires is not None and info.expires <= kv_now:
            raise KeyProblem(KeyProblem.EXPIRED, f"The key version '{info.kid}' expired.")
        if isinstance(nbf, int | float) and nbf > kv_now:
            raise KeyProblem(KeyProblem.NOT_YET_VALID, f"The key version '{info.kid}' is not yet valid.")
        jwk = key.get("key", {})
        if jwk.get("kty") not in ("RSA", "RSA-HSM"):
            raise KeyProblem(
                KeyProblem.UNSUPPORTED_KEY, f"The key '{ref.versionless_id}' is {jwk.get('kty')}, not RSA."
            )
        bits = _rsa_bits(str(jwk.get("n", "")))
        if bits < MIN_RSA_BITS:
            raise KeyProblem(
                KeyProblem.UNSUPPORTED_KEY,
                f"The key '{ref.versionless_id}' is RSA {bits}; RSA 2048, 3072 or 4096 is required.",
            )
        ops = jwk.get("key_ops")
        if isinstance(ops, list) and not {"wrapKey", "unwrapKey"} <= set(ops):
            raise KeyProblem(
                KeyProblem.OPERATION_NOT_ALLOWED,
                f"The key '{ref.versionless_id}' does not permit the wrapKey and unwrapKey operations.",
            )
        await self._wrap_round_trip(info, principal_id)
        return info

    async def latest(self, ref: KeyRef, principal_id: str) -> KeyInfo:
        """The newest version of a key, read as ``principal_id`` (no usability checks)."""
        info, _ = await self._get_key(KeyRef(ref.vault_url, ref.name, ""), principal_id)
        return info

    async def _get_key(self, ref: KeyRef, principal_id: str) -> tuple[KeyInfo, dict[str, Any]]:
        url = f"{ref.versionless_id}/{ref.version}"
        response = await self._call("GET", url, principal_id)
        if response.status_code in (401, 403):
            raise KeyProblem(
                KeyProblem.FORBIDDEN,
                f"The identity '{principal_id}' may not get the key '{ref.versionless_id}'.",
            )
        if response.status_code == 404:
            if ref.version:
                raise KeyProblem(
                    KeyProblem.VERSION_NOT_FOUND,
                    f"The key version '{ref.versionless_id}/{ref.version}' was not found in the key vault.",
                )
            raise KeyProblem(KeyProblem.KEY_NOT_FOUND, f"The key '{ref.versionless_id}' was not found.")
        if response.status_code != 200:
            raise KeyProblem(KeyProblem.UNAVAILABLE, f"The key vault answered {response.status_code}.")
        body = response.json()
        kid = str(body.get("key", {}).get("kid", ""))
        expires = body.get("attributes", {}).get("exp")
        enabled = bool(body.get("attributes", {}).get("enabled", True))
        info = KeyInfo(kid, kid.rstrip("/").rsplit("/", 1)[-1], int(expires) if expires is not None else None, enabled)
        return info, body

    async def _wrap_round_trip(self, info: KeyInfo, principal_id: str) -> None:
        secret = os.urandom(32)
        wrapped = await self._call(
            "POST", f"{info.kid}/wrapkey", principal_id, {"alg": "RSA-OAEP-256", "value": _b64url(secret)}
        )
        if wrapped.status_code in (401, 403):
            raise KeyProblem(KeyProblem.FORBIDDEN, f"The identity '{principal_id}' may not wrap with the key.")
        if wrapped.status_code != 200:
            raise KeyProblem(KeyProblem.WRAP_FAILED, f"wrapkey answered {wrapped.status_code}.")
        unwrapped = await self._call(
            "POST", f"{info.kid}/unwrapkey", principal_id, {"alg": "RSA-OAEP-256", "value": wrapped.json()["value"]}
        )
        if unwrapped.status_code in (401, 403):
            raise KeyProblem(KeyProblem.FORBIDDEN, f"The identity '{principal_id}' may not unwrap with the key.")
        if unwrapped.status_code != 200 or _b64decode(str(unwrapped.json().get("value", ""))) != secret:
            raise KeyProblem(KeyProblem.WRAP_FAILED, f"unwrapkey answered {unwrapped.status_code}.")

    async def _call(
        self, method: str, url: str, principal_id: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {make_token(principal_id)}", "Accept": "application/json"}
        try:
            return await self._http.request(
                method, url, params={"api-version": KV_API_VERSION}, headers=headers, json=body
            )
        except httpx.HTTPError as exc:
            raise KeyProblem(KeyProblem.UNAVAILABLE, f"the key vault did not answer: {type(exc).__name__}") from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(value: str) -> bytes:
    # Key Vault answers base64url, but Microsoft's own example uses standard base64: accept both.
    value = value.replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _rsa_bits(n: str) -> int:
    try:
        return int.from_bytes(_b64decode(n), "big").bit_length() if n else 0
    except ValueError:
        return 0
