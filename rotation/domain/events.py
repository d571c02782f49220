"""Key Vault events from Event Grid, parsed into :class:`KeyVaultEvent` or a reason to ignore them.

Pure: no I/O, no clock. Accepts both delivery schemas Event Grid uses for Key Vault
(protocol-facts section 2):

- Event Grid schema: ``{id, topic, subject, eventType, eventTime, data, dataVersion, metadataVersion}``
- CloudEvents 1.0: ``{id, source, subject, type, time, data, specversion}``

``data`` is PascalCase (``Id, VaultName, ObjectType, ObjectName, Version, NBF, EXP``); ``NBF`` and
``EXP`` are unix seconds, sent as strings by Microsoft's samples and as integers by the live
service, so both are accepted.

Three outcomes, so the trigger never has to guess:

- a :class:`KeyVaultEvent`: a key event this service should act on (the vault is allowed and the
  key is managed);
- :class:`IgnoredEvent`: well-formed but not ours (a secret or certificate event, another
  vault, an unmanaged key, an event type the service does not act on);
- :class:`MalformedEvent` raised: the payload does not have the documented shape. The message
  says which field is wrong and never echoes more than a short, sanitised excerpt of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast
from urllib.parse import urlsplit

from rotation.domain.model import KeyEventType, KeyRef, KeyVaultEvent
from rotation.domain.timestamps import parse_timestamp
from rotation.errors import InputError

EVENT_TYPE_PREFIX: Final = "Microsoft.KeyVault."
KEY_EVENT_TYPES: Final[frozenset[str]] = frozenset({"KeyNearExpiry", "KeyExpired", "KeyNewVersionCreated"})
# Every Key Vault event type Event Grid publishes (DOCS event-schema-key-vault.md): recognised, not acted on.
OTHER_KEY_VAULT_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        "CertificateNewVersionCreated",
        "CertificateNearExpiry",
        "CertificateExpired",
        "SecretNewVersionCreated",
        "SecretNearExpiry",
        "SecretExpired",
        "VaultAccessPolicyChanged",
    }
)
# Unix seconds must fall within what ``datetime`` can represent (year 1 .. 9999); Key Vault's own are far inside.
_MAX_UNIX_SECONDS: Final = 253_402_300_799
_MAX_FIELD_CHARS: Final = 2048
_VERSION = re.compile(r"^[0-9A-Za-z]{1,64}$")
_VAULT_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


class MalformedEvent(InputError):
    """The event does not have the documented shape; nothing was done with it."""

    code = "MalformedEvent"


@dataclass(frozen=True)
class IgnoredEvent:
    """A well-formed event the service does not act on, and why (for the structured log line)."""

    event_id: str
    event_type: str
    reason: str
    object_name: str | None = None
    vault: str | None = None


@dataclass(frozen=True)
class EventScope:
    """What the service acts on: the allowed vaults and the managed keys (both normalised)."""

    allowed_vaults: frozenset[str]
    managed_keys: frozenset[KeyRef]

    @classmethod
    def from_settings(cls, managed_keys: Iterable[str], allowed_vaults: Iterable[str]) -> EventScope:
        """Normalise ``ROTATION_MANAGED_KEYS`` and ``ROTATION_ALLOWED_VAULTS`` (default: the managed keys' vaults)."""
        keys = frozenset(KeyRef.parse(uri)[0] for uri in managed_keys)
        vaults = frozenset(_normalise_vault(v) for v in allowed_vaults) or frozenset(k.vault_url for k in keys)
        return cls(vaults, keys)


def describe(value: object, limit: int = 60) -> str:
    """A short, log-safe rendering of a hostile value: its type and a truncated, printable excerpt."""
    text = value if isinstance(value, str) else repr(value)
    printable = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    excerpt = printable[:limit] + ("..." if len(printable) > limit else "")
    return f"{type(value).__name__} {excerpt!r}"


def parse_event(payload: object, scope: EventScope) -> KeyVaultEvent | IgnoredEvent:
    """Parse one event (a JSON object in either schema) and decide whether the service acts on it.

    Raises:
        MalformedEvent: the payload does not have the documented shape.
    """
    if not isinstance(payload, Mapping):
        raise MalformedEvent(f"an event must be a JSON object, got {describe(payload)}")
    cloud_event = "specversion" in payload
    if cloud_event and payload.get("specversion") != "1.0":
        raise MalformedEvent(f"unsupported CloudEvents specversion {describe(payload.get('specversion'))}")
    # The two schemas carry the same fields under different names (CloudEvents 1.0 / Event Grid).
    type_field, source_field, time_field = (
        ("type", "source", "time") if cloud_event else ("eventType", "topic", "eventTime")
    )
    envelope = _Envelope(
        event_id=payload.get("id"),
        event_type=payload.get(type_field),
        subject=payload.get("subject"),
        source=payload.get(source_field),
        event_time=payload.get(time_field),
        data=payload.get("data"),
    )
    return envelope.parse(scope)


def parse_fields(
    *,
    event_id: object,
    event_type: object,
    subject: object,
    source: object,
    event_time: object,
    data: object,
    scope: EventScope,
) -> KeyVaultEvent | IgnoredEvent:
    """Like :func:`parse_event`, from fields already split out (``func.EventGridEvent`` / ``func.CloudEvent``).

    Raises:
        MalformedEvent: the fields do not have the documented shape.
    """
    return _Envelope(event_id, event_type, subject, source, event_time, data).parse(scope)


@dataclass(frozen=True)
class _Envelope:
    event_id: object
    event_type: object
    subject: object
    source: object
    event_time: object
    data: object

    def parse(self, scope: EventScope) -> KeyVaultEvent | IgnoredEvent:
        event_id = _text("id", self.event_id)
        full_type = _text("event type", self.event_type)
        if not full_type.startswith(EVENT_TYPE_PREFIX):
            return IgnoredEvent(event_id, full_type, "not a Key Vault event")
        short_type = full_type[len(EVENT_TYPE_PREFIX) :]
        if short_type not in KEY_EVENT_TYPES:
            reason = (
                "not a key event (secrets, certificates and access policies are not rotated here)"
                if short_type in OTHER_KEY_VAULT_EVENT_TYPES
                else "unknown Key Vault event type"
            )
            return IgnoredEvent(event_id, full_type, reason)
        event_time = _event_time(self.event_time)
        if not isinstance(self.data, Mapping):
            raise MalformedEvent(f"event {event_id}: 'data' must be an object, got {describe(self.data)}")
        data = self.data
        object_type = _text("data.ObjectType", data.get("ObjectType"))
        if object_type != "Key":
            raise MalformedEvent(f"event {event_id}: {full_type} carries ObjectType {describe(object_type)}, not 'Key'")
        kid = _text("data.Id", data.get("Id"))
        try:
            key, version_in_id = KeyRef.parse(kid)
        except InputError as exc:
            raise MalformedEvent(f"event {event_id}: data.Id {describe(kid)} is not a key identifier") from exc
        name = _text("data.ObjectName", data.get("ObjectName"))
        if name.lower() != key.name.lower():
            raise MalformedEvent(f"event {event_id}: data.ObjectName {describe(name)} does not match data.Id")
        vault_name = _text("data.VaultName", data.get("VaultName"))
        if not _VAULT_NAME.match(vault_name):
            raise MalformedEvent(f"event {event_id}: data.VaultName {describe(vault_name)} is not a vault name")
        version = _optional_text("data.Version", data.get("Version"))
        if version is not None and not _VERSION.match(version):
            raise MalformedEvent(f"event {event_id}: data.Version {describe(version)} is not a key version")
        if version is not None and version_in_id is not None and version != version_in_id:
            raise MalformedEvent(f"event {event_id}: data.Version does not match the version in data.Id")
        version = version or version_in_id
        if self.subject is not None and self.subject != name:
            raise MalformedEvent(f"event {event_id}: subject {describe(self.subject)} does not match data.ObjectName")
        if self.source is not None:
            source = _text("topic/source", self.source)
            if not source.lower().rstrip("/").endswith(f"/providers/microsoft.keyvault/vaults/{vault_name.lower()}"):
                raise MalformedEvent(f"event {event_id}: topic/source {describe(source)} is not the vault {vault_name}")
        not_before = _unix_time(event_id, "data.NBF", data.get("NBF"))
        expires = _unix_time(event_id, "data.EXP", data.get("EXP"))

        if key.vault_url not in scope.allowed_vaults:
            return IgnoredEvent(event_id, full_type, "vault not in the allow-list", name, key.vault_url)
        managed = next((k for k in scope.managed_keys if k.same_key(key)), None)
        if managed is None:
            return IgnoredEvent(event_id, full_type, "key is not managed by this service", name, key.vault_url)
        key = managed  # Key Vault key names are case-insensitive: act on the key as configured
        if short_type == "KeyNewVersionCreated" and version is None:
            raise MalformedEvent(f"event {event_id}: KeyNewVersionCreated without a version")
        return KeyVaultEvent(
            event_id=event_id,
            event_type=cast(KeyEventType, short_type),
            key=key,
            version=version,
            vault_name=vault_name,
            not_before=not_before,
            expires=expires,
            event_time=event_time,
        )


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"{field} must be a non-empty string, got {describe(value)}")
    if len(value) > _MAX_FIELD_CHARS:
        raise MalformedEvent(f"{field} is longer than {_MAX_FIELD_CHARS} characters")
    if not value.isprintable():
        raise MalformedEvent(f"{field} contains control characters")
    return value.strip()


def _optional_text(field: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    return _text(field, value)


def _unix_time(event_id: str, field: str, value: object) -> datetime | None:
    """Unix seconds as an integer or a string of digits (both occur, see the module docstring)."""
    if value is None or value == "":
        return None
    seconds: Any
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 12:
        seconds = int(value.strip())
    else:
        seconds = None
    if seconds is None or not 0 <= seconds <= _MAX_UNIX_SECONDS:
        raise MalformedEvent(f"event {event_id}: {field} must be unix seconds, got {describe(value)}")
    return datetime.fromtimestamp(seconds, UTC)


def _event_time(value: object) -> datetime | None:
    """The envelope time: a ``datetime`` (the Functions binding parses it) or an ISO 8601 string."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = parse_timestamp(value) if isinstance(value, str) and len(value) <= 64 else None
    if parsed is not None:
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise MalformedEvent(f"event time must be an ISO 8601 timestamp, got {describe(value)}")


def _normalise_vault(url: str) -> str:
    parts = urlsplit(url.strip())
    netloc = parts.netloc.lower()
    if netloc.endswith(":443"):
        netloc = netloc[: -len(":443")]
    return f"https://{netloc}"
