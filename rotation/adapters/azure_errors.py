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
    ProviderKeyVaultUnavailable,
    RotationError,
    ThrottledError,
    TransientError,
    VerificationFailed,
)

#: The least role a storage account's or workspace's own identity needs on its customer-managed key.
CONSUMER_KEY_ROLE = "Key Vault Crypto Service Encryption User"

#: Codes with which a resource provider says it could not reach Key Vault (a condition that may pass), found
#: anywhere in an error (``code``, ``innerError`` chain, ``details``). No Microsoft capture of Storage's or ML's
#: control-plane answer was found; these are the names Azure's CMK services use (Cosmos DB's CMK sub-status
#: codes 4004 KeyVaultServiceUnavailable, 4008 KeyVaultInternalServerError, 4009 KeyVaultDNSNotResolved) and
#: the ML provider's inner reason. See docs/emulators/arm.md "Resource-provider Key Vault outage".
KEY_VAULT_UNREACHABLE_CODES = frozenset(
    code.lower()
    for code in (
        "KeyVaultServiceUnavailable",
        "KeyVaultUnavailable",
        "KeyVaultInternalServerError",
        "KeyVaultDNSNotResolved",
        "KeyVaultRequestThrottled",
    )
)

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
    return code or "Unknown", redacted(message)


def redacted(message: str) -> str:
    """A service message fit for errors and logs: anything shaped like a credential removed, at most 400 chars."""
    return _SECRETISH.sub(r"\1=[redacted]", message)[:400]


def error_codes(body: Any) -> list[str]:
    """Every ``code`` in an ARM error body or operation resource: ``error``, its ``innerError`` chain and
    ``details``, outermost first."""
    found: list[str] = []

    def walk(node: Any, depth: int) -> None:
        if not isinstance(node, dict) or depth > 8:
            return
        if isinstance(node.get("code"), str):
            found.append(node["code"])
        for key in ("innerError", "innererror"):
            walk(node.get(key), depth + 1)
        details = node.get("details")
        if isinstance(details, list):
            for item in details:
                walk(item, depth + 1)

    if isinstance(body, dict):
        walk(body.get("error") or body.get("odata.error"), 0)
    return found


def response_body(exc: HttpResponseError) -> Any:
    """The JSON body of the response an error carries, or None."""
    response: Any = exc.response
    if response is None:
        return None
    try:
        return response.json()
    except (ValueError, AttributeError, TypeError):
        return None


def provider_key_vault_unreachable(codes: list[str]) -> bool:
    return any(code.lower() in KEY_VAULT_UNREACHABLE_CODES for code in codes)


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
    codes = error_codes(response_body(exc))
    if status >= 400 and provider_key_vault_unreachable(codes):
        # The resource provider could not reach Key Vault to check the key: not a refusal; it may pass.
        return ProviderKeyVaultUnavailable(
            f"could not {what}: the resource provider could not reach Key Vault ({status} {'/'.join(codes)}): {message}"
        )
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
