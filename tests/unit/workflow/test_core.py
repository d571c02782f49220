"""The pure planning and decision core, with plain values and an injected clock."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotation.adapters.journal import decode_state, encode_state
from rotation.consumers import REGISTRY, RUN_STEPS
from rotation.consumers.data_locations import DataSurvey
from rotation.domain.model import KeyRef, KeyVersion, RotationPolicy, RotationStatus, Trigger, TriggerKind
from rotation.domain.plan import Observed, build_plan, references_to
from rotation.domain.policy import parse_duration, retirement_due, should_rotate, version_of
from rotation.domain.steps import (
    HISTORICAL_RUN_STEPS,
    RotationState,
    Step,
    guard,
    next_step,
    record_step,
)
from rotation.errors import InputError, NeedsHuman
from tests.fakes.arm import FakeStorageAccounts, FakeVaults, FakeWorkspaces

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KEY = KeyRef("https://kv.vault.azure.net", "cmk")


def version(name: str, *, days_ago: float = 10, expires_in: float | None = None, **kw: object) -> KeyVersion:
    return KeyVersion(
        key=KEY,
        version=name,
        enabled=bool(kw.get("enabled", True)),
        created=NOW - timedelta(days=days_ago),
        expires=NOW + timedelta(days=expires_in) if expires_in is not None else None,
        kty=str(kw.get("kty", "RSA")),
        key_size=int(kw.get("size", 2048)),  # type: ignore[call-overload]
        key_ops=("wrapKey", "unwrapKey"),
    )


class TestParseDuration:
    """Rotation-policy durations parse as Key Vault documents them; anything else is refused."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("P90D", timedelta(days=90)), ("PT48H", timedelta(hours=48)), ("P1Y10D", timedelta(days=375))],
    )
    def test_parses(self, text: str, expected: timedelta) -> None:
        result = parse_duration(text)

        assert result == expected

    @pytest.mark.parametrize("text", ["90D", "P", "PXD", ""])
    def test_refuses(self, text: str) -> None:
        with pytest.raises(InputError):
            parse_duration(text)


class TestShouldRotate:
    """The reconciler rotates expired, near-expiry and policy-due keys, never a disabled latest version."""

    def test_near_expiry_rotates(self) -> None:
        decision = should_rotate(version("a", expires_in=5), None, NOW, timedelta(days=30))

        assert decision.rotate
        assert "expires within" in decision.reason

    def test_far_from_expiry_does_not(self) -> None:
        decision = should_rotate(version("a", expires_in=90), None, NOW, timedelta(days=30))

        assert not decision.rotate

    def test_expired_rotates(self) -> None:
        decision = should_rotate(version("a", expires_in=-1), None, NOW, timedelta(days=30))

        assert decision.rotate
        assert "expired" in decision.reason

    def test_policy_age_rotates(self) -> None:
        policy = RotationPolicy(rotate_after_create="P30D")

        decision = should_rotate(version("a", days_ago=31), policy, NOW, timedelta(days=30))

        assert decision.rotate

    def test_disabled_latest_is_left_alone(self) -> None:
        decision = should_rotate(version("a", expires_in=-1, enabled=False), None, NOW, timedelta(days=30))

        assert not decision.rotate


class TestRetirementDue:
    """An old version retires only after the grace period and when nothing references it."""

    def test_waits_for_grace_period(self) -> None:
        decision = retirement_due(NOW + timedelta(hours=1), NOW, ())

        assert not decision.due
        assert "grace" in decision.reason

    def test_blocked_by_references(self) -> None:
        decision = retirement_due(NOW - timedelta(hours=1), NOW, ("storage account a is pinned to it",))

        assert not decision.due
        assert decision.blockers

    def test_blocked_by_rewrap_failures(self) -> None:
        decision = retirement_due(NOW - timedelta(hours=1), NOW, (), rewrap_failures=2)

        assert not decision.due

    def test_due(self) -> None:
        decision = retirement_due(NOW - timedelta(hours=1), NOW, ())

        assert decision.due

    def test_references_cover_every_consumer_kind(self) -> None:
        storage, vaults = FakeStorageAccounts(), FakeVaults()
        vaults.add(KEY.vault_url)
        workspaces = FakeWorkspaces(vaults)
        pinned = storage.add("pinned", KEY, "old")
        follows = storage.add("follows", KEY, "", in_use="old")
        ws = workspaces.add("ws", KEY, "old")

        survey = DataSurvey({"old": 3, "new": 1}, ("https://data/secure",))
        found = {"storage_account": [pinned, follows], "ml_workspace": [ws], "data_location": [survey]}

        refs = references_to(REGISTRY.units, found, KEY, "old")

        assert len(refs) == 4
        assert references_to(REGISTRY.units, {"data_location": [replace(survey, counts={"new": 4})]}, KEY, "old") == ()


class TestVersionOf:
    """Key identifiers are compared by vault and name, tolerating :443 and case."""

    def test_versions(self) -> None:
        assert version_of("https://KV.vault.azure.net:443/keys/cmk/abc", KEY.uri) == "abc"
        assert version_of("https://kv.vault.azure.net/keys/cmk", KEY.uri) == ""
        assert version_of("https://kv.vault.azure.net/keys/other/abc", KEY.uri) is None
        assert version_of(None, KEY.uri) is None


