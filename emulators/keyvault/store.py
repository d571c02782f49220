"""The emulator's state: vaults, keys and their versions, soft-deleted keys, rotation policies, roles, clock.

Everything time-based reads :class:`Clock` (the admin API moves it). State is written to
``STATE_DIR/state.json`` (atomically) after each change, never on reads.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.keyvault.crypto import KeyMaterial
from emulators.keyvault.policy import DAY, DEFAULT_NOTIFY, action_trigger, duration_seconds
from emulators.keyvault.rbac import RoleAssignment
from emulators.keyvault.throttle import Throttle

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
DEFAULT_RESOURCE_GROUP = "rg-local"
DEFAULT_LOCATION = "westeurope"


class Clock:
    """Wall clock plus an offset the admin API sets; all emulated time comes from here."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def set(self, now: float) -> None:
        self.offset = now - time.time()

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class KeyVersion:
    name: str
    version: str
    seq: int
    material: KeyMaterial
    key_ops: list[str]
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int
    tags: dict[str, str] | None = None
    notified_near_expiry: bool = False
    notified_expired: bool = False

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "seq": self.seq,
            "material": self.material.to_state(),
            "key_ops": self.key_ops,
            "enabled": self.enabled,
            "nbf": self.nbf,
            "exp": self.exp,
            "created": self.created,
            "updated": self.updated,
            "tags": self.tags,
            "notified_near_expiry": self.notified_near_expiry,
            "notified_expired": self.notified_expired,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> KeyVersion:
        return cls(**{**data, "material": KeyMaterial.from_state(data["material"])})


@dataclass
class Key:
    """A named key: its versions in creation order, its rotation policy and, if deleted, when."""

    name: str
    versions: dict[str, KeyVersion] = field(default_factory=dict)
    policy: dict[str, Any] | None = None  # {"lifetimeActions", "expiryTime"?, "created", "updated"}
    deleted_date: int | None = None
    scheduled_purge_date: int | None = None

    @property
    def latest(self) -> KeyVersion:
        return next(reversed(self.versions.values()))

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [v.to_state() for v in self.versions.values()],
            "policy": self.policy,
            "deleted_date": self.deleted_date,
            "scheduled_purge_date": self.scheduled_purge_date,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Key:
        key = cls(data["name"], policy=data.get("policy"))
        key.deleted_date = data.get("deleted_date")
        key.scheduled_purge_date = data.get("scheduled_purge_date")
        for item in data["versions"]:
            version = KeyVersion.from_state(item)
            key.versions[version.version] = version
        return key

    def notify_before_seconds(self) -> int:
        actions = self.policy["lifetimeActions"] if self.policy else [DEFAULT_NOTIFY]
        trigger = action_trigger(actions, "Notify")
        if trigger is None:
            return 30 * DAY
        return duration_seconds(trigger["timeBeforeExpiry"], "timeBeforeExpiry")

    def expiry_seconds(self) -> int | None:
        if self.policy and self.policy.get("expiryTime"):
            return duration_seconds(self.policy["expiryTime"], "expiryTime")
        return None


@dataclass
class Vault:
    name: str
    subscription_id: str = DEFAULT_SUBSCRIPTION
    resource_group: str = DEFAULT_RESOURCE_GROUP
    location: str = DEFAULT_LOCATION
    enable_soft_delete: bool = True
    enable_purge_protection: bool = True
    soft_delete_retention_days: int = 90
    port: int = 0
    keys: dict[str, Key] = field(default_factory=dict)  # lower-case name -> key
    deleted: dict[str, Key] = field(default_factory=dict)
    roles: list[RoleAssignment] = field(default_factory=list)
    throttle: Throttle = field(default_factory=Throttle)
    #: GET of a disabled version: "allowed" (200, as this emulator always did) or "forbidden" (403, inner
    #: ``KeyDisabled``), as Azure answers for a disabled *secret* version; for keys it is not verified.
    disabled_version_get: str = "allowed"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.KeyVault/vaults/{self.name}"
        )

    @property
    def recovery_level(self) -> str:
        if not self.enable_soft_delete:
            return "Purgeable"
        custom = "CustomizedRecoverable" if self.soft_delete_retention_days < 90 else "Recoverable"
        return custom if self.enable_purge_protection else f"{custom}+Purgeable"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "location": self.location,
            "enable_soft_delete": self.enable_soft_delete,
            "enable_purge_protection": self.enable_purge_protection,
            "soft_delete_retention_days": self.soft_delete_retention_days,
            "arm_id": self.arm_id,
            "disabled_version_get": self.disabled_version_get,
        }

    def to_state(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.describe().items() if k not in ("url", "arm_id")},
            "port": self.port,
            "keys": [k.to_state() for k in self.keys.values()],
            "deleted": [k.to_state() for k in self.deleted.values()],
            "roles": [r.to_json() for r in self.roles],
            "throttle": self.throttle.to_json(),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Vault:
        vault = cls(
            name=data["name"],
            subscription_id=data["subscription_id"],
            resource_group=data["resource_group"],
            location=data["location"],
            enable_soft_delete=data["enable_soft_delete"],
            enable_purge_protection=data["enable_purge_protection"],
            soft_delete_retention_days=data["soft_delete_retention_days"],
            port=data.get("port", 0),
            disabled_version_get=data.get("disabled_version_get", "allowed"),
        )
        for item in data.get("keys", []):
            key = Key.from_state(item)
            vault.keys[key.name.lower()] = key
        for item in data.get("deleted", []):
            key = Key.from_state(item)
            vault.deleted[key.name.lower()] = key
        vault.roles = [RoleAssignment(**r) for r in data.get("roles", [])]
        vault.throttle = Throttle(**data.get("throttle", {}))
        return vault


#: Behaviours whose Azure answer is not verified, selectable per vault (admin ``PUT /admin/vaults/{name}/modes``).
MODES: dict[str, tuple[str, ...]] = {"disabled_version_get": ("allowed", "forbidden")}


def set_modes(vault: Vault, modes: dict[str, Any]) -> None:
    """Apply ``{"mode": "value"}``; raises ValueError naming an unknown mode or value (nothing applied then)."""
    for name, value in modes.items():
        allowed = MODES.get(name)
        if allowed is None:
            raise ValueError(f"unknown mode {name!r}; known: {sorted(MODES)}")
        if value not in allowed:
            raise ValueError(f"mode {name!r} must be one of {list(allowed)}")
    for name, value in modes.items():
        setattr(vault, name, value)


def new_version_id() -> str:
    return uuid.uuid4().hex


class StateFile:
    """Atomic JSON persistence of the whole state."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "state.json"

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        return dict(json.loads(self.path.read_text()))

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, separators=(",", ":")))
        os.replace(tmp, self.path)
