"""In-memory Key Vault keys: versions with attributes and tags, and a counted call log."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rotation.adapters.azure_errors import NotFound
from rotation.domain.model import KeyListPage, KeyRef, KeyVersion, RotationPolicy
from rotation.domain.sweep_cost import KEYS_PER_PAGE
from rotation.errors import InputError, VerificationFailed
from tests.fakes.faults import Faults


class FakeKeyStore:
    """Implements ``rotation.ports.KeyStore`` over dictionaries. ``calls`` counts calls by method."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self.versions: dict[KeyRef, list[KeyVersion]] = {}
        self.policies: dict[KeyRef, RotationPolicy] = {}
        self.broken_versions: set[str] = set()  # versions whose wrap/unwrap probe fails
        self.create_broken_versions = False  # every version create_version makes joins broken_versions
        self.calls: dict[str, int] = {}
        self.faults = Faults()
        self._lock = threading.Lock()
        self._seq = 0

    # -- arranging --------------------------------------------------------------------------

    def add_key(
        self, key: KeyRef, *, size: int = 2048, kty: str = "RSA", expires: datetime | None = None
    ) -> KeyVersion:
        return self._new_version(key, kty=kty, size=size, ops=("wrapKey", "unwrapKey"), tags={}, expires=expires)

    def auto_rotate(self, key: KeyRef) -> KeyVersion:
        """What Key Vault's own rotation does: a new version, untagged."""
        latest = self.latest(key)
        return self._new_version(key, kty=latest.kty, size=latest.key_size or 2048, ops=latest.key_ops, tags={})

    def latest(self, key: KeyRef) -> KeyVersion:
        return self.versions[self._ref(key)][-1]

    def all_versions(self, key: KeyRef) -> list[KeyVersion]:
        return list(self.versions[self._ref(key)])

    def _ref(self, key: KeyRef) -> KeyRef:
        return KeyRef(key.vault_url.lower(), key.name.lower())

    def _new_version(
        self,
        key: KeyRef,
        *,
        kty: str,
        size: int,
        ops: tuple[str, ...],
        tags: dict[str, str],
        expires: datetime | None = None,
    ) -> KeyVersion:
        with self._lock:
            self._seq += 1
            # Key Vault reports whole seconds; keep creation order strictly increasing for the fake.
            created = self._now().replace(microsecond=0) + timedelta(microseconds=self._seq)
            version = KeyVersion(
                key=key,
                version=secrets.token_hex(16),
                enabled=True,
                created=created,
                updated=created,
                expires=expires,
                kty=kty,
                key_size=size,
                key_ops=ops,
                tags=dict(tags),
            )
            self.versions.setdefault(self._ref(key), []).append(version)
            return version

    def _count(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        self.faults.check(method)

    def _find(self, key: KeyRef, version: str | None) -> KeyVersion:
        versions = self.versions.get(self._ref(key))
        if not versions:
            raise NotFound(f"key {key.uri} not found")
        if version is None:
            return versions[-1]
        for v in versions:
            if v.version == version:
                return v
        raise NotFound(f"version {version} of {key.uri} not found")

    # -- the port ---------------------------------------------------------------------------

    def get_key(self, key: KeyRef, version: str | None = None) -> KeyVersion:
        self._count("get_key")
        return self._find(key, version)

    def list_versions(self, key: KeyRef) -> list[KeyVersion]:
        self._count("list_versions")
        self._find(key, None)
        return list(self.versions[self._ref(key)])

    def list_key_pages(self, vault_url: str) -> Iterator[KeyListPage]:
        """Each key's current attributes, 25 a page (one counted call each); like Key Vault's list, no
        version and no key properties."""
        listed = [
            replace(versions[-1], version="", key_size=None, key_ops=())
            for ref, versions in sorted(self.versions.items())
            if ref.vault_url == vault_url.lower()
        ]
        for start in range(0, max(1, len(listed)), KEYS_PER_PAGE):
            self._count("list_key_pages")
            yield KeyListPage(tuple(listed[start : start + KEYS_PER_PAGE]), more=start + KEYS_PER_PAGE < len(listed))

    def get_rotation_policy(self, key: KeyRef) -> RotationPolicy | None:
        self._count("get_rotation_policy")
        self._find(key, None)
        # A key without a policy answers Key Vault's default: notify 30 days before expiry.
        return self.policies.get(self._ref(key), RotationPolicy(notify_before_expiry="P30D"))

    def create_version(
        self, key: KeyRef, like: KeyVersion, tags: dict[str, str], expires: datetime | None
    ) -> KeyVersion:
        self._count("create_version")
        self._find(key, None)
        created = self._new_version(
            key, kty=like.kty, size=like.key_size or 2048, ops=like.key_ops, tags=tags, expires=expires
        )
        if self.create_broken_versions:
            self.broken_versions.add(created.version)
        self.faults.check("create_version:after")  # the response is lost after the version was created
        return created

    def update_version(
        self, key: KeyRef, version: str, *, enabled: bool | None = None, tags: dict[str, str] | None = None
    ) -> KeyVersion:
        self._count("update_version")
        current = self._find(key, version)
        updated = replace(
            current,
            enabled=current.enabled if enabled is None else enabled,
            tags=dict(current.tags) if tags is None else dict(tags),
        )
        versions = self.versions[self._ref(key)]
        versions[versions.index(current)] = updated
        return updated

    def wrap_unwrap_probe(self, key: KeyRef, version: str) -> None:
        self._count("wrap_unwrap_probe")
        found = self._find(key, version)
        if not found.enabled:
            raise InputError(f"version {version} is disabled")
        if version in self.broken_versions:
            raise VerificationFailed(f"wrap/unwrap round trip with {version} did not match")
