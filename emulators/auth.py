"""Bearer tokens for the local emulators.

Tokens are JWTs whose ``oid`` claim names the caller. The signature is not checked (this is a
local emulator), but the shape is: three base64url segments, a JSON payload, an ``oid`` string.
"""

from __future__ import annotations

import base64
import json


class TokenError(ValueError):
    """The Authorization header does not carry a usable bearer token."""


def principal_from_authorization(header: str | None) -> str:
    """Return the ``oid`` of the bearer token in an Authorization header.

    Raises:
        TokenError: no header, not a Bearer token, not a JWT, or no ``oid`` claim.
    """
    if not header:
        raise TokenError("Request is missing a Bearer or PoP token.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("bearer", "pop") or not token.strip():
        raise TokenError("Request is missing a Bearer or PoP token.")
    segments = token.strip().split(".")
    if len(segments) != 3:
        raise TokenError("The token is not a JWT.")
    try:
        payload = segments[1] + "=" * (-len(segments[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, json.JSONDecodeError) as exc:
        raise TokenError("The token payload is not base64url JSON.") from exc
    oid = claims.get("oid") if isinstance(claims, dict) else None
    if not isinstance(oid, str) or not oid:
        raise TokenError("The token has no oid claim.")
    return oid


def make_token(oid: str, audience: str = "https://vault.azure.net", tenant: str = "local") -> str:
    """An unsigned JWT naming ``oid``, as the local credential and the ARM emulator send it."""

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'oid': oid, 'aud': audience, 'tid': tenant})}.local"
