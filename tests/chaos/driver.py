"""A seeded chaos run against local Azure: faults, racing triggers and SIGKILLs, then the reconciler heals.

``run(endpoints, seed, directory)`` builds several managed keys, each with consumers (a pinned and a
versionless storage account, an AML workspace) and client-side-encrypted blobs, and makes every key
near expiry. From ``random.Random(seed)`` it then draws a schedule:

- Key Vault faults on the service's calls (503, 429 with Retry-After, dropped connections, latency)
  and on ``wrapKey``, which is also the resource providers' own key check (an RP-side outage: a
  re-point is refused while it lasts);
- ARM faults (503, 429, dropped connections, 500 on LRO polls) and slow LROs (more polls);
- ARM's token bucket made small (a few writes, refilled 1-2 per second, starting empty) for the whole
  run, so writes are answered 429 with ``Retry-After`` by the bucket itself, not by a fault rule;
- a transient storage fault on the blobs' traffic (the blob proxy answers the next matching List Blobs
  or Set Blob Metadata with 503 ``ServerBusy`` or 500 ``OperationTimedOut``/``InternalError``);
- racing triggers per key: a Key Vault event, a timer sweep, a manual start, in threads, plus an
  executor *process* SIGKILLed around a random side effect of its rotation.

A monitor thread reads the consumers and the key versions all along and records any consumer seen
on a disabled or expired version, and each consumer's versions in the order seen. Then every fault
ends (the storage fault and the token bucket last until the reconciler is done: the storage fault ends
by its count, the bucket is Azure's own limit) and the reconciler ticks until quiet (bounded).
``check`` states the invariants; a violation raises ``ChaosFailure`` naming the seed and the command
that re-runs it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from emulators.blobproxy.admin_client import BlobProxyAdmin
from emulators.keyvault.kek import VaultKek
from rotation.bootstrap import Bootstrap, build_dependencies
from rotation.domain.model import KeyVaultEvent, RotationStatus, Trigger, TriggerKind
from rotation.errors import RotationInProgress
from rotation.service import handle_key_event, list_rotations, start_rotation, sweep
from rotation.service.deps import Dependencies
from rotation.settings import load_settings
from tests.integration.endpoints import LocalEndpoints
from tests.integration.workflow.estate import RealEstate, build_estate

REPO = Path(__file__).resolve().parents[2]
HARNESS = "tests.integration.workflow.crash_harness"
KEYS = 3
BLOBS_PER_KEY = 2
MAX_TICKS = 8  # reconciler ticks after the faults end; healing must finish within them
QUIET_STATUSES = (RotationStatus.AWAITING_RETIREMENT,)
DATA_OWNER = "data-owner"  # the principal that writes the encrypted blobs
STORAGE_FAULT_CODES = ("ServerBusy", "OperationTimedOut", "InternalError")
# Each storage fault costs the SDK's own back-off (azure-storage-blob's ExponentialRetry: about 15-21 s before
# its first retry), so one per run keeps the fixed seeds quick.
STORAGE_FAULTS_PER_RUN = 1


class ChaosFailure(AssertionError):
    """An invariant did not hold for a seed."""


def rerun_hint(seed: int) -> str:
    return f"re-run with: make chaos CHAOS_SEEDS={seed}"


@dataclass
class Blob:
    container: str
    name: str
    data: bytes


@dataclass
class KeyUnderTest:
    estate: RealEstate
    old_version: str
    container: ContainerClient
    blobs: list[Blob] = field(default_factory=list)


@dataclass
class ChaosRun(LocalEndpoints):
    seed: int
    directory: Path
    keys: list[KeyUnderTest] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    schedule: list[str] = field(default_factory=list)  # what was drawn, for the failure message
    observed_violations: list[str] = field(default_factory=list)
    trigger_errors: list[str] = field(default_factory=list)
    observations: int = 0
    ticks: int = 0
    heal_log: list[str] = field(default_factory=list)  # what each reconciler tick did
    attempts: int = 0  # rotations recorded over all keys (more than the keys: some stopped and were re-attempted)
    outage: dict[str, Any] | None = None  # the RP-side Key Vault outage drawn, if any
    seen: dict[str, list[str]] = field(default_factory=dict)  # consumer -> versions observed, in order, no repeats
    arm_writes: tuple[int, int] = (0, 0)  # the chaos subscriptions' write buckets: (granted, throttled)
    storage_faults: list[dict[str, Any]] = field(default_factory=list)  # the proxy's rules after the run
    repoints: dict[str, int] = field(default_factory=dict)  # consumer name -> effective re-points seen

    def deps(self, owner: str | None = None) -> Dependencies:
        deps = build_dependencies(Bootstrap(load_settings(self.env)), inline=True)
        deps.sleep = lambda seconds: time.sleep(min(seconds, 0.2))
        deps.lease_seconds = 1.0  # a SIGKILLed executor's claim lapses quickly
        if owner:
            deps.owner = owner
        return deps


# -- set-up -------------------------------------------------------------------------------------


def build(endpoints: dict[str, Any], seed: int, directory: Path) -> ChaosRun:
    run = ChaosRun(endpoints, seed, directory)
    # The data blobs go through the blob proxy (its transient faults); queues and tables go to Azurite.
    proxied = endpoints["storage"]["proxy_connection_string"]
    blobs = BlobServiceClient.from_connection_string(proxied)
    for _ in range(KEYS):
        estate = build_estate(endpoints, pinned=1, versionless=1, workspaces=1)
        client = estate.keys()
        current = client.get_key(estate.key.name)
        version = str(current.properties.version)
        # near expiry: every trigger (event, timer, manual) has a reason to rotate
        client.update_key_properties(estate.key.name, version, expires_on=datetime.now(UTC) + timedelta(days=3))
        container = blobs.get_container_client(f"chaos{uuid.uuid4().hex[:12]}")
        container.create_container()
        key = KeyUnderTest(estate, version, container)
        writer = ContainerClient.from_container_url(container.url, credential=container.credential)
        writer.require_encryption = True
        writer.key_encryption_key = VaultKek(str(current.id), estate.ca, DATA_OWNER)
        writer.encryption_version = "2.0"
        for i in range(BLOBS_PER_KEY):
            blob = Blob(container.container_name, f"blob-{i}", random.Random(seed * 31 + i).randbytes(1500 + i))
            writer.upload_blob(blob.name, blob.data)
            key.blobs.append(blob)
        run.keys.append(key)
    first = run.keys[0].estate
    run.env = first.env(
        AzureWebJobsStorage=proxied,  # the data locations' account: the service uses its shared key
        ROTATION_MANAGED_KEYS=",".join(k.estate.key.uri for k in run.keys),
        ROTATION_SUBSCRIPTIONS=",".join(k.estate.subscription_id for k in run.keys),
        ROTATION_DATA_LOCATIONS=",".join(
            f"{k.container.url.rsplit('/', 1)[0]}/{k.container.container_name}" for k in run.keys
        ),
        ROTATION_REWRAP_QUEUE=f"chaos-{uuid.uuid4().hex[:10]}",
        ROTATION_RETRY_BACKOFF_MINUTES="0",  # the reconciler retries on its next tick
        ROTATION_RETIRE_GRACE_HOURS="24",  # nothing retires during the run: old versions must stay enabled
    )
    return run


# -- the schedule -------------------------------------------------------------------------------


def draw_faults(run: ChaosRun, rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Key Vault and ARM fault rules, each bounded by a count (the faults end when the counts run out or
    when the run clears them)."""
    kv: list[dict[str, Any]] = []
    for key in run.keys:
        vault = key.estate.vault["name"]
        menu: list[dict[str, Any]] = [
            {"kind": "status", "status": 503, "operations": ["getKey"]},
            {"kind": "status", "status": 429, "retry_after": 1, "operations": ["createKey"]},
            {"kind": "drop", "operations": ["getKeyVersions"]},
            {"kind": "latency", "latency_ms": 400, "operations": ["unwrapKey"]},
            {"kind": "status", "status": 503, "operations": ["getKeys"]},
        ]
        for rule in rng.sample(menu, rng.randint(1, 4)):
            kv.append({**rule, "rate": rng.choice((0.5, 1.0)), "count": rng.randint(1, 4), "vault": vault})
    arm_menu: list[dict[str, Any]] = [
        {"kind": "status", "status": 503, "operations": ["StorageAccounts_Update"]},
        {"kind": "status", "status": 429, "retry_after": 1, "operations": ["StorageAccounts_GetProperties"]},
        {"kind": "drop", "operations": ["Workspaces_Update"]},
        {"kind": "latency", "latency_ms": 400, "operations": ["Workspaces_Get"]},
        {"kind": "status", "status": 500, "operations": ["Workspaces_OperationStatus"]},
        {"kind": "status", "status": 503, "operations": ["Workspaces_Update"]},
    ]
    arm = [
        {**rule, "rate": rng.choice((0.5, 1.0)), "count": rng.randint(1, 3)}
        for rule in rng.sample(arm_menu, rng.randint(1, 4))
    ]
    return kv, arm


