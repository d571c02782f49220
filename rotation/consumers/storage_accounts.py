"""Storage accounts with customer-managed keys (``Microsoft.Storage/storageAccounts``).

A pinned account (``keyversion`` set) is re-pointed by ``repoint_storage``; a versionless one
follows the key's latest version by itself within a day, so it is tracked (``track_versionless``)
until it reports the new version in use, and it blocks retirement until then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from rotation.consumers.base import (
    ConsumerRun,
    Reading,
    Settled,
    UnitPorts,
    in_subscriptions,
    repoint_pinned,
    roll_back_pinned,
    track_adoption,
    would_repoint,
)
from rotation.domain.model import Consumer, ConsumerChange, ConsumerKind, KeyRef, StorageAccountKey
from rotation.domain.plan import VERSIONLESS, PlanContext, UnitPlan
from rotation.domain.policy import version_of

READ = "Microsoft.Storage/storageAccounts/read"
WRITE = "Microsoft.Storage/storageAccounts/write"


def uses_key(account: StorageAccountKey, key: KeyRef) -> bool:
    same_vault = account.vault_url.rstrip("/").lower() == key.vault_url.lower()
    return same_vault and account.key_name.lower() == key.name.lower()


def _reading(account: StorageAccountKey, key: KeyRef) -> Reading:
    # keyversion as configured ("" when versionless); the version in use as Storage reports it.
    return Reading(account.name, account.key_version, version_of(account.current_versioned_key_id, key.uri))


def _setter(run: ConsumerRun, change: ConsumerChange) -> Callable[[str], object]:
    """Set the account's keyversion (the PATCH is absolute: safe to repeat). storageAccounts/write."""
    key, accounts = run.key, run.ports.storage_accounts
    return lambda version: accounts.set_key_version(change.resource_id, key.vault_url, key.name, version)


class StorageAccountUnit:
    """Implements ``ConsumerUnit[StorageAccountKey]``."""

    kind: str = ConsumerKind.STORAGE_ACCOUNT
    label = "storage accounts"
    repoint_step: str | None = "repoint_storage"
    settle_step: str | None = "track_versionless"
    permissions: Mapping[str, tuple[str, ...]] = {"plan": (READ,), "repoint_storage": (READ, WRITE)}

    def discover(self, ports: UnitPorts, key: KeyRef) -> Sequence[StorageAccountKey]:
        return in_subscriptions(ports, ports.storage_accounts.list_accounts)

    def uses_key(self, item: StorageAccountKey, key: KeyRef) -> bool:
        return uses_key(item, key)

    def plan(self, items: Sequence[StorageAccountKey], context: PlanContext) -> UnitPlan:
        key, target = context.key, context.target
        consumers: list[Consumer] = []
        changes: list[ConsumerChange] = []
        for account in sorted(items, key=lambda a: a.account_id.lower()):
            in_use = version_of(account.current_versioned_key_id, key.uri) or None
            consumers.append(
                Consumer(
                    self.kind,
                    account.account_id,
                    account.name,
                    None if account.versionless else account.key_version,
                    in_use if account.versionless else account.key_version,
                    account.identity_principal_id,
                )
            )
            if account.versionless:
                changes.append(
                    ConsumerChange(
                        self.kind,
                        account.account_id,
                        VERSIONLESS,
                        VERSIONLESS,
                        "tracking",
                        f"{account.name}: versionless (in use: {in_use or 'unknown'}); tracked until it adopts",
                    )
                )
            else:
                changes.append(
                    ConsumerChange(
                        self.kind,
                        account.account_id,
                        account.key_version,
                        target,
                        "planned",
                        f"{account.name}: keyversion {account.key_version} -> {target or 'the new version'}",
                    )
                )
        return UnitPlan(tuple(consumers), tuple(changes))

    def references_to(self, items: Sequence[StorageAccountKey], key: KeyRef, version: str) -> tuple[str, ...]:
        found: list[str] = []
        for account in items:
            in_use = version_of(account.current_versioned_key_id, key.uri)
            if account.key_version == version:
                found.append(f"storage account {account.name} is pinned to it")
            elif account.versionless and not in_use:
                # Fail closed: Storage does not say which version it uses, so it may be this one.
                found.append(f"storage account {account.name} is versionless and its in-use version is unknown")
            elif in_use == version:
                found.append(f"storage account {account.name} still uses it (versionless, not yet adopted)")
        return tuple(found)

    def repoint(self, run: ConsumerRun, change: ConsumerChange) -> ConsumerChange | None:
        if change.before == VERSIONLESS or change.status in ("changed", "rolled_back", "failed"):
            return None
        reading = self.read_back(run.ports, run.key, change)
        if reading.configured == "":
            return replace(change, status="tracking", after=VERSIONLESS, detail="became versionless; tracked")
        return repoint_pinned(
            run,
            self,
            change,
            action="set_storage_version",
            set_version=_setter(run, change),
            mismatch=lambda r: f"{r.name} reads back {r.configured}",
            detail=lambda r, new: f"{r.name}: keyversion {change.before} -> {new}",
        )

    def read_back(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> Reading:
        return _reading(ports.storage_accounts.get_account(change.resource_id), key)

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        if reading.configured != new_version or reading.in_use not in (None, "", new_version):
            return f"{reading.name} is not using {new_version} (in use: {reading.in_use})"
        return None

    def roll_back(self, run: ConsumerRun, change: ConsumerChange) -> None:
        before = change.before
        if not before or before == VERSIONLESS:
            return
        roll_back_pinned(run, self, change, before, action="rollback_storage", set_version=_setter(run, change))

    def settle(self, run: ConsumerRun) -> Settled:
        """Record which versionless accounts adopted the new version (they adopt by themselves)."""
        return track_adoption(self, run, "versionless")

    def at_retirement(self, change: ConsumerChange) -> ConsumerChange:
        if change.kind == self.kind and change.status == "tracking":
            return replace(change, status="adopted", detail="adopted the new version")
        return change

    def describe(self, changes: Sequence[ConsumerChange]) -> str:
        return would_repoint(f"pinned {self.label}", changes)


STORAGE_ACCOUNTS = StorageAccountUnit()
