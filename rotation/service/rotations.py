"""Service functions for one key's rotation: plan, start, run (resume), read.

The imperative shell around ``rotation.domain``: it observes the world through the ports, asks
the pure core what to do, and applies it, journalling intent before and outcome after every side
effect (``Execution.side_effect``). Every step first checks "already done?" against the world and
the journal, so running a rotation again after a crash rolls it forward and never repeats a change.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Literal

from rotation.domain.model import (
    AuditOutcome,
    AuditRecord,
    ConsumerChange,
    ConsumerKind,
    KeyRef,
    KeyVersion,
    RotationStatus,
    StepRecord,
    Trigger,
)
from rotation.domain.plan import VERSIONLESS, Observed, Plan, build_plan
from rotation.domain.policy import new_version_expiry, version_of
from rotation.domain.steps import (
    HOLDING_STATUSES,
    ROTATION_TAG,
    RUN_STEPS,
    Intent,
    RotationState,
    Step,
    consumer,
    guard,
    holds_key,
    next_step,
    record_step,
    with_consumer,
    with_intent,
)
from rotation.errors import (
    InputError,
    JournalConflict,
    NeedsHuman,
    PreconditionFailed,
    RotationError,
    RotationInProgress,
    RotationNotFound,
    TransientError,
    UnknownKeyError,
    VerificationFailed,
)
from rotation.logs import bound, get_logger
from rotation.retry import run_step_with_retries
from rotation.service.deps import Dependencies
from rotation.service.views import PlanView, RotationView

_log = get_logger("rotation.workflow")

StepResult = Literal["done", "waiting", "stop"]


# -- reading -------------------------------------------------------------------------------------


def managed_key(deps: Dependencies, key_uri: str) -> KeyRef:
    """The managed key named by ``key_uri`` (versionless or versioned).

    Raises:
        InputError: not a key URI. UnknownKeyError: not one of ``ROTATION_MANAGED_KEYS``.
    """
    key, _ = KeyRef.parse(key_uri)
    for managed in deps.settings.managed_keys:
        candidate, _ = KeyRef.parse(managed)
        if candidate.vault_url == key.vault_url and candidate.name.lower() == key.name.lower():
            return candidate
    raise UnknownKeyError(f"{key.uri} is not a managed key (ROTATION_MANAGED_KEYS)")


def observe(deps: Dependencies, key: KeyRef) -> Observed:
    """Read the key's versions, its vault and every possible consumer in the configured subscriptions."""
    subscriptions = deps.settings.subscriptions
    versions = tuple(deps.keys.list_versions(key))
    current = deps.keys.get_key(key) if versions else None
    try:
        vault = deps.vaults.get_vault(key.vault_url, subscriptions)
    except PreconditionFailed as exc:
        if exc.code != PreconditionFailed.code:
            raise
        vault = None
    accounts = tuple(a for sub in subscriptions for a in deps.storage_accounts.list_accounts(sub))
    workspaces = tuple(w for sub in subscriptions for w in deps.workspaces.list_workspaces(sub))
    locations = deps.settings.data_locations
    survey = deps.data_keys.survey(key, locations) if locations else None
    locations_shown = tuple(d.display for d in locations)
    return Observed(key, versions, vault, accounts, workspaces, survey, locations_shown, current)


def plan(deps: Dependencies, key_uri: str) -> PlanView:
    """The plan for a managed key: its consumers, what a rotation would change, and any blocker."""
    key = managed_key(deps, key_uri)
    with bound(key=key.uri):
        result = build_plan(observe(deps, key))
        _log.info("plan_built", consumers=len(result.consumers), problems=len(result.problems))
        return PlanView.from_plan(result)


def get_rotation(deps: Dependencies, rotation_id: str) -> RotationView:
    state, _ = deps.journal.load(rotation_id)
    return RotationView.from_state(state)


def list_rotations(
    deps: Dependencies, key_uri: str | None = None, active_only: bool = False, limit: int = 50
) -> list[RotationView]:
    key = managed_key(deps, key_uri).uri if key_uri else None
    statuses = HOLDING_STATUSES if active_only else None
    return [RotationView.from_state(s) for s in deps.journal.list(key, statuses, limit)]