def draw_arm_modes(rng: random.Random) -> tuple[int, str, dict[str, Any] | None]:
    """Slow LROs (polls until done), how ML answers a workspace update (each success shape the
    emulator has), and an RP-side Key Vault outage (the providers' own key checks fail) or none."""
    polls = rng.randint(1, 4)
    ml_update = rng.choice(("location", "location-204", "location-empty-200", "sync", "async-succeeded"))
    outage: dict[str, Any] | None = None
    if rng.random() < 0.7:
        outage = {
            "count": rng.randint(2, 10),  # enough to outlast a step's own retries: the reconciler must heal
            "providers": tuple(rng.sample(("storage", "ml"), rng.randint(1, 2))),
            "status": rng.choice((400, 503)),
            "ml_delivery": rng.choice(("response", "operation")),
        }
    return polls, ml_update, outage


def draw_throttle(rng: random.Random) -> tuple[int, float]:
    """ARM's write bucket for the run: a few tokens, refilled 1 or 2 per second (each bucket starts empty)."""
    return rng.randint(2, 4), rng.choice((1.0, 2.0))


def draw_storage_faults(run: ChaosRun, rng: random.Random) -> list[dict[str, Any]]:
    """Transient storage faults on the blobs' traffic: the proxy answers the next matching request with
    the error; the SDK's retry policy meets it, and the rule ends by its count."""
    return [
        {
            "code": rng.choice(STORAGE_FAULT_CODES),
            "count": 1,
            "operations": [rng.choice(("ListBlobs", "SetBlobMetadata"))],
            "containers": [rng.choice(run.keys).container.container_name],
        }
        for _ in range(STORAGE_FAULTS_PER_RUN)
    ]


