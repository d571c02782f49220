"""Planning: from what was observed, which consumers use the key, what would change, and whether it is safe.

Pure: ``build_plan(observed, planners)`` takes plain values gathered by the service and the consumer
kinds' pure parts (``rotation.consumers``), and returns a ``Plan``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from rotation.domain.model import Consumer, ConsumerChange, HeldBlob, KeyRef, KeyVersion, VaultProperties
from rotation.domain.steps import ROTATION_TAG

#: Key types and sizes both Azure Storage and Azure ML accept for customer-managed keys.
SUPPORTED_KTY = ("RSA", "RSA-HSM")
SUPPORTED_SIZES = (2048, 3072, 4096)
REQUIRED_OPS = ("wrapKey", "unwrapKey")

#: The permissions the workflow's own steps need (Key Vault data actions), shown in the plan with each
#: consumer kind's (``ConsumerPlanner.permissions``). Every name is one an adapter declares in its
#: ``ACTIONS`` (tests/unit/test_permissions.py).
_KEY_READ = "Microsoft.KeyVault/vaults/keys/read"
_KEY_UPDATE = "Microsoft.KeyVault/vaults/keys/update/action"  # UpdateKey: disable a version
WORKFLOW_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "plan": (_KEY_READ, "Microsoft.KeyVault/vaults/read"),
    "new_version": (
        _KEY_READ,
        "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
        "Microsoft.KeyVault/vaults/keys/create/action",
    ),
    "verify_version": (
        _KEY_READ,
        "Microsoft.KeyVault/vaults/keys/wrap/action",
        "Microsoft.KeyVault/vaults/keys/unwrap/action",
        _KEY_UPDATE,  # a version that fails the probe is disabled
    ),
    "retire": (_KEY_READ, _KEY_UPDATE),
}

VERSIONLESS = "versionless"

Item_contra = TypeVar("Item_contra", contravariant=True)


@dataclass(frozen=True)
class PlanContext:
    """What a kind's plan may depend on besides its own items."""

    key: KeyRef
    vault: VaultProperties | None  # None: the vault was not found (the plan reports that already)
    target: str | None  # the version consumers move to; None: the version the rotation creates


@dataclass(frozen=True)
class UnitPlan:
    """One kind's share of a plan: its consumers of the key, the change each gets, and its blockers."""

    consumers: tuple[Consumer, ...] = ()
    changes: tuple[ConsumerChange, ...] = ()
    problems: tuple[str, ...] = ()
    #: Blob versions, snapshots and soft-deleted blobs wrapped by a version of the key: no rotation
    #: moves them, each keeps its version from retiring (listed so the plan shows every use of the key).
    history: tuple[HeldBlob, ...] = ()


class ConsumerPlanner(Protocol[Item_contra]):
    """The pure part of a consumer kind (``rotation.consumers.ConsumerUnit`` extends it)."""

    kind: str
    permissions: Mapping[str, tuple[str, ...]]

    def uses_key(self, item: Item_contra, key: KeyRef) -> bool:
        """Whether ``item`` is a consumer of ``key`` (any version)."""
        ...

    def plan(self, items: Sequence[Item_contra], context: PlanContext) -> UnitPlan:
        """The consumers among ``items`` (all of which use the key) and the change each gets."""
        ...

    def references_to(self, items: Sequence[Item_contra], key: KeyRef, version: str) -> tuple[str, ...]:
        """Each recorded use of ``version`` among ``items``, as a log-safe sentence."""
        ...


@dataclass(frozen=True)
class Observed:
    """What the service read about one key and its possible consumers."""

    key: KeyRef
    versions: tuple[KeyVersion, ...]
    vault: VaultProperties | None
    found: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # consumer kind -> every candidate found
    current: KeyVersion | None = None  # the latest version as Key Vault reports it (wins over creation order)


@dataclass(frozen=True)
class Plan:
    """The consumers of a key, what a rotation would change, and why it may not proceed."""

    key: KeyRef
    old_version: str | None
    latest: KeyVersion | None
    consumers: tuple[Consumer, ...]
    changes: tuple[ConsumerChange, ...]
    problems: tuple[str, ...]
    unrelated: int = 0  # CMK consumers of other keys, left alone
    adopt_version: str | None = None
    history: tuple[HeldBlob, ...] = ()  # blob versions, snapshots, soft-deleted blobs on the key
    permissions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def step_permissions(run_steps: Sequence[str], planners: Sequence[ConsumerPlanner[Any]]) -> dict[str, tuple[str, ...]]:
    """The actions each step needs: the workflow's own, then each kind's, steps in run order."""
    result: dict[str, tuple[str, ...]] = {}
    for step in (*run_steps, "retire"):
        actions = (*WORKFLOW_PERMISSIONS.get(step, ()), *(a for p in planners for a in p.permissions.get(step, ())))
        if actions:
            result[step] = tuple(dict.fromkeys(actions))
    return result