def holding_rotation(deps: Dependencies, key_uri: str) -> RotationState | None:
    """The rotation that holds the key's lock, if it still holds the key (``holds_key``)."""
    holder, _ = deps.journal.lock_holder(key_uri)
    if holder is None:
        return None
    try:
        state, _ = deps.journal.load(holder)
    except RotationNotFound:
        return None
    return state if holds_key(state, deps.clock.now()) else None


# -- starting ------------------------------------------------------------------------------------


def new_rotation_id(now: datetime) -> str:
    return f"rot-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def start_rotation(
    deps: Dependencies,
    key_uri: str,
    trigger: Trigger,
    *,
    reason: str = "",
    dry_run: bool = False,
    adopt_version: str | None = None,
) -> RotationView:
    """Start a rotation of a managed key (or show what one would do, with ``dry_run``).

    Raises:
        UnknownKeyError: not a managed key.
        RotationInProgress: another rotation of the key is running, waiting, or cut over within its grace period.
    """
    key = managed_key(deps, key_uri)
    now = deps.clock.now()
    rotation_id = new_rotation_id(now)
    with bound(rotation_id=rotation_id, key=key.uri, trigger=trigger.kind.value):
        if dry_run:
            return _dry_run(deps, key, trigger, rotation_id, reason=reason, adopt_version=adopt_version)
        if adopt_version is not None and not adopt_version.isalnum():
            raise InputError(f"{adopt_version!r} is not a key version")
        holder, lock_etag = deps.journal.lock_holder(key.uri)
        if holder is not None:
            try:
                held, _ = deps.journal.load(holder)
            except RotationNotFound:
                held = None
            if held is not None and holds_key(held, now):
                _log.info("rotation_in_progress", holder=holder)
                raise RotationInProgress(key.uri, holder)
        state = RotationState(
            rotation_id=rotation_id,
            key_uri=key.uri,
            status=RotationStatus.RUNNING,
            trigger=trigger,
            started_at=now,
            updated_at=now,
            reason=reason,
            adopt_version=adopt_version,
            run_steps=RUN_STEPS,
        )
        try:
            deps.journal.begin(state, lock_etag)
        except JournalConflict:
            holder, _ = deps.journal.lock_holder(key.uri)
            _log.info("rotation_in_progress", holder=holder)
            raise RotationInProgress(key.uri, holder or "unknown") from None
        _log.info("rotation_started", reason=reason, adopt_version=adopt_version)
    deps.dispatcher.dispatch(rotation_id)
    return get_rotation(deps, rotation_id)


def _dry_run(
    deps: Dependencies, key: KeyRef, trigger: Trigger, rotation_id: str, *, reason: str, adopt_version: str | None
) -> RotationView:
    """The whole plan, nothing written but the audit record of the dry run."""
    now = deps.clock.now()
    result = build_plan(observe(deps, key), adopt_version)
    status = RotationStatus.DRY_RUN if result.ok else RotationStatus.REFUSED
    steps = tuple(
        StepRecord(step, "skipped", now, now, _would(Step(step), result)) for step in (*RUN_STEPS, Step.RETIRE)
    )
    error = None if result.ok else ("PreconditionFailed", "; ".join(result.problems))
    state = RotationState(
        rotation_id=rotation_id,
        key_uri=key.uri,
        status=status,
        trigger=trigger,
        started_at=now,
        updated_at=now,
        reason=reason,
        dry_run=True,
        old_version=result.old_version,
        new_version=adopt_version,
        adopt_version=adopt_version,
        steps=steps,
        consumers=result.changes,
        error=error,
    )
    audit_outcome(deps, state, "dry_run", "dry run: " + ("; ".join(result.problems) or "plan is safe to apply"))
    _log.info("rotation_dry_run", ok=result.ok, consumers=len(result.changes))
    return RotationView.from_state(state)


