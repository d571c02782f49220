"""What service functions return: frozen, log-safe views with a JSON-safe ``to_dict()``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from rotation.consumers import REGISTRY
from rotation.domain.healing import waiting_for
from rotation.domain.jsonable import jsonable
from rotation.domain.model import (
    Consumer,
    ConsumerChange,
    HeldBlob,
    RetirementEvidence,
    RewrapSummary,
    RotationStatus,
    StepRecord,
    Trigger,
)
from rotation.domain.plan import Plan
from rotation.domain.steps import RotationState


class _ToDict:
    def to_dict(self) -> dict[str, Any]:
        result = jsonable(self)
        assert isinstance(result, dict)
        return result


@dataclass(frozen=True)
class PlanView(_ToDict):
    """The plan for one key: consumers and what a rotation would change, and whether it may proceed."""

    key_uri: str
    old_version: str | None
    latest_version: str | None
    ok: bool
    problems: tuple[str, ...]
    consumers: tuple[ConsumerChange, ...]
    unrelated_consumers: int
    permissions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Every blob version, snapshot and soft-deleted blob wrapped by a version of the key (kind, name, version).
    blob_history: tuple[HeldBlob, ...] = ()
    #: Every consumer found: kind, resource, the version it is pinned to and the version it uses
    #: (``version_in_use`` None: not known, e.g. a versionless account Storage reports no version for).
    references: tuple[Consumer, ...] = ()

    @classmethod
    def from_plan(cls, plan: Plan) -> PlanView:
        return cls(
            key_uri=plan.key.uri,
            old_version=plan.old_version,
            latest_version=plan.latest.version if plan.latest else None,
            ok=plan.ok,
            problems=plan.problems,
            consumers=plan.changes,
            unrelated_consumers=plan.unrelated,
            permissions=dict(plan.permissions),
            blob_history=plan.history,
            references=plan.consumers,
        )


@dataclass(frozen=True)
class StepProgress(_ToDict):
    """A consumer step's progress: consumers done (moved, left as configured, or rolled back) of all."""

    step: str
    done: int
    total: int


@dataclass(frozen=True)
class Progress(_ToDict):
    """How far a rotation is: per consumer step done / total, time since it started (as of its last
    journal write), the consumers in flight and those not yet done."""

    steps: tuple[StepProgress, ...]
    elapsed_s: float
    in_flight: tuple[str, ...]
    pending: tuple[str, ...]

    @classmethod
    def from_state(cls, state: RotationState) -> Progress:
        by_step: dict[str, list[ConsumerChange]] = {}
        for change in state.consumers:
            unit = REGISTRY.unit(change.kind)
            step = unit.repoint_step if unit is not None and unit.repoint_step else change.kind
            by_step.setdefault(step, []).append(change)
        ordered = sorted(by_step.items(), key=lambda kv: _index(state.run_steps, kv[0]))
        return cls(
            steps=tuple(StepProgress(step, sum(c.status != "planned" for c in cs), len(cs)) for step, cs in ordered),
            elapsed_s=round((state.updated_at - state.started_at).total_seconds(), 1),
            in_flight=tuple(_name(i.target) for i in (*state.in_flight, *((state.intent,) if state.intent else ()))),
            pending=tuple(_name(c.resource_id) for c in state.consumers if c.status == "planned"),
        )


def _index(steps: tuple[str, ...], step: str) -> int:
    return steps.index(step) if step in steps else len(steps)


def _name(target: str) -> str:
    return target.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RotationView(_ToDict):
    rotation_id: str
    key_uri: str
    status: RotationStatus
    stage: str
    old_version: str | None
    new_version: str | None
    trigger: Trigger
    reason: str
    dry_run: bool
    started_at: datetime
    updated_at: datetime
    retire_after: datetime | None
    steps: tuple[StepRecord, ...]
    consumers: tuple[ConsumerChange, ...]
    rewrap: RewrapSummary | None
    error: dict[str, str] | None
    attempt: int = 1
    retry_of: str | None = None
    waiting_for: str = ""  # for a rotation not finished: what it waits for
    on_call: tuple[str, ...] = ()  # the CLI commands (and API calls) that act on it
    progress: Progress | None = None
    evidence: RetirementEvidence | None = None  # what the latest retirement check relied on

    @classmethod
    def from_state(cls, state: RotationState) -> RotationView:
        waits, actions = waiting_for(state)
        return cls(
            rotation_id=state.rotation_id,
            key_uri=state.key_uri,
            status=state.status,
            stage=state.stage,
            old_version=state.old_version,
            new_version=state.new_version,
            trigger=state.trigger,
            reason=state.reason,
            dry_run=state.dry_run,
            started_at=state.started_at,
            updated_at=state.updated_at,
            retire_after=state.retire_after,
            steps=state.steps,
            consumers=state.consumers,
            rewrap=state.rewrap,
            error={"code": state.error[0], "message": state.error[1]} if state.error else None,
            attempt=state.attempt,
            retry_of=state.retry_of,
            waiting_for=waits,
            on_call=actions,
            progress=Progress.from_state(state),
            evidence=state.evidence,
        )


@dataclass(frozen=True)
class SweepItem(_ToDict):
    key_uri: str
    rotation_id: str | None
    action: Literal[
        "resumed", "retired", "started", "waiting", "failed", "in_progress", "skipped", "retried", "escalated"
    ]
    detail: str = ""


@dataclass(frozen=True)
class SweepReport(_ToDict):
    started_at: datetime
    finished_at: datetime
    items: tuple[SweepItem, ...]
    list_calls: int = 0  # pages of a vault's key listing (up to 25 keys each)
    key_reads: int = 0  # version listings of one managed key (one call for up to 25 versions)
    deferred: tuple[str, ...] = ()  # managed keys this tick could not judge within its bound (judged later)

    def count(self, action: str) -> int:
        return sum(1 for i in self.items if i.action == action)

    @property
    def failed(self) -> bool:
        return any(i.action == "failed" for i in self.items)


EventOutcomeKind = Literal["ignored", "started", "resumed", "adopted", "duplicate", "in_progress"]


@dataclass(frozen=True)
class EventOutcome(_ToDict):
    event_id: str
    outcome: EventOutcomeKind
    reason: str
    key_uri: str | None = None
    rotation_id: str | None = None
