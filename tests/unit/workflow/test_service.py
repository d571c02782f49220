"""The workflow service over in-memory fakes that keep real state."""

from __future__ import annotations

import itertools
import json
import math
import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from rotation.cli.rotations import render_plan, render_rotation
from rotation.domain.model import ConsumerKind, KeyRef, KeyVaultEvent, RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import ROTATION_TAG
from rotation.errors import RotationInProgress, ThrottledError, TransientError, UnknownKeyError
from rotation.service import (
    Dependencies,
    RotationView,
    get_rotation,
    handle_key_event,
    list_rotations,
    plan,
    run_rotation,
    start_rotation,
    sweep,
)
from tests.fakes.data_keys import FakeBlob
from tests.fakes.estate import KEY, LOCATION, OTHER_KEY, VAULT, Estate, rewrap_estate, standard_estate
from tests.triggers import CLI, TIMER


class Crash(BaseException):
    """Stands in for the process dying at a precise point (not an error the service handles)."""


def consumers_on(estate: Estate, version: str) -> dict[str, bool]:
    result = {}
    for account in estate.storage.accounts.values():
        if account.key_name == KEY.name and not account.versionless:
            result[account.name] = account.key_version == version
    for ws in estate.workspaces.workspaces.values():
        if f"/keys/{KEY.name}/" in ws.key_identifier:
            result[ws.name] = ws.key_identifier.endswith("/" + version)
    return result


def started_queued(estate: Estate) -> tuple[Dependencies, RotationView]:
    """A rotation of KEY started with a queued dispatcher: journalled and dispatched, not yet run; and the
    dependencies that dispatch it."""
    deps = estate.deps(inline=False)
    return deps, start_rotation(deps, KEY.uri, CLI)


def assert_stopped_before_any_change(
    estate: Estate, view: RotationView, old: str, *, status: RotationStatus, naming: str, audited: str
) -> None:
    """The rotation stopped with ``status``, its error naming ``naming``; the key has no new version, every
    consumer is still on ``old``, and the one audit record says ``audited``."""
    assert view.status == status
    assert view.error is not None
    assert naming in view.error["message"]
    assert len(estate.keys.all_versions(KEY)) == 1
    assert all(consumers_on(estate, old).values())
    assert [r.outcome for r in estate.audit.for_rotation(view.rotation_id)] == [audited]


class TestRotation:
    """A rotation moves exactly the key's consumers to exactly one new version and records it."""

    def test_moves_every_consumer_and_nothing_else(self) -> None:
        estate, old = standard_estate()
        unrelated_before = (
            estate.storage.accounts[next(k for k in estate.storage.accounts if k.endswith("unrelated"))],
            dict(estate.workspaces.workspaces),
        )

        view = start_rotation(estate.deps(), KEY.uri, CLI, reason="scheduled")

        assert view.status == RotationStatus.AWAITING_RETIREMENT
        versions = estate.keys.all_versions(KEY)
        assert len(versions) == 2
        new = versions[-1]
        assert new.tags == {ROTATION_TAG: view.rotation_id}
        assert view.new_version == new.version
        assert view.old_version == old
        assert all(consumers_on(estate, new.version).values())
        assert estate.storage.accounts[unrelated_before[0].account_id.lower()] == unrelated_before[0]
        assert len(estate.keys.all_versions(OTHER_KEY)) == 1
        other_ws = next(w for w in estate.workspaces.workspaces.values() if w.name == "wsother")
        assert "/keys/other/" in other_ws.key_identifier
        assert estate.keys.latest(KEY).enabled
        assert estate.keys.all_versions(KEY)[0].enabled  # old version stays enabled until retirement
        assert [r.outcome for r in estate.audit.for_rotation(view.rotation_id)] == ["succeeded"]

    def test_versionless_account_is_not_pinned(self) -> None:
        estate, _ = standard_estate()

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        follows = next(a for a in estate.storage.accounts.values() if a.name == "follows")
        assert follows.versionless
        change = next(c for c in view.consumers if c.resource_id == follows.account_id)
        assert change.status == "tracking"

    def test_unknown_key_is_refused(self) -> None:
        estate, _ = standard_estate()

        with pytest.raises(UnknownKeyError):
            start_rotation(estate.deps(), "https://kv-main.vault.azure.net/keys/nope", CLI)

    def test_precondition_refusal_changes_nothing(self) -> None:
        estate, old = standard_estate()
        estate.vaults.add("https://kv-main.vault.azure.net", purge_protection=False)

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert_stopped_before_any_change(
            estate, view, old, status=RotationStatus.REFUSED, naming="purge protection", audited="refused"
        )


