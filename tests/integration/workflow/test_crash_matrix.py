"""Crash matrix: a real process SIGKILLed before and after every side effect, then resumed by another.

A clean run counts the side effects (journal begin, the new version, each re-point, the audit
record); then, for each one and each side of it, a fresh estate is rotated by a process that kills
itself there, and a fresh process resumes. After every case: exactly one new version, every consumer
on it, the old version still enabled (retirement is later), a consistent journal, one audit record.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rotation.consumers import RUN_STEPS
from rotation.domain.model import RotationStatus
from rotation.domain.steps import guard
from rotation.service import list_rotations
from tests.integration.workflow.estate import RealEstate, build_estate

REPO = Path(__file__).resolve().parents[3]
PATCHES = frozenset({"storage_accounts.set_key_version", "workspaces.begin_key_identifier"})
HARNESS = "tests.integration.workflow.crash_harness"


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", HARNESS, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def _estate(
    local_azure: dict[str, Any],
    directory: Path,
    *,
    versionless: int = 1,
    pinned: int = 1,
    workspaces: int = 1,
    **env: str,
) -> tuple[RealEstate, Path]:
    estate = build_estate(local_azure, pinned=pinned, versionless=versionless, workspaces=workspaces)
    env_file = directory / f"{estate.key.name}.json"
    env_file.write_text(json.dumps(estate.env(**env)))
    return estate, env_file


def _check(estate: RealEstate, view: dict[str, Any]) -> None:
    versions = estate.versions()
    assert len(versions) == 2, f"expected exactly one new version, found {len(versions)}"
    old, new = versions
    assert view["status"] == RotationStatus.AWAITING_RETIREMENT.value, view.get("error")
    assert view["new_version"] == new.version
    assert view["old_version"] == old.version
    assert old.enabled, "the old version must stay enabled until retirement"
    for account in estate.pinned:
        assert estate.account_version(account) == (new.version, new.version)
    for account in estate.versionless:
        assert estate.account_version(account)[0] == ""
    for workspace in estate.workspaces:
        assert estate.workspace_key(workspace).endswith("/" + new.version)
    deps = estate.deps()
    rotations = list_rotations(deps, estate.key.uri)
    assert len(rotations) == 1, "one rotation recorded"
    state, _ = deps.journal.load(rotations[0].rotation_id)
    guard(state)
    assert state.intent is None
    assert state.in_flight == ()
    assert all(state.step_done(s) for s in RUN_STEPS)
    outcomes = [r.outcome for r in deps.audit.records(estate.key.uri) if r.rotation_id == state.rotation_id]
    assert outcomes == ["succeeded"]


def rotation_matrix(local_azure: dict[str, Any], tmp_path: Path, *, journal: bool = False) -> list[tuple[Any, ...]]:
    """Run the matrix; with ``journal`` every journal write is a kill point too (about 6x the cases)."""
    extra = ["--journal"] if journal else []
    estate, env_file = _estate(local_azure, tmp_path)
    count_file = tmp_path / "count.json"
    clean = _run(["start", "--env", str(env_file), "--count-file", str(count_file), *extra])
    assert clean.returncode == 0, clean.stderr[-2000:]
    _check(estate, json.loads(clean.stdout.strip().splitlines()[-1]))
    side_effects: list[str] = json.loads(count_file.read_text())
    cases = [(i, when) for i in range(1, len(side_effects) + 1) for when in ("before", "after")]

    def run_case(case: tuple[int, str]) -> tuple[int, str, str, int, str]:
        number, when = case
        estate, env_file = _estate(local_azure, tmp_path)
        killed = _run(["start", "--env", str(env_file), "--kill-at", str(number), "--when", when, *extra])
        resumed = _run(["resume", "--env", str(env_file)])
        name = side_effects[number - 1]
        if resumed.returncode != 0:
            return number, when, name, killed.returncode, "resume failed: " + resumed.stderr[-800:]
        try:
            _check(estate, json.loads(resumed.stdout.strip().splitlines()[-1]))
        except AssertionError as exc:
            return number, when, name, killed.returncode, f"FAILED: {exc}"
        return number, when, name, killed.returncode, "ok"

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run_case, cases))
    print(f"\ncrash matrix: {len(side_effects)} side effects x before/after = {len(cases)} cases")
    for number, when, name, code, outcome in results:
        print(f"  kill {when:6} #{number} {name:40} exit={code:4} -> {outcome}")
    return results


class TestCrashMatrix:
    """Killed before or after any side effect, a rotation resumes to the same single outcome."""

    def test_retirement_matrix(self, local_azure: dict[str, Any], tmp_path: Path) -> None:
        """The retire step too: killed around disabling the old version or its audit record, the next sweep
        finishes it: the old version disabled (never deleted), one ``retired`` record."""
        grace = {"ROTATION_RETIRE_GRACE_HOURS": "0"}
        _, env_file = _estate(local_azure, tmp_path, versionless=0, **grace)
        assert _run(["start", "--env", str(env_file)]).returncode == 0
        count_file = tmp_path / "retire-count.json"
        clean = _run(["sweep", "--env", str(env_file), "--count-file", str(count_file)])
        assert clean.returncode == 0, clean.stderr[-2000:]
        side_effects: list[str] = json.loads(count_file.read_text())
        assert side_effects == ["keys.update_version", "audit.append"]

        def run_case(case: tuple[int, str]) -> tuple[str, str, int, str]:
            number, when = case
            estate, env_file = _estate(local_azure, tmp_path, versionless=0, **grace)
            assert _run(["start", "--env", str(env_file)]).returncode == 0
            killed = _run(["sweep", "--env", str(env_file), "--kill-at", str(number), "--when", when])
            resumed = _run(["sweep", "--env", str(env_file)])
            view = json.loads(resumed.stdout.strip().splitlines()[-1])
            versions = estate.versions()
            assert killed.returncode == -9
            assert view["status"] == RotationStatus.RETIRED.value, view.get("error")
            assert len(versions) == 2
            assert versions[0].enabled is False
            assert versions[1].enabled is True
            deps = estate.deps()
            records = [r.outcome for r in deps.audit.records(estate.key.uri) if r.rotation_id == view["rotation_id"]]
            assert records == ["succeeded", "retired"]
            state, _ = deps.journal.load(view["rotation_id"])
            assert state.intent is None
            return when, side_effects[number - 1], killed.returncode, view["status"]

        cases = [(n, w) for n in range(1, len(side_effects) + 1) for w in ("before", "after")]
        with ThreadPoolExecutor(max_workers=3) as pool:
            outcomes = list(pool.map(run_case, cases))

        print(f"\nretirement crash matrix: {outcomes}")

    def test_matrix(self, local_azure: dict[str, Any], tmp_path: Path) -> None:
        results = rotation_matrix(local_azure, tmp_path)

        side_effects = [name for _, _, name, _, _ in results]
        assert all(code == -9 for _, _, _, code, _ in results), "every crashing run must die by SIGKILL"
        failures = [r for r in results if r[4] != "ok"]
        assert not failures, failures
        assert {"journal.begin", "keys.create_version", "storage_accounts.set_key_version"} <= set(side_effects)
        assert {"workspaces.begin_key_identifier", "workspaces.poll_key_update", "audit.append"} <= set(side_effects)


class TestCrashDuringConcurrentRepoints:
    """Three storage accounts and two workspaces re-pointed three at a time: a process SIGKILLed before
    or after the first PATCH of each step (the others in flight with it) resumes to exactly one PATCH
    per consumer, counted by the ARM emulator (cases run one at a time so its counters are theirs)."""

    def test_one_patch_per_consumer(self, local_azure: dict[str, Any], tmp_path: Path) -> None:
        def concurrent_estate() -> tuple[RealEstate, Path]:
            return _estate(
                local_azure, tmp_path, pinned=3, workspaces=2, versionless=0, ROTATION_REPOINT_CONCURRENCY="3"
            )

        estate, env_file = concurrent_estate()
        count_file = tmp_path / "concurrent-count.json"
        clean = _run(["start", "--env", str(env_file), "--count-file", str(count_file)])
        assert clean.returncode == 0, clean.stderr[-2000:]
        _check(estate, json.loads(clean.stdout.strip().splitlines()[-1]))
        side_effects: list[str] = json.loads(count_file.read_text())
        first_patches = [side_effects.index(name) + 1 for name in sorted(PATCHES)]
        results = []
        for number in first_patches:
            for when in ("before", "after"):
                estate, env_file = concurrent_estate()
                admin = estate.arm_admin
                admin.reset_counters()
                killed = _run(["start", "--env", str(env_file), "--kill-at", str(number), "--when", when])
                resumed = _run(["resume", "--env", str(env_file)])
                assert killed.returncode == -9, killed.stderr[-1000:]
                assert resumed.returncode == 0, resumed.stderr[-1000:]
                _check(estate, json.loads(resumed.stdout.strip().splitlines()[-1]))
                counters = admin.counters()
                results.append(
                    (
                        when,
                        side_effects[number - 1],
                        counters.get("StorageAccounts_Update"),
                        counters.get("Workspaces_Update"),
                    )
                )
        assert results == [(w, n, 3, 2) for n in sorted(PATCHES) for w in ("before", "after")], results


class TestCrashBetweenAcceptedAndDone:
    """A process SIGKILLed after a workspace update was accepted and its polling URL journalled, before the
    operation ended (before its first or its second poll), while the workspace still shows its old key (the
    emulator's ``ml_update_applies: completed``): a fresh process polls the journalled operation on and the
    ARM emulator counts exactly one PATCH (re-reading the workspace alone would send a second)."""

    @pytest.mark.parametrize("poll", [1, 2])
    def test_one_patch(self, local_azure: dict[str, Any], tmp_path: Path, poll: int) -> None:
        def lro_estate() -> tuple[RealEstate, Path]:
            return _estate(local_azure, tmp_path, pinned=0, workspaces=1, versionless=0)

        estate, env_file = lro_estate()
        admin = estate.arm_admin
        with admin.lro_settings(polls_until_done=3, ml_update="async-succeeded", ml_update_applies="completed"):
            count_file = tmp_path / f"lro-count-{poll}.json"
            clean = _run(["start", "--env", str(env_file), "--count-file", str(count_file)])
            assert clean.returncode == 0, clean.stderr[-2000:]
            side_effects: list[str] = json.loads(count_file.read_text())
            polls = [i + 1 for i, name in enumerate(side_effects) if name == "workspaces.poll_key_update"]
            estate, env_file = lro_estate()
            admin.reset_counters()

            killed = _run(["start", "--env", str(env_file), "--kill-at", str(polls[poll - 1]), "--when", "before"])
            at_the_crash = estate.deps().journal.list(estate.key.uri)[0]
            workspace_at_the_crash = estate.workspace_key(estate.workspaces[0])
            resumed = _run(["resume", "--env", str(env_file)])
            counters = admin.counters()

        assert len(polls) == 3
        assert killed.returncode == -9
        assert [i.operation is not None for i in at_the_crash.in_flight] == [True]
        assert workspace_at_the_crash.endswith("/" + (at_the_crash.old_version or "?"))
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        _check(estate, json.loads(resumed.stdout.strip().splitlines()[-1]))
        assert counters.get("Workspaces_Update") == 1
        assert counters.get("Workspaces_OperationStatus") == 3


class TestCrashBetweenAnUpdatesAnswerAndItsJournalWrite:
    """A process SIGKILLed right after ARM answered a workspace update's PATCH, before the journal write of its
    polling URL (the intent is journalled, the URL is lost), with each workspace showing its old key until its
    update ends (``ml_update_applies: completed``): a fresh process sends nothing while the workspace reads
    ``Updating`` and judges from it once the update has ended (an operation runs to its end unpolled:
    ``unpolled_grace_s`` 0). The ARM emulator counts exactly one PATCH per workspace."""

    @pytest.mark.parametrize("ml_update", ["location", "async-succeeded"])
    def test_one_patch_per_workspace(self, local_azure: dict[str, Any], tmp_path: Path, ml_update: str) -> None:
        def lro_estate() -> tuple[RealEstate, Path]:
            return _estate(local_azure, tmp_path, pinned=0, workspaces=2, versionless=0)

        estate, env_file = lro_estate()
        admin = estate.arm_admin
        slow = {"retry_after_s": 1, "polls_until_done": 8, "unpolled_grace_s": 0}  # each update ends 8 s after it began
        with admin.lro_settings(ml_update=ml_update, ml_update_applies="completed", **slow):
            count_file = tmp_path / f"answer-count-{ml_update}.json"
            clean = _run(["start", "--env", str(env_file), "--count-file", str(count_file)])
            assert clean.returncode == 0, clean.stderr[-2000:]
            side_effects: list[str] = json.loads(count_file.read_text())
            first_patch = side_effects.index("workspaces.begin_key_identifier") + 1
            estate, env_file = lro_estate()
            admin.reset_counters()

            killed = _run(["start", "--env", str(env_file), "--kill-at", str(first_patch), "--when", "after"])
            at_the_crash = estate.deps().journal.list(estate.key.uri)[0]
            workspaces_at_the_crash = [estate.deps().workspaces.get_workspace(w) for w in estate.workspaces]
            resumed = _run(["resume", "--env", str(env_file)])
            counters = admin.counters()

        assert killed.returncode == -9
        unanswered = [i for i in at_the_crash.in_flight if i.action == "set_workspace_key" and i.operation is None]
        assert unanswered, "the crash came between ARM's answer and the journal write of its URL"
        patched = {i.target.lower() for i in unanswered}
        assert any(
            w.provisioning_state == "Updating" for w in workspaces_at_the_crash if w.workspace_id.lower() in patched
        )
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        _check(estate, json.loads(resumed.stdout.strip().splitlines()[-1]))
        assert counters.get("Workspaces_Update") == 2


class TestRetireResumesWhenGetOfADisabledVersionIsRefused:
    """Killed right after disabling the old version, the next sweep retires cleanly whether Key Vault
    answers a GET of the disabled version with its bundle or with 403 (unknown for keys; the emulator's
    ``disabled_version_get`` mode): the old version disabled, the rotation retired, one ``retired`` record."""

    @pytest.mark.parametrize("mode", ["allowed", "forbidden"])
    def test_resumed_retire_is_clean(self, local_azure: dict[str, Any], tmp_path: Path, mode: str) -> None:
        estate, env_file = _estate(local_azure, tmp_path, versionless=0, ROTATION_RETIRE_GRACE_HOURS="0")
        estate.kv_admin.set_modes(estate.vault["name"], disabled_version_get=mode)
        assert _run(["start", "--env", str(env_file)]).returncode == 0

        killed = _run(["sweep", "--env", str(env_file), "--kill-at", "1", "--when", "after"])
        disabled_at_the_crash = [v.enabled for v in estate.versions()]
        resumed = _run(["sweep", "--env", str(env_file)])

        assert killed.returncode == -9
        assert disabled_at_the_crash == [False, True]
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        view = json.loads(resumed.stdout.strip().splitlines()[-1])
        assert view["status"] == RotationStatus.RETIRED.value, view.get("error")
        assert [v.enabled for v in estate.versions()] == [False, True]
        deps = estate.deps()
        records = [r.outcome for r in deps.audit.records(estate.key.uri) if r.rotation_id == view["rotation_id"]]
        assert records == ["succeeded", "retired"]
        state, _ = deps.journal.load(view["rotation_id"])
        assert state.intent is None


pytestmark = pytest.mark.timeout(600)
