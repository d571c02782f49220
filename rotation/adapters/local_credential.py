"""A credential for the local emulators only: an unsigned JWT whose ``oid`` names the caller.

Settings refuse it unless every endpoint is on loopback (``ROTATION_LOCAL_PRINCIPAL``).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken


class LocalDevelopmentCredential:
    """Implements azure-core's ``TokenCredential`` protocol for the local emulators."""

    def __init__(self, principal_id: str, tenant_id: str = "local") -> None:
        self.principal_id = principal_id
        self.tenant_id = tenant_id

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        audience = scopes[0].removesuffix("/.default") if scopes else ""
        expires_on = int(time.time()) + 3600
        claims = {"oid": self.principal_id, "tid": self.tenant_id, "aud": audience, "exp": expires_on}
        host = urlsplit(audience).hostname or ""
        claims["iss"] = f"https://sts.local/{self.tenant_id}/" if host else "local"
        token = ".".join((_b64({"alg": "none", "typ": "JWT"}), _b64(claims), "local"))
        return AccessToken(token, expires_on)

    def close(self) -> None:
        """Nothing to release."""


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()
