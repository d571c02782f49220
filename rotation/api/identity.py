"""Who is calling: the identity that goes into the Trigger and so the audit record.

App Service authentication ("Easy Auth") puts the signed-in principal in ``X-MS-CLIENT-PRINCIPAL-NAME``
and ``X-MS-CLIENT-PRINCIPAL-ID`` and strips any such header a client sends. Without it in front of
the app, anyone holding the function key could send those headers, so they are read only when
``ROTATION_TRUST_CLIENT_PRINCIPAL_HEADERS=true``. Otherwise the caller is recorded as
:data:`ANONYMOUS_CALLER`: the function key authorised the call, the key itself names nobody.
"""

from __future__ import annotations

from collections.abc import Mapping

ANONYMOUS_CALLER = "anonymous-function-key"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
PRINCIPAL_ID_HEADER = "x-ms-client-principal-id"
_MAX_CHARS = 200


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = "".join(c for c in value.strip() if c.isprintable())[:_MAX_CHARS]
    return cleaned or None


def caller_identity(headers: Mapping[str, str], *, trust_principal_headers: bool) -> str:
    """``name (object-id)`` from the platform's headers when trusted, else :data:`ANONYMOUS_CALLER`."""
    if not trust_principal_headers:
        return ANONYMOUS_CALLER
    lowered = {k.lower(): v for k, v in headers.items()}
    name = _clean(lowered.get(PRINCIPAL_NAME_HEADER))
    principal_id = _clean(lowered.get(PRINCIPAL_ID_HEADER))
    if name and principal_id:
        return f"{name} ({principal_id})"
    return name or principal_id or ANONYMOUS_CALLER