def _would(step: Step, result: Plan) -> str:
    pinned = [c for c in result.changes if c.status == "planned"]
    return {
        Step.PLAN: f"{len(result.consumers)} consumers, {len(result.problems)} problems",
        Step.NEW_VERSION: f"would adopt {result.adopt_version}"
        if result.adopt_version
        else f"would create a new version like {result.old_version}",
        Step.VERIFY_VERSION: "would wrap/unwrap a probe with the new version",
        Step.REPOINT_STORAGE: f"would re-point {sum(c.kind == ConsumerKind.STORAGE_ACCOUNT for c in pinned)}"
        " pinned storage accounts",
        Step.REPOINT_WORKSPACES: f"would re-point {sum(c.kind == ConsumerKind.ML_WORKSPACE for c in pinned)}"
        " workspaces",
        Step.TRACK_VERSIONLESS: f"would track {sum(c.status == 'tracking' for c in result.changes)}"
        " versionless storage accounts",
        Step.REWRAP: "would re-wrap client-side data keys"
        if any(c.kind == ConsumerKind.DATA_LOCATION for c in result.changes)
        else "no data locations",
        Step.VERIFY_CONSUMERS: "would read every consumer back",
        Step.CUT_OVER: "would start the grace period",
        Step.RETIRE: f"would disable {result.old_version} after the grace period",
    }[step]


# -- running -------------------------------------------------------------------------------------


def run_rotation(deps: Dependencies, rotation_id: str) -> RotationView:
    """Drive a rotation's steps until it is terminal, cut over or waiting. Idempotent: resumes after a crash.

    If another executor holds an unexpired claim on the rotation, returns its current view untouched.
    """
    state, etag = deps.journal.load(rotation_id)
    with bound(rotation_id=rotation_id, key=state.key_uri, trigger=state.trigger.kind.value):
        execution = Execution(deps, state, etag)
        if not execution.claim():
            _log.info("rotation_claimed_elsewhere", owner=state.lease_owner)
            return RotationView.from_state(execution.state)
        try:
            execution.drive()
        except JournalConflict:
            _log.info("rotation_taken_over")
            state, _ = deps.journal.load(rotation_id)
            return RotationView.from_state(state)
        finally:
            execution.release()
        final = execution.state
        _log.info(
            "rotation_summary",
            status=final.status.value,
            stage=final.stage,
            old_version=final.old_version,
            new_version=final.new_version,
            consumers=len(final.consumers),
        )
        return RotationView.from_state(final)


