"""Re-wrap benchmarks (issue 9), side by side in one run against local Azure, printed as JSON.

    python -m bench.rewrap [--quick] [--sections a,b,...]

Starts Azurite and the Key Vault emulator in a temporary directory (throttling off unless a section
sets a ceiling) and measures, in the same run:

- ``raw``: the Key Vault emulator's raw unwrap rate (CryptographyClient.unwrap_key, the re-wrap's thread
  count) and Azurite's raw conditional metadata-write rate (Set Blob Metadata with If-Match on the ETag
  from a listing, same threads).
- ``size``: for 1 MiB and 8 MiB blobs written with azure-storage-blob client-side encryption (protocol
  2.0): the naive path (download, decrypt, re-encrypt with the new key, upload, with the SDK's own
  client-side encryption) against the re-wrap (``BlobDataKeys``, inline), with per-blob request counts:
  Key Vault from the emulator's counters (``GET /admin/counters``), storage from a ``raw_response_hook``
  on every blob client the re-wrap builds (counts each HTTP attempt, by operation, and the response
  bytes of blob downloads).
- ``throttled``: the vault throttled at a ceiling (``PUT /admin/throttle``); sustained rate, share of
  429s, blobs lost.
- ``memory``: peak RSS of a fresh process re-wrapping 10,000 and 100,000 blobs (tiny blobs carrying a real
  ``encryptiondata``, created in parallel).
- ``scaleout``: 1, 2 and 4 worker processes draining the work-item queue, with the CPU seconds each
  process (Azurite, the emulator, the workers) spent, read from /proc.

Blob content is written once with the SDK's client-side encryption and copied byte for byte (content and
metadata) to the other blobs of a set: every copy is a valid encrypted blob with the same wrapped key.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core import MatchConditions
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import KeyWrapAlgorithm
from azure.storage.blob import BlobServiceClient, ContainerClient

from bench.azurite_sql import sql_available, sql_azurite
from emulators.keyvault.admin_client import KeyVaultAdmin
from emulators.keyvault.kek import VaultKek
from emulators.localazure import AZURITE_ACCOUNT, REPO, LocalAzure, azurite_connection_string, free_port
from rotation.adapters.http_session import direct_session_kwargs, pool_for
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.bootstrap import transport_kwargs
from rotation.domain.model import KeyRef
from rotation.logs import configure_logging
from rotation.rewrap.adapter import ITEMS_IN_FLIGHT, PAGE_SIZE, BlobDataKeys
from rotation.rewrap.checkpoint import DONE
from rotation.rewrap.queue import drain, storage_queue
from rotation.rewrap.throttle import AdaptiveLimiter
from rotation.settings import DataLocation, HostStorageSettings, Settings

PRINCIPAL = "bench-rewrap"
MiB = 1024 * 1024
SECTIONS = ("raw", "size", "throttled", "memory", "scaleout")
PER_CONTAINER = 10_000
LOKI_MAX_BLOBS = 20_000  # beyond this, Azurite's LokiJS store takes hours to create the set


# -- helpers ---------------------------------------------------------------------------------------


class StorageCounter:
    """``raw_response_hook`` counting every storage HTTP attempt by operation, and downloaded bytes."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.content_bytes_read = 0
        self.content_bytes_written = 0
        self._lock = threading.Lock()

    def __call__(self, response: Any) -> None:
        request = response.http_request
        query = parse_qs(urlsplit(request.url).query)
        comp = query.get("comp", [""])[0]
        method = request.method
        op = {
            ("GET", "list"): "list_blobs",
            ("PUT", "metadata"): "set_blob_metadata",
            ("HEAD", ""): "get_blob_properties",
            ("GET", ""): "get_blob",
            ("PUT", ""): "put_blob",
        }.get((method, comp), f"{method} comp={comp}")
        with self._lock:
            self.counts[op] += 1
            if op == "get_blob":
                self.content_bytes_read += int(response.http_response.headers.get("Content-Length", 0))
            if op == "put_blob":
                self.content_bytes_written += int(request.headers.get("Content-Length", 0))

    def snapshot(self) -> tuple[Counter[str], int, int]:
        with self._lock:
            return Counter(self.counts), self.content_bytes_read, self.content_bytes_written


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (not its children), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Env:
    """One local Azure for the whole run: Azurite, the Key Vault emulator, a vault with old and new versions."""

    def __init__(self, directory: Path) -> None:
        self.local = LocalAzure(directory, services=["storage", "keyvault"])
        self.endpoints = self.local.start()
        self.ca = self.endpoints["ca_bundle"]
        self.conn = self.endpoints["storage"]["connection_string"]
        self.admin = KeyVaultAdmin(self.endpoints["keyvault"]["admin"], self.ca)
        self.vault = self.admin.create_vault(f"bench{uuid.uuid4().hex[:8]}")
        self.admin.set_throttle(self.vault["name"], enabled=False)
        # Every client, the baselines' included, uses the transport settings the service uses.
        self.transport = transport_kwargs(self.ca)
        self.keys = KeyClient(
            self.vault["url"], LocalDevelopmentCredential(PRINCIPAL), verify_challenge_resource=False, **self.transport
        )
        old = self.keys.create_rsa_key("cmk", size=2048)
        new = self.keys.create_rsa_key("cmk", size=2048)
        self.old_kid, self.new_kid = str(old.id), str(new.id)
        self.key, self.new_version = KeyRef.parse(self.new_kid)[0], str(new.properties.version)
        self.service = BlobServiceClient.from_connection_string(self.conn, **self.transport)
        self.pids = {p.name: p.popen.pid for p in self.local._processes}

    def close(self) -> None:
        self.keys.close()
        self.local.stop()

    def settings(self, concurrency: int, queue: str = "rotation-rewrap", *where: ContainerClient) -> Settings:
        return scoped_settings(self.conn, self.ca, self.key.uri, [self.location(c) for c in where],
                               rewrap_concurrency=concurrency, rewrap_queue=queue)  # fmt: skip

    def kek(self, kid: str) -> VaultKek:
        return VaultKek(kid, self.ca, PRINCIPAL, **_lean(self.ca))

    def kv_counters(self) -> dict[str, int]:
        return dict(self.admin.counters().get(self.vault["name"], {}))

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()} | {"bench": cpu_seconds(os.getpid())}

    def container(self, prefix: str) -> ContainerClient:
        client = self.service.get_container_client(f"{prefix}{uuid.uuid4().hex[:10]}")
        client.create_container()
        return client

    def location(self, container: ContainerClient) -> DataLocation:
        return DataLocation(container.url.rsplit("/", 1)[0], container.container_name)

    def template(self, size: int) -> tuple[bytes, dict[str, str]]:
        """Content and metadata of one blob written with client-side encryption 2.0 under the old version."""
        scratch = self.container("tpl")
        writer = ContainerClient.from_container_url(scratch.url, credential=scratch.credential)
        writer.require_encryption = True
        writer.key_encryption_key = self.kek(self.old_kid)
        writer.encryption_version = "2.0"
        writer.upload_blob("t", os.urandom(size))
        raw = scratch.download_blob("t").readall()
        metadata = dict(scratch.get_blob_client("t").get_blob_properties().metadata)
        scratch.delete_container()
        return raw, metadata

    def fill(self, container: ContainerClient, count: int, size: int, threads: int = 8) -> float:
        """``count`` copies of a template blob; returns blobs created per second."""
        raw, metadata = self.template(size)
        began = time.perf_counter()

        def put(i: int) -> None:
            container.upload_blob(f"b{i:07d}", raw, metadata=metadata, overwrite=True, max_concurrency=1)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, range(count)))
        return count / (time.perf_counter() - began)


