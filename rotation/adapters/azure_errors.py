"""Translate azure-core exceptions into ``rotation.errors``; nothing from the SDK escapes an adapter.

Messages name the operation, the resource and the service's error code: never a token, a key or a
connection string (response bodies are reduced to their ``error.code`` and ``error.message``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from rotation.errors import (
    JournalConflict,
    PermissionDenied,
    PreconditionFailed,
    RotationError,
    ThrottledError,
    TransientError,
    VerificationFailed,
)

#: The least role a storage account's or workspace's own identity needs on its customer-managed key.
CONSUMER_KEY_ROLE = "Key Vault Crypto Service Encryption User"

_ACTION_IN_MESSAGE = re.compile(r"[Aa]ction:? '([^']+)'|perform action '([^']+)'")
_SECRETISH = re.compile(r"(AccountKey|SharedAccessSignature|sig|Bearer)[=: ]\S+", re.IGNORECASE)


class NotFound(PreconditionFailed):
    """The named resource (key, version, account, workspace, rotation) does not exist."""

    code = "NotFound"


def error_code_and_message(exc: HttpResponseError) -> tuple[str, str]:
    """The service's ``error.code`` and ``error.message`` (ARM, Key Vault and Storage shapes)."""
    code = ""
    message = exc.reason or ""
    error: Any = getattr(exc, "error", None)
    if error is not None and getattr(error, "code", None):
        code = str(error.code)
        message = str(getattr(error, "message", "") or message)
    else:
        response: Any = exc.response
        if response is not None:
            try:
                body = response.json()
                inner = body.get("error") or body.get("odata.error") or {}
                code = str(inner.get("code") or "")
                raw = inner.get("message")
                message = str(raw.get("value") if isinstance(raw, dict) else raw or message)
            except (ValueError, AttributeError, TypeError):
                pass
    if not code:
        code = str(getattr(exc, "error_code", "") or "")
    return code or "Unknown", _SECRETISH.sub(r"\1=[redacted]", message)[:400]


def retry_after(exc: HttpResponseError) -> float | None:
    response: Any = exc.response
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def translate(
    exc: AzureError,
    what: str,
    permission: str,
    *,
    named_action: bool = True,
    credential_failure_denied: bool = False,
    refused_key_fails_verification: bool = True,
    non_error_status_transient: bool = False,
) -> RotationError:
    """One azure-core error as a rotation error.

    Args:
        what: the operation and resource, e.g. ``"create a version of https://kv/keys/cmk"``.
        permission: the action the operation needs, named in PermissionDenied.
        named_action: name in PermissionDenied the action the service's 401/403 message names, if it
            names one; if False, always ``permission``.
        credential_failure_denied: a credential that could not get a token (no response) is
            PermissionDenied; if False it is TransientError like any other failure without a status.
        refused_key_fails_verification: a 400 whose code names a key is VerificationFailed (Azure refused
            the key for a consumer); if False it is PreconditionFailed like any other 400.
        non_error_status_transient: a failure on a response whose status is not an error (a body cut
            short, a long-running operation that ended badly) is TransientError; if False, PreconditionFailed.
    """
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"could not {what}: connection failed ({type(exc).__name__})")
    if credential_failure_denied and isinstance(exc, ClientAuthenticationError) and exc.response is None:
        return PermissionDenied(f"could not {what}: authentication failed", permission)
    if not isinstance(exc, HttpResponseError):
        return TransientError(f"could not {what}: {type(exc).__name__}")
    status = exc.status_code or 0
    if non_error_status_transient and status < 400:
        return TransientError(f"could not {what}: {type(exc).__name__}")
    code, message = error_code_and_message(exc)
    if status == 429:
        return ThrottledError(f"could not {what}: throttled ({code})", retry_after=retry_after(exc))
    if status >= 500 or status in {408, 0}:
        return TransientError(f"could not {what}: {status} {code}")
    if status in (401, 403):
        named = _ACTION_IN_MESSAGE.search(message) if named_action else None
        action = next((g for g in named.groups() if g), permission) if named else permission
        return PermissionDenied(f"could not {what}: {action} denied ({code}): {message}", action)
    if isinstance(exc, ResourceModifiedError) or status == 412:
        return JournalConflict(f"could not {what}: changed concurrently ({code})")
    if isinstance(exc, ResourceExistsError) or status == 409:
        return PreconditionFailed(f"could not {what}: conflict ({code}): {message}")
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return NotFound(f"could not {what}: not found ({code})")
    if refused_key_fails_verification and status == 400 and "key" in code.lower():
        # Azure checked the key as the resource's identity and refused it: the consumer stays where it was.
        hint = ""
        if code == "KeyVaultAuthenticationFailure":
            # Azure tried the key as the consumer's own managed identity and was refused.
            hint = (
                " (the consumer's managed identity needs keys get, wrapKey and unwrapKey on the key:"
                f" role {CONSUMER_KEY_ROLE})"
            )
        return VerificationFailed(f"could not {what}: the key was refused ({code}){hint}: {message}")
    return PreconditionFailed(f"could not {what}: refused ({status} {code}): {message}")


@contextmanager
def translated(
    what: str,
    permission: str,
    *,
    let_through: tuple[type[AzureError], ...] = (),
    **options: bool,
) -> Iterator[None]:
    """Run SDK calls, raising any azure-core error as its rotation error.

    Args:
        let_through: azure-core errors raised as they are, for callers that branch on them (e.g.
            ``ResourceExistsError`` from a conditional write).
        options: the keyword options of :func:`translate`.
    """
    try:
        yield
    except let_through:
        raise
    except AzureError as exc:
        raise translate(exc, what, permission, **options) from None