def _trigger_threads(run: ChaosRun, rng: random.Random) -> list[threading.Thread]:
    threads: list[threading.Thread] = []
    for index, key in enumerate(run.keys):
        kinds = rng.sample(("event", "timer", "manual"), rng.randint(1, 3))
        for kind in kinds:
            delay = rng.uniform(0, 1.5)
            run.schedule.append(f"key {index}: {kind} trigger at +{delay:.2f}s")
            threads.append(threading.Thread(target=_fire, args=(run, key, kind, delay), daemon=True))
    return threads


def _fire(run: ChaosRun, key: KeyUnderTest, kind: str, delay: float) -> None:
    time.sleep(delay)
    try:
        deps = run.deps(owner=f"{kind}-{uuid.uuid4().hex[:6]}")
        if kind == "event":
            event = KeyVaultEvent(
                str(uuid.uuid4()), "KeyNearExpiry", key.estate.key, key.old_version, "kv", None,
                datetime.now(UTC) + timedelta(days=3), None,
            )  # fmt: skip
            handle_key_event(deps, event)
        elif kind == "timer":
            sweep(deps, Trigger(TriggerKind.TIMER))
        else:
            start_rotation(deps, key.estate.key.uri, Trigger(TriggerKind.CLI, caller="chaos"), reason="chaos")
    except RotationInProgress:
        pass
    except Exception as exc:  # noqa: BLE001 - a trigger may fail under faults; the reconciler must heal it
        run.trigger_errors.append(f"{kind} on {key.estate.key.name}: {type(exc).__name__}: {str(exc)[:200]}")


