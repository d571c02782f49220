"""Real rotations (the workflow service over in-memory estates) write their audit records to Azurite."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from rotation.audit.store import StoredRecord, TableAuditLog
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import run_rotation, start_rotation, sweep
from tests.fakes.estate import KEY, Estate, standard_estate
from tests.integration.audit.concurrency import run_in_threads, verified_chain

CALLER = Trigger(TriggerKind.HTTP, caller="alice@example.com")
TIMER = Trigger(TriggerKind.TIMER)


@pytest.fixture
def audit(storage_connection: str) -> Iterator[TableAuditLog]:
    log = TableAuditLog(storage_connection, f"audit{uuid.uuid4().hex[:12]}")
    yield log
    log.close()


def estate_with(audit: TableAuditLog) -> tuple[Estate, str]:
    estate, old = standard_estate()
    estate.audit = audit  # type: ignore[assignment]
    return estate, old


def of(audit: TableAuditLog, rotation_id: str) -> list[StoredRecord]:
    return [s for s in audit.stored() if s.record.rotation_id == rotation_id]


class TestEachOutcomeWritesItsRecord:
    """Success, retirement, dry run, refusal, failure and rollback each leave the record on-call needs."""

    def test_success_then_retirement(self, audit: TableAuditLog) -> None:
        estate, old = estate_with(audit)

        view = start_rotation(estate.deps(), KEY.uri, CALLER, reason="quarterly")
        estate.follower_adopts(view.new_version)
        estate.clock.advance(timedelta(hours=25))
        sweep(estate.deps(), TIMER)

        records = of(audit, view.rotation_id)
        assert [s.record.outcome for s in records] == ["succeeded", "retired"]
        succeeded = records[0].record
        assert (succeeded.key_uri, succeeded.old_version, succeeded.new_version) == (KEY.uri, old, view.new_version)
        assert succeeded.trigger.caller == "alice@example.com"
        assert {c.status for c in succeeded.consumers} >= {"changed", "tracking"}
        assert all(c.after == view.new_version for c in succeeded.consumers if c.status == "changed")
        assert succeeded.steps
        assert all(s.finished_at is not None for s in succeeded.steps if s.status == "succeeded")
        assert old in records[1].record.reason  # "old version <old> disabled after the grace period"
        assert audit.verify().ok

    def test_dry_run(self, audit: TableAuditLog) -> None:
        estate, _old = estate_with(audit)

        view = start_rotation(estate.deps(), KEY.uri, CALLER, dry_run=True)

        [stored] = audit.stored()
        assert view.status == RotationStatus.DRY_RUN
        assert stored.record.outcome == "dry_run"
        assert stored.record.new_version is None
        assert {c.status for c in stored.record.consumers} >= {"planned"}

    def test_refusal(self, audit: TableAuditLog) -> None:
        estate, _old = estate_with(audit)
        estate.vaults.add("https://kv-main.vault.azure.net", purge_protection=False)

        view = start_rotation(estate.deps(), KEY.uri, CALLER)

        [stored] = audit.stored()
        assert view.status == RotationStatus.REFUSED
        assert stored.record.outcome == "refused"
        assert "purge protection" in stored.record.reason

    def test_failure(self, audit: TableAuditLog) -> None:
        estate, old = estate_with(audit)
        deps = estate.deps(inline=False)
        view = start_rotation(deps, KEY.uri, CALLER)
        estate.keys.create_broken_versions = True

        result = run_rotation(deps, view.rotation_id)

        [stored] = of(audit, view.rotation_id)
        assert result.status == RotationStatus.FAILED
        assert stored.record.outcome == "failed"
        assert stored.record.old_version == old
        assert any(s.status == "failed" for s in stored.record.steps)
        assert stored.record.reason

    def test_rollback(self, audit: TableAuditLog) -> None:
        estate, old = estate_with(audit)
        deps = estate.deps(inline=False)
        view = start_rotation(deps, KEY.uri, CALLER)
        estate.storage.refuse_nth_key_write(2, unless=old)

        result = run_rotation(deps, view.rotation_id)

        outcomes = [s.record.outcome for s in of(audit, view.rotation_id)]
        rolled = next(s for s in of(audit, view.rotation_id) if s.record.outcome == "rolled_back").record
        assert result.status == RotationStatus.ROLLED_BACK
        assert "rolled_back" in outcomes
        back = [c for c in rolled.consumers if c.status == "rolled_back"]
        assert len(back) == 1
        assert back[0].before == old
        assert audit.verify().ok


class TestConcurrentRotations:
    """Rotations of different keys in parallel append to one consistent chain."""

    def test_parallel_rotations_keep_the_chain(self, audit: TableAuditLog) -> None:
        estates = [estate_with(audit)[0] for _ in range(4)]
        views: list[str] = []
        lock = threading.Lock()

        def rotate(estate: Estate) -> None:
            view = start_rotation(estate.deps(), KEY.uri, CALLER)
            dry = start_rotation(estate.deps(), "https://kv-main.vault.azure.net/keys/other", CALLER, dry_run=True)
            with lock:
                views.extend([view.rotation_id, dry.rotation_id])

        run_in_threads(rotate, estates)

        stored = verified_chain(audit, 8)
        assert sorted(s.record.rotation_id or "" for s in stored) == sorted(views)
