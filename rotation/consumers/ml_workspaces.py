"""Azure ML workspaces with customer-managed keys (``Microsoft.MachineLearningServices/workspaces``).

A workspace names its key by ``keyIdentifier``; ``repoint_workspaces`` sets it to the new version
(a long-running PATCH whose polling URL is journalled, then polled, across invocations when it outlasts
one: ``ConsumerRun.write_long_running``). A versionless identifier is left as
configured. Azure ML only accepts keys in the vault the workspace was created with, which the plan
checks up front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from rotation.consumers.base import (
    ConsumerRun,
    LongRunning,
    Reading,
    Settled,
    UnitPorts,
    in_subscriptions,
    repoint_pinned,
    roll_back_pinned,
    short_name,
    would_repoint,
)
from rotation.domain.model import Consumer, ConsumerChange, ConsumerKind, KeyRef, WorkspaceKey
from rotation.domain.plan import VERSIONLESS, PlanContext, UnitPlan
from rotation.domain.policy import version_of

READ = "Microsoft.MachineLearningServices/workspaces/read"
WRITE = "Microsoft.MachineLearningServices/workspaces/write"
POLL = "Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read"  # the update is long-running


def uses_key(workspace: WorkspaceKey, key: KeyRef) -> bool:
    return version_of(workspace.key_identifier, key.uri) is not None


def _key_update(run: ConsumerRun, workspace_id: str) -> LongRunning:
    """The key update of one workspace as a long-running operation: begin (the PATCH), poll (one poll)."""
    workspaces, key = run.ports.workspaces, run.key
    return (
        lambda version: workspaces.begin_key_identifier(workspace_id, key.version_uri(version)),
        lambda operation: workspaces.poll_key_update(workspace_id, operation),
    )


def _reading(workspace: WorkspaceKey, key: KeyRef) -> Reading:
    version = version_of(workspace.key_identifier, key.uri)
    return Reading(workspace.name, version, version, workspace.provisioning_state)


class MlWorkspaceUnit:
    """Implements ``ConsumerUnit[WorkspaceKey]``."""

    kind: str = ConsumerKind.ML_WORKSPACE
    label = "workspaces"
    repoint_step: str | None = "repoint_workspaces"
    settle_step: str | None = None
    permissions: Mapping[str, tuple[str, ...]] = {"plan": (READ,), "repoint_workspaces": (READ, WRITE, POLL)}

    def discover(self, ports: UnitPorts, key: KeyRef) -> Sequence[WorkspaceKey]:
        return in_subscriptions(ports, ports.workspaces.list_workspaces)

    def uses_key(self, item: WorkspaceKey, key: KeyRef) -> bool:
        return uses_key(item, key)

    def plan(self, items: Sequence[WorkspaceKey], context: PlanContext) -> UnitPlan:
        key, target, vault = context.key, context.target, context.vault
        consumers: list[Consumer] = []
        changes: list[ConsumerChange] = []
        problems: list[str] = []
        for workspace in sorted(items, key=lambda w: w.workspace_id.lower()):
            pinned = version_of(workspace.key_identifier, key.uri) or None
            consumers.append(
                Consumer(
                    self.kind, workspace.workspace_id, workspace.name, pinned, pinned, workspace.identity_principal_id
                )
            )
            if vault is not None and workspace.key_vault_arm_id.lower() != vault.arm_id.lower():
                problems.append(
                    f"workspace {workspace.name} is bound to vault {short_name(workspace.key_vault_arm_id)}; Azure ML "
                    "only allows keys in the original vault"
                )
            changes.append(
                ConsumerChange(
                    self.kind,
                    workspace.workspace_id,
                    pinned or VERSIONLESS,
                    target,
                    "planned",
                    f"{workspace.name}: keyIdentifier -> {target or 'the new version'}",
                )
            )
        return UnitPlan(tuple(consumers), tuple(changes), tuple(problems))

    def references_to(self, items: Sequence[WorkspaceKey], key: KeyRef, version: str) -> tuple[str, ...]:
        return tuple(f"workspace {w.name} uses it" for w in items if version_of(w.key_identifier, key.uri) == version)

    def readings(self, items: Sequence[WorkspaceKey], key: KeyRef) -> Mapping[str, Reading]:
        return {workspace.workspace_id.lower(): _reading(workspace, key) for workspace in items}

    def repoint(
        self, run: ConsumerRun, change: ConsumerChange, observed: Reading | None = None
    ) -> ConsumerChange | None:
        if change.status in ("changed", "rolled_back", "unchanged"):
            return None
        if change.before == VERSIONLESS:
            if run.dry_run:
                return change
            return replace(
                change, status="unchanged", after=VERSIONLESS, detail="versionless keyIdentifier; left as configured"
            )
        key = run.key
        workspaces = run.ports.workspaces
        workspace_id = change.resource_id
        return repoint_pinned(
            run,
            self,
            change,
            action="set_workspace_key",
            set_version=lambda v: workspaces.set_key_identifier(workspace_id, key.version_uri(v)),
            mismatch=lambda r: f"{r.name} reads back another key",
            detail=lambda r, new: f"{r.name}: keyIdentifier -> {new}",
            reading=observed,
            long_running=_key_update(run, workspace_id),
        )

    def read_back(self, ports: UnitPorts, key: KeyRef, change: ConsumerChange) -> Reading:
        return _reading(ports.workspaces.get_workspace(change.resource_id), key)

    def verify(self, change: ConsumerChange, reading: Reading, new_version: str) -> str | None:
        return None if reading.configured == new_version else f"{reading.name} is not using {new_version}"

    def roll_back(self, run: ConsumerRun, change: ConsumerChange) -> None:
        old = run.state.old_version
        before = change.before if change.before and change.before != VERSIONLESS else old
        assert before is not None
        key = run.key
        workspaces = run.ports.workspaces
        roll_back_pinned(
            run,
            self,
            change,
            before,
            action="rollback_workspace",
            set_version=lambda v: workspaces.set_key_identifier(change.resource_id, key.version_uri(v)),
            long_running=_key_update(run, change.resource_id),
        )

    def settle(self, run: ConsumerRun) -> Settled:
        return Settled(True, "nothing to settle")

    def at_retirement(self, change: ConsumerChange) -> ConsumerChange:
        return change

    def describe(self, changes: Sequence[ConsumerChange]) -> str:
        return would_repoint(self.label, changes)


ML_WORKSPACES = MlWorkspaceUnit()