def _killers(run: ChaosRun, rng: random.Random) -> list[tuple[float, list[str]]]:
    """Executor processes that SIGKILL themselves around a random side effect of their rotation."""
    plans: list[tuple[float, list[str]]] = []
    for index, key in enumerate(run.keys):
        if rng.random() < 0.6:
            kill_at, when = rng.randint(1, 6), rng.choice(("before", "after"))
            env_file = run.directory / f"env-{index}.json"
            env_file.write_text(json.dumps({**run.env, "ROTATION_MANAGED_KEYS": key.estate.key.uri}))
            delay = rng.uniform(0, 1.0)
            run.schedule.append(f"key {index}: executor SIGKILLed {when} side effect {kill_at} at +{delay:.2f}s")
            plans.append((delay, ["start", "--env", str(env_file), "--kill-at", str(kill_at), "--when", when]))
    return plans


# -- observing during the run -------------------------------------------------------------------


def _observe_once(run: ChaosRun) -> None:
    """Read every consumer, then the key's versions: a consumer on a disabled or expired version is a violation."""
    now = datetime.now(UTC)
    for key in run.keys:
        estate = key.estate
        used: dict[str, str] = {}
        for account in estate.pinned:
            used[account] = estate.account_version(account)[0]
        for workspace in estate.workspaces:
            used[workspace] = estate.workspace_key(workspace).rsplit("/", 1)[-1]
        versions = {v.version: v for v in estate.versions()}
        for consumer, version in used.items():
            seen = run.seen.setdefault(consumer, [])
            if not seen or seen[-1] != version:
                seen.append(version)
            props = versions.get(version)
            if props is None:
                continue  # created after the read of versions; judged on the next pass
            if not props.enabled:
                run.observed_violations.append(f"{consumer} on disabled version {version}")
            if props.expires_on is not None and props.expires_on <= now:
                run.observed_violations.append(f"{consumer} on expired version {version}")
        run.observations += 1


def _monitor(run: ChaosRun, stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):  # the monitor's reads meet the same faults; it tries again
            _observe_once(run)
        stop.wait(0.3)


# -- the run ------------------------------------------------------------------------------------


def run(endpoints: dict[str, Any], seed: int, directory: Path) -> ChaosRun:
    """Build, inject, race, kill; end the faults; tick the reconciler until quiet; check. Raises ChaosFailure."""
    rng = random.Random(seed)
    chaos = build(endpoints, seed, directory)
    kv_rules, arm_rules = draw_faults(chaos, rng)
    polls, ml_update, outage = draw_arm_modes(rng)
    chaos.schedule += [f"key vault fault {r}" for r in kv_rules] + [f"arm fault {r}" for r in arm_rules]
    chaos.schedule.append(f"ARM LROs take {polls} polls; ML workspace updates answer {ml_update!r}")
    chaos.schedule.append(f"RP-side Key Vault outage: {outage}" if outage else "no RP-side Key Vault outage")
    chaos.outage = outage
    threads = _trigger_threads(chaos, rng)
    killers = _killers(chaos, rng)
    bucket, refill = draw_throttle(rng)
    storage_rules = draw_storage_faults(chaos, rng)
    chaos.schedule.append(f"ARM write bucket: {bucket} tokens, refilled {refill:g}/s, each starting empty")
    chaos.schedule += [f"storage fault {r}" for r in storage_rules]
    blob_admin = BlobProxyAdmin(endpoints["storage"]["blob_proxy_admin"])
    # The emulators are the session's: the throttle settings and the fault rules are restored whatever happens.
    try:
        with chaos.arm_admin.throttle_settings(writes=(bucket, refill), initial={"writes": 0}):
            blob_admin.set_faults(*storage_rules)
            _race_and_heal(chaos, threads, killers, (kv_rules, arm_rules, polls, ml_update, outage))
            chaos.storage_faults = blob_admin.faults()
            chaos.arm_writes = _writes(chaos)
    finally:
        blob_admin.clear_faults()
    check(chaos)
    return chaos


def _writes(chaos: ChaosRun) -> tuple[int, int]:
    """What the chaos subscriptions' write buckets answered: (granted, throttled)."""
    subscriptions = {k.estate.subscription_id.lower() for k in chaos.keys}
    buckets = [s for s in chaos.arm_admin.throttle_stats() if s["kind"] == "writes"]
    mine = [s for s in buckets if str(s["subscription_id"]).lower() in subscriptions]
    return sum(int(s["granted"]) for s in mine), sum(int(s["throttled"]) for s in mine)


