"""Key Vault error responses, in the service's wire shape.

Every failure the emulator returns is a :class:`KeyVaultError`: an HTTP status plus the body
``{"error": {"code", "message", "innererror"?}}`` as the real service sends it (see
``samples/keyvault/errors.recorded-responses.md``). Handlers raise; the app turns it into a response.
"""

from __future__ import annotations

import json

SUPPORTED_API_VERSIONS = ("2025-07-01", "7.6", "7.5", "7.4")
LATEST_API_VERSION = SUPPORTED_API_VERSIONS[0]
NOT_FOUND_HELP = "https://go.microsoft.com/fwlink/?linkid=2125182"


class KeyVaultError(Exception):
    """A failure with the status, code, message and optional inner code the service would return."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        inner: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def body(self) -> bytes:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return json.dumps({"error": error}, separators=(",", ":")).encode()


def bad_parameter(message: str) -> KeyVaultError:
    return KeyVaultError(400, "BadParameter", message)


def key_not_found(name: str) -> KeyVaultError:
    return KeyVaultError(
        404,
        "KeyNotFound",
        f"A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be "
        f"able to recover it using the correct recovery command. For help resolving this issue, please see "
        f"{NOT_FOUND_HELP}",
    )


def deleted_key_not_found(name: str) -> KeyVaultError:
    return KeyVaultError(404, "KeyNotFound", f"Deleted Key not found: {name}")


def unauthorized(message: str) -> KeyVaultError:
    return KeyVaultError(401, "Unauthorized", message)


def throttled(retry_after: int) -> KeyVaultError:
    return KeyVaultError(
        429,
        "Throttled",
        "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        headers={"Retry-After": str(retry_after)},
    )


def unsupported_api_version(version: str) -> KeyVaultError:
    # Wording as the service returns it (Azure/azure-sdk-for-python#28595, Azure/azure-sdk-for-net#14789).
    return bad_parameter(
        f"The specified version ({version}) is not recognized. Consider using the latest supported version "
        f"({LATEST_API_VERSION})."
    )


def disabled_key(operation: str) -> KeyVaultError:
    return KeyVaultError(403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.", "KeyDisabled")


def conflict_deleted(name: str) -> KeyVaultError:
    return KeyVaultError(
        409,
        "Conflict",
        f"Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, "
        "the key can only be recovered or purged.",
    )