class TestBuildPlan:
    """Planning finds exactly the consumers of the key and refuses unsafe rotations with reasons."""

    def observed(self, **changes: object) -> Observed:
        vaults = FakeVaults()
        vault = vaults.add(KEY.vault_url)
        storage = FakeStorageAccounts()
        workspaces = FakeWorkspaces(vaults)
        other = KeyRef(KEY.vault_url, "other")
        accounts = (
            storage.add("pinned", KEY, "v1"),
            storage.add("follows", KEY, "", in_use="v1"),
            storage.add("unrelated", other, "x1"),
        )
        spaces = (workspaces.add("ws", KEY, "v1"), workspaces.add("wsother", other, "x1"))
        found = {"storage_account": accounts, "ml_workspace": spaces}
        base = Observed(KEY, (version("v0", days_ago=20), version("v1")), vault, found)
        return replace(base, **changes)  # type: ignore[arg-type]

    def test_finds_consumers(self) -> None:
        plan = self.observed()

        result = build_plan(plan, REGISTRY.units)

        assert result.ok, result.problems
        assert result.old_version == "v1"
        assert sorted(c.name for c in result.consumers) == ["follows", "pinned", "ws"]
        assert result.unrelated == 2
        assert {c.status for c in result.changes} == {"planned", "tracking"}

    def test_vault_protection_required(self) -> None:
        observed = self.observed()
        vault = replace(observed.vault, purge_protection_enabled=False, soft_delete_enabled=False)  # type: ignore[type-var]

        result = build_plan(replace(observed, vault=vault), REGISTRY.units)

        assert not result.ok
        assert any("purge protection" in p for p in result.problems)
        assert any("soft delete" in p for p in result.problems)

    def test_unsupported_key_type(self) -> None:
        result = build_plan(self.observed(versions=(version("v1", kty="EC", size=2048),)), REGISTRY.units)

        assert any("key type EC" in p for p in result.problems)

    def test_aml_original_vault_rule(self) -> None:
        observed = self.observed()
        moved = replace(
            observed.found["ml_workspace"][0], key_vault_arm_id="/subscriptions/x/providers/Microsoft.KeyVault/vaults/b"
        )

        result = build_plan(replace(observed, found={**observed.found, "ml_workspace": (moved,)}), REGISTRY.units)

        assert any("original vault" in p for p in result.problems)

    def test_adopt_replaces_the_previous_version(self) -> None:
        observed = self.observed(versions=(version("v1", days_ago=5), version("v2", days_ago=1)))

        result = build_plan(observed, REGISTRY.units, adopt_version="v2")

        assert result.ok
        assert result.old_version == "v1"

    def test_adopting_the_only_version_is_refused(self) -> None:
        result = build_plan(self.observed(versions=(version("v1"),)), REGISTRY.units, adopt_version="v1")

        assert not result.ok


class TestStepProtocol:
    """Steps run in order; the guard rejects journal states no run could produce."""

    def state(self) -> RotationState:
        return RotationState("r1", KEY.uri, RotationStatus.RUNNING, Trigger(TriggerKind.CLI), NOW, NOW)

    def test_next_step_in_order(self) -> None:
        state = self.state()
        seen = []

        while (step := next_step(state)) is not None:
            seen.append(step)
            state = record_step(state, step, "succeeded", NOW)
            if step == Step.PLAN:
                state = replace(state, old_version="v1")
            if step == Step.NEW_VERSION:
                state = replace(state, new_version="v2")

        assert tuple(seen) == self.state().run_steps

    def test_guard_rejects_out_of_order(self) -> None:
        state = record_step(self.state(), Step.VERIFY_VERSION, "succeeded", NOW)

        with pytest.raises(NeedsHuman):
            guard(state)

    def test_guard_rejects_same_old_and_new(self) -> None:
        state = replace(self.state(), old_version="v1", new_version="v1")

        with pytest.raises(NeedsHuman):
            guard(state)


class TestRecordedStepList:
    """A rotation follows the step list it started with, whatever list the running build has."""

    OLD = ("plan", "new_version", "verify_version", "repoint_storage", "rewrap", "cut_over")

    def state(self, run_steps: tuple[str, ...]) -> RotationState:
        state = RotationState("r1", KEY.uri, RotationStatus.RUNNING, Trigger(TriggerKind.CLI), NOW, NOW)
        return replace(state, run_steps=run_steps, old_version="v1", new_version="v2")

    def test_resumes_along_the_recorded_list(self) -> None:
        state = self.state(self.OLD)
        for step in self.OLD[:5]:
            state = record_step(state, step, "succeeded", NOW)

        step = next_step(state)
        guard(state, known_steps=RUN_STEPS)

        assert step == "cut_over"
        assert [r.name for r in state.steps] == list(self.OLD[:5])

    def test_out_of_order_is_judged_by_the_recorded_list(self) -> None:
        state = record_step(self.state(self.OLD), "plan", "succeeded", NOW)
        state = record_step(state, "repoint_storage", "succeeded", NOW)

        with pytest.raises(NeedsHuman, match="out of order"):
            guard(state, known_steps=RUN_STEPS)

    def test_a_step_this_build_cannot_run_needs_a_human(self) -> None:
        state = record_step(self.state(("plan", "repoint_gadgets", "cut_over")), "plan", "succeeded", NOW)

        with pytest.raises(NeedsHuman, match="repoint_gadgets"):
            guard(state, known_steps=RUN_STEPS)

    def test_an_entry_without_the_list_ran_the_historical_one(self) -> None:
        data = json.loads(encode_state(self.state(RUN_STEPS)))
        del data["run_steps"]

        decoded = decode_state(json.dumps(data))

        assert decoded.run_steps == HISTORICAL_RUN_STEPS
        assert HISTORICAL_RUN_STEPS == (
            "plan",
            "new_version",
            "verify_version",
            "repoint_storage",
            "repoint_workspaces",
            "track_versionless",
            "rewrap",
            "verify_consumers",
            "cut_over",
        )

    def test_the_list_round_trips(self) -> None:
        state = self.state(self.OLD)

        assert decode_state(encode_state(state)).run_steps == self.OLD
