"""The ``KeyStore`` contract: ``FakeKeyStore`` and ``KeyVaultKeyStore`` (the Key Vault emulator) agree.

Versions read back with the attributes they were made with; a created version copies the one it is
``like`` and becomes the latest; ``update_version`` disables and re-tags without touching the rest;
``list_key_pages`` gives each key's current attributes without a version, 25 a page (Key Vault lists base
identifiers only); a key without a rotation policy answers Key Vault's default; unknown keys and
versions are ``PreconditionFailed`` with the code ``NotFound``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.domain.model import KeyRef, RotationPolicy
from rotation.errors import PreconditionFailed
from rotation.ports import KeyStore
from tests.contracts.conftest import BOTH, fake_or_real

PRINCIPAL = "contract-tests"
WRAP_OPS = ("wrapKey", "unwrapKey")


@dataclass
class Vault:
    """A key store and the means to arrange keys in its vault the way their owners would."""

    store: KeyStore
    vault_url: str
    arrange: Any  # (name, expires) -> KeyRef: a new RSA-2048 wrap/unwrap key
    set_policy: Any  # (KeyRef, RotationPolicy) -> None

    def new_key(self, expires: datetime | None = None) -> KeyRef:
        key: KeyRef = self.arrange(f"k{uuid.uuid4().hex[:8]}", expires)
        return key


@pytest.fixture(params=BOTH)
def vault(request: pytest.FixtureRequest) -> Iterator[Vault]:
    yield from fake_or_real(request, fake_vault, real_vault)


def fake_vault() -> Vault:
    from tests.fakes.keystore import FakeKeyStore

    store = FakeKeyStore()
    vault_url = "https://kv-contract.vault.azure.net"

    def arrange(name: str, expires: datetime | None) -> KeyRef:
        key = KeyRef(vault_url, name)
        store.add_key(key, expires=expires)
        return key

    def set_policy(key: KeyRef, policy: RotationPolicy) -> None:
        store.policies[key] = policy

    return Vault(store, vault_url, arrange, set_policy)


def real_vault(local_azure: dict[str, Any]) -> Iterator[Vault]:
    from azure.keyvault.keys import (
        KeyOperation,
        KeyRotationLifetimeAction,
        KeyRotationPolicy,
        KeyRotationPolicyAction,
    )

    from rotation.adapters.keyvault import KeyVaultKeyStore
    from rotation.adapters.local_credential import LocalDevelopmentCredential
    from tests.integration.vaults import new_vault

    ca = local_azure["ca_bundle"]
    _, created, owner = new_vault(local_azure, "kc", PRINCIPAL, api_version="7.6")
    vault_url = KeyRef.parse(created["url"].rstrip("/") + "/keys/x")[0].vault_url
    store = KeyVaultKeyStore(
        LocalDevelopmentCredential(PRINCIPAL), {"connection_verify": ca}, verify_challenge_resource=False
    )

    def arrange(name: str, expires: datetime | None) -> KeyRef:
        ops = [KeyOperation.wrap_key, KeyOperation.unwrap_key]
        owner.create_rsa_key(name, size=2048, key_operations=ops, expires_on=expires)
        return KeyRef(vault_url, name)

    def set_policy(key: KeyRef, policy: RotationPolicy) -> None:
        actions = []
        if policy.rotate_after_create or policy.rotate_before_expiry:
            actions.append(
                KeyRotationLifetimeAction(
                    KeyRotationPolicyAction.rotate,
                    time_after_create=policy.rotate_after_create,
                    time_before_expiry=policy.rotate_before_expiry,
                )
            )
        if policy.notify_before_expiry:
            actions.append(
                KeyRotationLifetimeAction(
                    KeyRotationPolicyAction.notify, time_before_expiry=policy.notify_before_expiry
                )
            )
        owner.update_key_rotation_policy(
            key.name, KeyRotationPolicy(expires_in=policy.expiry_time, lifetime_actions=actions)
        )

    yield Vault(store, vault_url, arrange, set_policy)
    store.close()
    owner.close()


def whole_seconds(value: datetime) -> datetime:
    return value.replace(microsecond=0)


class TestReads:
    """A version reads back as it was made; the latest is the newest; every version is listed."""

    def test_a_new_key_reads_back(self, vault: Vault) -> None:
        expires = whole_seconds(datetime.now(UTC) + timedelta(days=40))
        key = vault.new_key(expires)

        latest = vault.store.get_key(key)
        same = vault.store.get_key(key, latest.version)

        assert same == latest
        assert latest.key == key
        assert latest.version
        assert latest.enabled is True
        assert (latest.kty, latest.key_size, set(latest.key_ops)) == ("RSA", 2048, set(WRAP_OPS))
        assert latest.expires == expires
        assert latest.created.tzinfo is not None
        assert [v.version for v in vault.store.list_versions(key)] == [latest.version]

    def test_unknown_key_or_version_is_a_precondition(self, vault: Vault) -> None:
        key = vault.new_key()

        with pytest.raises(PreconditionFailed) as missing_key:
            vault.store.get_key(KeyRef(vault.vault_url, f"missing{uuid.uuid4().hex[:6]}"))
        with pytest.raises(PreconditionFailed) as missing_version:
            vault.store.get_key(key, uuid.uuid4().hex)
        with pytest.raises(PreconditionFailed) as missing_update:
            vault.store.update_version(key, uuid.uuid4().hex, enabled=False)
        with pytest.raises(PreconditionFailed) as missing_versions:
            vault.store.list_versions(KeyRef(vault.vault_url, f"missing{uuid.uuid4().hex[:6]}"))
        with pytest.raises(PreconditionFailed) as missing_policy:
            vault.store.get_rotation_policy(KeyRef(vault.vault_url, f"missing{uuid.uuid4().hex[:6]}"))

        raised = (missing_key, missing_version, missing_update, missing_versions, missing_policy)
        assert {e.value.code for e in raised} == {"NotFound"}

    def test_list_keys_gives_each_key_once_without_a_version(self, vault: Vault) -> None:
        expires = whole_seconds(datetime.now(UTC) + timedelta(days=10))
        first, second = vault.new_key(expires), vault.new_key()
        current = vault.store.create_version(first, vault.store.get_key(first), {}, None)

        pages = list(vault.store.list_key_pages(vault.vault_url))
        listed = {k.key.name: k for page in pages for k in page.keys}

        assert set(listed) == {first.name, second.name}
        assert [page.more for page in pages] == [False]
        assert {k.version for k in listed.values()} == {""}
        assert all(k.enabled for k in listed.values())
        # the current version's attributes (the new one has no expiry, the first had one)
        assert (listed[first.name].expires, listed[second.name].expires) == (None, None)
        assert listed[first.name].created == current.created

    def test_list_keys_pages_by_25_and_says_when_more_follow(self, vault: Vault) -> None:
        for _ in range(26):
            vault.new_key()

        pages = list(vault.store.list_key_pages(vault.vault_url))

        assert [(len(page.keys), page.more) for page in pages] == [(25, True), (1, False)]


class TestCreateVersion:
    """A created version copies type, size and operations of ``like``, carries the tags and becomes the latest."""

    def test_create_version_like_the_old_one(self, vault: Vault) -> None:
        key = vault.new_key()
        old = vault.store.get_key(key)
        expires = whole_seconds(datetime.now(UTC) + timedelta(days=90))

        created = vault.store.create_version(key, old, {"rotation-id": "rot-1"}, expires)

        assert created.version not in ("", old.version)
        assert (created.kty, created.key_size, set(created.key_ops)) == (old.kty, old.key_size, set(old.key_ops))
        assert dict(created.tags) == {"rotation-id": "rot-1"}
        assert created.expires == expires
        assert created.created >= old.created
        assert vault.store.get_key(key) == created
        assert {v.version for v in vault.store.list_versions(key)} == {old.version, created.version}
        assert vault.store.get_key(key, old.version) == old


class TestUpdateVersion:
    """``update_version`` changes only what it is given: enabled, tags."""

    def test_disable_keeps_tags_and_retag_keeps_enabled(self, vault: Vault) -> None:
        key = vault.new_key()
        old = vault.store.get_key(key)
        new = vault.store.create_version(key, old, {"rotation-id": "rot-2"}, None)

        disabled = vault.store.update_version(key, new.version, enabled=False)
        retagged = vault.store.update_version(key, new.version, tags={"rotation-id": "rot-3"})

        assert (disabled.enabled, dict(disabled.tags)) == (False, {"rotation-id": "rot-2"})
        assert (retagged.enabled, dict(retagged.tags)) == (False, {"rotation-id": "rot-3"})
        assert vault.store.get_key(key, new.version).enabled is False
        assert vault.store.get_key(key, old.version).enabled is True
        assert [v.enabled for v in vault.store.list_versions(key) if v.version == new.version] == [False]


class TestPolicy:
    """The rotation policy reads back; a key without one answers Key Vault's default (notify 30 days before)."""

    def test_default_policy(self, vault: Vault) -> None:
        key = vault.new_key()

        policy = vault.store.get_rotation_policy(key)

        assert policy == RotationPolicy(notify_before_expiry="P30D")

    def test_policy_reads_back(self, vault: Vault) -> None:
        key = vault.new_key()
        wanted = RotationPolicy(expiry_time="P90D", rotate_after_create="P60D", notify_before_expiry="P10D")
        vault.set_policy(key, wanted)

        policy = vault.store.get_rotation_policy(key)

        assert policy == wanted


class TestProbe:
    """The wrap/unwrap probe passes on an enabled version and refuses an unknown one."""

    def test_probe(self, vault: Vault) -> None:
        key = vault.new_key()
        version = vault.store.get_key(key).version

        vault.store.wrap_unwrap_probe(key, version)

        with pytest.raises(PreconditionFailed):
            vault.store.wrap_unwrap_probe(key, uuid.uuid4().hex)
