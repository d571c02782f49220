"""The one error tree of the rotation service.

Every failure the service reports is one of these. SDK exceptions are translated inside the
adapters (``rotation/adapters``) and never escape them, so callers branch on meaning, not on
transport details::

    RotationError                      root: anything the service reports
    ├── SettingsError                  a setting is missing or malformed (fix configuration)
    ├── InputError                     a caller's input is malformed (HTTP 400, CLI exit 2)
    │   ├── UnknownKeyError            the key is not a managed key (HTTP 404)
    │   ├── RotationNotFound           no rotation has that id (HTTP 404)
    │   └── AuditRecordNotFound        no audit record has that id (HTTP 404)
    ├── TransientError                 may succeed if repeated (429, 5xx, dropped connection)
    │   ├── ThrottledError             the service asked us to slow down (carries retry_after)
    │   └── ProviderKeyVaultUnavailable  a resource provider could not reach Key Vault to check the key
    ├── PreconditionFailed             stop, nothing was changed (safe); the reason says why
    │   ├── PermissionDenied           an identity lacks a named permission
    │   ├── RotationInProgress         another rotation of the key holds the lock (HTTP 409)
    │   └── JournalConflict            the journal entry changed under us: another executor owns it
    ├── VerificationFailed             a check after a change failed: roll back
    └── NeedsHuman                     the service cannot safely continue: page on-call

Messages never contain key material, data keys, tokens or connection secrets.
"""

from __future__ import annotations

EXCERPT_CHARS = 60


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped rendering of caller input for an error message: at most ``limit`` characters,
    non-printable characters replaced, quoted (``repr``), with ``...`` when cut."""
    text = value if isinstance(value, str) else repr(value)
    printable = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    cut = printable[:limit] + ("..." if len(printable) > limit else "")
    return repr(cut)


class RotationError(Exception):
    """Root of every error the rotation service reports."""

    #: Stable machine-readable code, used in HTTP error bodies, the journal and audit records.
    code = "RotationError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SettingsError(RotationError):
    """A setting is missing or malformed; the message names the setting and the expected form."""

    code = "SettingsError"

    def __init__(self, setting: str, problem: str, expected: str) -> None:
        super().__init__(f"setting {setting}: {problem}; expected {expected}")
        self.setting = setting
        self.problem = problem
        self.expected = expected


class InputError(RotationError):
    """A caller's input (HTTP body, CLI argument, event) is malformed."""

    code = "InputError"


class UnknownKeyError(InputError):
    """The key named by a caller is not one of the managed keys."""

    code = "UnknownKey"


class RotationNotFound(InputError):
    """No rotation with the id a caller named."""

    code = "RotationNotFound"

    def __init__(self, rotation_id: str) -> None:
        super().__init__(f"no rotation {rotation_id!r}")
        self.rotation_id = rotation_id


class AuditRecordNotFound(InputError):
    """No audit record with the id (or sequence number) a caller named."""

    code = "AuditRecordNotFound"

    def __init__(self, reference: str) -> None:
        super().__init__(f"no audit record {reference!r}")
        self.reference = reference


class TransientError(RotationError):
    """A failure that may go away if the same step is repeated."""

    code = "Transient"


class ThrottledError(TransientError):
    """The remote service throttled us; ``retry_after`` is its hint in seconds, if it gave one."""

    code = "Throttled"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderKeyVaultUnavailable(TransientError):
    """Storage or ML could not reach Key Vault to check, as the consumer's identity, the key it was asked to use.

    The resource provider's own Key Vault access failed (an outage on its side, not a refusal of the key):
    nothing changed, and the same re-point may succeed later.
    """

    code = "ProviderKeyVaultUnavailable"


class PreconditionFailed(RotationError):
    """The rotation cannot proceed; nothing has been changed."""

    code = "PreconditionFailed"


class PermissionDenied(PreconditionFailed):
    """An identity lacks a permission a step needs; the message names the permission."""

    code = "PermissionDenied"

    def __init__(self, message: str, permission: str) -> None:
        super().__init__(message)
        self.permission = permission


class RotationInProgress(PreconditionFailed):
    """Another rotation of the same key holds the lock."""

    code = "RotationInProgress"

    def __init__(self, key: str, rotation_id: str) -> None:
        super().__init__(f"a rotation of {key} is already in progress: {rotation_id}")
        self.key = key
        self.rotation_id = rotation_id


class JournalConflict(PreconditionFailed):
    """The journal entry changed since it was read (ETag mismatch): another executor moved it on."""

    code = "JournalConflict"


class VerificationFailed(RotationError):
    """A verification after a change failed; the change must be rolled back."""

    code = "VerificationFailed"


class NeedsHuman(RotationError):
    """The service cannot continue safely on its own; on-call must act."""

    code = "NeedsHuman"
