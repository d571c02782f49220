"""The keys service: what each REST operation does to the state, rendered in the wire format.

HTTP concerns (routing, auth, throttling, faults) live in :mod:`emulators.keyvault.dataplane`; this module
knows keys, versions, policies, soft delete and the lifecycle (auto-rotation, expiry events, purges).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from pathlib import Path
from typing import Any

from emulators.keyvault import crypto, events
from emulators.keyvault.crypto import KeyMaterial
from emulators.keyvault.errors import (
    KeyVaultError,
    bad_parameter,
    conflict_deleted,
    deleted_key_not_found,
    disabled_key,
    key_not_found,
)
from emulators.keyvault.faults import FaultRule
from emulators.keyvault.policy import DAY, action_trigger, duration_seconds, validate_policy
from emulators.keyvault.store import MODES, Clock, Key, KeyVersion, StateFile, Vault, new_version_id, set_modes
from emulators.keyvault.throttle import Throttle

log = logging.getLogger("emulators.keyvault")

KEY_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
VAULT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
MAX_TAGS = 15
# Operations Key Vault refuses outside the nbf/exp window; decrypt, unwrapKey and verify stay allowed so data
# is never crypto-locked (learn.microsoft.com about-keys-details: "except for decrypt, release, unwrap, verify").
TIME_BOUND_OPERATIONS = ("encrypt", "wrapKey", "sign")
# Changes are written at most once per this delay (the whole state is one file); SIGTERM flushes at once.
PERSIST_DELAY_S = 1.0


class KeyVaultService:
    """All vaults of this emulator process, their state, clock, events and request accounting."""

    def __init__(self, state_dir: Path) -> None:
        self.state_file = StateFile(state_dir)
        self.clock = Clock()
        self.vaults: dict[str, Vault] = {}
        self.default_throttle = Throttle()
        self.faults: list[FaultRule] = []
        self.counters: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.events = events.EventBus()
        self._seq = 0
        self._dirty = False
        self._lifecycle = asyncio.Lock()
        self._load()

    # -- persistence ------------------------------------------------------------------------------

    def _load(self) -> None:
        state = self.state_file.load()
        self.clock.offset = float(state.get("clock_offset", 0.0))
        self.default_throttle = Throttle(**state.get("default_throttle", {}))
        for item in state.get("vaults", []):
            vault = Vault.from_state(item)
            self.vaults[vault.name] = vault
        self.events.sink = state.get("event_sink")
        self._seq = int(state.get("seq", 0))

    def snapshot(self) -> dict[str, Any]:
        return {
            "clock_offset": self.clock.offset,
            "default_throttle": self.default_throttle.to_json(),
            "vaults": [v.to_state() for v in self.vaults.values()],
            "event_sink": self.events.sink,
            "seq": self._seq,
        }

    def changed(self) -> None:
        """Schedule one write of the state file for this burst of changes."""
        if self._dirty:
            return
        self._dirty = True
        asyncio.get_running_loop().call_later(PERSIST_DELAY_S, self.flush)

    def flush(self) -> None:
        self._dirty = False
        try:
            self.state_file.save(self.snapshot())
        except OSError as exc:
            log.error("could not persist state: %s", exc)

    # -- vaults -----------------------------------------------------------------------------------

    def new_vault(self, body: dict[str, Any]) -> Vault:
        """Validate an admin vault description; raises ValueError naming the problem."""
        name = body.get("name")
        if not isinstance(name, str) or not VAULT_NAME.match(name) or "--" in name:
            raise ValueError("vault 'name' must be 3-24 characters: letters, digits and single hyphens")
        vault = Vault(name=name, throttle=self.default_throttle.copy_settings())
        for field_name, kind in (
            ("subscription_id", str),
            ("resource_group", str),
            ("location", str),
            ("enable_soft_delete", bool),
            ("enable_purge_protection", bool),
            ("soft_delete_retention_days", int),
        ):
            if body.get(field_name) is not None:
                if not isinstance(body[field_name], kind):
                    raise ValueError(f"{field_name!r} must be a {kind.__name__}")
                setattr(vault, field_name, body[field_name])
        if not 7 <= vault.soft_delete_retention_days <= 90:
            raise ValueError("'soft_delete_retention_days' must be from 7 to 90")
        set_modes(vault, {k: body[k] for k in MODES if body.get(k) is not None})
        return vault

    # -- rendering --------------------------------------------------------------------------------

    def kid(self, vault: Vault, key: Key, version: KeyVersion) -> str:
        return f"{vault.url}/keys/{key.name}/{version.version}"

    def attributes(self, vault: Vault, version: KeyVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": version.enabled}
        if version.nbf is not None:
            attrs["nbf"] = version.nbf
        if version.exp is not None:
            attrs["exp"] = version.exp
        attrs["created"] = version.created
        attrs["updated"] = version.updated
        attrs["recoveryLevel"] = vault.recovery_level
        if vault.enable_soft_delete:
            attrs["recoverableDays"] = vault.soft_delete_retention_days
        attrs["exportable"] = False
        return attrs

    def bundle(self, vault: Vault, key: Key, version: KeyVersion) -> dict[str, Any]:
        jwk: dict[str, Any] = {"kid": self.kid(vault, key, version), "kty": version.material.kty}
        jwk["key_ops"] = list(version.key_ops)
        jwk.update(version.material.public_jwk)
        result: dict[str, Any] = {"key": jwk, "attributes": self.attributes(vault, version)}
        if version.tags:
            result["tags"] = dict(version.tags)
        return result

    def item(self, vault: Vault, key: Key, version: KeyVersion, versioned: bool) -> dict[str, Any]:
        kid = self.kid(vault, key, version) if versioned else f"{vault.url}/keys/{key.name}"
        result: dict[str, Any] = {"kid": kid, "attributes": self.attributes(vault, version)}
        if version.tags:
            result["tags"] = dict(version.tags)
        return result

    def deleted_bundle(self, vault: Vault, key: Key, full: bool = True) -> dict[str, Any]:
        latest = key.latest
        base = self.bundle(vault, key, latest) if full else self.item(vault, key, latest, versioned=False)
        if key.deleted_date is not None and vault.enable_soft_delete:
            base["recoveryId"] = f"{vault.url}/deletedkeys/{key.name}"
            base["deletedDate"] = key.deleted_date
            base["scheduledPurgeDate"] = key.scheduled_purge_date
        return base

    def policy_body(self, vault: Vault, key: Key) -> dict[str, Any]:
        body: dict[str, Any] = {"id": f"{vault.url}/keys/{key.name}/rotationpolicy"}
        if key.policy is None:
            body["lifetimeActions"] = [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}]
            body["attributes"] = {}
            return body
        body["lifetimeActions"] = [
            {"trigger": dict(a["trigger"]), "action": dict(a["action"])} for a in key.policy["lifetimeActions"]
        ]
        attributes: dict[str, Any] = {}
        if key.policy.get("expiryTime"):
            attributes["expiryTime"] = key.policy["expiryTime"]
        attributes["created"] = key.policy["created"]
        attributes["updated"] = key.policy["updated"]
        body["attributes"] = attributes
        return body

    # -- lookups ----------------------------------------------------------------------------------

    @staticmethod
    def find_key(vault: Vault, name: str) -> Key:
        key = vault.keys.get(name.lower())
        if key is None:
            raise key_not_found(name)
        return key

    def find_version(self, vault: Vault, name: str, version: str) -> tuple[Key, KeyVersion]:
        key = self.find_key(vault, name)
        if not version:
            return key, key.latest
        found = key.versions.get(version.lower())
        if found is None:
            raise key_not_found(name)
        return key, found

    def readable_version(self, vault: Vault, name: str, version: str) -> tuple[Key, KeyVersion]:
        """The version a getKey names; in the ``disabled_version_get: forbidden`` mode a disabled one is
        refused as Azure refuses a disabled secret version: 403 ``Forbidden`` "Operation get is not allowed on
        a disabled secret." with inner ``SecretDisabled`` (Azure/azure-sdk-for-js#24756, a recorded service
        answer), here worded for a key (inner ``KeyDisabled``). Whether keys behave so is not verified."""
        key, found = self.find_version(vault, name, version)
        if not found.enabled and vault.disabled_version_get == "forbidden":
            raise disabled_key("get")
        return key, found

    # -- operations -------------------------------------------------------------------------------

    async def create_key(self, vault: Vault, name: str, body: Any) -> dict[str, Any]:
        body = _new_key_request(vault, name, body)
        kty = body.get("kty")
        if kty not in crypto.KEY_TYPES:
            raise bad_parameter(f"The value of the parameter 'kty' is invalid: {kty!r}.")
        key_size = body.get("key_size")
        curve = body.get("crv")
        exponent = body.get("public_exponent")
        if kty in crypto.RSA_TYPES:
            if key_size is None:
                key_size = 2048
            if key_size not in crypto.RSA_SIZES:
                raise bad_parameter(f"Invalid key size {key_size!r} for RSA keys; use 2048, 3072 or 4096.")
            if curve is not None:
                raise bad_parameter("The parameter 'crv' is not valid for RSA keys.")
            if exponent is not None and exponent not in (3, 65537):
                raise bad_parameter("The parameter 'public_exponent' must be 3 or 65537.")
        elif kty in crypto.EC_TYPES:
            curve = curve or "P-256"
            if curve not in crypto.CURVES:
                raise bad_parameter(f"The value of the parameter 'crv' is invalid: {curve!r}.")
        else:
            key_size = key_size or 256
            if key_size not in crypto.OCT_SIZES:
                raise bad_parameter(f"Invalid key size {key_size!r} for oct keys; use 128, 192 or 256.")
        family = "RSA" if kty in crypto.RSA_TYPES else "EC" if kty in crypto.EC_TYPES else "oct"
        key_ops = _key_ops(body.get("key_ops"), crypto.DEFAULT_OPS[family])
        enabled, nbf, exp = _attributes(body.get("attributes"))
        tags = _tags(body.get("tags"))
        loop = asyncio.get_running_loop()
        material = await loop.run_in_executor(None, crypto.generate, kty, key_size, curve, exponent)
        now = int(self.clock.now())
        key = _key_named(vault, name)
        version = self._add_version(
            vault, key, material, key_ops, True if enabled is None else enabled, nbf, exp, tags, now
        )
        return self.bundle(vault, key, version)

    async def import_key(self, vault: Vault, name: str, body: Any) -> dict[str, Any]:
        body = _new_key_request(vault, name, body)
        hsm = body.get("Hsm", False)
        if not isinstance(hsm, bool):
            raise bad_parameter("The parameter 'Hsm' must be a boolean.")
        material = crypto.import_jwk(body.get("key"), hsm)
        jwk = body["key"]
        key_ops = _key_ops(jwk.get("key_ops"), crypto.DEFAULT_OPS[material.family])
        enabled, nbf, exp = _attributes(body.get("attributes"))
        tags = _tags(body.get("tags"))
        now = int(self.clock.now())
        key = _key_named(vault, name)
        enabled = True if enabled is None else enabled
        version = self._add_version(vault, key, material, key_ops, enabled, nbf, exp, tags, now)
        return self.bundle(vault, key, version)

    def _add_version(  # noqa: PLR0917 - one call site per way a version is born; keywords would only add noise
        self,
        vault: Vault,
        key: Key,
        material: KeyMaterial,
        key_ops: list[str],
        enabled: bool,
        nbf: int | None,
        exp: int | None,
        tags: dict[str, str] | None,
        now: int,
    ) -> KeyVersion:
        self._seq += 1
        version = KeyVersion(
            key.name, new_version_id(), self._seq, material, key_ops, enabled, nbf, exp, now, now, tags
        )
        key.versions[version.version] = version
        self._emit(events.NEW_VERSION, vault, key, version)
        self.changed()
        return version

    def _emit(self, event_type: str, vault: Vault, key: Key, version: KeyVersion) -> None:
        self.events.emit(
            events.key_event(
                event_type,
                arm_id=vault.arm_id,
                vault_name=vault.name,
                kid=self.kid(vault, key, version),
                name=key.name,
                version=version.version,
                nbf=version.nbf,
                exp=version.exp,
                now=self.clock.now(),
            )
        )

    async def rotate_key(self, vault: Vault, name: str) -> dict[str, Any]:
        key = self.find_key(vault, name)
        version = await self._rotate(vault, key)
        return self.bundle(vault, key, version)

    async def _rotate(self, vault: Vault, key: Key) -> KeyVersion:
        current = key.latest
        material = current.material
        curve = material.public_jwk.get("crv")
        size = None if material.family == "EC" else material.size
        loop = asyncio.get_running_loop()
        new_material = await loop.run_in_executor(None, crypto.generate, material.kty, size, curve, None)
        now = int(self.clock.now())
        expiry = key.expiry_seconds()
        exp = now + expiry if expiry is not None else None
        tags = dict(current.tags) if current.tags else None
        return self._add_version(vault, key, new_material, list(current.key_ops), True, None, exp, tags, now)

    def update_key(self, vault: Vault, name: str, version_id: str, body: Any) -> dict[str, Any]:
        key, version = self.find_version(vault, name, version_id)
        if not isinstance(body, dict):
            raise bad_parameter("The request body must be a JSON object.")
        key_ops = body.get("key_ops")
        if key_ops is not None:
            version.key_ops = _key_ops(key_ops, version.key_ops)
        enabled, nbf, exp = _attributes(body.get("attributes"))
        if enabled is not None:
            version.enabled = enabled
        if nbf is not None:
            version.nbf = nbf
        if exp is not None:
            if exp != version.exp:
                version.notified_near_expiry = version.notified_expired = False
            version.exp = exp
        if body.get("tags") is not None:
            version.tags = _tags(body["tags"])
        version.updated = int(self.clock.now())
        self.changed()
        return self.bundle(vault, key, version)

    def get_policy(self, vault: Vault, name: str) -> dict[str, Any]:
        return self.policy_body(vault, self.find_key(vault, name))

    def put_policy(self, vault: Vault, name: str, body: Any) -> dict[str, Any]:
        key = self.find_key(vault, name)
        actions, expiry_time = validate_policy(body)
        now = int(self.clock.now())
        created = key.policy["created"] if key.policy else now
        key.policy = {"lifetimeActions": actions, "expiryTime": expiry_time, "created": created, "updated": now}
        self.changed()
        return self.policy_body(vault, key)

    def crypto_operation(self, vault: Vault, name: str, version_id: str, operation: str, body: Any) -> dict[str, Any]:
        key, version = self.find_version(vault, name, version_id)
        if not isinstance(body, dict):
            raise bad_parameter("The request body must be a JSON object.")
        if not version.enabled:
            raise disabled_key(operation)
        if operation in TIME_BOUND_OPERATIONS:
            now = self.clock.now()
            if version.exp is not None and now >= version.exp:
                raise KeyVaultError(
                    403, "Forbidden", f"Operation {operation} is not allowed on an expired key.", "KeyExpired"
                )
            if version.nbf is not None and now < version.nbf:
                raise KeyVaultError(
                    403,
                    "Forbidden",
                    f"Operation {operation} is not allowed on a key that is not yet valid.",
                    "KeyNotYetValid",
                )
        if operation not in version.key_ops:
            raise KeyVaultError(
                403, "Forbidden", f"Operation {operation} is not permitted on this key.", "KeyOperationForbidden"
            )
        alg = body.get("alg")
        material = version.material
        kid = self.kid(vault, key, version)
        if operation == "verify":
            digest = crypto.unb64url(body.get("digest"), "digest")
            signature = crypto.unb64url(body.get("value"), "value")
            return {"value": crypto.verify(material, alg, digest, signature)}
        value = crypto.unb64url(body.get("value"), "value")
        if operation == "sign":
            return {"kid": kid, "value": crypto.b64url(crypto.sign(material, alg, value))}
        if operation in ("encrypt", "wrapKey"):
            return {"kid": kid, **crypto.encrypt(material, alg, value, body)}
        return {"kid": kid, **crypto.decrypt(material, alg, value, body)}

    def delete_key(self, vault: Vault, name: str) -> dict[str, Any]:
        key = self.find_key(vault, name)
        del vault.keys[name.lower()]
        if vault.enable_soft_delete:
            now = int(self.clock.now())
            key.deleted_date = now
            key.scheduled_purge_date = now + vault.soft_delete_retention_days * DAY
            vault.deleted[name.lower()] = key
        self.changed()
        return self.deleted_bundle(vault, key)

    def get_deleted(self, vault: Vault, name: str) -> dict[str, Any]:
        key = vault.deleted.get(name.lower())
        if key is None:
            raise deleted_key_not_found(name)
        return self.deleted_bundle(vault, key)

    def recover(self, vault: Vault, name: str) -> dict[str, Any]:
        key = vault.deleted.pop(name.lower(), None)
        if key is None:
            raise deleted_key_not_found(name)
        key.deleted_date = key.scheduled_purge_date = None
        vault.keys[name.lower()] = key
        self.changed()
        return self.bundle(vault, key, key.latest)

    def purge(self, vault: Vault, name: str) -> None:
        if name.lower() not in vault.deleted:
            raise deleted_key_not_found(name)
        if vault.enable_purge_protection:
            raise KeyVaultError(
                403,
                "Forbidden",
                f'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault '
                f"service will automatically purge it after the retention period has passed. Vault: {vault.name}",
                "PurgeProtectionEnabled",
            )
        del vault.deleted[name.lower()]
        self.changed()

    # -- lifecycle --------------------------------------------------------------------------------

    async def evaluate_lifecycle(self) -> None:
        """Emit near-expiry/expired events, rotate keys whose policy says so, purge expired deletions."""
        async with self._lifecycle:  # the ticker and a clock change must not rotate the same key twice
            await self._evaluate_lifecycle()

    async def _evaluate_lifecycle(self) -> None:
        now = self.clock.now()
        for vault in list(self.vaults.values()):
            for lower, key in list(vault.deleted.items()):
                if key.scheduled_purge_date is not None and now >= key.scheduled_purge_date:
                    del vault.deleted[lower]
                    self.changed()
            for key in list(vault.keys.values()):
                version = key.latest
                if version.exp is not None:
                    if not version.notified_near_expiry and now >= version.exp - key.notify_before_seconds():
                        version.notified_near_expiry = True
                        self._emit(events.NEAR_EXPIRY, vault, key, version)
                        self.changed()
                    if not version.notified_expired and now >= version.exp:
                        version.notified_expired = True
                        self._emit(events.EXPIRED, vault, key, version)
                        self.changed()
                if key.policy is None:
                    continue
                trigger = action_trigger(key.policy["lifetimeActions"], "Rotate")
                if trigger is None:
                    continue
                if "timeAfterCreate" in trigger:
                    due: float | None = version.created + duration_seconds(
                        trigger["timeAfterCreate"], "timeAfterCreate"
                    )
                elif version.exp is not None:
                    due = version.exp - duration_seconds(trigger["timeBeforeExpiry"], "timeBeforeExpiry")
                else:
                    due = None
                if due is not None and now >= due and vault.keys.get(key.name.lower()) is key:
                    await self._rotate(vault, key)


def _new_key_request(vault: Vault, name: str, body: Any) -> dict[str, Any]:
    """The body of a create or import request, checked: a valid key name no deleted key holds, a JSON object."""
    if not KEY_NAME.match(name):
        raise bad_parameter(f"The key name '{name}' is invalid: use 1-127 letters, digits and hyphens.")
    if name.lower() in vault.deleted:
        raise conflict_deleted(name)
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object.")
    return body


def _key_named(vault: Vault, name: str) -> Key:
    """The vault's key ``name``, added (with no versions yet) if the vault has none of that name."""
    key = vault.keys.get(name.lower())
    if key is None:
        key = Key(name)
        vault.keys[name.lower()] = key
    return key


def _key_ops(value: object, default: list[str]) -> list[str]:
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(op, str) and op in crypto.KEY_OPS for op in value):
        raise bad_parameter(f"The value of the parameter 'key_ops' is invalid: {value!r}.")
    return list(dict.fromkeys(value))


def _attributes(value: object) -> tuple[bool | None, int | None, int | None]:
    if value is None:
        return None, None, None
    if not isinstance(value, dict):
        raise bad_parameter("The parameter 'attributes' must be an object.")
    enabled = value.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise bad_parameter("The attribute 'enabled' must be a boolean.")
    stamps = []
    for field_name in ("nbf", "exp"):
        stamp = value.get(field_name)
        if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int | float)):
            raise bad_parameter(f"The attribute '{field_name}' must be a Unix time in seconds.")
        stamps.append(None if stamp is None else int(stamp))
    nbf, exp = stamps
    if nbf is not None and exp is not None and nbf > exp:
        raise bad_parameter("The attribute 'nbf' must not be later than 'exp'.")
    return enabled, nbf, exp


def _tags(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad_parameter("The parameter 'tags' must be an object of string values.")
    if len(value) > MAX_TAGS:
        raise bad_parameter(f"A key can have at most {MAX_TAGS} tags.")
    return dict(value) or None