def references_to(
    planners: Sequence[ConsumerPlanner[Any]], found: Mapping[str, Sequence[Any]], key: KeyRef, version: str
) -> tuple[str, ...]:
    """Every recorded use of ``version`` by the key's consumers, kind by kind, as log-safe sentences."""
    found_refs: list[str] = []
    for planner in planners:
        items = [i for i in found.get(planner.kind, ()) if planner.uses_key(i, key)]
        found_refs.extend(planner.references_to(items, key, version))
    return tuple(found_refs)


def build_plan(
    observed: Observed,
    planners: Sequence[ConsumerPlanner[Any]],
    adopt_version: str | None = None,
    run_steps: Sequence[str] = (),
) -> Plan:
    """Find the consumers of ``observed.key``, kind by kind in ``planners``' order, and check every precondition.

    ``adopt_version`` names a version that already exists (Key Vault's own auto-rotation) to move
    consumers to instead of creating one; it must be newer than the version it replaces.
    """
    key = observed.key
    problems: list[str] = []
    versions = sorted(observed.versions, key=lambda v: (v.created, v.version))
    if observed.current is not None:
        # Versions created within the same second sort arbitrarily; Key Vault knows which is latest.
        # Its full attributes (type, size, operations) also come from this read, not from the listing.
        versions = [v for v in versions if v.version != observed.current.version]
        versions.append(observed.current)
    latest = versions[-1] if versions else None
    old: KeyVersion | None = latest
    if latest is not None and not latest.enabled and ROTATION_TAG in latest.tags and adopt_version is None:
        # A version a stopped rotation of this service disabled (it failed its probe): replace the
        # newest enabled version instead.
        enabled = [v for v in versions if v.enabled]
        old = enabled[-1] if enabled else latest
    if not versions:
        problems.append(f"key {key.uri} has no versions")
    if adopt_version is not None and versions:
        adopted = next((v for v in versions if v.version == adopt_version), None)
        if adopted is None:
            problems.append(f"version {adopt_version} to adopt does not exist")
        else:
            position = versions.index(adopted)
            old = versions[position - 1] if position > 0 else None
            if old is None:
                problems.append(f"version {adopt_version} is the only version; nothing to replace")
            if not adopted.enabled:
                problems.append(f"version {adopt_version} to adopt is disabled")

    if observed.vault is None:
        problems.append(f"vault {key.vault_url} was not found in the configured subscriptions")
    else:
        if not observed.vault.soft_delete_enabled:
            problems.append("vault does not have soft delete enabled (required by Storage and Azure ML for CMKs)")
        if not observed.vault.purge_protection_enabled:
            problems.append("vault does not have purge protection enabled (required by Storage and Azure ML for CMKs)")

    if old is not None:
        if old.kty not in SUPPORTED_KTY:
            problems.append(f"key type {old.kty} is not supported for CMKs (RSA or RSA-HSM)")
        if old.key_size is not None and old.key_size not in SUPPORTED_SIZES:
            problems.append(f"key size {old.key_size} is not supported for CMKs (2048, 3072 or 4096)")
        missing = [op for op in REQUIRED_OPS if old.key_ops and op not in old.key_ops]
        if missing:
            problems.append(f"key operations lack {', '.join(missing)}")
        if not old.enabled and adopt_version is None:
            problems.append(f"latest version {old.version} is disabled; rotate it by hand")

    consumers: list[Consumer] = []
    changes: list[ConsumerChange] = []
    history: list[HeldBlob] = []
    unrelated = 0
    old_version = old.version if old is not None else None
    context = PlanContext(key, observed.vault, adopt_version)  # target None: a version this rotation creates
    for planner in planners:
        found = observed.found.get(planner.kind, ())
        using = [item for item in found if planner.uses_key(item, key)]
        unrelated += len(found) - len(using)
        share = planner.plan(using, context)
        consumers.extend(share.consumers)
        changes.extend(share.changes)
        problems.extend(share.problems)
        history.extend(share.history)

    return Plan(
        key=key,
        old_version=old_version,
        latest=latest,
        consumers=tuple(consumers),
        changes=tuple(changes),
        problems=tuple(problems),
        unrelated=unrelated,
        adopt_version=adopt_version,
        permissions=step_permissions(run_steps, planners),
        history=tuple(history),
    )