def settle() -> None:
    """Write out dirty pages (blob content Azurite just stored) before a timed run, so the kernel's
    writeback of one step does not land in the next step's timing."""
    os.sync()
    time.sleep(0.5)


def timed_threads(threads: int, seconds: float, make: Callable[[int], Callable[[], None]]) -> tuple[int, int, float]:
    """Run ``make(i)()`` in a loop on ``threads`` threads for ``seconds``; returns (done, errors, elapsed)."""
    calls = [make(i) for i in range(threads)]
    done = [0] * threads
    errors = [0] * threads
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()

    def loop(i: int) -> None:
        while time.perf_counter() < deadline:
            try:
                calls[i]()
                done[i] += 1
            except Exception:  # noqa: BLE001 - counted and reported
                errors[i] += 1

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done), sum(errors), time.perf_counter() - began


# -- sections --------------------------------------------------------------------------------------


def _gang(target: Callable[..., None], per_process: list[tuple[Any, ...]]) -> tuple[list[Any], float]:
    """Run ``target(*args, ready, go, out)`` in one spawned process per ``args``; they start work together.

    Each process builds its clients, reports ready, waits for the start signal, works, and puts its result.
    Returns the results and the wall seconds from the start signal to the last result (start-up untimed).
    """
    context = multiprocessing.get_context("spawn")
    ready, go, out = context.Queue(), context.Event(), context.Queue()
    procs = [context.Process(target=target, args=(*args, ready, go, out)) for args in per_process]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=120)
        began = time.perf_counter()
        go.set()
        results = [out.get(timeout=1800) for _ in procs]
        elapsed = time.perf_counter() - began
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    return results, elapsed