def _race_and_heal(
    chaos: ChaosRun,
    threads: list[threading.Thread],
    killers: list[tuple[float, list[str]]],
    drawn: tuple[list[dict[str, Any]], list[dict[str, Any]], int, str, dict[str, Any] | None],
) -> None:
    """Faults on, triggers and executors race, the faults end, the reconciler heals (monitored throughout)."""
    kv_rules, arm_rules, polls, ml_update, outage = drawn
    stop = threading.Event()
    monitor = threading.Thread(target=_monitor, args=(chaos, stop), daemon=True)
    kv, arm = chaos.kv_admin, chaos.arm_admin
    try:
        kv.set_faults(*kv_rules)
        arm.set_faults(*arm_rules)
        arm.set_lro(polls_until_done=polls, ml_update=ml_update)
        if outage:
            arm.start_keyvault_outage(**outage)
        monitor.start()
        started = time.monotonic()
        processes: list[subprocess.Popen[str]] = []
        for thread in threads:
            thread.start()
        for delay, args in sorted(killers, key=lambda k: k[0]):
            time.sleep(max(0.0, delay - (time.monotonic() - started)))
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", HARNESS, *args],
                    cwd=REPO,
                    text=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for thread in threads:
            thread.join(timeout=120)
        for process in processes:
            process.wait(timeout=120)
    finally:
        kv.clear_faults()  # all faults end
        arm.clear_faults()
        arm.end_keyvault_outage()
        arm.set_lro(polls_until_done=1, ml_update="location")
    try:
        heal(chaos)
    finally:
        stop.set()
        monitor.join(timeout=10)
    _observe_once(chaos)  # the quiet state is observed too (after the monitor: one observer, versions in order)


def heal(chaos: ChaosRun) -> None:
    """Reconciler ticks until every key's latest rotation is cut over and a tick changes nothing."""
    deps = chaos.deps(owner="reconciler")
    for tick in range(1, MAX_TICKS + 1):
        chaos.ticks = tick
        report = sweep(deps, Trigger(TriggerKind.TIMER))
        chaos.heal_log += [
            f"tick {tick}: {i.action} {i.key_uri.rsplit('/', 1)[-1]}: {i.detail[:160]}" for i in report.items
        ]
        acted = [i for i in report.items if i.action not in ("waiting", "skipped")]
        settled = all(_latest_status(deps, key) in QUIET_STATUSES for key in chaos.keys)
        if settled and not acted:
            return
        time.sleep(1.1)  # a SIGKILLed executor's claim (1 s lease) lapses


def _latest_status(deps: Dependencies, key: KeyUnderTest) -> RotationStatus | None:
    rotations = list_rotations(deps, key.estate.key.uri, limit=1)
    return rotations[0].status if rotations else None


# -- the invariants -----------------------------------------------------------------------------

INVARIANTS = (
    "exactly one new version per key",
    "every consumer on the newest usable version (pinned: keyversion; versionless: none set; workspaces)",
    "no consumer ever on a disabled or expired version (observed during the run and at the end)",
    "exactly one effective re-point per consumer (old to new); a move back only by a recorded roll-back or, "
    "in a seed with an RP-side outage, the provider's failed update",
    "old versions enabled until retirement (no retirement is due in the run)",
    "one audit record per rotation outcome, one succeeded per key, audit verify clean",
    "the succeeded record counts the other keys' blobs of the shared data locations as other_keys, not failures",
    "no message lost: the re-wrap queue and its -poison queue are empty",
    "every blob decryptable with the SDK's client-side decryption, by the new version only",
    "the faults were met: ARM's write bucket answered 429s, every storage fault rule answered its count",
)


def check(chaos: ChaosRun) -> None:
    problems: list[str] = []
    deps = chaos.deps()
    for index, key in enumerate(chaos.keys):
        chaos.attempts += len(list_rotations(deps, key.estate.key.uri))
        problems += [f"key {index} ({key.estate.key.name}): {p}" for p in _check_key(chaos, deps, key)]
    problems += [f"during the run: {v}" for v in sorted(set(chaos.observed_violations))]
    report = deps.audit.verify()
    if not report.ok:
        problems.append(f"audit verify: {report.problem}")
    problems += _check_queues(chaos)
    problems += _check_faults_met(chaos)
    if problems:
        raise ChaosFailure(describe(chaos, problems))


