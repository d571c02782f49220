"""Retire: disable the old version once the grace period is over and nothing references it. Never delete."""

from __future__ import annotations

from dataclasses import replace

from rotation.domain.evidence import retirement_evidence
from rotation.domain.model import KeyRef, RotationStatus
from rotation.domain.plan import references_to
from rotation.domain.policy import retirement_due
from rotation.domain.steps import Step, record_step, with_intent
from rotation.logs import get_logger
from rotation.service.outcomes import audit_outcome
from rotation.service.queries import discovery_gap
from rotation.service.steps.run import StepResult, StepRun

_log = get_logger("rotation.reconciler")


def retire(run: StepRun) -> StepResult:
    """Ask every registered kind for references to the old version; disable it when there are none.

    Safe to repeat: a disabled version is not disabled again.
    """
    state, deps, key = run.state, run.deps, run.key
    old_version = state.old_version
    assert old_version is not None
    if run.dry_run:
        return run.finish_step(Step.RETIRE, f"would disable {old_version} after the grace period")
    now = deps.clock.now()
    if state.retire_after is not None and now < state.retire_after:
        run.commit(record_step(state, Step.RETIRE, "waiting", now, "grace period not over"))
        return "waiting"
    registry = deps.consumers
    found = {unit.kind: tuple(unit.discover(deps, key)) for unit in registry}
    references = references_to(registry.units, found, key, old_version)
    if (gap := discovery_gap(deps)) is not None:
        references = (gap, *references)  # discovery saw nothing: that is no evidence of no use
    failures = len(state.rewrap.failed) if state.rewrap else 0
    decision = retirement_due(state.retire_after, now, references, failures)
    evidence = retirement_evidence(
        registry.units, found, key, checked_at=now, old_version=old_version, references=references
    )
    state = replace(state, evidence=evidence)  # the latest check's evidence: status shows it
    if not decision.due:
        detail = decision.reason + (": " + "; ".join(decision.blockers) if decision.blockers else "")
        run.commit(record_step(state, Step.RETIRE, "waiting", now, detail[:1000]))
        _log.info("retirement_waiting", reason=decision.reason, blockers=len(decision.blockers))
        return "waiting"
    # Consumers that settled by themselves (versionless accounts that adopted) are recorded as such.
    consumers = tuple(
        unit.at_retirement(c) if (unit := registry.unit(c.kind)) is not None else c for c in state.consumers
    )
    run.state = replace(state, consumers=consumers)
    keys = deps.keys
    if KeyRef.same_version(keys.get_key(key).version, old_version):
        # The journal entry names the key's current version as the old one: never disable what is in use.
        run.commit(record_step(run.state, Step.RETIRE, "waiting", now, f"{old_version} is the key's current version"))
        _log.error("retire_refused_current_version", old_version=old_version)
        return "waiting"
    if keys.get_key(key, old_version).enabled:
        run.write("disable_version", key.uri, old_version, lambda: keys.update_version(key, old_version, enabled=False))
    now = deps.clock.now()
    # The evidence the retirement relied on is kept with it: the step's detail and the audit record.
    final = record_step(run.state, Step.RETIRE, "succeeded", now, f"disabled {old_version}; {evidence.line()}"[:1000])
    # A crashed sweeper may have left the disable's intent; the version is disabled now, so it is resolved.
    final = replace(with_intent(final, None, now), status=RotationStatus.RETIRED)
    reason = f"old version {old_version} disabled after the grace period; {evidence.line()}"
    audit_outcome(deps, final, "retired", reason, evidence=evidence)
    run.commit(final)
    _log.info("version_retired", old_version=old_version)
    return "done"