def _shares(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def _lean(ca: str) -> dict[str, Any]:
    """The service's transport settings without the CA bundle (``VaultKek`` takes that itself)."""
    return {k: v for k, v in transport_kwargs(ca).items() if k != "connection_verify"}


def _hot_path(kwargs: dict[str, Any], threads: int) -> dict[str, Any]:
    """``kwargs`` with the HTTP session the re-wrap's own clients use: every path measured here (raw rates,
    naive, re-wrap) sends through the same client stack."""
    return direct_session_kwargs(kwargs, pool_for(threads))


def _raw_unwrap_child(ca: str, kid: str, wrapped: list[bytes], threads: int, seconds: float, *sync: Any) -> None:
    ready, go, out = sync
    configure_logging("console", "WARNING", stream=sys.stderr)
    clients = [VaultKek(kid, ca, PRINCIPAL, **_hot_path(_lean(ca), threads)).client for _ in range(threads)]
    for client in clients:
        client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped[0])  # challenge and GET key, not timed

    def make(i: int) -> Callable[[], None]:
        n = [i]

        def call() -> None:
            n[0] += 1
            clients[i].unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped[n[0] % len(wrapped)])

        return call

    ready.put(os.getpid())
    go.wait()
    out.put(timed_threads(threads, seconds, make))


def _raw_write_child(
    conn: str, container: str, items: list[tuple[str, str, dict[str, str]]], threads: int, *sync: Any
) -> None:
    ready, go, out = sync
    configure_logging("console", "WARNING", stream=sys.stderr)
    client = ContainerClient.from_connection_string(conn, container, **_hot_path(transport_kwargs(None), threads))

    def write(item: tuple[str, str, dict[str, str]]) -> None:
        name, etag, metadata = item
        client.get_blob_client(name).set_blob_metadata(
            {**metadata, "touched": "1"}, etag=etag, match_condition=MatchConditions.IfNotModified
        )

    ready.put(os.getpid())
    go.wait()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, items))
    out.put(len(items))


def raw_rates(env: Env, threads: int, seconds: float, write_blobs: int, processes: int) -> dict[str, Any]:
    """The unavoidable work, each alone: Key Vault unwraps, and Azurite conditional metadata writes.

    Each is measured from ``processes`` client processes of ``threads`` threads (one Python process is
    bound by its interpreter lock before either service is saturated).
    """
    wrapped = [env.kek(env.old_kid).wrap_key(os.urandom(40)) for _ in range(16)]
    before = env.kv_counters().get("unwrapKey", 0)
    results, _ = _gang(_raw_unwrap_child, [(env.ca, env.old_kid, wrapped, threads, seconds)] * processes)
    served = env.kv_counters().get("unwrapKey", 0) - before
    unwraps, unwrap_errors = sum(r[0] for r in results), sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)

    container = env.container("raw")
    env.fill(container, write_blobs, 16)
    listed = [(b.name, str(b.etag), dict(b.metadata)) for b in container.list_blobs(include=["metadata"])]
    written, write_elapsed = _gang(
        _raw_write_child, [(env.conn, container.container_name, share, threads) for share in _shares(listed, processes)]
    )
    container.delete_container()
    return {
        "kv_unwraps_per_s": round(unwraps / elapsed, 1),
        "kv_unwrap_errors": unwrap_errors,
        "kv_unwraps_served_by_emulator": served,
        "azurite_conditional_metadata_writes_per_s": round(sum(written) / write_elapsed, 1),
        "processes": processes,
        "threads_per_process": threads,
    }


def _naive_child(  # noqa: PLR0917 - a process target takes its arguments by position
    conn: str, ca: str, container: str, kids: tuple[str, str], names: list[str], threads: int, *sync: Any
) -> None:
    """Move ``names`` from key version ``kids[0]`` to ``kids[1]``: download, decrypt, re-encrypt, upload."""
    ready, go, out = sync
    configure_logging("console", "WARNING", stream=sys.stderr)
    keks = {kid: VaultKek(kid, ca, PRINCIPAL, **_hot_path(_lean(ca), threads)) for kid in kids}
    client = ContainerClient.from_connection_string(conn, container, **_hot_path(transport_kwargs(ca), threads))
    client.require_encryption = True
    client.key_resolver_function = keks.get
    client.key_encryption_key = keks[kids[1]]
    client.encryption_version = "2.0"

    def move(name: str) -> None:
        data = client.download_blob(name, max_concurrency=1).readall()
        client.upload_blob(name, data, overwrite=True, max_concurrency=1)

    ready.put(os.getpid())
    go.wait()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(move, names))
    out.put(len(names))