def _check_key(chaos: ChaosRun, deps: Dependencies, key: KeyUnderTest) -> list[str]:
    estate = key.estate
    problems: list[str] = []
    versions = estate.versions()
    rotations = list_rotations(deps, estate.key.uri)
    if len(versions) != 2:
        history = [
            (r.rotation_id, r.status.value, r.trigger, r.new_version, r.error) for r in reversed(rotations)
        ]  # fmt: skip
        return [f"{len(versions) - 1} new versions, expected exactly one: {[v.version for v in versions]}; "
                f"rotations oldest first: {history}"]  # fmt: skip
    old, new = versions
    if old.version != key.old_version:
        problems.append(f"the oldest version is {old.version}, not the original {key.old_version}")
    if not old.enabled:
        problems.append("the old version was disabled before retirement")
    if not new.enabled:
        problems.append("the new version is disabled")
    for account in estate.pinned:
        if estate.account_version(account) != (new.version, new.version):
            problems.append(f"pinned account {account} on {estate.account_version(account)}, not {new.version}")
    for account in estate.versionless:
        keyversion, _ = estate.account_version(account)
        if keyversion != "":
            problems.append(f"versionless account {account} was pinned to {keyversion}")
    for workspace in estate.workspaces:
        if not estate.workspace_key(workspace).endswith("/" + str(new.version)):
            problems.append(f"workspace {workspace} on {estate.workspace_key(workspace)}, not {new.version}")
    if not rotations or rotations[0].status != RotationStatus.AWAITING_RETIREMENT:
        stopped = [(r.rotation_id, r.status.value, r.error) for r in rotations]
        problems.append(f"latest rotation not cut over: {stopped}")
    elif rotations[0].new_version != new.version:
        problems.append(f"latest rotation records {rotations[0].new_version}, the vault's newest is {new.version}")
    records = list(deps.audit.records(estate.key.uri))
    seen: dict[tuple[str | None, str], int] = {}
    for record in records:
        ident = (record.rotation_id, str(record.outcome))
        seen[ident] = seen.get(ident, 0) + 1
    problems += [f"{count} audit records for {ident}" for ident, count in seen.items() if count != 1]
    succeeded = [r for r in records if str(r.outcome) == "succeeded"]
    if len(succeeded) != 1:
        problems.append(f"{len(succeeded)} succeeded audit records, expected one")
    # ROTATION_DATA_LOCATIONS lists every key's container: each rotation lists the other keys' blobs too.
    others = sum(len(k.blobs) for k in chaos.keys if k is not key)
    for record in succeeded:
        rewrap = record.rewrap
        if rewrap is None or rewrap.failed or rewrap.other_keys != others:
            found = None if rewrap is None else (rewrap.other_keys, [f.blob for f in rewrap.failed])
            problems.append(f"succeeded record's re-wrap (other_keys, failed) is {found}, expected ({others}, [])")
    audited = {r.rotation_id for r in records}
    for rotation in rotations:
        terminal = rotation.status not in (RotationStatus.RUNNING, RotationStatus.WAITING)
        if terminal and rotation.rotation_id not in audited:
            problems.append(f"rotation {rotation.rotation_id} ended {rotation.status.value} with no audit record")
    problems += _check_repoints(chaos, key, rotations, (str(old.version), str(new.version)))
    problems += _check_blobs(key, str(new.version))
    return problems


def _check_repoints(chaos: ChaosRun, key: KeyUnderTest, rotations: list[Any], versions: tuple[str, str]) -> list[str]:
    """Each pinned account and workspace moved old -> new once, as the monitor saw it (every 0.3 s: a move
    and its reversal inside one interval go unseen). A move back to the old version is explained by a
    roll-back the journal records for that consumer, or, when the seed has an RP-side Key Vault outage of
    the consumer's provider, by the provider itself (an ML update whose operation fails leaves the previous
    key). Without either, throttled or faulted writes must not make a consumer move more than once."""
    old, new = versions
    problems = []
    outage_providers = set(chaos.outage["providers"]) if chaos.outage else set()
    for consumer, provider in [(a, "storage") for a in key.estate.pinned] + [(w, "ml") for w in key.estate.workspaces]:
        seen = chaos.seen.get(consumer, [])
        name = consumer.rsplit("/", 1)[-1]
        strangers = [v for v in seen if v not in versions]
        if strangers:
            problems.append(f"{name} was seen on {strangers}, neither the old nor the new version")
            continue
        repoints = sum(1 for a, b in itertools.pairwise([old, *seen]) if (a, b) == (old, new))
        backs = sum(1 for a, b in itertools.pairwise(seen) if (a, b) == (new, old))
        chaos.repoints[name] = repoints
        rolled_back = sum(
            1
            for r in rotations
            for c in r.consumers
            if c.status == "rolled_back" and c.resource_id.lower() == consumer.lower()
        )
        if backs > rolled_back and provider not in outage_providers:
            problems.append(
                f"{name} moved back to the old version {backs} time(s) with {rolled_back} roll-back(s) "
                f"recorded and no RP-side outage: versions seen {seen}"
            )
        elif backs == 0 and repoints != 1:
            problems.append(f"{name}: {repoints} effective re-points, expected exactly one: versions seen {seen}")
    return problems