class Execution:
    """One executor's pass over one rotation: holds the state and the etag of the journal entry."""

    def __init__(self, deps: Dependencies, state: RotationState, etag: str) -> None:
        self.deps = deps
        self.state = state
        self.etag = etag
        self.key, _ = KeyRef.parse(state.key_uri)
        self.claimed = False
        # Unique per pass, so two invocations in one worker process never share a claim.
        self.owner = f"{deps.owner}#{secrets.token_hex(3)}"

    # -- journal ---------------------------------------------------------------------------

    def commit(self, state: RotationState) -> None:
        """Write ``state`` (renewing our claim) if nobody else wrote since we read."""
        now = self.deps.clock.now()
        state = replace(
            state,
            updated_at=now,
            lease_owner=self.owner if self.claimed else state.lease_owner,
            lease_expires=now + timedelta(seconds=self.deps.lease_seconds) if self.claimed else state.lease_expires,
        )
        self.etag = self.deps.journal.save(state, self.etag)
        self.state = state

    def claim(self) -> bool:
        state = self.state
        if next_step(state) is None:
            return False
        now = self.deps.clock.now()
        if (
            state.lease_owner is not None
            and state.lease_owner != self.owner
            and state.lease_expires is not None
            and state.lease_expires > now
        ):
            return False
        self.claimed = True
        try:
            self.commit(state)
        except JournalConflict:
            self.claimed = False
            return False
        if state.lease_owner is not None:
            _log.info("rotation_resumed", previous_owner=state.lease_owner, stage=state.stage)
        return True

    def release(self) -> None:
        if not self.claimed:
            return
        self.claimed = False
        with contextlib.suppress(JournalConflict, TransientError):  # else the claim simply expires
            self.commit(replace(self.state, lease_owner=None, lease_expires=None))

    @contextmanager
    def side_effect(self, action: str, target: str, value: str = "") -> Iterator[None]:
        """Journal the intent, let the caller act, journal the outcome (intent cleared)."""
        now = self.deps.clock.now()
        self.commit(with_intent(self.state, Intent(action, target, value), now))
        _log.info("side_effect_intent", action=action, target=target, value=value)
        try:
            yield
        except RotationError as exc:
            # Not a crash: we know it did not complete. The step re-checks the world if it runs again.
            failed = replace(self.state, history=(*self.state.history, f"failed {action} {target}: {exc.code}"))
            self.commit(with_intent(failed, None, self.deps.clock.now()))
            raise
        self.commit(with_intent(self.state, None, self.deps.clock.now()))
        _log.info("side_effect_done", action=action, target=target)

    # -- driving ---------------------------------------------------------------------------

    def drive(self) -> None:
        while (step := next_step(self.state)) is not None:
            try:
                guard(self.state, _STEPS)
            except NeedsHuman as exc:
                self.stop(step, RotationStatus.NEEDS_HUMAN, exc, "needs_human")
                return
            self.commit(record_step(self.state, step, "started", self.deps.clock.now()))
            _log.info("step_started", step=step)
            try:
                result = run_step_with_retries(
                    step, partial(_STEPS[step], self), attempts=self.deps.step_attempts, sleep=self.deps.sleep
                )
            except JournalConflict:
                raise
            except TransientError as exc:
                # Still failing after the step's retries: leave it resumable for the next trigger/sweep.
                self.commit(record_step(self.state, step, "failed", self.deps.clock.now(), safe_message(exc)))
                _log.warning("step_interrupted", step=step, error_code=exc.code, error=str(exc))
                return
            except VerificationFailed as exc:
                self.stop(step, RotationStatus.FAILED, exc, "failed")
                return
            except NeedsHuman as exc:
                self.stop(step, RotationStatus.NEEDS_HUMAN, exc, "needs_human")
                return
            except PreconditionFailed as exc:
                status = RotationStatus.REFUSED if step == Step.PLAN else RotationStatus.FAILED
                self.stop(step, status, exc, "refused" if step == Step.PLAN else "failed")
                return
            except RotationError as exc:
                self.stop(step, RotationStatus.FAILED, exc, "failed")
                return
            if result == "stop":
                return
            if result == "waiting":
                _log.info("step_waiting", step=step)
                return
            _log.info("step_succeeded", step=step)

    def stop(self, step: str, status: RotationStatus, exc: RotationError, outcome: AuditOutcome) -> None:
        now = self.deps.clock.now()
        state = with_intent(record_step(self.state, step, "failed", now, safe_message(exc)), None, now)
        state = replace(state, status=status, error=(exc.code, safe_message(exc)))
        audit_outcome(self.deps, state, outcome, f"{step}: {safe_message(exc)}")
        self.commit(state)
        _log.warning("rotation_stopped", step=step, status=status.value, error_code=exc.code, error=safe_message(exc))

    def finish_step(self, step: Step, detail: str = "", state: RotationState | None = None) -> StepResult:
        now = self.deps.clock.now()
        # A step finishes only once it has reconciled the world, so an intent left by a crashed
        # executor (whose action the step then found already done) is resolved here.
        finished = with_intent(record_step(state or self.state, step, "succeeded", now, detail), None, now)
        self.commit(finished)
        return "done"

    # -- steps -----------------------------------------------------------------------------

    def plan_step(self) -> StepResult:
        result = build_plan(observe(self.deps, self.key), self.state.adopt_version)
        if not result.ok:
            raise PreconditionFailed("; ".join(result.problems))
        state = replace(self.state, old_version=result.old_version, consumers=result.changes)
        return self.finish_step(Step.PLAN, f"{len(result.consumers)} consumers; {result.unrelated} unrelated", state)

    def new_version_step(self) -> StepResult:
        state = self.state
        assert state.old_version is not None
        if state.new_version:
            return self.finish_step(Step.NEW_VERSION, f"already recorded {state.new_version}")
        versions = self.deps.keys.list_versions(self.key)
        ours = sorted(
            (v for v in versions if v.tags.get(ROTATION_TAG) == state.rotation_id), key=lambda v: (v.created, v.version)
        )
        if len(ours) > 1:
            raise NeedsHuman(f"{len(ours)} versions carry rotation id {state.rotation_id}; expected one")
        chosen: KeyVersion | None = ours[0] if ours else None
        how = "found the version this rotation created"
        if chosen is None and state.adopt_version:
            chosen = next((v for v in versions if v.version == state.adopt_version), None)
            if chosen is None:
                raise PreconditionFailed(f"version {state.adopt_version} to adopt no longer exists")
            how = "adopted the version Key Vault created"
        if not any(v.version == state.old_version for v in versions):
            raise NeedsHuman(f"old version {state.old_version} no longer exists")
        old = self.deps.keys.get_key(self.key, state.old_version)  # full attributes: type, size, operations
        if chosen is None:
            newer = sorted(
                (v for v in versions if v.created > old.created and v.enabled and ROTATION_TAG not in v.tags),
                key=lambda v: (v.created, v.version),
            )
            if newer:
                chosen = newer[-1]
                how = "adopted a newer version created meanwhile (auto-rotation)"
        if chosen is None:
            now = self.deps.clock.now()
            expires = new_version_expiry(self.deps.keys.get_rotation_policy(self.key), now)
            with self.side_effect("create_version", self.key.uri, f"like {old.version}"):
                chosen = self.deps.keys.create_version(self.key, old, {ROTATION_TAG: state.rotation_id}, expires)
                self.state = replace(self.state, new_version=chosen.version)
            how = "created"
        state = replace(self.state, new_version=chosen.version)
        return self.finish_step(Step.NEW_VERSION, f"{how}: {chosen.version}", state)

    def verify_version_step(self) -> StepResult:
        new = self.state.new_version
        assert new is not None
        version = self.deps.keys.get_key(self.key, new)
        if not version.enabled:
            raise VerificationFailed(f"the new version {new} is disabled; no consumer was moved")
        try:
            self.deps.keys.wrap_unwrap_probe(self.key, new)
        except VerificationFailed as exc:
            # The unusable version is now the key's latest: versionless consumers would adopt it within a
            # day. A version this rotation created is disabled (nothing pins it yet); one it adopted is
            # left for a human, loudly.
            if version.tags.get(ROTATION_TAG) != self.state.rotation_id:
                raise NeedsHuman(
                    f"{exc.message}; version {new} was not created by this rotation and is still enabled: "
                    "disable it before versionless consumers adopt it"
                ) from None
            if version.enabled:
                with self.side_effect("disable_new_version", self.key.uri, new):
                    self.deps.keys.update_version(self.key, new, enabled=False)
            raise VerificationFailed(
                f"{exc.message}; the new version {new} was disabled, consumers untouched"
            ) from None
        return self.finish_step(Step.VERIFY_VERSION, "wrap/unwrap round trip matched")

    def repoint_storage_step(self) -> StepResult:
        new = self.state.new_version
        assert new is not None
        moved = 0
        for change in self.state.consumers:
            if change.kind != ConsumerKind.STORAGE_ACCOUNT or change.before == VERSIONLESS:
                continue
            if change.status in ("changed", "rolled_back", "failed"):
                continue
            account = self.deps.storage_accounts.get_account(change.resource_id)
            if account.versionless:
                self._update_consumer(change, "tracking", VERSIONLESS, "became versionless; tracked")
                continue
            if account.key_version != new:
                try:
                    with self.side_effect("set_storage_version", change.resource_id, new):
                        self.deps.storage_accounts.set_key_version(
                            change.resource_id, self.key.vault_url, self.key.name, new
                        )
                except VerificationFailed as exc:
                    return self._roll_back(change, exc)
                account = self.deps.storage_accounts.get_account(change.resource_id)
                if account.key_version != new:
                    return self._roll_back(
                        change, VerificationFailed(f"{account.name} reads back {account.key_version}")
                    )
                moved += 1
            self._update_consumer(change, "changed", new, f"{account.name}: keyversion {change.before} -> {new}")
        return self.finish_step(Step.REPOINT_STORAGE, f"{moved} storage accounts re-pointed")

    def repoint_workspaces_step(self) -> StepResult:
        new = self.state.new_version
        assert new is not None
        kid = self.key.version_uri(new)
        moved = 0
        for change in self.state.consumers:
            if change.kind != ConsumerKind.ML_WORKSPACE or change.status in ("changed", "rolled_back", "unchanged"):
                continue
            if change.before == VERSIONLESS:
                self._update_consumer(change, "unchanged", VERSIONLESS, "versionless keyIdentifier; left as configured")
                continue
            workspace = self.deps.workspaces.get_workspace(change.resource_id)
            if version_of(workspace.key_identifier, self.key.uri) != new:
                try:
                    with self.side_effect("set_workspace_key", change.resource_id, new):
                        self.deps.workspaces.set_key_identifier(change.resource_id, kid)
                except VerificationFailed as exc:
                    return self._roll_back(change, exc)
                workspace = self.deps.workspaces.get_workspace(change.resource_id)
                if version_of(workspace.key_identifier, self.key.uri) != new:
                    return self._roll_back(change, VerificationFailed(f"{workspace.name} reads back another key"))
                moved += 1
            self._update_consumer(change, "changed", new, f"{workspace.name}: keyIdentifier -> {new}")
        return self.finish_step(Step.REPOINT_WORKSPACES, f"{moved} workspaces re-pointed")

    def track_versionless_step(self) -> StepResult:
        new = self.state.new_version
        tracked = adopted = 0
        for change in self.state.consumers:
            if change.kind != ConsumerKind.STORAGE_ACCOUNT or change.status not in ("tracking", "adopted"):
                continue
            account = self.deps.storage_accounts.get_account(change.resource_id)
            in_use = version_of(account.current_versioned_key_id, self.key.uri)
            if in_use == new:
                adopted += 1
                self._update_consumer(change, "adopted", VERSIONLESS, f"{account.name}: adopted {new}", commit=False)
            else:
                tracked += 1
                self._update_consumer(
                    change, "tracking", VERSIONLESS, f"{account.name}: in use {in_use or 'unknown'}", commit=False
                )
        return self.finish_step(Step.TRACK_VERSIONLESS, f"{adopted} adopted, {tracked} still tracking")

    def rewrap_step(self) -> StepResult:
        locations = self.deps.settings.data_locations
        new = self.state.new_version
        assert new is not None
        if not locations:
            self.commit(record_step(self.state, Step.REWRAP, "skipped", self.deps.clock.now(), "no data locations"))
            return "done"
        begun = any(r.name == Step.REWRAP.value and r.status == "waiting" for r in self.state.steps)
        if not begun:
            with self.side_effect("begin_rewrap", self.state.rotation_id, new):
                self.deps.data_keys.begin_rewrap(self.state.rotation_id, self.key, new, locations)
        else:
            self.deps.data_keys.begin_rewrap(self.state.rotation_id, self.key, new, locations)  # idempotent
        done, summary = self.deps.data_keys.rewrap_progress(self.state.rotation_id)
        detail = (
            f"{summary.rewrapped} re-wrapped, {summary.already_current} current, {len(summary.failed)} failed, "
            f"{summary.remaining_on_old_versions} remaining"
        )
        state = replace(self.state, rewrap=summary)
        if not done:
            state = record_step(state, Step.REWRAP, "waiting", self.deps.clock.now(), detail)
            self.commit(replace(state, status=RotationStatus.WAITING))
            return "waiting"
        state = replace(state, status=RotationStatus.RUNNING)
        for change in state.consumers:
            if change.kind == ConsumerKind.DATA_LOCATION:
                outcome: Literal["changed", "failed"] = "failed" if summary.failed else "changed"
                state = with_consumer(state, replace(change, status=outcome, after=new, detail=detail))
        return self.finish_step(Step.REWRAP, detail, state)

    def verify_consumers_step(self) -> StepResult:
        new = self.state.new_version
        assert new is not None
        for change in self.state.consumers:
            if change.status != "changed":
                continue
            if change.kind == ConsumerKind.STORAGE_ACCOUNT:
                account = self.deps.storage_accounts.get_account(change.resource_id)
                in_use = version_of(account.current_versioned_key_id, self.key.uri)
                if account.key_version != new or (in_use not in (None, "", new)):
                    return self._roll_back(
                        change, VerificationFailed(f"{account.name} is not using {new} (in use: {in_use})")
                    )
            elif change.kind == ConsumerKind.ML_WORKSPACE:
                workspace = self.deps.workspaces.get_workspace(change.resource_id)
                if version_of(workspace.key_identifier, self.key.uri) != new:
                    return self._roll_back(change, VerificationFailed(f"{workspace.name} is not using {new}"))
        return self.finish_step(Step.VERIFY_CONSUMERS, "every re-pointed consumer reads back the new version")

    def cut_over_step(self) -> StepResult:
        now = self.deps.clock.now()
        retire_after = self.state.retire_after or now + timedelta(hours=self.deps.settings.retire_grace_hours)
        state = replace(self.state, retire_after=retire_after, status=RotationStatus.AWAITING_RETIREMENT)
        state = record_step(state, Step.CUT_OVER, "succeeded", now, f"old version retires after {retire_after}")
        audit_outcome(self.deps, state, "succeeded", "every consumer on the new version")
        self.commit(state)
        return "done"

    # -- consumers -------------------------------------------------------------------------

    def _update_consumer(
        self,
        change: ConsumerChange,
        status: Literal["changed", "tracking", "adopted", "rolled_back", "failed", "unchanged"],
        after: str | None,
        detail: str,
        *,
        commit: bool = True,
    ) -> None:
        updated = replace(change, status=status, after=after, detail=detail)
        state = with_consumer(self.state, updated)
        if commit:
            self.commit(state)
        else:
            self.state = state

    def _roll_back(self, change: ConsumerChange, exc: VerificationFailed) -> StepResult:
        """Put a consumer that failed back on the old version, then stop the rotation for a human."""
        old = self.state.old_version
        assert old is not None
        current = consumer(self.state, change.resource_id) or change
        if change.kind == ConsumerKind.STORAGE_ACCOUNT:
            account = self.deps.storage_accounts.get_account(change.resource_id)
            if account.key_version != change.before and change.before:
                with self.side_effect("rollback_storage", change.resource_id, change.before):
                    self.deps.storage_accounts.set_key_version(
                        change.resource_id, self.key.vault_url, self.key.name, change.before
                    )
        elif change.kind == ConsumerKind.ML_WORKSPACE:
            workspace = self.deps.workspaces.get_workspace(change.resource_id)
            before = change.before if change.before and change.before != VERSIONLESS else old
            if version_of(workspace.key_identifier, self.key.uri) != before:
                with self.side_effect("rollback_workspace", change.resource_id, before):
                    self.deps.workspaces.set_key_identifier(change.resource_id, self.key.version_uri(before))
        self._update_consumer(current, "rolled_back", change.before, f"rolled back: {safe_message(exc)}")
        step = self.state.stage
        now = self.deps.clock.now()
        state = record_step(self.state, step, "failed", now, safe_message(exc))
        state = replace(state, status=RotationStatus.ROLLED_BACK, error=(exc.code, safe_message(exc)))
        audit_outcome(self.deps, state, "rolled_back", f"{change.resource_id}: {safe_message(exc)}")
        self.commit(state)
        _log.warning("consumer_rolled_back", consumer=change.resource_id, error=safe_message(exc))
        return "stop"