def naive(env: Env, container: ContainerClient, threads: int, processes: int, kids: tuple[str, str]) -> dict[str, Any]:
    """Download + decrypt (unwrap in the vault) + re-encrypt + upload, per blob, with the SDK's own client-side
    encryption, from ``processes`` processes of ``threads`` threads; moves the blobs from ``kids[0]`` to ``kids[1]``."""
    names = [b.name for b in container.list_blobs()]
    args = [(env.conn, env.ca, container.container_name, kids, share, threads) for share in _shares(names, processes)]
    moved, elapsed = _gang(_naive_child, args)
    return {
        "processes": processes, "threads_per_process": threads, "blobs": sum(moved), "seconds": round(elapsed, 2),
        "blobs_per_s": round(sum(moved) / elapsed, 1),
    }  # fmt: skip


def rewrap_once(env: Env, container: ContainerClient, threads: int, **adapter_kwargs: Any) -> dict[str, Any]:
    """One inline re-wrap of ``container`` with per-blob request counts and CPU seconds per process."""
    counter = StorageCounter()
    adapter = BlobDataKeys(
        env.settings(threads, "rotation-rewrap", container), LocalDevelopmentCredential(PRINCIPAL), env.transport,
        inline=True, storage_kwargs={"raw_response_hook": counter}, **adapter_kwargs,
    )  # fmt: skip
    rotation_id = f"bench-{uuid.uuid4().hex[:8]}"
    kv_before, cpu_before = env.kv_counters(), env.cpu()
    began = time.perf_counter()
    adapter.begin_rewrap(rotation_id, env.key, env.new_version, [env.location(container)])
    processed = time.perf_counter() - began
    storage_processing, read, written = counter.snapshot()
    done, summary = adapter.rewrap_progress(rotation_id)
    total = time.perf_counter() - began
    kv_after, cpu_after = env.kv_counters(), env.cpu()
    storage_all, _, _ = counter.snapshot()
    stats = adapter.limiter.stats()
    adapter.close()
    n = max(summary.rewrapped, 1)
    kv = {k: kv_after.get(k, 0) - kv_before.get(k, 0) for k in set(kv_after) | set(kv_before)}
    return {
        "done": done,
        "rewrapped": summary.rewrapped,
        "failed": len(summary.failed),
        "seconds_processing": round(processed, 2),
        "seconds_with_verification_scan": round(total, 2),
        "blobs_per_s": round(summary.rewrapped / processed, 1),
        "blobs_per_s_with_verification_scan": round(summary.rewrapped / total, 1),
        "per_blob": {
            "kv_unwrapKey": round(kv.get("unwrapKey", 0) / n, 3),
            "kv_wrapKey": round(kv.get("wrapKey", 0) / n, 3),
            "kv_other_calls_total": {k: v for k, v in kv.items() if k not in ("unwrapKey", "wrapKey") and v},
            "storage_set_blob_metadata": round(storage_processing["set_blob_metadata"] / n, 3),
            "storage_get_blob_properties": round(storage_processing["get_blob_properties"] / n, 3),
            "storage_get_blob": round(storage_processing["get_blob"] / n, 3),
            "storage_put_blob": round(storage_processing["put_blob"] / n, 3),
            "storage_list_pages_total": storage_processing["list_blobs"],
            "content_bytes_read": read,
            "content_bytes_written": written,
        },
        "storage_requests_including_verification_scan": dict(storage_all),
        "kv_throttled_429": kv.get("throttled", 0),
        "limiter": {
            "throttled": stats.throttled,
            "events": stats.throttle_events,
            "final_rate_per_s": stats.rate_per_s,
        },
        "cpu_seconds": {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after},
    }


