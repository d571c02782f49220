"""The steps about the key itself: plan (observe and check), create or adopt the new version, probe it."""

from __future__ import annotations

from dataclasses import replace

from rotation.domain.model import KeyVersion
from rotation.domain.plan import build_plan
from rotation.domain.policy import new_version_expiry
from rotation.domain.steps import ROTATION_TAG, Step
from rotation.errors import NeedsHuman, PreconditionFailed, VerificationFailed
from rotation.service.queries import observe
from rotation.service.steps.run import StepResult, StepRun


def plan(run: StepRun) -> StepResult:
    """Observe the key and every consumer, and refuse before any change if a precondition fails.

    A dry run records the problems as its error and goes on, so it shows every step anyway.
    """
    registry = run.deps.consumers
    result = build_plan(observe(run.deps, run.key), registry.units, run.state.adopt_version, registry.run_steps())
    state = replace(run.state, old_version=result.old_version, consumers=result.changes)
    detail = f"{len(result.consumers)} consumers; {result.unrelated} unrelated"
    if not result.ok:
        if not run.dry_run:
            raise PreconditionFailed("; ".join(result.problems))
        state = replace(state, error=("PreconditionFailed", "; ".join(result.problems)))
    if run.dry_run:
        detail += f"; {len(result.problems)} problems"
    return run.finish_step(Step.PLAN, detail, state)


def new_version(run: StepRun) -> StepResult:
    """Find the version this rotation created (its tag), adopt the one named, or create one like the old."""
    state, keys, key = run.state, run.deps.keys, run.key
    assert state.old_version is not None
    if run.dry_run:
        if state.adopt_version:
            return run.finish_step(Step.NEW_VERSION, f"would adopt {state.adopt_version}")
        return run.finish_step(Step.NEW_VERSION, f"would create a new version like {state.old_version}")
    if state.new_version:
        return run.finish_step(Step.NEW_VERSION, f"already recorded {state.new_version}")
    versions = keys.list_versions(key)
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
    old = keys.get_key(key, state.old_version)  # full attributes: type, size, operations
    if chosen is None:
        newer = sorted(
            (v for v in versions if v.created > old.created and v.enabled and ROTATION_TAG not in v.tags),
            key=lambda v: (v.created, v.version),
        )
        if newer:
            chosen = newer[-1]
            how = "adopted a newer version created meanwhile (auto-rotation)"
    if chosen is None:
        expires = new_version_expiry(keys.get_rotation_policy(key), run.deps.clock.now())
        created: list[KeyVersion] = []

        def create() -> None:
            created.append(keys.create_version(key, old, {ROTATION_TAG: state.rotation_id}, expires))
            run.state = replace(run.state, new_version=created[0].version)

        run.write("create_version", key.uri, f"like {old.version}", create)
        chosen = created[0]
        how = "created"
    return run.finish_step(Step.NEW_VERSION, f"{how}: {chosen.version}", replace(run.state, new_version=chosen.version))


def verify_version(run: StepRun) -> StepResult:
    """Wrap and unwrap a probe with the new version before any consumer moves to it."""
    if run.dry_run:
        return run.finish_step(Step.VERIFY_VERSION, "would wrap/unwrap a probe with the new version")
    keys, key = run.deps.keys, run.key
    new = run.state.new_version
    assert new is not None
    version = keys.get_key(key, new)
    if not version.enabled:
        raise VerificationFailed(f"the new version {new} is disabled; no consumer was moved")
    try:
        keys.wrap_unwrap_probe(key, new)
    except VerificationFailed as exc:
        # The unusable version is now the key's latest: versionless consumers would adopt it within a
        # day. A version this rotation created is disabled (nothing pins it yet); one it adopted is
        # left for a human, loudly.
        if version.tags.get(ROTATION_TAG) != run.state.rotation_id:
            raise NeedsHuman(
                f"{exc.message}; version {new} was not created by this rotation and is still enabled: "
                "disable it before versionless consumers adopt it"
            ) from None
        if version.enabled:
            run.write("disable_new_version", key.uri, new, lambda: keys.update_version(key, new, enabled=False))
        raise VerificationFailed(f"{exc.message}; the new version {new} was disabled, consumers untouched") from None
    return run.finish_step(Step.VERIFY_VERSION, "wrap/unwrap round trip matched")
