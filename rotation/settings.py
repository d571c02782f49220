"""Typed settings, read from app settings (environment variables) and validated at start.

Every setting the app reads is declared here, documented in docs/configuration.md and listed in
``local.settings.sample.json``. A missing or malformed value raises :class:`SettingsError`
naming the setting and the form it expects.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from rotation.errors import SettingsError

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
#: The queue a started rotation is handed to in Azure; fixed, because the ``run_rotation`` binding names it.
RUN_QUEUE = "rotation-run"
DEFAULT_REWRAP_QUEUE = "rotation-rewrap"  # also the rewrap_worker binding when ROTATION_REWRAP_QUEUE is unset
#: host.json's ``functionTimeout`` (tests/unit/test_settings.py holds the two together).
FUNCTION_TIMEOUT_SECONDS = 1800
#: How long one invocation of ``run_rotation`` polls long-running operations before it hands the rest to a
#: continuation: five minutes under ``functionTimeout``, for the journal writes, the re-enqueue and a slow poll.
DEFAULT_INVOCATION_BUDGET_SECONDS = 1500.0
#: The most the budget may be: a minute under ``functionTimeout``.
MAX_INVOCATION_BUDGET_SECONDS = FUNCTION_TIMEOUT_SECONDS - 60


@dataclass(frozen=True)
class DataLocation:
    """A place holding client-side-encrypted blobs: blob endpoint, container, optional prefix."""

    account_url: str
    container: str
    prefix: str = ""

    @property
    def display(self) -> str:
        return f"{self.account_url.rstrip('/')}/{self.container}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class HostStorageSettings:
    """Where AzureWebJobsStorage is: a connection string, or identity-based service URIs.

    The identity-based form (``AzureWebJobsStorage__accountName`` or ``__blobServiceUri`` /
    ``__queueServiceUri`` / ``__tableServiceUri``) is what the deployment uses, with shared keys
    disabled on the account; the app then reaches storage with its managed identity.
    """

    connection_string: str | None = field(default=None, repr=False)
    blob_uri: str | None = None
    queue_uri: str | None = None
    table_uri: str | None = None
    client_id: str | None = None  # AzureWebJobsStorage__clientId: a user-assigned identity

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one app instance."""

    storage: HostStorageSettings
    managed_keys: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    data_locations: tuple[DataLocation, ...] = ()
    allowed_vaults: tuple[str, ...] = ()
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    retire_grace_hours: float = 24.0
    near_expiry_days: float = 30.0
    wrap_algorithm: str | None = None  # None: each re-wrapped blob keeps its own algorithm
    journal_table: str = "rotationjournal"
    audit_table: str = "rotationaudit"
    sweep_table: str = "rotationsweep"  # what the reconciler learnt about the vaults, kept between processes
    rewrap_queue: str = DEFAULT_REWRAP_QUEUE
    audit_signing_key: str | None = None
    audit_checkpoint_minutes: float = 60.0  # a signed checkpoint at least this often while records arrive; 0: off
    trust_client_principal_headers: bool = False
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    ca_bundle: str | None = None
    local_principal: str | None = None
    verify_challenge_resource: bool = True
    rewrap_concurrency: int = 16
    retry_backoff_minutes: float = 15.0
    retry_backoff_cap_hours: float = 6.0
    retry_max_attempts: int = 10
    rewrap_wait_hours: float = 72.0
    repoint_concurrency: int = 8
    #: Seconds one Function invocation may spend on a rotation before pausing long-running operations still
    #: in flight and re-enqueueing its continuation (``ROTATION_INVOCATION_BUDGET_SECONDS``).
    invocation_budget_seconds: float = DEFAULT_INVOCATION_BUDGET_SECONDS


# New wraps use RSA-OAEP-256 only: RSA1_5 (PKCS#1 v1.5) and RSA-OAEP (SHA-1) are "[Not recommended]" in
# Key Vault's keys.json (JsonWebKeyEncryptionAlgorithm). Existing blobs wrapped with RSA-OAEP are still
# read (rotation.rewrap.keys.UNWRAP_ALGORITHMS) and keep their algorithm unless told otherwise.
_WRAP_ALGORITHMS = ("RSA-OAEP-256",)
_LOCAL_ONLY = ("ROTATION_LOCAL_PRINCIPAL", "ROTATION_CA_BUNDLE", "ROTATION_VERIFY_CHALLENGE_RESOURCE")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _split(value: str) -> tuple[str, ...]:
    parts = value.replace(";", ",").replace("\n", ",").split(",")
    return tuple(p.strip() for p in parts if p.strip())