class TestDryRun:
    """A dry run shows per consumer what would change and writes nothing but its audit record."""

    def test_dry_run(self) -> None:
        estate, _old = standard_estate()

        view = start_rotation(estate.deps(), KEY.uri, CLI, dry_run=True)

        assert view.status == RotationStatus.DRY_RUN
        assert view.dry_run
        assert len([c for c in view.consumers if c.status == "planned"]) == 4
        assert estate.journal.writes == 0
        assert len(estate.keys.all_versions(KEY)) == 1
        assert estate.storage.writes == []
        assert estate.workspaces.writes == []
        assert [r.outcome for r in estate.audit.all] == ["dry_run"]
        assert json.loads(json.dumps(view.to_dict()))["status"] == "dry_run"

    def test_plan_view(self) -> None:
        estate, _ = standard_estate()

        result = plan(estate.deps(), KEY.uri)

        assert result.ok
        assert result.unrelated_consumers == 2
        assert len(result.consumers) == 5
        assert "new_version" in result.to_dict()["permissions"]


class TestExactlyOne:
    """One rotation per key at a time, whoever triggers it."""

    def test_second_start_reports_in_progress(self) -> None:
        estate, _ = standard_estate()
        deps, first = started_queued(estate)

        with pytest.raises(RotationInProgress) as raised:
            start_rotation(deps, KEY.uri, TIMER)

        assert raised.value.rotation_id == first.rotation_id

    def test_key_is_held_until_the_old_version_retires(self) -> None:
        estate, _ = standard_estate()
        first = start_rotation(estate.deps(), KEY.uri, CLI)
        estate.follower_adopts(first.new_version)

        with pytest.raises(RotationInProgress):
            start_rotation(estate.deps(), KEY.uri, CLI)
        estate.clock.advance(timedelta(hours=25))
        sweep(estate.deps(), TIMER)
        second = start_rotation(estate.deps(), KEY.uri, CLI)

        assert second.status == RotationStatus.AWAITING_RETIREMENT
        assert second.old_version == first.new_version
        assert len(estate.keys.all_versions(KEY)) == 3

    def test_concurrent_triggers_give_one_rotation(self) -> None:
        estate, _ = standard_estate()
        outcomes: list[str] = []
        barrier = threading.Barrier(3)

        def trigger(kind: TriggerKind, owner: str) -> None:
            deps = estate.deps(owner=owner)
            barrier.wait()
            try:
                outcomes.append(start_rotation(deps, KEY.uri, Trigger(kind)).rotation_id)
            except RotationInProgress:
                outcomes.append("in_progress")

        threads = [
            threading.Thread(target=trigger, args=(k, f"owner-{k.value}"))
            for k in (TriggerKind.EVENT, TriggerKind.TIMER, TriggerKind.HTTP)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        started = [o for o in outcomes if o != "in_progress"]
        assert len(started) == 1
        assert len(estate.keys.all_versions(KEY)) == 2

    def test_claimed_rotation_is_not_run_twice(self) -> None:
        estate, _ = standard_estate()
        view = start_rotation(estate.deps(inline=False), KEY.uri, CLI)
        state, etag = estate.journal.load(view.rotation_id)
        estate.journal.save(
            replace(state, lease_owner="someone-else", lease_expires=estate.clock.current + timedelta(minutes=5)), etag
        )

        result = run_rotation(estate.deps(), view.rotation_id)

        assert result.status == RotationStatus.RUNNING
        assert len(estate.keys.all_versions(KEY)) == 1


class TestResume:
    """After a crash at any side effect, the next run finishes the same rotation with one new version."""

    @pytest.mark.parametrize(
        ("fake", "method"),
        [
            ("keys", "create_version"),
            ("keys", "create_version:after"),
            ("storage", "set_key_version"),
            ("storage", "set_key_version:after"),
            ("workspaces", "set_key_identifier"),
            ("workspaces", "set_key_identifier:after"),
        ],
    )
    def test_crash_then_resume(self, fake: str, method: str) -> None:
        estate, _old = standard_estate()
        getattr(estate, fake).faults.add(method, Crash())
        deps, view = started_queued(estate)
        with pytest.raises(Crash):
            run_rotation(deps, view.rotation_id)

        result = run_rotation(estate.deps(owner="successor"), view.rotation_id)

        assert result.status == RotationStatus.AWAITING_RETIREMENT
        versions = estate.keys.all_versions(KEY)
        assert len(versions) == 2
        assert all(consumers_on(estate, versions[-1].version).values())
        assert versions[0].enabled
        state, _ = estate.journal.load(view.rotation_id)
        assert state.intent is None
        assert [r.outcome for r in estate.audit.for_rotation(view.rotation_id)] == ["succeeded"]


class TestRetries:
    """Transient failures are retried at the step level; the rotation still completes."""

    def test_throttling_and_5xx(self) -> None:
        estate, _ = standard_estate()
        estate.keys.faults.add("create_version", ThrottledError("429", retry_after=2), times=2)
        estate.storage.faults.add("set_key_version", TransientError("503"))
        estate.workspaces.faults.add("set_key_identifier", TransientError("connection dropped"))

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.AWAITING_RETIREMENT
        assert len(estate.keys.all_versions(KEY)) == 2
        assert len(estate.keys.faults.raised) == 2

    def test_persistent_transient_failure_leaves_it_resumable(self) -> None:
        estate, _ = standard_estate()
        estate.keys.faults.add("create_version", TransientError("503"), times=5)

        view = start_rotation(estate.deps(), KEY.uri, CLI)
        resumed = run_rotation(estate.deps(), view.rotation_id)

        assert view.status == RotationStatus.RUNNING
        assert resumed.status == RotationStatus.AWAITING_RETIREMENT
        assert len(estate.keys.all_versions(KEY)) == 2


class TestRollback:
    """A consumer Azure refuses is put back on the old version and the rotation stops for a human."""

    def test_refused_consumer_rolls_back(self) -> None:
        estate, old = standard_estate()
        deps, view = started_queued(estate)
        estate.storage.refuse_nth_key_write(2, unless=old)

        result = run_rotation(deps, view.rotation_id)

        assert result.status == RotationStatus.ROLLED_BACK
        rolled = [c for c in result.consumers if c.status == "rolled_back"]
        assert len(rolled) == 1
        account = estate.storage.accounts[rolled[0].resource_id.lower()]
        assert account.key_version == old
        assert estate.keys.all_versions(KEY)[0].enabled
        assert "rolled_back" in [r.outcome for r in estate.audit.for_rotation(view.rotation_id)]

    def test_unusable_new_version_fails_before_any_consumer_moves(self) -> None:
        estate, old = standard_estate()
        deps, view = started_queued(estate)
        estate.keys.create_broken_versions = True

        result = run_rotation(deps, view.rotation_id)

        assert result.status == RotationStatus.FAILED
        assert all(consumers_on(estate, old).values())
        old_version, new_version = estate.keys.all_versions(KEY)
        assert old_version.enabled
        assert not new_version.enabled  # versionless consumers must not adopt it
        assert result.error is not None
        assert "disabled" in result.error["message"]
        estate.keys.create_broken_versions = False

        retry = start_rotation(estate.deps(), KEY.uri, CLI, reason="after the failed probe")

        assert retry.status == RotationStatus.AWAITING_RETIREMENT, retry.error
        assert retry.old_version == old
        assert len(estate.keys.all_versions(KEY)) == 3
        assert all(consumers_on(estate, str(retry.new_version)).values())


class TestRewrapAndRetirement:
    """Re-wrap runs as a step; retirement waits for grace, versionless adoption and data keys."""

    def test_rewrap_waits_then_completes(self) -> None:
        estate, _old = rewrap_estate()

        view = start_rotation(estate.deps(), KEY.uri, CLI)
        second = run_rotation(estate.deps(), view.rotation_id)
        third = run_rotation(estate.deps(), view.rotation_id)

        assert view.status == RotationStatus.WAITING
        assert second.status == RotationStatus.WAITING
        assert third.status == RotationStatus.AWAITING_RETIREMENT
        assert third.rewrap is not None
        assert third.rewrap.rewrapped == 10
        data = next(c for c in third.consumers if c.kind == ConsumerKind.DATA_LOCATION)
        assert (data.status, data.after) == ("changed", third.new_version)

    def test_retirement_waits_for_grace_and_adoption(self) -> None:
        estate, _old = standard_estate()
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        follows = next(a for a in estate.storage.accounts.values() if a.name == "follows")

        early = sweep(estate.deps(), TIMER)
        estate.clock.advance(timedelta(hours=25))
        not_adopted = sweep(estate.deps(), TIMER)
        estate.storage.adopt_latest(follows.account_id, KEY, view.new_version or "")
        retired = sweep(estate.deps(), TIMER)

        assert early.count("waiting") == 1
        assert not_adopted.count("waiting") == 1
        assert "versionless" in not_adopted.items[0].detail
        assert retired.count("retired") == 1
        assert estate.keys.all_versions(KEY)[0].enabled is False
        assert len(estate.keys.all_versions(KEY)) == 2  # disabled, never deleted
        assert get_rotation(estate.deps(), view.rotation_id).status == RotationStatus.RETIRED
        assert [r.outcome for r in estate.audit.for_rotation(view.rotation_id)] == ["succeeded", "retired"]

    def test_rewrap_failures_block_retirement(self) -> None:
        estate, old = standard_estate()
        estate.with_data_locations()
        estate.data_keys.put_blobs(LOCATION, KEY, old, 3)
        estate.data_keys.put_blob(LOCATION, "broken", KEY.version_uri(old), problem="malformed encryptiondata")
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        estate.follower_adopts(view.new_version)
        estate.clock.advance(timedelta(hours=25))

        report = sweep(estate.deps(), TIMER)

        assert view.status == RotationStatus.AWAITING_RETIREMENT
        assert report.count("retired") == 0
        assert estate.keys.all_versions(KEY)[0].enabled


class TestSharedDataLocation:
    """Blobs of other keys in the key's data location (another managed key's, or an unmanaged key's) are
    counted apart in the plan, the dry run, the re-wrap, status and the audit, and never block retirement;
    a blob naming the key without a version still does."""

    def shared_estate(self) -> tuple[Estate, str]:
        estate, old = standard_estate()
        estate.with_data_locations()
        estate.data_keys.put_blobs(LOCATION, KEY, old, 3)
        estate.data_keys.put_blob(LOCATION, "theirs-0", KeyRef(KEY.vault_url, "theirs").version_uri("t1"))
        estate.data_keys.put_blob(LOCATION, "theirs-1", "https://elsewhere.vault.azure.net/keys/cmk/e1")
        return estate, old

    def test_other_keys_blobs_are_counted_apart_and_do_not_block_retirement(self) -> None:
        estate, old = self.shared_estate()

        planned = plan(estate.deps(), KEY.uri)
        dry = start_rotation(estate.deps(), KEY.uri, CLI, dry_run=True)
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        estate.follower_adopts(view.new_version)
        estate.clock.advance(timedelta(hours=25))
        report = sweep(estate.deps(), TIMER)
        retired = get_rotation(estate.deps(), view.rotation_id)

        [data_plan] = [c for c in planned.consumers if c.kind == ConsumerKind.DATA_LOCATION]
        split = "3 blobs to re-wrap; 0 blobs with problems; 2 blobs of other keys (left alone)"
        assert data_plan.detail == split
        assert f"client-side-encrypted blobs: {split}" in render_plan(planned.to_dict()).splitlines()
        [dry_rewrap] = [s for s in dry.steps if s.name == "rewrap"]
        assert dry_rewrap.detail == f"would re-wrap client-side data keys: {split}"
        assert view.rewrap is not None
        assert (view.rewrap.rewrapped, view.rewrap.other_keys, view.rewrap.failed) == (3, 2, ())
        assert "2 blobs of other keys left alone" in render_rotation(view.to_dict())
        assert report.count("retired") == 1
        assert estate.keys.get_key(KEY, old).enabled is False
        assert estate.data_keys.blob(LOCATION, "theirs-0") == FakeBlob(
            KeyRef(KEY.vault_url, "theirs").version_uri("t1")
        )
        assert retired.evidence is not None
        [blobs] = [k.blobs for k in retired.evidence.kinds if k.blobs is not None]
        assert (blobs.surveyed, blobs.other_keys) == (5, 2)
        succeeded, retired_record = estate.audit.for_rotation(view.rotation_id)
        assert succeeded.rewrap is not None
        assert succeeded.rewrap.other_keys == 2
        assert "5 blobs surveyed" in retired_record.reason
        assert "2 blobs of other keys" in retired_record.reason

    def test_a_blob_naming_the_key_without_a_version_still_blocks_retirement(self) -> None:
        estate, old = self.shared_estate()
        estate.data_keys.put_blob(LOCATION, "versionless", KEY.uri)

        view = start_rotation(estate.deps(), KEY.uri, CLI)
        estate.follower_adopts(view.new_version)
        estate.clock.advance(timedelta(hours=25))
        report = sweep(estate.deps(), TIMER)

        assert view.rewrap is not None
        assert view.rewrap.other_keys == 2
        assert [f.blob for f in view.rewrap.failed] == ["versionless"]
        assert report.count("retired") == 0
        assert estate.keys.get_key(KEY, old).enabled is True


class TestEvents:
    """Key Vault events start, adopt or are harmless duplicates."""

    def event(self, event_type: str, version: str | None, event_id: str = "e1") -> KeyVaultEvent:
        return KeyVaultEvent(event_id, event_type, KEY, version, "kv-main", None, None, None)  # type: ignore[arg-type]

    def test_near_expiry_starts_and_duplicate_is_harmless(self) -> None:
        estate, old = standard_estate()

        first = handle_key_event(estate.deps(), self.event("KeyNearExpiry", old))
        again = handle_key_event(estate.deps(), self.event("KeyNearExpiry", old, "e2"))

        assert first.outcome == "started"
        assert again.outcome == "duplicate"
        assert len(estate.keys.all_versions(KEY)) == 2

    def test_own_new_version_is_a_no_op(self) -> None:
        estate, _ = standard_estate()
        view = start_rotation(estate.deps(), KEY.uri, CLI)

        outcome = handle_key_event(estate.deps(), self.event("KeyNewVersionCreated", view.new_version))

        assert outcome.outcome == "duplicate"
        assert len(estate.keys.all_versions(KEY)) == 2

    def test_auto_rotation_is_adopted(self) -> None:
        estate, _old = standard_estate()
        auto = estate.keys.auto_rotate(KEY)

        outcome = handle_key_event(estate.deps(), self.event("KeyNewVersionCreated", auto.version))
        again = handle_key_event(estate.deps(), self.event("KeyNewVersionCreated", auto.version, "e2"))

        assert outcome.outcome == "adopted"
        assert again.outcome == "duplicate"
        assert len(estate.keys.all_versions(KEY)) == 2
        assert all(consumers_on(estate, auto.version).values())

    def test_other_vault_is_ignored(self) -> None:
        estate, _ = standard_estate()
        event = replace(self.event("KeyNearExpiry", None), key=replace(KEY, vault_url="https://evil.vault.azure.net"))

        outcome = handle_key_event(estate.deps(), event)

        assert outcome.outcome == "ignored"


def _swept_vault(*, managed: int, fillers: int) -> tuple[Estate, list[KeyRef]]:
    """A vault of ``managed`` managed keys and ``fillers`` others, far from expiry, swept by one process
    until it has read each key and learnt the vault's size."""
    estate = Estate()
    far = estate.clock.current + timedelta(days=300)
    keys = [KeyRef(VAULT, f"managed-{i}") for i in range(managed)]
    for key in keys:
        estate.keys.add_key(key, expires=far)
    for i in range(fillers):
        estate.keys.add_key(KeyRef(VAULT, f"filler-{i:04d}"), kty="EC", expires=far)
    estate.settings = replace(estate.settings, managed_keys=tuple(k.uri for k in keys))
    for _ in range(2 * managed + 2):
        assert sweep(estate.deps(), TIMER).items == ()
    return estate, keys


class TestSweep:
    """The reconciler decides near-expiry from one list pass per vault and resumes interrupted runs."""

    def test_near_expiry_from_one_listing_on_a_first_tick(self) -> None:
        estate = Estate()
        estate.keys.add_key(KEY, expires=estate.clock.current + timedelta(days=3))
        estate.keys.add_key(OTHER_KEY, expires=estate.clock.current + timedelta(days=300))

        report = sweep(estate.deps(), TIMER)

        assert estate.keys.calls["list_key_pages"] == 1  # a first tick lists the vault (2 keys, one page)
        assert (report.key_reads, report.deferred) == (0, ())  # and judges both from it: the bound is 1 call
        assert report.count("started") == 1
        assert [i.key_uri for i in report.items if i.action == "started"] == [KEY.uri]

    @pytest.mark.parametrize(
        ("vault_keys", "managed"), [(5000, 2), (2000, 1), (100, 10), (60, 3), (30, 2), (40, 40), (26, 3)]
    )
    def test_cost_is_proportional_to_what_it_manages(self, vault_keys: int, managed: int) -> None:
        """Every tick, the first too, costs at most min(managed keys, ceil(vault keys / 25)) Key Vault calls
        (plus its actions); every managed key is judged at least every other tick, and within 2 + 2 x
        ceil(M / pages) ticks the sweep knows every key's versions."""
        estate = Estate()
        far = estate.clock.current + timedelta(days=300)
        keys = [KeyRef(VAULT, f"key-{i:05d}") for i in range(vault_keys)]
        for key in keys:
            estate.keys.add_key(key, size=2048, kty="EC", expires=far)
        step = vault_keys // managed  # managed keys spread over the vault's pages
        estate.settings = replace(estate.settings, managed_keys=tuple(k.uri for k in keys[step - 1 :: step]))
        costs, reports = [], []
        pages = math.ceil(vault_keys / 25)
        bound = min(managed, pages)

        for _ in range(3 + 2 * math.ceil(managed / pages)):
            estate.keys.calls.clear()
            reports.append(sweep(estate.deps(), TIMER))
            costs.append(sum(estate.keys.calls.values()))
            estate.clock.advance(timedelta(minutes=5))

        assert max(costs) <= bound, (costs, estate.keys.calls)
        assert [(r.list_calls + r.key_reads) for r in reports] == costs
        assert all(r.items == () for r in reports)  # nothing near expiry: no action, nothing failed
        assert all(not set(a.deferred) & set(b.deferred) for a, b in itertools.pairwise(reports))
        memory = estate.sweep_memory
        assert reports[-1].deferred == ()
        assert all(memory.keys[uri.lower()].complete(estate.clock.current) for uri in estate.settings.managed_keys)

    def test_a_stale_vault_size_costs_calls_not_decisions(self) -> None:
        estate, managed = _swept_vault(managed=10, fillers=40)  # the size is known: 50 keys, 2 pages
        far = estate.clock.current + timedelta(days=300)
        for i in range(2000):  # the vault grows; one managed key's current version is now near expiry
            estate.keys.add_key(KeyRef(VAULT, f"bulk-{i:05d}"), kty="EC", expires=far)
        estate.keys.create_version(
            managed[-1], estate.keys.get_key(managed[-1]), {}, estate.clock.current + timedelta(days=3)
        )
        estate.keys.calls.clear()

        reports = [sweep(estate.deps(), TIMER) for _ in range(2)]

        # The listing is cut at M pages (the managed keys now sort after 250 new ones): all deferred, within
        # the bound; the next tick knows the vault is big and reads each key.
        assert [(r.list_calls, r.key_reads, len(r.deferred)) for r in reports] == [(10, 0, 10), (0, 10, 0)]
        assert [i.key_uri for i in reports[1].items if i.action == "started"] == [managed[-1].uri]

    def test_a_managed_key_missing_from_a_complete_listing_is_skipped_without_a_read(self) -> None:
        estate, managed = _swept_vault(managed=4, fillers=0)
        del estate.keys.versions[managed[0]]
        estate.keys.calls.clear()

        report = sweep(estate.deps(), TIMER)

        assert report.items == ()
        assert estate.keys.calls == {"list_key_pages": 1}

    def test_a_managed_key_missing_from_its_vault_is_skipped(self) -> None:
        estate = Estate()
        estate.keys.add_key(KEY, expires=estate.clock.current + timedelta(days=300))

        report = sweep(estate.deps(), TIMER)  # OTHER_KEY is managed but not in its vault

        assert report.items == ()
        assert (report.list_calls, report.key_reads) == (1, 0)  # the complete listing shows it is missing

    def test_resumes_interrupted(self) -> None:
        estate, _ = standard_estate()
        view = start_rotation(estate.deps(inline=False), KEY.uri, CLI)

        report = sweep(estate.deps(), TIMER)

        assert report.count("resumed") == 1
        assert get_rotation(estate.deps(), view.rotation_id).status == RotationStatus.AWAITING_RETIREMENT
        assert len(list_rotations(estate.deps(), KEY.uri, active_only=True)) == 1


class TestNoKeyMaterial:
    """Logs, journal entries and audit records of a full rotation carry no secrets."""

    def test_scan(self) -> None:
        estate, _ = standard_estate()
        secret_markers = ["AccountKey=", "Bearer ", "eyJ"]

        with capture_logs() as logs:
            view = start_rotation(estate.deps(), KEY.uri, CLI)

        text = json.dumps(logs, default=str)
        text += json.dumps([str(s) for s, _ in estate.journal.entries.values()])
        text += json.dumps([str(r) for r in estate.audit.all])
        assert view.status == RotationStatus.AWAITING_RETIREMENT
        assert any(e["event"] == "rotation_summary" for e in logs)
        for marker in secret_markers:
            assert marker not in text


class TestSweepHoldOff:
    """After a rotation stops for a human, the timer does not repeat it every tick; people still can."""

    def test_refused_key_is_skipped_by_the_timer(self) -> None:
        estate = Estate()
        estate.keys.add_key(KEY, expires=estate.clock.current + timedelta(days=3))
        estate.vaults.add("https://kv-main.vault.azure.net", purge_protection=False)

        first = sweep(estate.deps(), TIMER)
        second = sweep(estate.deps(), TIMER)
        estate.clock.advance(timedelta(hours=25))
        later = sweep(estate.deps(), TIMER)

        assert first.count("started") == 1
        assert second.count("skipped") == 1
        assert "purge protection" in second.items[0].detail
        assert later.count("started") == 1
        assert [r.outcome for r in estate.audit.all] == ["refused", "refused"]


class TestPermissions:
    """A missing permission refuses the rotation before any change, naming the permission."""

    def test_missing_read_permission_refuses(self) -> None:
        from rotation.errors import PermissionDenied

        estate, _ = standard_estate()
        estate.storage.faults.add("list_accounts", PermissionDenied("denied", "Microsoft.Storage/storageAccounts/read"))

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.REFUSED
        assert view.error is not None
        assert view.error["code"] == "PermissionDenied"
        assert len(estate.keys.all_versions(KEY)) == 1

    def test_missing_write_permission_fails_without_moving_anything_else(self) -> None:
        from rotation.errors import PermissionDenied

        estate, old = standard_estate()
        estate.settings = replace(estate.settings, repoint_concurrency=1)
        estate.workspaces.faults.add(
            "set_key_identifier",
            PermissionDenied(
                "not allowed: Microsoft.MachineLearningServices/workspaces/write",
                "Microsoft.MachineLearningServices/workspaces/write",
            ),
        )

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.FAILED
        assert view.error is not None
        assert view.error["code"] == "PermissionDenied"
        assert "workspaces/write" in view.error["message"]
        assert all(
            w.key_identifier.endswith(old) for w in estate.workspaces.workspaces.values() if "/cmk/" in w.key_identifier
        )
        assert estate.keys.all_versions(KEY)[0].enabled
        assert [r.outcome for r in estate.audit.for_rotation(view.rotation_id)] == ["failed"]


class TestOutOfOrderEvents:
    """Events that arrive late or out of order change nothing."""

    def event(self, event_type: str, version: str | None, event_id: str) -> KeyVaultEvent:
        return KeyVaultEvent(event_id, event_type, KEY, version, "kv-main", None, None, None)  # type: ignore[arg-type]

    def test_stale_events_after_retirement(self) -> None:
        estate, old = standard_estate()
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        estate.follower_adopts(view.new_version)
        estate.clock.advance(timedelta(hours=25))
        sweep(estate.deps(), TIMER)

        late_expiry = handle_key_event(estate.deps(), self.event("KeyNearExpiry", old, "late-1"))
        late_created = handle_key_event(estate.deps(), self.event("KeyNewVersionCreated", view.new_version, "late-2"))
        older_created = handle_key_event(estate.deps(), self.event("KeyNewVersionCreated", old, "late-3"))

        assert late_expiry.outcome == "ignored"
        assert late_created.outcome == "duplicate"
        assert older_created.outcome == "ignored"
        assert len(estate.keys.all_versions(KEY)) == 2
        assert len(estate.journal.list(KEY.uri)) == 1


class TestQueuedResume:
    """With a queued dispatcher the sweep hands interrupted rotations to the queue instead of running them."""

    def test_sweep_dispatches(self) -> None:
        estate, _ = standard_estate()
        deps, view = started_queued(estate)

        report = sweep(deps, TIMER)

        assert [(i.action, i.detail) for i in report.items] == [("resumed", "dispatched")]
        assert deps.dispatcher.dispatched == [view.rotation_id, view.rotation_id]  # type: ignore[attr-defined]
        assert get_rotation(deps, view.rotation_id).status == RotationStatus.RUNNING
        assert len(estate.keys.all_versions(KEY)) == 1


class TestGuard:
    """An impossible journal state stops the rotation for a human, audited, without touching anything."""

    def test_corrupted_journal_needs_human(self) -> None:
        from rotation.domain.steps import record_step

        estate, old = standard_estate()
        _, view = started_queued(estate)
        state, etag = estate.journal.load(view.rotation_id)
        broken = record_step(state, "repoint_storage", "succeeded", estate.clock.now())  # skipped steps
        estate.journal.save(broken, etag)

        result = run_rotation(estate.deps(), view.rotation_id)

        assert_stopped_before_any_change(
            estate, result, old, status=RotationStatus.NEEDS_HUMAN, naming="out of order", audited="needs_human"
        )


class TestStuckRetirement:
    """A retirement that cannot finish never keeps the key from its next rotation after the grace period."""

    def test_next_rotation_after_grace_while_retirement_waits(self) -> None:
        estate, v1 = standard_estate()
        first = start_rotation(estate.deps(), KEY.uri, CLI)
        follows = next(a for a in estate.storage.accounts.values() if a.name == "follows")

        with pytest.raises(RotationInProgress):
            start_rotation(estate.deps(), KEY.uri, CLI)
        estate.clock.advance(timedelta(hours=25))
        stuck = sweep(estate.deps(), TIMER)  # the versionless account has not adopted: v1 stays
        second = start_rotation(estate.deps(), KEY.uri, CLI, reason="the new version nears expiry")
        estate.storage.adopt_latest(follows.account_id, KEY, second.new_version or "")
        estate.clock.advance(timedelta(hours=1))
        later = sweep(estate.deps(), TIMER)

        assert stuck.count("waiting") == 1
        assert second.status == RotationStatus.AWAITING_RETIREMENT
        assert second.old_version == first.new_version
        assert get_rotation(estate.deps(), first.rotation_id).status == RotationStatus.RETIRED
        assert [i.action for i in later.items if i.rotation_id == second.rotation_id] == ["waiting"]
        v1_now, v2_now, v3_now = estate.keys.all_versions(KEY)
        assert v1_now.version == v1
        assert (v1_now.enabled, v2_now.enabled, v3_now.enabled) == (False, True, True)


class TestRecordedStepList:
    """A deploy that inserts a step never strands a rotation journalled under the previous list."""

    def test_rotation_of_the_old_list_resumes_under_the_new_one(self) -> None:
        estate, _old = rewrap_estate()
        deps, view = started_queued(estate)
        state, etag = estate.journal.load(view.rotation_id)
        previous_build = tuple(s for s in state.run_steps if s != "track_versionless")
        estate.journal.save(replace(state, run_steps=previous_build), etag)

        waiting = run_rotation(deps, view.rotation_id)
        run_rotation(deps, view.rotation_id)
        done = run_rotation(deps, view.rotation_id)

        assert waiting.status == RotationStatus.WAITING
        assert done.status == RotationStatus.AWAITING_RETIREMENT, done.error
        assert [s.name for s in done.steps] == list(previous_build)
        assert estate.journal.load(view.rotation_id)[0].run_steps == previous_build
        assert all(consumers_on(estate, str(done.new_version)).values())

    def test_a_new_rotation_records_the_build_list(self) -> None:
        from rotation.consumers import RUN_STEPS

        estate, _ = standard_estate()

        view = start_rotation(estate.deps(inline=False), KEY.uri, CLI)

        assert estate.journal.load(view.rotation_id)[0].run_steps == RUN_STEPS