_STEPS: dict[str, Callable[[Execution], StepResult]] = {
    Step.PLAN: Execution.plan_step,
    Step.NEW_VERSION: Execution.new_version_step,
    Step.VERIFY_VERSION: Execution.verify_version_step,
    Step.REPOINT_STORAGE: Execution.repoint_storage_step,
    Step.REPOINT_WORKSPACES: Execution.repoint_workspaces_step,
    Step.TRACK_VERSIONLESS: Execution.track_versionless_step,
    Step.REWRAP: Execution.rewrap_step,
    Step.VERIFY_CONSUMERS: Execution.verify_consumers_step,
    Step.CUT_OVER: Execution.cut_over_step,
}


# -- audit ---------------------------------------------------------------------------------------


def _record_id(state: RotationState, outcome: str) -> str:
    return f"{state.rotation_id}-{outcome}"


def audit_outcome(deps: Dependencies, state: RotationState, outcome: AuditOutcome, reason: str) -> None:
    """Append the outcome to the audit trail (before it is reported anywhere else), once per outcome.

    A process killed after the append and before the journal write repeats the step; the record id
    is derived from the rotation and outcome, so the repeat finds the record and appends nothing.
    """
    record_id = _record_id(state, outcome)
    if any(r.record_id == record_id for r in deps.audit.records(state.key_uri, since=state.started_at)):
        return
    deps.audit.append(
        AuditRecord(
            record_id=record_id,
            rotation_id=state.rotation_id,
            key_uri=state.key_uri,
            old_version=state.old_version,
            new_version=state.new_version,
            trigger=state.trigger,
            outcome=outcome,
            reason=reason,
            steps=state.steps,
            consumers=state.consumers,
            rewrap=state.rewrap,
            recorded_at=deps.clock.now(),
        )
    )


def safe_message(exc: BaseException) -> str:
    """An error's message for journal/audit: rotation errors are log-safe by contract; others by type only."""
    if isinstance(exc, RotationError):
        return exc.message[:500]
    return type(exc).__name__
