"""RSA-2048 unwraps per second through the official SDK (CryptographyClient) against the Key Vault emulator.

Starts its own emulator (``LocalAzure`` with only the ``keyvault`` service) in a temporary directory, turns
throttling off for the benchmark vault (the documented ceiling, 4,000 per 10 s = 400/s, is what the emulator
must exceed), wraps data keys locally with the public key, then unwraps them remotely from several client
processes with several threads each. The SDK client costs more CPU per call than the emulator does, so one
client process alone cannot show the emulator's capacity; a re-wrap job scales out the same way.

    python -m bench.kv_unwrap [--seconds 10] [--processes 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from emulators.keyvault.admin_client import KeyVaultAdmin
from emulators.localazure import LocalAzure
from rotation.adapters.local_credential import LocalDevelopmentCredential


def _client_process(  # noqa: PLR0917 - a multiprocessing target receives its arguments positionally
    kid: str,
    ca: str,
    wrapped: list[bytes],
    threads: int,
    seconds: float,
    ready: Any,
    start: Any,
    results: Any,
) -> None:
    credential = LocalDevelopmentCredential("bench")
    clients = [
        CryptographyClient(kid, credential, connection_verify=ca, verify_challenge_resource=False)
        for _ in range(threads)
    ]
    for client in clients:
        client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped[0])  # challenge + GET key, outside the timing
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    ready.release()
    start.wait()
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        client = clients[index]
        i = index
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped[i % len(wrapped)])
            except Exception:  # noqa: BLE001 - counted and reported
                errors[index] += 1
            latencies[index].append(time.perf_counter() - began)
            i += 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    results.put(([x for per_thread in latencies for x in per_thread], sum(errors)))


def run(seconds: float, processes: int, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-kv-") as tmp, LocalAzure(Path(tmp), services=["keyvault"]) as local:
        ca = local.endpoints["ca_bundle"]
        admin = KeyVaultAdmin(local.endpoints["keyvault"]["admin"], ca)
        vault = admin.create_vault(f"bench-{uuid.uuid4().hex[:8]}")
        admin.set_throttle(vault["name"], enabled=False)
        credential = LocalDevelopmentCredential("bench")
        keys = KeyClient(vault["url"], credential, connection_verify=ca, verify_challenge_resource=False)
        key = keys.create_rsa_key("bench-kek", size=2048)
        local_client = CryptographyClient(key, credential, connection_verify=ca, verify_challenge_resource=False)
        wrapped = [
            local_client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, os.urandom(32)).encrypted_key for _ in range(64)
        ]
        context = multiprocessing.get_context("spawn")
        ready, start, results = context.Semaphore(0), context.Event(), context.Queue()
        args = (key.id, ca, wrapped, threads, seconds, ready, start, results)
        workers = [context.Process(target=_client_process, args=args) for _ in range(processes)]
        for process in workers:
            process.start()
        for _ in workers:
            ready.acquire()
        admin.reset_counters()
        began = time.perf_counter()
        start.set()
        collected = [results.get(timeout=seconds + 120) for _ in workers]
        elapsed = time.perf_counter() - began
        for process in workers:
            process.join()
        served = admin.counters().get(vault["name"], {}).get("unwrapKey", 0)
    samples = sorted(x for batch, _ in collected for x in batch)
    errors = sum(e for _, e in collected)
    done = len(samples) - errors
    return {
        "benchmark": "kv_unwrap",
        "what": "RSA-OAEP-256 unwrapKey, RSA-2048 key, azure-keyvault-keys CryptographyClient -> Key Vault emulator",
        "unwraps_per_second": round(done / seconds, 1),
        "requests": len(samples),
        "served_by_emulator": served,
        "errors": errors,
        "client_processes": processes,
        "threads_per_process": threads,
        "seconds": seconds,
        "wall_seconds": round(elapsed, 2),
        "latency_ms_p50": round(statistics.median(samples) * 1000, 2) if samples else None,
        "latency_ms_p99": round(samples[max(0, int(len(samples) * 0.99) - 1)] * 1000, 2) if samples else None,
        "cpus": os.cpu_count(),
        "target_per_second": 500,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.kv_unwrap", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    return run(args.seconds, args.processes, args.threads)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
