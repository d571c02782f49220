"""The sweep's memory outlives its worker process: a new process's tick is within the bound, and a stored
record that is malformed, stale or foreign costs Key Vault calls, never a different decision."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from rotation.domain.model import KeyRef
from rotation.domain.sweep_cost import VersionsSeen, key_id
from rotation.domain.sweep_record import SIZE_RECORD, encode_seen
from rotation.errors import TransientError
from rotation.service import sweep
from rotation.service.views import SweepReport
from tests.fakes.estate import VAULT, Estate
from tests.triggers import TIMER


def _vault(vault_keys: int, managed: int) -> tuple[Estate, list[KeyRef]]:
    """A vault of ``vault_keys`` keys far from expiry, ``managed`` of them managed (spread over its pages)."""
    estate = Estate()
    far = estate.clock.current + timedelta(days=300)
    keys = [KeyRef(VAULT, f"key-{i:05d}") for i in range(vault_keys)]
    for key in keys:
        estate.keys.add_key(key, kty="EC", expires=far)
    step = vault_keys // managed
    chosen = keys[step - 1 :: step][:managed]
    estate.settings = replace(estate.settings, managed_keys=tuple(k.uri for k in chosen))
    return estate, chosen


def _cold_tick(estate: Estate) -> tuple[SweepReport, int]:
    """A tick of a new worker process (nothing in its memory but the app's storage); its Key Vault calls."""
    estate.clock.advance(timedelta(minutes=15))
    estate.keys.calls.clear()
    report = sweep(estate.deps(cold=True), TIMER)
    return report, sum(estate.keys.calls.values())


class TestANewProcess:
    @pytest.mark.parametrize(("vault_keys", "managed"), [(5000, 2), (100, 10), (60, 3), (26, 3)])
    def test_after_one_earlier_tick_every_tick_of_a_new_process_is_within_the_bound(
        self, vault_keys: int, managed: int
    ) -> None:
        estate, _ = _vault(vault_keys, managed)
        first, _ = _cold_tick(estate)

        ticks = [_cold_tick(estate) for _ in range(3)]

        bound = min(managed, math.ceil(vault_keys / 25))
        assert first.key_reads == managed
        assert [calls for _, calls in ticks] == [ticks[0][1]] * 3
        assert all(calls <= bound for _, calls in ticks), (ticks, bound)
        assert all(report.items == () for report, _ in [(first, 0), *ticks])

    def test_a_tick_that_learnt_nothing_new_writes_nothing(self) -> None:
        estate, _ = _vault(100, 10)
        _cold_tick(estate)
        writes = estate.sweep_store.writes

        report, calls = _cold_tick(estate)  # the listing vouches for every key: nothing changed

        assert (report.list_calls, report.key_reads, calls) == (4, 0, 4)
        assert estate.sweep_store.writes == writes

    def test_without_its_storage_a_tick_costs_calls_and_goes_on(self) -> None:
        estate, _ = _vault(100, 10)
        _cold_tick(estate)

        class Unavailable:
            def read(self, vault_url: str) -> dict[str, str]:
                raise TransientError("storage is down")

            def write(self, vault_url: str, records: object) -> None:
                raise TransientError("storage is down")

        deps = estate.deps(cold=True)
        deps.sweep_store = Unavailable()
        with capture_logs() as logs:
            report = sweep(deps, TIMER)

        assert report.items == ()
        assert report.key_reads == 10  # read again: nothing vouches for their older versions
        events = [e["event"] for e in logs]
        assert {"sweep_memory_unavailable", "sweep_memory_not_saved"} <= set(events)


def _near_expiry_estate() -> tuple[Estate, list[KeyRef]]:
    """100 keys, 10 managed, swept once; then one managed key gets a current version near expiry (a rotation
    starts) and another an older enabled version near expiry (its versions must be read again)."""
    estate, managed = _vault(100, 10)
    _cold_tick(estate)
    soon = estate.clock.current + timedelta(days=3)
    estate.keys.create_version(managed[0], estate.keys.get_key(managed[0]), {}, soon)
    old = estate.keys.get_key(managed[1])
    estate.keys.versions[managed[1]][0] = replace(old, expires=soon)  # its only version, now near expiry
    estate.keys.create_version(managed[1], old, {}, estate.clock.current + timedelta(days=300))
    return estate, managed


class TestCorruptedMemory:
    def test_malformed_stale_or_foreign_records_cost_calls_never_a_decision(self) -> None:
        intact, _ = _near_expiry_estate()
        corrupted, managed = _near_expiry_estate()
        rows = corrupted.sweep_store.rows[VAULT.lower()]
        now = corrupted.clock.current
        rows[SIZE_RECORD] = json.dumps({"keys": "many", "pages": 4, "complete": True})
        rows[key_id(managed[2])] = "{not json"
        rows[key_id(managed[3])] = encode_seen(VersionsSeen(now, None, now + timedelta(days=2)))  # in the future
        rows[key_id(managed[4])] = encode_seen(VersionsSeen(now, None, now - timedelta(hours=25)))  # too old
        rows[key_id(managed[5])] = json.dumps({"current_created": 1, "others_expire": None, "seen_at": 2})
        rows[f"{VAULT}/keys/not-managed".lower()] = encode_seen(VersionsSeen(now, None, now))

        expected, intact_calls = _cold_tick(intact)
        with capture_logs() as logs:
            report, calls = _cold_tick(corrupted)

        assert [(i.key_uri, i.action) for i in report.items] == [(i.key_uri, i.action) for i in expected.items]
        assert [i.key_uri for i in report.items if i.action == "started"] == [managed[0].uri]
        assert calls > intact_calls
        ignored = [e for e in logs if e["event"] == "sweep_memory_ignored"]
        assert len(ignored) == 6
        assert all(e["log_level"] == "warning" for e in ignored)
