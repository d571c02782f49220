"""Self-healing over the fakes: expiry judged by the versions consumers use, retries of stopped rotations
with back-off that adopt the version already created, escalation, and the sweep's per-key error boundary."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from structlog.testing import capture_logs

from rotation.domain.model import KeyRef, RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import ROTATION_TAG
from rotation.errors import ProviderKeyVaultUnavailable
from rotation.service import get_rotation, start_rotation, sweep
from tests.fakes.estate import KEY, OTHER_KEY, VAULT, Estate, rewrap_estate

CLI = Trigger(TriggerKind.CLI, caller="tester")
TIMER = Trigger(TriggerKind.TIMER)
THIRD_KEY = KeyRef(VAULT, "third")


def consumers_of(estate: Estate, key: KeyRef) -> dict[str, str]:
    """Each pinned consumer of ``key`` and the version it is on."""
    found = {
        a.name: a.key_version for a in estate.storage.accounts.values() if a.key_name == key.name and not a.versionless
    }
    for ws in estate.workspaces.workspaces.values():
        if f"/keys/{key.name}/" in ws.key_identifier:
            found[ws.name] = ws.key_identifier.rstrip("/").rsplit("/", 1)[-1]
    return found


def expiring_estate(*keys: KeyRef, days: int = 3) -> tuple[Estate, dict[KeyRef, str]]:
    """Each key with one version expiring in ``days``, a pinned account and a workspace on it."""
    estate = Estate()
    estate.settings = replace(estate.settings, managed_keys=tuple(k.uri for k in keys))
    old = {}
    for key in keys:
        version = estate.keys.add_key(key, expires=estate.clock.current + timedelta(days=days)).version
        estate.storage.add(f"acct{key.name}", key, version)
        estate.workspaces.add(f"ws{key.name}", key, version)
        old[key] = version
    return estate, old


def newest(estate: Estate, key: KeyRef) -> str:
    return max(estate.keys.all_versions(key), key=lambda v: (v.created, v.version)).version


class TestExpiryByVersionsInUse:
    """A consumer on an expiring version makes the reconciler act even when the latest version is fresh."""

    def test_consumers_on_an_expiring_version_move_to_the_fresh_latest(self) -> None:
        estate, old = expiring_estate(KEY)
        fresh = estate.keys.auto_rotate(KEY).version  # latest is fresh; consumers stay on the expiring one

        with capture_logs() as logs:
            report = sweep(estate.deps(), TIMER)

        assert report.count("started") == 1, report.items
        assert set(consumers_of(estate, KEY).values()) == {fresh}
        assert len(estate.keys.all_versions(KEY)) == 2  # adopted, nothing created
        expiring = [e for e in logs if e["event"] == "consumer_version_expiring"]
        assert {e["consumer"] for e in expiring} == {"acctcmk", "wscmk"}
        assert {e["version"] for e in expiring} == {old[KEY]}
        assert all(0 < e["days_left"] <= 3 for e in expiring)

    def test_consumers_on_fresh_versions_leave_the_key_alone(self) -> None:
        estate, _ = expiring_estate(KEY, days=300)
        estate.keys.auto_rotate(KEY)

        report = sweep(estate.deps(), TIMER)

        assert report.items == ()

    def test_an_older_version_entering_the_window_is_seen_when_the_vault_is_listed(self) -> None:
        """A tick judging keys from a listing of their vault still lists a key's versions once an older
        version it last saw nears expiry, and heals it."""
        estate = Estate()
        managed = (KEY, OTHER_KEY, THIRD_KEY)
        estate.settings = replace(estate.settings, managed_keys=tuple(k.uri for k in managed))
        far = estate.clock.current + timedelta(days=300)
        window = timedelta(days=estate.settings.near_expiry_days)
        old = estate.keys.add_key(KEY, expires=estate.clock.current + window + timedelta(hours=12)).version
        estate.keys.add_key(OTHER_KEY, expires=far)
        estate.keys.add_key(THIRD_KEY, expires=far)
        estate.storage.add("acctcmk", KEY, old)
        fresh = estate.keys.create_version(KEY, estate.keys.latest(KEY), {}, far).version
        # A vault of one page allows one call a tick: the first lists it, then every other tick reads one
        # key's versions until the sweep knows all three (1 + 2 x 3 ticks), each within the bound.
        ticks = [sweep(estate.deps(), TIMER) for _ in range(7)]
        assert [(t.list_calls, t.key_reads) for t in ticks] == [(1, 0), (0, 1)] * 3 + [(1, 0)]
        assert all(t.items == () for t in ticks)
        estate.keys.calls.clear()
        quiet = sweep(estate.deps(), TIMER)
        quiet_calls = dict(estate.keys.calls)

        estate.clock.advance(timedelta(hours=13))  # the old version enters the window (what was seen still holds)
        estate.keys.calls.clear()
        listed = sweep(estate.deps(), TIMER)
        report = sweep(estate.deps(), TIMER)

        assert quiet.items == ()
        assert quiet_calls == {"list_key_pages": 1}  # three managed keys judged from one page
        assert (listed.list_calls, listed.key_reads, listed.items) == (1, 0, ())  # it queues that key
        assert (report.list_calls, report.key_reads) == (0, 1)  # and the next tick reads only that key
        assert report.count("started") == 1, report.items
        assert consumers_of(estate, KEY) == {"acctcmk": fresh}

    def test_a_missed_new_version_whose_predecessor_nears_expiry_is_healed_on_the_next_tick(self) -> None:
        """A listing that shows a newer current version makes the one before it "another version" with the
        expiry last seen for it, and queues the key: the next tick reads its versions and moves its consumers."""
        estate = Estate()
        managed = (KEY, OTHER_KEY, THIRD_KEY)
        estate.settings = replace(estate.settings, managed_keys=tuple(k.uri for k in managed))
        window = timedelta(days=estate.settings.near_expiry_days)
        far = estate.clock.current + timedelta(days=300)
        old = estate.keys.add_key(KEY, expires=estate.clock.current + window + timedelta(hours=12)).version
        estate.keys.add_key(OTHER_KEY, expires=far)
        estate.keys.add_key(THIRD_KEY, expires=far)
        estate.storage.add("acctcmk", KEY, old)
        for _ in range(7):  # listed, then caught up (see the test above)
            assert sweep(estate.deps(), TIMER).items == ()
        assert estate.sweep_memory.keys[KEY.uri.lower()].complete(estate.clock.current)
        fresh = estate.keys.create_version(KEY, estate.keys.latest(KEY), {}, far)  # its event is missed
        estate.clock.advance(timedelta(hours=13))  # the version before it enters the window

        listed = sweep(estate.deps(), TIMER)  # a listing tick
        carried = estate.sweep_memory.keys[KEY.uri.lower()]
        report = sweep(estate.deps(), TIMER)

        assert (listed.list_calls, listed.key_reads, listed.items) == (1, 0, ())
        assert (carried.vouched, carried.others_expire) == (False, estate.keys.all_versions(KEY)[0].expires)
        assert (report.list_calls, report.key_reads) == (0, 1)
        assert report.count("started") == 1, report.items
        assert consumers_of(estate, KEY) == {"acctcmk": fresh.version}  # adopted: nothing new created
        assert len(estate.keys.all_versions(KEY)) == 2

    def test_after_a_refused_rollback_the_key_is_healed_once_the_hold_off_ends(self) -> None:
        estate, old = expiring_estate(KEY)
        estate.storage.refuse_nth_key_write(1, unless=old[KEY])
        first = sweep(estate.deps(), TIMER)
        stopped = get_rotation(estate.deps(), first.items[0].rotation_id or "")
        assert stopped.status == RotationStatus.ROLLED_BACK
        created = stopped.new_version

        estate.clock.advance(timedelta(hours=25))
        sweep(estate.deps(), TIMER)

        assert set(consumers_of(estate, KEY).values()) == {created}
        assert len(estate.keys.all_versions(KEY)) == 2


def roll_back_with(estate: Estate, key: KeyRef, old: str, code: str) -> str:
    """A rotation of ``key`` that stopped rolled back, its cause recorded as ``code`` (the journal is input)."""
    estate.storage.refuse_nth_key_write(1, unless=old)
    view = start_rotation(estate.deps(), key.uri, CLI)
    assert view.status == RotationStatus.ROLLED_BACK
    state, etag = estate.journal.load(view.rotation_id)
    assert state.error is not None
    estate.journal.save(replace(state, error=(code, state.error[1])), etag)
    return view.rotation_id


class TestRetryStopped:
    """A rolled-back rotation whose cause may pass is retried with back-off, adopting its version."""

    def test_retried_after_back_off_adopting_the_version(self) -> None:
        estate, old = expiring_estate(KEY, days=20)
        stopped_id = roll_back_with(estate, KEY, old[KEY], "ProviderKeyVaultUnavailable")
        created = get_rotation(estate.deps(), stopped_id).new_version

        early = sweep(estate.deps(), TIMER)
        estate.clock.advance(timedelta(minutes=16))
        later = sweep(estate.deps(), TIMER)

        assert [i.action for i in early.items] == ["waiting"]
        assert "next after" in early.items[0].detail
        assert [i.action for i in later.items] == ["retried"]
        retry = get_rotation(estate.deps(), later.items[0].rotation_id or "")
        assert retry.status == RotationStatus.AWAITING_RETIREMENT, retry.error
        assert (retry.attempt, retry.retry_of, retry.new_version) == (2, stopped_id, created)
        assert set(consumers_of(estate, KEY).values()) == {created}
        assert len(estate.keys.all_versions(KEY)) == 2

    def test_back_off_doubles_and_attempts_are_recorded(self) -> None:
        estate, old = expiring_estate(KEY, days=20)
        roll_back_with(estate, KEY, old[KEY], "Throttled")
        estate.clock.advance(timedelta(minutes=16))
        estate.storage.refuse_nth_key_write(1, unless=old[KEY])  # the second attempt fails too
        second = sweep(estate.deps(), TIMER).items[0]
        state, etag = estate.journal.load(second.rotation_id or "")
        assert state.status == RotationStatus.ROLLED_BACK
        estate.journal.save(replace(state, error=("Throttled", "again")), etag)

        estate.clock.advance(timedelta(minutes=16))
        waiting = sweep(estate.deps(), TIMER).items[0]
        estate.clock.advance(timedelta(minutes=16))
        third = sweep(estate.deps(), TIMER).items[0]

        assert waiting.action == "waiting"  # 30 minutes after attempt 2, not 15
        assert third.action == "retried"
        assert get_rotation(estate.deps(), third.rotation_id or "").attempt == 3
        assert len(estate.keys.all_versions(KEY)) == 2

    def test_a_refusal_is_not_retried(self) -> None:
        estate, old = expiring_estate(KEY, days=20)
        roll_back_with(estate, KEY, old[KEY], "VerificationFailed")
        estate.clock.advance(timedelta(hours=2))

        report = sweep(estate.deps(), TIMER)

        assert [i.action for i in report.items] == ["skipped"]

    def test_escalates_once_the_version_in_use_has_expired(self) -> None:
        estate, old = expiring_estate(KEY, days=1)
        stopped_id = roll_back_with(estate, KEY, old[KEY], "ProviderKeyVaultUnavailable")
        estate.clock.advance(timedelta(days=2))

        report = sweep(estate.deps(), TIMER)

        assert [i.action for i in report.items] == ["escalated"]
        assert get_rotation(estate.deps(), stopped_id).status == RotationStatus.NEEDS_HUMAN
        assert [r.outcome for r in estate.audit.all if r.rotation_id == stopped_id] == ["rolled_back", "needs_human"]

    def test_escalates_after_the_last_attempt(self) -> None:
        estate, old = expiring_estate(KEY, days=300)
        estate.settings = replace(estate.settings, retry_max_attempts=1)
        stopped_id = roll_back_with(estate, KEY, old[KEY], "Transient")

        report = sweep(estate.deps(), TIMER)

        assert [i.action for i in report.items] == ["escalated"]
        assert get_rotation(estate.deps(), stopped_id).status == RotationStatus.NEEDS_HUMAN


class TestProviderOutageOverSeveralKeys:
    """An RP-side Key Vault outage during rotations of three keys, then its end (fakes; the same on the
    ARM emulator's outage mode: tests/integration/workflow/test_provider_outage_heals.py): within a few
    ticks every consumer is on the newest version, and each key got exactly one new version."""

    def test_heals_within_a_few_ticks(self) -> None:
        keys = (KEY, OTHER_KEY, THIRD_KEY)
        estate, _ = expiring_estate(*keys)
        outage = ProviderKeyVaultUnavailable("ML could not reach Key Vault")
        estate.workspaces.faults.add("set_key_identifier", outage, 10_000)

        for _ in range(3):  # during the outage
            sweep(estate.deps(), TIMER)
            estate.clock.advance(timedelta(minutes=15))
        during = {k: consumers_of(estate, k) for k in keys}
        estate.workspaces.faults.pending.clear()  # the outage ends
        ticks = 0
        while ticks < 4:
            report = sweep(estate.deps(), TIMER)
            ticks += 1
            estate.clock.advance(timedelta(minutes=15))
            if all(set(consumers_of(estate, k).values()) == {newest(estate, k)} for k in keys):
                break

        assert all(during[k][f"ws{k.name}"] != newest(estate, k) for k in keys)
        assert ticks <= 3, report.items
        for key in keys:
            assert set(consumers_of(estate, key).values()) == {newest(estate, key)}
            assert len(estate.keys.all_versions(key)) == 2
            assert sum(1 for v in estate.keys.all_versions(key) if ROTATION_TAG in v.tags) == 1

    def test_heals_rotations_that_stopped_rolled_back(self) -> None:
        keys = (KEY, OTHER_KEY, THIRD_KEY)
        estate, old = expiring_estate(*keys)
        for key in keys:
            roll_back_with(estate, key, old[key], "ProviderKeyVaultUnavailable")

        ticks = 0
        while ticks < 4:
            estate.clock.advance(timedelta(minutes=15))
            sweep(estate.deps(), TIMER)
            ticks += 1
            if all(set(consumers_of(estate, k).values()) == {newest(estate, k)} for k in keys):
                break

        assert ticks <= 2
        for key in keys:
            assert set(consumers_of(estate, key).values()) == {newest(estate, key)}
            assert len(estate.keys.all_versions(key)) == 2


class TestRewrapWaitEscalates:
    """A rotation waiting on its re-wrap longer than the setting goes to a human and releases the key."""

    def test_escalates_and_releases(self) -> None:
        estate, _ = rewrap_estate(blobs=10, per_poll=0)
        estate.settings = replace(estate.settings, rewrap_wait_hours=2)
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        assert view.status == RotationStatus.WAITING

        estate.clock.advance(timedelta(hours=1))
        before = sweep(estate.deps(), TIMER)
        estate.clock.advance(timedelta(hours=2))
        after = sweep(estate.deps(), TIMER)

        assert [i.action for i in before.items if i.rotation_id == view.rotation_id] == ["waiting"]
        assert [i.action for i in after.items if i.rotation_id == view.rotation_id] == ["escalated"]
        assert get_rotation(estate.deps(), view.rotation_id).status == RotationStatus.NEEDS_HUMAN
        assert estate.audit.all[-1].outcome == "needs_human"
        again = start_rotation(estate.deps(), KEY.uri, CLI)  # the key is free again
        assert again.rotation_id != view.rotation_id


class TestSweepErrorBoundary:
    """One key whose reconciliation raises anything is counted and logged; the others are still handled."""

    def test_unexpected_error_in_one_key(self) -> None:
        estate, _ = expiring_estate(KEY, OTHER_KEY)
        broken = estate.journal.list

        def list_failing_for_key(key_uri: str | None = None, *args: object, **kwargs: object) -> object:
            if key_uri is not None and key_uri.lower() == KEY.uri.lower():
                raise KeyError("State0")  # what a row that fails to decode raises
            return broken(key_uri, *args, **kwargs)  # type: ignore[arg-type]

        estate.journal.list = list_failing_for_key  # type: ignore[method-assign,assignment]
        with capture_logs() as logs:
            report = sweep(estate.deps(), TIMER)

        actions = {i.key_uri: i.action for i in report.items}
        assert actions == {KEY.uri: "failed", OTHER_KEY.uri: "started"}
        assert any(e["event"] == "sweep_item_failed" and e["error_code"] == "KeyError" for e in logs)


class TestAnyStartAfterAStopReusesTheVersion:
    """Found by the chaos test: a manual start (or an event) after a rotation rolled back created a second
    new version and rotated away from the never-used one; it now adopts the version the stopped one created."""

    def test_manual_start_after_rollback_adopts_the_created_version(self) -> None:
        estate, old = expiring_estate(KEY, days=20)
        stopped_id = roll_back_with(estate, KEY, old[KEY], "VerificationFailed")
        created = get_rotation(estate.deps(), stopped_id).new_version

        again = start_rotation(estate.deps(), KEY.uri, CLI)

        assert again.status == RotationStatus.AWAITING_RETIREMENT, again.error
        assert (again.new_version, again.old_version) == (created, old[KEY])
        assert (again.attempt, again.retry_of) == (2, stopped_id)
        assert set(consumers_of(estate, KEY).values()) == {created}
        assert len(estate.keys.all_versions(KEY)) == 2

    def test_a_newer_version_since_the_stop_is_not_the_stopped_rotations_to_adopt(self) -> None:
        estate, old = expiring_estate(KEY, days=20)
        stopped_id = roll_back_with(estate, KEY, old[KEY], "VerificationFailed")
        created = get_rotation(estate.deps(), stopped_id).new_version
        estate.keys.auto_rotate(KEY)  # Key Vault made another version since

        again = start_rotation(estate.deps(), KEY.uri, CLI)

        assert again.retry_of is None
        assert again.new_version != created
