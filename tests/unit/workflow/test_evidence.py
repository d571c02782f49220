"""Retirement fails closed and records the evidence it relied on (issue 16 item 5)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from rotation.consumers import ConsumerRegistry
from rotation.domain.model import RotationStatus
from rotation.errors import SettingsError
from rotation.service import RotationView, get_rotation, plan, run_rotation, start_rotation, sweep
from tests.fakes.estate import KEY, LOCATION, Estate, rewrap_estate, standard_estate
from tests.triggers import CLI, TIMER
from tests.unit.workflow.toy_kind import FakeGadgets, GadgetUnit


def cut_over_and_adopted(estate: Estate) -> RotationView:
    """Run a rotation to cut-over, let the versionless account adopt, and let the grace period pass."""
    view = start_rotation(estate.deps(), KEY.uri, CLI)
    while view.status != RotationStatus.AWAITING_RETIREMENT:
        view = run_rotation(estate.deps(), view.rotation_id)
    estate.follower_adopts(view.new_version)
    estate.clock.advance(timedelta(hours=25))
    return view


class TestUnknownInUseVersion:
    """A consumer whose in-use version cannot be determined keeps the old version enabled."""

    def test_versionless_account_without_current_versioned_key_blocks_retirement(self) -> None:
        estate, old = standard_estate()
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        follows = next(a for a in estate.storage.accounts.values() if a.name == "follows")
        # Storage reports no currentVersionedKeyIdentifier: which version it uses is unknown.
        estate.storage.accounts[follows.account_id.lower()] = replace(follows, current_versioned_key_id=None)
        estate.clock.advance(timedelta(hours=25))

        blocked = sweep(estate.deps(), TIMER)

        assert view.status == RotationStatus.AWAITING_RETIREMENT
        assert blocked.count("retired") == 0
        assert "follows is versionless and its in-use version is unknown" in blocked.items[0].detail
        assert estate.keys.get_key(KEY, old).enabled

        estate.storage.adopt_latest(follows.account_id, KEY, view.new_version or "")
        assert sweep(estate.deps(), TIMER).count("retired") == 1
        assert not estate.keys.get_key(KEY, old).enabled


class TestRetirementEvidence:
    """A retirement records what it checked, when and with which counts: audit record and status."""

    def test_audit_record_and_retire_step_carry_the_evidence(self) -> None:
        estate, old = rewrap_estate(blobs=4)
        view = cut_over_and_adopted(estate)
        checked_at = estate.clock.now()

        assert sweep(estate.deps(), TIMER).count("retired") == 1

        new = view.new_version
        retired = estate.audit.for_rotation(view.rotation_id)[-1]
        assert retired.outcome == "retired"
        for text in (retired.reason, get_rotation(estate.deps(), view.rotation_id).steps[-1].detail):
            when = datetime.fromisoformat(text.split("checked ", 1)[1].split(": ", 1)[0])
            assert checked_at <= when < checked_at + timedelta(minutes=1)
            assert f"storage_account 3 ({new}: 3)" in text
            assert f"ml_workspace 2 ({new}: 2)" in text
            history = "history on this key: 0 versions, 0 snapshots, 0 soft-deleted"
            assert f"data_location 1 (4 blobs surveyed: {new}: 4; {history})" in text
            assert "references to the old version: 0" in text
        assert old not in retired.reason.split("disabled", 1)[1].replace(f"old version {old}", "")

    def test_the_evidence_is_a_structured_field_of_the_record_and_of_status(self) -> None:
        estate, old = rewrap_estate(blobs=4)
        estate.data_keys.put_history(LOCATION, "b000000", "snapshot 2026-01-01T00:00:01.0000000Z", KEY.version_uri(old))
        view = cut_over_and_adopted(estate)

        waiting = sweep(estate.deps(), TIMER)
        while_held = get_rotation(estate.deps(), view.rotation_id).evidence
        estate.data_keys.delete_history(LOCATION, "b000000", "snapshot 2026-01-01T00:00:01.0000000Z")
        estate.data_keys.put_history(LOCATION, "b000001", "version x", KEY.version_uri(view.new_version or ""))
        retired_at = estate.clock.now()
        assert sweep(estate.deps(), TIMER).count("retired") == 1

        record = estate.audit.for_rotation(view.rotation_id)[-1]
        shown = get_rotation(estate.deps(), view.rotation_id).to_dict()["evidence"]
        new = str(view.new_version)
        assert waiting.count("retired") == 0
        assert while_held is not None
        assert len(while_held.references) == 1
        assert "b000000 (snapshot" in while_held.references[0]
        evidence = record.evidence
        assert evidence is not None
        assert retired_at <= evidence.checked_at < retired_at + timedelta(minutes=1)
        assert (evidence.old_version, evidence.references) == (old, ())
        kinds = {k.kind: k for k in evidence.kinds}
        assert (kinds["storage_account"].consumers, kinds["storage_account"].by_version) == (3, ((new, 3),))
        assert (kinds["ml_workspace"].consumers, kinds["ml_workspace"].by_version) == (2, ((new, 2),))
        blobs = kinds["data_location"].blobs
        assert blobs is not None
        assert (blobs.locations, blobs.surveyed, blobs.by_version) == (1, 4, ((new, 4),))
        assert (blobs.versions, blobs.snapshots, blobs.soft_deleted) == (1, 0, 0)
        assert blobs.history_by_version == ((new, 1),)
        assert shown["checked_at"] == evidence.checked_at.isoformat()
        assert shown["kinds"][0]["kind"] == evidence.kinds[0].kind
        assert evidence.line() in record.reason


class TestDiscoveryScope:
    """Empty ROTATION_SUBSCRIPTIONS is refused: discovery would see nothing and nothing would block."""

    def test_start_and_plan_are_refused_naming_the_setting(self) -> None:
        estate, old = standard_estate()
        estate.settings = replace(estate.settings, subscriptions=())

        with pytest.raises(SettingsError, match="ROTATION_SUBSCRIPTIONS: is empty"):
            start_rotation(estate.deps(), KEY.uri, CLI)
        with pytest.raises(SettingsError, match="ROTATION_SUBSCRIPTIONS"):
            plan(estate.deps(), KEY.uri)
        assert [v.version for v in estate.keys.all_versions(KEY)] == [old]  # nothing created

    def test_retirement_waits_when_the_scope_became_empty(self) -> None:
        estate, old = standard_estate()
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        estate.follower_adopts(view.new_version)
        estate.clock.advance(timedelta(hours=25))
        estate.settings = replace(estate.settings, subscriptions=())  # a redeploy lost the setting

        blocked = sweep(estate.deps(), TIMER)

        assert blocked.count("retired") == 0
        assert "ROTATION_SUBSCRIPTIONS is empty" in blocked.items[0].detail
        assert estate.keys.get_key(KEY, old).enabled

    def test_a_kind_searching_the_whole_reach_lifts_the_refusal(self) -> None:
        estate, old = standard_estate()
        estate.settings = replace(estate.settings, subscriptions=())
        gadgets = FakeGadgets()
        gadgets.add("g1", KEY.version_uri(old))
        estate.consumers = ConsumerRegistry((*estate.consumers.units, WholeReach(gadgets)))

        result = plan(estate.deps(), KEY.uri)

        assert [c.resource_id for c in result.consumers] == ["/gadgets/g1"]  # storage, workspaces: out of scope


class WholeReach(GadgetUnit):
    """A kind that, like Resource Graph, searches every subscription the identity can read."""

    whole_reach = True


class TestBlobHistory:
    """Versions, snapshots and soft-deleted blobs on the old version block retirement, by name."""

    def test_retirement_names_held_blobs_until_they_are_deleted(self) -> None:
        estate, old = rewrap_estate(blobs=2)
        entries = ("version 2026-01-01T00:00:00.0000000Z", "snapshot 2026-01-01T00:00:01.0000000Z", "soft-deleted")
        for entry in entries:
            estate.data_keys.put_history(LOCATION, "b000000", entry, KEY.version_uri(old))
        view = cut_over_and_adopted(estate)

        blocked = sweep(estate.deps(), TIMER)

        assert blocked.count("retired") == 0
        detail = blocked.items[0].detail
        assert "3 blob versions, snapshots or soft-deleted blobs are wrapped by it" in detail
        for entry in entries:
            assert f"secure/b000000 ({entry})" in detail
        assert estate.keys.get_key(KEY, old).enabled

        for entry in entries[:2]:
            estate.data_keys.delete_history(LOCATION, "b000000", entry)
        assert sweep(estate.deps(), TIMER).count("retired") == 0  # the soft-deleted one can still be undeleted
        estate.data_keys.delete_history(LOCATION, "b000000", entries[2])
        # History wrapped by the new version does not block (the re-wrap's own write made it).
        estate.data_keys.put_history(LOCATION, "b000001", "version x", KEY.version_uri(view.new_version or ""))

        assert sweep(estate.deps(), TIMER).count("retired") == 1
        assert not estate.keys.get_key(KEY, old).enabled
        record = estate.audit.for_rotation(view.rotation_id)[-1]
        assert "history on this key: 1 versions, 0 snapshots, 0 soft-deleted" in record.reason

    def test_plan_lists_each_held_blob_with_its_kind_and_version(self) -> None:
        estate, old = rewrap_estate(blobs=2)
        entries = ("version 2026-01-01T00:00:00.0000000Z", "snapshot 2026-01-01T00:00:01.0000000Z", "soft-deleted")
        for entry in entries:
            estate.data_keys.put_history(LOCATION, "b000000", entry, KEY.version_uri(old))
        estate.data_keys.put_history(LOCATION, "b000001", "version y", "https://kv-other.vault.azure.net/keys/k/v1")

        result = plan(estate.deps(), KEY.uri).to_dict()

        listed = {(h["blob"], h["entry"], h["key_version"]) for h in result["blob_history"]}
        assert listed == {("b000000", entry, old) for entry in entries}  # another key's history is not listed
        assert {h["location"] for h in result["blob_history"]} == {LOCATION.display}
        data_locations = [c for c in result["consumers"] if c["kind"] == "data_location"]
        assert [c["before"] for c in data_locations] == [f"{old}:2"]