def size_section(env: Env, threads: int, processes: int, sizes: Iterable[tuple[int, int, int]]) -> dict[str, Any]:
    """Naive against re-wrap, per blob size, in two shapes measured side by side:

    - one process: the re-wrap inline (as the CLI runs it), the naive path in one process;
    - ``processes`` processes: the re-wrap's work items on the queue, drained by that many worker processes
      (the Function app with ``FUNCTIONS_WORKER_PROCESS_COUNT``), the naive path split over as many.

    The second shape moves the blobs back to the old version: the same work per blob (one unwrap, one local
    wrap, one conditional write; for the naive path one download and one upload), so one set serves both.
    """
    results: dict[str, Any] = {}
    old_version = env.old_kid.rsplit("/", 1)[1]
    for size_mib, rewrap_blobs, naive_blobs in sizes:
        rewrap_container, naive_container = env.container("rw"), env.container("nv")
        env.fill(rewrap_container, rewrap_blobs, size_mib * MiB)
        env.fill(naive_container, naive_blobs, size_mib * MiB)
        settle()
        naive_one = naive(env, naive_container, threads, 1, (env.old_kid, env.new_kid))
        settle()
        naive_many = naive(env, naive_container, threads, processes, (env.new_kid, env.old_kid))
        settle()
        rewrap_one = rewrap_once(env, rewrap_container, threads)
        settle()
        # Pages small enough that every worker gets several (the product's default is 500 blobs a page).
        page_size = min(PAGE_SIZE, max(50, rewrap_blobs // (4 * processes)))
        rewrap_many = queued_rewrap(env, rewrap_container, processes, page_size, threads, version=old_version)
        results[f"{size_mib}MiB"] = {
            "one_process": {
                "naive": naive_one,
                "rewrap": rewrap_one,
                "speedup_vs_naive": round(rewrap_one["blobs_per_s"] / naive_one["blobs_per_s"], 1),
            },
            f"{processes}_processes": {
                "naive": naive_many,
                "rewrap_queued": rewrap_many,
                "speedup_vs_naive": round(rewrap_many["blobs_per_s"] / naive_many["blobs_per_s"], 1),
            },
        }
        rewrap_container.delete_container()
        naive_container.delete_container()
    return results


def throttled_section(env: Env, threads: int, ceiling_per_10s: int, blobs: int) -> dict[str, Any]:
    container = env.container("th")
    env.fill(container, blobs, 16)
    env.admin.set_throttle(env.vault["name"], enabled=True, limit_per_10s=ceiling_per_10s)
    try:
        result = rewrap_once(env, container, threads, limiter=AdaptiveLimiter(threads))
    finally:
        env.admin.set_throttle(env.vault["name"], enabled=False)
    container.delete_container()
    ceiling = ceiling_per_10s / 10
    served, refused = result["per_blob"]["kv_unwrapKey"] * result["rewrapped"], result["kv_throttled_429"]
    return {
        "ceiling_per_s": ceiling,
        "blobs": blobs,
        "rewrapped": result["rewrapped"],
        "blobs_lost": blobs - result["rewrapped"] - result["failed"],
        "sustained_blobs_per_s": result["blobs_per_s"],
        "share_of_ceiling": round(result["blobs_per_s"] / ceiling, 3),
        "kv_requests_throttled_share": round(refused / max(served + refused, 1), 4),
        "kv_throttled_429": refused,
        "limiter": result["limiter"],
        "seconds_processing": result["seconds_processing"],
    }


def _peak_rss_mib() -> float:
    """This process's own RSS high-water mark (VmHWM). ``ru_maxrss`` would include the parent's RSS
    at fork time, which Linux carries across exec into a spawned child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def scoped_settings(conn: str, ca: str, key_uri: str, locations: list[DataLocation], **extra: Any) -> Settings:
    """Bench settings whose scope (managed keys, data locations) is the key and the containers re-wrapped."""
    return Settings(
        storage=HostStorageSettings(connection_string=conn), ca_bundle=ca, verify_challenge_resource=False,
        managed_keys=(key_uri,), data_locations=tuple(locations), **extra,
    )  # fmt: skip


def _memory_child(conn: str, ca: str, kid: str, locations: list[list[str]], out: Any) -> None:
    """A fresh process re-wrapping the given data locations; reports its peak RSS."""
    configure_logging("console", "WARNING", stream=sys.stderr)
    where = [DataLocation(*loc) for loc in locations]
    settings = scoped_settings(conn, ca, KeyRef.parse(kid)[0].uri, where, rewrap_concurrency=8)
    adapter = BlobDataKeys(settings, LocalDevelopmentCredential(PRINCIPAL), transport_kwargs(ca), inline=True)
    key, version = KeyRef.parse(kid)
    rotation_id = f"mem-{uuid.uuid4().hex[:8]}"
    rss_before = _peak_rss_mib()
    began = time.perf_counter()
    adapter.begin_rewrap(rotation_id, key, str(version), [DataLocation(*loc) for loc in locations])
    done, summary = adapter.rewrap_progress(rotation_id)
    elapsed = time.perf_counter() - began
    adapter.close()
    out.put({
        "done": done, "rewrapped": summary.rewrapped, "seconds": round(elapsed, 1),
        "blobs_per_s": round(summary.rewrapped / elapsed, 1),
        "peak_rss_mib": _peak_rss_mib(), "rss_before_rewrap_mib": rss_before,
    })  # fmt: skip


def memory_azurite(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A second Azurite with ``--inMemoryPersistence``: the memory sets' store when MariaDB is not installed."""
    ports = {svc: free_port() for svc in ("blob", "queue", "table")}
    while len(set(ports.values())) < 3:
        ports = {svc: free_port() for svc in ("blob", "queue", "table")}
    entry = REPO / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
    argv = [
        "node", str(entry), "--silent", "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry",
        "--loose", "--blobHost", "127.0.0.1", "--blobPort", str(ports["blob"]), "--queueHost", "127.0.0.1",
        "--queuePort", str(ports["queue"]), "--tableHost", "127.0.0.1", "--tablePort", str(ports["table"]),
    ]  # fmt: skip
    log = (directory / "azurite-memory.log").open("ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)
    log.close()
    urls = {svc: f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}" for svc, port in ports.items()}
    deadline = time.monotonic() + 60
    for port in ports.values():
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    raise RuntimeError("in-memory Azurite did not start") from None
                time.sleep(0.1)
    return proc, azurite_connection_string(urls["blob"], urls["queue"], urls["table"])


@contextlib.contextmanager
def memory_store(directory: Path) -> Iterator[tuple[str, str]]:
    """The blob store for the memory sets: (connection string, what it is).

    Azurite with its blob metadata in MariaDB (``bench.azurite_sql``) when MariaDB is installed: LokiJS,
    Azurite's default store, scans every blob of the account per blob operation, so 100,000 blobs take
    hours to create. Without MariaDB, an in-memory LokiJS Azurite (fine for 10,000).
    """
    if sql_available() is None:
        with sql_azurite(directory / "sql-azurite") as conn:
            yield conn, "Azurite 3.35.0, blob metadata in MariaDB (AZURITE_DB)"
        return
    proc, conn = memory_azurite(directory)
    try:
        yield conn, "Azurite 3.35.0, LokiJS in memory"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def memory_section(env: Env, counts: Iterable[int], directory: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    context = multiprocessing.get_context("spawn")
    reason = sql_available()  # None: MariaDB is installed and memory_store uses it
    with memory_store(directory) as (conn, store):
        service = BlobServiceClient.from_connection_string(conn, **env.transport)
        for count in counts:
            if reason is not None and count > LOKI_MAX_BLOBS:
                results[str(count)] = {"skipped": f"{count} blobs need the MariaDB-backed Azurite: {reason}"}
                continue
            # Sets are spread over containers of at most PER_CONTAINER blobs, each a data location of the rotation.
            containers = []
            began = time.perf_counter()
            for start in range(0, count, PER_CONTAINER):
                container = service.get_container_client(f"mem{uuid.uuid4().hex[:10]}")
                container.create_container()
                env.fill(container, min(PER_CONTAINER, count - start), 16)
                containers.append(container)
            created_s = time.perf_counter() - began
            out = context.Queue()
            locations = [[loc.account_url, loc.container, loc.prefix] for loc in map(env.location, containers)]
            child = context.Process(target=_memory_child, args=(conn, env.ca, env.new_kid, locations, out))
            child.start()
            result = out.get()
            child.join()
            results[str(count)] = {
                **result, "blobs_created": count, "create_blobs_per_s": round(count / created_s, 1),
                "data_locations": len(containers), "blob_store": store,
            }  # fmt: skip
            print(json.dumps({"memory": {str(count): results[str(count)]}}), file=sys.stderr, flush=True)
            for container in containers:
                container.delete_container()
    return results


def _worker(conn: str, ca: str, scope: tuple[str, list[list[str]]], queue_name: str, page_size: int, threads: int,  # noqa: PLR0917 - a process target
            stop: Any) -> None:  # fmt: skip
    """A queue worker process, like one Functions instance: drain the work-item queue."""
    configure_logging("console", "WARNING", stream=sys.stderr)
    where = [DataLocation(*loc) for loc in scope[1]]
    settings = scoped_settings(conn, ca, scope[0], where, rewrap_concurrency=threads, rewrap_queue=queue_name)
    adapter = BlobDataKeys(
        settings, LocalDevelopmentCredential(PRINCIPAL), transport_kwargs(ca), inline=False, page_size=page_size
    )
    queue = storage_queue(conn, queue_name)
    poison = storage_queue(conn, queue_name + "-poison")
    # Two messages at once, as the Functions host runs a batch of queue messages concurrently per worker.
    # Polls back off to 0.25 s (the host goes to maxPollingInterval, 2 s, when idle; a run starts on an idle
    # queue, and its first message should not wait for the back-off).
    drain(
        queue, poison, adapter.handle_message, idle_s=900.0, concurrency=ITEMS_IN_FLIGHT, stop=stop.is_set,
        max_poll_s=0.25,
    )  # fmt: skip
    adapter.close()


def queued_rewrap(
    env: Env, container: ContainerClient, workers: int, page_size: int, threads: int, *, version: str | None = None
) -> dict[str, Any]:
    """The deployed shape: ``workers`` processes (Functions worker processes) drain the work-item queue,
    moving every blob to ``version`` (the new version unless given).

    Timed from ``begin_rewrap`` to ``rewrap_progress`` reporting done (its verification scan included);
    the workers are started, imported and connected before the clock starts.
    """
    context = multiprocessing.get_context("spawn")
    queue_name = f"rewrap-{uuid.uuid4().hex[:8]}"
    starter = BlobDataKeys(
        env.settings(threads, queue_name, container), LocalDevelopmentCredential(PRINCIPAL), env.transport,
        inline=False,
        page_size=page_size,
    )  # fmt: skip
    scope = (env.key.uri, [[loc.account_url, loc.container, loc.prefix] for loc in [env.location(container)]])
    stop = context.Event()  # the workers drain until the run is done (like Functions instances, they idle)
    procs = [
        context.Process(target=_worker, args=(env.conn, env.ca, scope, queue_name, page_size, threads, stop))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(3.0)  # let the workers import and connect: process start-up is not re-wrap time
    rotation_id = f"q-{uuid.uuid4().hex[:8]}"
    kv_before, cpu_before = env.kv_counters(), env.cpu()
    worker_cpu_before = {p.pid: cpu_seconds(p.pid) for p in procs if p.pid}
    began = time.perf_counter()
    starter.begin_rewrap(rotation_id, env.key, version or env.new_version, [env.location(container)])
    done, summary, processed = False, None, None
    worker_cpu = dict(worker_cpu_before)
    deadline = time.monotonic() + 900
    while not done:
        if time.monotonic() > deadline or not any(p.is_alive() for p in procs):
            raise RuntimeError(
                f"queued re-wrap with {workers} workers did not finish (alive: {sum(p.is_alive() for p in procs)})"
            )
        time.sleep(0.5)
        for p in procs:
            if p.pid and p.is_alive():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    worker_cpu[p.pid] = cpu_seconds(p.pid)
        if processed is None:
            # Processing ends when every page item is done and the listing was walked to its end: the last
            # item's table timestamp says when (so polling can be slow and cheap). Then rewrap_progress runs
            # the verification scan, timed separately as in the inline shape.
            read_at = time.perf_counter()
            run, items, _ = starter.store.partition(rotation_id)
            current = [i for i in items if run is not None and i.pass_no == run.pass_no]
            if current and all(i.status == DONE for i in current) and any(i.has_next is False for i in current):
                processed = read_at - min(i.age_s for i in current) - began
            continue
        done, summary = starter.rewrap_progress(rotation_id)
    elapsed = time.perf_counter() - began
    kv_after, cpu_after = env.kv_counters(), env.cpu()
    stop.set()
    for proc in procs:
        proc.join(timeout=30)
    starter.close()
    assert summary is not None
    n = max(summary.rewrapped, 1)
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "page_size": page_size,
        "rewrapped": summary.rewrapped,
        "failed": len(summary.failed),
        "seconds_processing": round(processed or elapsed, 2),
        "seconds_with_verification_scan": round(elapsed, 2),
        "blobs_per_s": round(summary.rewrapped / (processed or elapsed), 1),
        "blobs_per_s_with_verification_scan": round(summary.rewrapped / elapsed, 1),
        "per_blob_kv_unwrapKey": round((kv_after.get("unwrapKey", 0) - kv_before.get("unwrapKey", 0)) / n, 3),
        "per_blob_kv_wrapKey": round((kv_after.get("wrapKey", 0) - kv_before.get("wrapKey", 0)) / n, 3),
        "cpu_ms_per_blob": {
            "azurite": round((cpu_after["azurite"] - cpu_before["azurite"]) * 1000 / n, 2),
            "keyvault": round((cpu_after["keyvault"] - cpu_before["keyvault"]) * 1000 / n, 2),
            "workers": round(sum(worker_cpu[p] - worker_cpu_before[p] for p in worker_cpu_before) * 1000 / n, 2),
            "coordinator": round((cpu_after["bench"] - cpu_before["bench"]) * 1000 / n, 2),
        },
    }


def scaleout_section(env: Env, workers: Iterable[int], blobs: int, page_size: int, threads: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for count in workers:
        container = env.container("so")
        env.fill(container, blobs, 16)
        results[str(count)] = queued_rewrap(env, container, count, page_size, threads)
        container.delete_container()
    base = results[str(min(int(k) for k in results))]["blobs_per_s"]
    for entry in results.values():
        entry["speedup"] = round(entry["blobs_per_s"] / base, 2)
    return results


def share_of_slower_raw_rate(raw: dict[str, Any], size: dict[str, Any], processes: int) -> dict[str, Any]:
    """Each shape's re-wrap rate over the slower of the two raw rates measured in the same shape."""
    shares: dict[str, Any] = {}
    for shape, rewrap_key in (("one_process", "rewrap"), (f"{processes}_processes", "rewrap_queued")):
        rates = raw[shape]
        slower = min(rates["kv_unwraps_per_s"], rates["azurite_conditional_metadata_writes_per_s"])
        shares[shape] = {
            "slower_raw_rate_per_s": slower,
            **{k: round(v[shape][rewrap_key]["blobs_per_s"] / slower, 3) for k, v in size.items()},
        }
    return shares


# -- entry point -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("console", "WARNING", stream=sys.stderr)  # stdout carries only the JSON result
    sections = set(args.sections.split(",")) if args.sections else set(SECTIONS)
    quick = args.quick
    out: dict[str, Any] = {
        "benchmark": "rewrap",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "threads": args.threads,
    }

    def section(name: str, compute: Callable[[], Any]) -> None:
        if name not in sections:
            return
        began = time.perf_counter()
        try:
            out[name] = compute()
        except Exception as exc:  # noqa: BLE001 - one failing section must not hide the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({name: out[name], "seconds": round(time.perf_counter() - began, 1)}), file=sys.stderr)

    processes = args.processes
    out["processes"] = processes
    with tempfile.TemporaryDirectory(prefix="bench-rewrap-") as tmp:
        env = Env(Path(tmp))
        try:
            seconds, write_blobs = (3.0, 600) if quick else (8.0, 3000)
            section("raw", lambda: {
                "one_process": raw_rates(env, args.threads, seconds, write_blobs, 1),
                f"{processes}_processes": raw_rates(env, args.threads, seconds, write_blobs, processes),
            })  # fmt: skip
            sizes = [(1, 400, 60), (8, 200, 20)] if quick else [(1, 1500, 150), (8, 1500, 40)]
            section("size", lambda: size_section(env, args.threads, processes, sizes))
            if "error" not in out.get("raw", {"error": 1}) and "error" not in out.get("size", {"error": 1}):
                out["share_of_slower_raw_rate"] = share_of_slower_raw_rate(out["raw"], out["size"], processes)
            ceiling = args.ceiling_per_10s
            blobs = int(ceiling / 10 * (15 if quick else 45))
            section("throttled", lambda: throttled_section(env, args.threads, ceiling, blobs))
            counts = [1000, 10000] if quick else [int(c) for c in args.memory.split(",")]
            section("memory", lambda: memory_section(env, counts, Path(tmp)))
            scaleout_blobs = 600 if quick else 3000
            scaleout_page = min(PAGE_SIZE, scaleout_blobs // 16)  # several pages for each of 4 workers
            section("scaleout", lambda: scaleout_section(env, (1, 2, 4), scaleout_blobs, scaleout_page, args.threads))
        finally:
            env.close()
    out["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.rewrap", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run, not the figures)")
    parser.add_argument("--sections", default="", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=8, help="threads per process")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="processes of the second shape")
    parser.add_argument("--ceiling-per-10s", type=int, default=500)
    parser.add_argument("--memory", default="10000,100000")
    return run(parser.parse_args(argv if argv is not None else []))


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