def _check_faults_met(chaos: ChaosRun) -> list[str]:
    problems = []
    if chaos.arm_writes[1] == 0:
        problems.append(f"ARM's write bucket answered no 429 (writes granted: {chaos.arm_writes[0]})")
    for rule in chaos.storage_faults:
        if rule["answered"] != rule["count"]:
            problems.append(f"storage fault {rule} answered {rule['answered']} of {rule['count']} requests")
    return problems


def _check_blobs(key: KeyUnderTest, new_version: str) -> list[str]:
    new_kid = key.estate.key.version_uri(new_version)
    kek = VaultKek(new_kid, key.estate.ca, DATA_OWNER)
    reader = ContainerClient.from_container_url(key.container.url, credential=key.container.credential)
    reader.require_encryption = True
    reader.key_resolver_function = lambda kid: kek if kid == new_kid else None
    problems = []
    for blob in key.blobs:
        try:
            if reader.download_blob(blob.name).readall() != blob.data:
                problems.append(f"blob {blob.name} decrypts to other bytes")
        except Exception as exc:  # noqa: BLE001 - reported as the invariant's failure
            problems.append(f"blob {blob.name} not decryptable by the new version: {type(exc).__name__}: {exc}")
    return problems


def _check_queues(chaos: ChaosRun) -> list[str]:
    connection = chaos.env["AzureWebJobsStorage"]
    name = chaos.env["ROTATION_REWRAP_QUEUE"]
    problems = []
    for queue_name in (name, name + "-poison"):
        queue = QueueClient.from_connection_string(connection, queue_name)
        try:
            left = queue.get_queue_properties().approximate_message_count
        except Exception:  # noqa: BLE001 - a queue never created holds nothing
            continue
        if left:
            problems.append(f"{left} message(s) left in {queue_name}")
    return problems


def describe(chaos: ChaosRun, problems: list[str]) -> str:
    lines = [f"chaos seed {chaos.seed} failed ({rerun_hint(chaos.seed)})", "invariants broken:"]
    lines += [f"  - {p}" for p in problems]
    lines.append(f"schedule (seed {chaos.seed}):")
    lines += [f"  {s}" for s in chaos.schedule]
    lines.append(f"reconciler ticks: {chaos.ticks}; observations during the run: {chaos.observations}")
    lines.append("reconciler after the faults ended:")
    lines += [f"  {h}" for h in chaos.heal_log]
    if chaos.trigger_errors:
        lines.append("trigger errors (expected under faults):")
        lines += [f"  {e}" for e in chaos.trigger_errors]
    return "\n".join(lines)


def summary(chaos: ChaosRun) -> str:
    return (
        f"chaos seed {chaos.seed}: {len(chaos.keys)} keys healed in {chaos.ticks} tick(s), {chaos.attempts} rotations, "
        f"{chaos.observations} observations, {len(chaos.schedule)} scheduled events, "
        f"{len(chaos.trigger_errors)} trigger errors; ARM writes {chaos.arm_writes[0]} granted, "
        f"{chaos.arm_writes[1]} answered 429; storage faults answered "
        f"{sum(r['answered'] for r in chaos.storage_faults)}; effective re-points per consumer "
        f"{sorted(set(chaos.repoints.values()))}"
    )


__all__ = ["INVARIANTS", "ChaosFailure", "ChaosRun", "check", "heal", "rerun_hint", "run", "summary"]
