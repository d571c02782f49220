"""The sweep's memory outlives its worker process: a new process's tick is within the bound and goes on where
the last one stopped, and a stored record that is malformed, stale or foreign makes the sweep read that key
again, within the bound, never take a different decision."""

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


def _caught_up(vault_keys: int, managed: int) -> tuple[Estate, list[KeyRef]]:
    """:func:`_vault`, swept until the sweep knows every managed key's versions (a new process each tick)."""
    estate, chosen = _vault(vault_keys, managed)
    pages = math.ceil(vault_keys / 25)
    for _ in range(2 + 2 * math.ceil(managed / pages)):
        _cold_tick(estate)
    return estate, chosen


def _cold_tick(estate: Estate) -> tuple[SweepReport, int]:
    """A tick of a new worker process (nothing in its memory but the app's storage); its Key Vault calls."""
    estate.clock.advance(timedelta(minutes=15))
    estate.keys.calls.clear()
    report = sweep(estate.deps(cold=True), TIMER)
    return report, sum(estate.keys.calls.values())


class TestANewProcess:
    @pytest.mark.parametrize(("vault_keys", "managed"), [(5000, 2), (100, 10), (60, 3), (26, 3)])
    def test_every_tick_of_a_new_process_is_within_the_bound_and_goes_on_where_the_last_stopped(
        self, vault_keys: int, managed: int
    ) -> None:
        estate, _ = _vault(vault_keys, managed)
        pages = math.ceil(vault_keys / 25)
        bound = min(managed, pages)

        ticks = [_cold_tick(estate) for _ in range(2 + 2 * math.ceil(managed / pages))]

        assert all(calls <= bound for _, calls in ticks), (ticks, bound)
        assert all(report.items == () for report, _ in ticks)
        reads = sum(report.key_reads for report, _ in ticks)
        if pages < managed:  # listed every tick but the catching-up ones: each key read once, by whichever process
            assert reads == managed
        else:  # the first tick lists (the size unknown), then every tick reads each key
            assert reads == managed * (len(ticks) - 1)
        assert ticks[-1][0].deferred == ()

    def test_a_tick_that_learnt_nothing_new_writes_nothing(self) -> None:
        estate, _ = _caught_up(100, 10)
        writes = estate.sweep_store.writes

        report, calls = _cold_tick(estate)  # the listing vouches for every key: nothing changed

        assert (report.list_calls, report.key_reads, calls) == (4, 0, 4)
        assert estate.sweep_store.writes == writes

    def test_without_its_storage_a_tick_costs_calls_and_goes_on(self) -> None:
        estate, _ = _caught_up(100, 10)

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
        # As on a first tick: the vault listed (its size unknown), every key judged on its current version.
        assert (report.list_calls, report.key_reads, report.deferred) == (4, 0, ())
        events = [e["event"] for e in logs]
        assert {"sweep_memory_unavailable", "sweep_memory_not_saved"} <= set(events)


def _near_expiry_estate() -> tuple[Estate, list[KeyRef]]:
    """100 keys, 10 managed, swept until every key's versions are known; then one managed key gets a current
    version near expiry (a rotation starts) and another an older enabled version near expiry (seen once its
    versions are read again)."""
    estate, managed = _caught_up(100, 10)
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
        rows[SIZE_RECORD] = json.dumps({"keys": "many", "pages": 4, "complete": True, "catch_up": False})
        rows[key_id(managed[2])] = "{not json"
        rows[key_id(managed[3])] = encode_seen(VersionsSeen(now, None, None, None, now + timedelta(days=2)))  # future
        rows[key_id(managed[4])] = encode_seen(VersionsSeen(now, None, None, None, now - timedelta(hours=25)))  # old
        rows[key_id(managed[5])] = json.dumps({"current_created": 1, "others_expire": None, "seen_at": 2})
        rows[f"{VAULT}/keys/not-managed".lower()] = encode_seen(VersionsSeen(now, None, None, None, now))

        expected = [report for report, _ in (_cold_tick(intact) for _ in range(3))]
        with capture_logs() as logs:
            ticks = [_cold_tick(corrupted)[0]]
        ticks += [report for report, _ in (_cold_tick(corrupted) for _ in range(2))]

        # The same decisions (a key the corrupted memory made the sweep read later may be judged a tick later).
        assert {(i.key_uri, i.action) for r in ticks for i in r.items} == {
            (i.key_uri, i.action) for r in expected for i in r.items
        }
        assert [[i.key_uri for i in r.items if i.action == "started"] for r in ticks] == [[managed[0].uri], [], []]
        assert [[i.key_uri for i in r.items if i.action == "started"] for r in expected] == [[managed[0].uri], [], []]
        assert all(r.list_calls + r.key_reads <= 4 for r in [*ticks, *expected])  # min(10 managed, 4 pages)
        assert sum(r.key_reads for r in ticks) > sum(r.key_reads for r in expected)  # read again
        ignored = [e for e in logs if e["event"] == "sweep_memory_ignored"]
        assert len(ignored) == 6
        assert all(e["log_level"] == "warning" for e in ignored)