def _https_url(setting: str, value: str, expected: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise SettingsError(setting, f"{value!r} is not an https URL", expected)
    return value


def versionless_key_uri(setting: str, value: str) -> str:
    """Validate a versionless Key Vault key URI and return it normalised (no trailing slash)."""
    expected = "a versionless key URI like https://myvault.vault.azure.net/keys/my-key"
    _https_url(setting, value, expected)
    path = [p for p in urlsplit(value).path.split("/") if p]
    if len(path) != 2 or path[0] != "keys":
        raise SettingsError(setting, f"{value!r} is not a versionless key URI", expected)
    if not all(c.isalnum() or c == "-" for c in path[1]):
        raise SettingsError(setting, f"key name {path[1]!r} has characters Key Vault refuses", expected)
    parts = urlsplit(value)
    return f"https://{parts.netloc}/keys/{path[1]}"


def _number(setting: str, value: str, expected: str, minimum: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(setting, f"{value!r} is not a number", expected) from None
    if math.isnan(number) or number < minimum:
        raise SettingsError(setting, f"{value!r} is out of range", expected)
    return number


def _whole(setting: str, value: str, maximum: int) -> int:
    """A whole number from 1 to ``maximum``."""
    expected = f"a whole number from 1 to {maximum}"
    number = _number(setting, value, expected, 1)
    if number != int(number) or number > maximum:
        raise SettingsError(setting, f"{value!r} is out of range", expected)
    return int(number)


def _boolean(setting: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise SettingsError(setting, f"{value!r} is not a boolean", "true or false")


def _data_locations(setting: str, value: str) -> tuple[DataLocation, ...]:
    expected = (
        "container URLs separated by commas, each https://account.blob.core.windows.net/container"
        "[/prefix] (or http://127.0.0.1:port/account/container[/prefix] for Azurite)"
    )
    locations = []
    for item in _split(value):
        parts = urlsplit(item)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise SettingsError(setting, f"{item!r} is not a URL", expected)
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise SettingsError(setting, f"{item!r} uses http to a non-loopback host", expected)
        segments = [s for s in parts.path.split("/") if s]
        # Azurite (path-style) URLs carry the account name as the first path segment.
        account_segments = 1 if is_loopback(parts.hostname) else 0
        if len(segments) <= account_segments:
            raise SettingsError(setting, f"{item!r} names no container", expected)
        base = f"{parts.scheme}://{parts.netloc}" + "".join("/" + s for s in segments[:account_segments])
        container = segments[account_segments]
        prefix = "/".join(segments[account_segments + 1 :])
        if len(container) < 3:
            raise SettingsError(setting, f"container {container!r} is shorter than 3 characters", expected)
        locations.append(DataLocation(base, container, prefix))
    return tuple(locations)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_storage(env: Mapping[str, str]) -> HostStorageSettings:
    setting = "AzureWebJobsStorage"
    expected = (
        "a storage connection string (AccountName=...;AccountKey=...;...), UseDevelopmentStorage=true, "
        "or the identity-based AzureWebJobsStorage__accountName (or __blobServiceUri, __queueServiceUri "
        "and __tableServiceUri)"
    )
    value = env.get(setting, "").strip()
    if not value:
        return _identity_based_storage(env, expected)
    if value == "UseDevelopmentStorage=true":
        return HostStorageSettings(connection_string=value)
    pairs = [p for p in value.split(";") if p]
    if not all("=" in p for p in pairs) or not any(
        p.split("=", 1)[0] in ("AccountName", "BlobEndpoint", "TableEndpoint") for p in pairs
    ):
        raise SettingsError(setting, "is not a connection string", expected)
    return HostStorageSettings(connection_string=value)


def _identity_based_storage(env: Mapping[str, str], expected: str) -> HostStorageSettings:
    """The ``AzureWebJobsStorage__*`` settings the Functions host reads for identity-based connections."""
    prefix = "AzureWebJobsStorage__"
    account = env.get(f"{prefix}accountName", "").strip()
    uris: dict[str, str] = {}
    for service in ("blob", "queue", "table"):
        name = f"{prefix}{service}ServiceUri"
        uri = env.get(name, "").strip()
        if uri:
            uris[service] = _https_url(name, uri, f"an https URL like https://account.{service}.core.windows.net")
        elif account:
            if not (3 <= len(account) <= 24 and account.isalnum() and account.islower()):
                raise SettingsError(
                    f"{prefix}accountName",
                    f"{account!r} is not a storage account name",
                    "3-24 lowercase letters and digits",
                )
            uris[service] = f"https://{account}.{service}.core.windows.net"
    if not uris:
        raise SettingsError("AzureWebJobsStorage", "is missing", expected)
    missing = [s for s in ("blob", "queue", "table") if s not in uris]
    if missing:
        raise SettingsError(f"{prefix}{missing[0]}ServiceUri", "is missing", expected)
    credential = env.get(f"{prefix}credential", "").strip()
    if credential and credential.lower() != "managedidentity":
        raise SettingsError(f"{prefix}credential", f"{credential!r} is not supported", "managedidentity")
    client_id = env.get(f"{prefix}clientId", "").strip() or None
    return HostStorageSettings(
        blob_uri=uris["blob"].rstrip("/"),
        queue_uri=uris["queue"].rstrip("/"),
        table_uri=uris["table"].rstrip("/"),
        client_id=client_id,
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting.

    Args:
        env: the app settings; defaults to ``os.environ``.

    Raises:
        SettingsError: the first missing or malformed setting, named, with the form expected.
    """
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value is not None and value.strip() else None

    values: dict[str, object] = {"storage": _host_storage(env)}

    if (raw := get("ROTATION_MANAGED_KEYS")) is not None:
        keys = tuple(versionless_key_uri("ROTATION_MANAGED_KEYS", k) for k in _split(raw))
        lowered = [k.lower() for k in keys]
        if len(set(lowered)) != len(lowered):
            raise SettingsError("ROTATION_MANAGED_KEYS", "lists a key twice", "each key once")
        values["managed_keys"] = keys
    if (raw := get("ROTATION_SUBSCRIPTIONS")) is not None:
        subs = _split(raw)
        for sub in subs:
            if len(sub) != 36 or sub.count("-") != 4:
                raise SettingsError(
                    "ROTATION_SUBSCRIPTIONS", f"{sub!r} is not a subscription id", "GUIDs separated by commas"
                )
        values["subscriptions"] = subs
    if (raw := get("ROTATION_DATA_LOCATIONS")) is not None:
        values["data_locations"] = _data_locations("ROTATION_DATA_LOCATIONS", raw)
    if (raw := get("ROTATION_ALLOWED_VAULTS")) is not None:
        expected = "vault URLs separated by commas, each https://myvault.vault.azure.net"
        values["allowed_vaults"] = tuple(
            _https_url("ROTATION_ALLOWED_VAULTS", v, expected).rstrip("/").lower() for v in _split(raw)
        )
    if (raw := get("ROTATION_ARM_ENDPOINT")) is not None:
        values["arm_endpoint"] = _https_url(
            "ROTATION_ARM_ENDPOINT", raw, "an https URL like https://management.azure.com"
        ).rstrip("/")
    if (raw := get("ROTATION_RETIRE_GRACE_HOURS")) is not None:
        values["retire_grace_hours"] = _number(
            "ROTATION_RETIRE_GRACE_HOURS", raw, "a number of hours, 0 or more (default 24)", 0
        )
    if (raw := get("ROTATION_NEAR_EXPIRY_DAYS")) is not None:
        values["near_expiry_days"] = _number(
            "ROTATION_NEAR_EXPIRY_DAYS", raw, "a number of days, 0 or more (default 30)", 0
        )
    if (raw := get("ROTATION_WRAP_ALGORITHM")) is not None:
        if raw not in _WRAP_ALGORITHMS:
            raise SettingsError("ROTATION_WRAP_ALGORITHM", f"{raw!r} is not supported", " or ".join(_WRAP_ALGORITHMS))
        values["wrap_algorithm"] = raw
    for setting, attr in (
        ("ROTATION_JOURNAL_TABLE", "journal_table"),
        ("ROTATION_AUDIT_TABLE", "audit_table"),
        ("ROTATION_SWEEP_TABLE", "sweep_table"),
    ):
        if (raw := get(setting)) is not None:
            if not (3 <= len(raw) <= 63 and raw.isalnum() and raw[0].isalpha()):
                raise SettingsError(
                    setting, f"{raw!r} is not a table name", "3-63 letters and digits, starting with a letter"
                )
            values[attr] = raw
    if (raw := get("ROTATION_REWRAP_QUEUE")) is not None:
        if not (3 <= len(raw) <= 63 and all(c.islower() or c.isdigit() or c == "-" for c in raw)):
            raise SettingsError(
                "ROTATION_REWRAP_QUEUE", f"{raw!r} is not a queue name", "3-63 lowercase letters, digits and hyphens"
            )
        values["rewrap_queue"] = raw
    if (raw := get("ROTATION_AUDIT_SIGNING_KEY")) is not None:
        values["audit_signing_key"] = versionless_key_uri("ROTATION_AUDIT_SIGNING_KEY", raw)
    if (raw := get("ROTATION_AUDIT_CHECKPOINT_MINUTES")) is not None:
        values["audit_checkpoint_minutes"] = _number(
            "ROTATION_AUDIT_CHECKPOINT_MINUTES", raw, "a number of minutes, 0 (off) or more (default 60)", 0
        )
    if (raw := get("ROTATION_TRUST_CLIENT_PRINCIPAL_HEADERS")) is not None:
        values["trust_client_principal_headers"] = _boolean("ROTATION_TRUST_CLIENT_PRINCIPAL_HEADERS", raw)
    if (raw := get("ROTATION_LOG_FORMAT")) is not None:
        if raw not in ("json", "console"):
            raise SettingsError("ROTATION_LOG_FORMAT", f"{raw!r} is not a log format", "json or console")
        values["log_format"] = raw
    if (raw := get("ROTATION_LOG_LEVEL")) is not None:
        if raw.upper() not in _LOG_LEVELS:
            raise SettingsError("ROTATION_LOG_LEVEL", f"{raw!r} is not a level", " or ".join(_LOG_LEVELS))
        values["log_level"] = raw.upper()
    if (raw := get("ROTATION_CA_BUNDLE")) is not None:
        if not os.path.isfile(raw):
            raise SettingsError("ROTATION_CA_BUNDLE", f"{raw!r} is not a readable file", "a path to a PEM CA bundle")
        values["ca_bundle"] = raw
    if (raw := get("ROTATION_LOCAL_PRINCIPAL")) is not None:
        values["local_principal"] = raw
    if (raw := get("ROTATION_VERIFY_CHALLENGE_RESOURCE")) is not None:
        values["verify_challenge_resource"] = _boolean("ROTATION_VERIFY_CHALLENGE_RESOURCE", raw)
    if (raw := get("ROTATION_REWRAP_CONCURRENCY")) is not None:
        values["rewrap_concurrency"] = _whole("ROTATION_REWRAP_CONCURRENCY", raw, 256)
    if (raw := get("ROTATION_REPOINT_CONCURRENCY")) is not None:
        values["repoint_concurrency"] = _whole("ROTATION_REPOINT_CONCURRENCY", raw, 64)
    if (raw := get("ROTATION_INVOCATION_BUDGET_SECONDS")) is not None:
        expected = (
            f"a number of seconds from 1 to {MAX_INVOCATION_BUDGET_SECONDS} (a minute under functionTimeout; "
            f"default {DEFAULT_INVOCATION_BUDGET_SECONDS:.0f})"
        )
        budget = _number("ROTATION_INVOCATION_BUDGET_SECONDS", raw, expected, 1)
        if budget > MAX_INVOCATION_BUDGET_SECONDS:
            raise SettingsError("ROTATION_INVOCATION_BUDGET_SECONDS", f"{raw!r} is out of range", expected)
        values["invocation_budget_seconds"] = budget

    for setting, attr, expected, minimum in (
        ("ROTATION_RETRY_BACKOFF_MINUTES", "retry_backoff_minutes", "a number of minutes, 0 or more (default 15)", 0),
        ("ROTATION_RETRY_BACKOFF_CAP_HOURS", "retry_backoff_cap_hours", "a number of hours, 0 or more (default 6)", 0),
        ("ROTATION_REWRAP_WAIT_HOURS", "rewrap_wait_hours", "a number of hours, 1 or more (default 72)", 1),
    ):
        if (raw := get(setting)) is not None:
            values[attr] = _number(setting, raw, expected, minimum)
    if (raw := get("ROTATION_RETRY_MAX_ATTEMPTS")) is not None:
        number = _number("ROTATION_RETRY_MAX_ATTEMPTS", raw, "a whole number from 1 to 100 (default 10)", 1)
        if number != int(number) or number > 100:
            raise SettingsError(
                "ROTATION_RETRY_MAX_ATTEMPTS", f"{raw!r} is out of range", "a whole number from 1 to 100 (default 10)"
            )
        values["retry_max_attempts"] = int(number)

    settings = Settings(**values)  # type: ignore[arg-type]
    _check_local_only(settings)
    return settings


def _check_local_only(settings: Settings) -> None:
    """The emulator escape hatches are refused unless every endpoint the app talks to is loopback.

    ``ROTATION_LOCAL_PRINCIPAL`` (an unsigned token), ``ROTATION_CA_BUNDLE`` (a private CA) and
    ``ROTATION_VERIFY_CHALLENGE_RESOURCE=false`` (a Key Vault token to any host that asks) would each
    weaken the app against a real endpoint, so one non-loopback endpoint refuses all three.
    """
    flags = (
        settings.local_principal is not None,
        settings.ca_bundle is not None,
        not settings.verify_challenge_resource,
    )
    used = [name for name, on in zip(_LOCAL_ONLY, flags, strict=True) if on]
    if not used:
        return
    remote = next((e for e in endpoints(settings) if not is_loopback(urlsplit(e).hostname or "")), None)
    if remote is not None:
        raise SettingsError(
            used[0],
            f"is set while {remote} is not a loopback endpoint",
            "unset in Azure (it is only for the local emulators)",
        )


def endpoints(settings: Settings) -> list[str]:
    """Every endpoint the settings point the app at: ARM, vaults, keys, data locations, host storage."""
    found = [settings.arm_endpoint, *settings.managed_keys, *settings.allowed_vaults]
    found += [d.account_url for d in settings.data_locations]
    if settings.audit_signing_key:
        found.append(settings.audit_signing_key)
    storage = settings.storage
    found += [u for u in (storage.blob_uri, storage.queue_uri, storage.table_uri) if u]
    if storage.connection_string is not None:
        found += _connection_string_endpoints(storage.connection_string)
    return found


def _connection_string_endpoints(connection_string: str) -> list[str]:
    """The service endpoints a storage connection string names (Azurite's well-known one is loopback)."""
    if connection_string.strip() == "UseDevelopmentStorage=true":
        return ["http://127.0.0.1"]
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    named = [parts[k] for k in ("BlobEndpoint", "QueueEndpoint", "TableEndpoint") if parts.get(k)]
    if not named and parts.get("AccountName"):
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        named.append(f"https://{parts['AccountName']}.blob.{suffix}")
    return named


def describe(settings: Settings) -> dict[str, object]:
    """A log-safe view of the settings (no connection secrets)."""
    view = {k: v for k, v in settings.__dict__.items() if k != "storage"}
    view["storage"] = {
        "identity_based": settings.storage.identity_based,
        "blob_uri": settings.storage.blob_uri,
        "queue_uri": settings.storage.queue_uri,
        "table_uri": settings.storage.table_uri,
    }
    view["data_locations"] = [d.display for d in settings.data_locations]
    return json.loads(json.dumps(view, default=str))  # type: ignore[no-any-return]
