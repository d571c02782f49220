"""Retirement fails closed and records the evidence it relied on (issue 16 item 5)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import get_rotation, run_rotation, start_rotation, sweep
from tests.fakes.estate import KEY, rewrap_estate, standard_estate

CLI = Trigger(TriggerKind.CLI, caller="tester")
TIMER = Trigger(TriggerKind.TIMER)


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
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        while view.status != RotationStatus.AWAITING_RETIREMENT:
            view = run_rotation(estate.deps(), view.rotation_id)
        follows = next(a for a in estate.storage.accounts.values() if a.name == "follows")
        estate.storage.adopt_latest(follows.account_id, KEY, view.new_version or "")
        estate.clock.advance(timedelta(hours=25))
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
            assert f"data_location 1 (4 blobs surveyed: {new}: 4)" in text
            assert "references to the old version: 0" in text
        assert old not in retired.reason.split("disabled", 1)[1].replace(f"old version {old}", "")
