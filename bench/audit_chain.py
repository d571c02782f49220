"""Audit trail throughput against Azurite: append latency, concurrent appends, and verify time.

Starts its own Azurite (``LocalAzure`` with only ``storage``) in a temporary directory, appends
records of every outcome to one chain (table + archive copy), first from one thread, then from
several at once (different keys, as parallel rotations do), then walks the whole chain.

    python -m bench.audit_chain [--records 200] [--threads 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from emulators.localazure import LocalAzure
from rotation.audit.store import TableAuditLog
from rotation.logs import configure_logging
from tests.fakes.audit import make_record

OUTCOMES = ("succeeded", "dry_run", "refused", "failed", "rolled_back")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_chain")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv or [])
    configure_logging("json", "WARNING")  # the audit_record lines would dominate the timing otherwise

    with tempfile.TemporaryDirectory() as directory, LocalAzure(Path(directory), services=["storage"]) as local:
        log = TableAuditLog(local.endpoints["storage"]["connection_string"], f"bench{uuid.uuid4().hex[:10]}")
        latencies = []
        for i in range(args.records):
            record = make_record(OUTCOMES[i % len(OUTCOMES)])
            started = time.perf_counter()
            log.append(record)
            latencies.append((time.perf_counter() - started) * 1000)

        per_thread = args.records // args.threads

        def rotate(n: int) -> None:
            for i in range(per_thread):
                log.append(make_record(OUTCOMES[i % len(OUTCOMES)], key_uri=f"https://kv.vault.azure.net/keys/k{n}"))

        threads = [threading.Thread(target=rotate, args=(n,)) for n in range(args.threads)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        concurrent_s = time.perf_counter() - started

        started = time.perf_counter()
        report = log.verify()
        verify_s = time.perf_counter() - started
        log.close()

    latencies.sort()
    return {
        "benchmark": "audit_chain",
        "sequential_appends": args.records,
        "append_ms_p50": round(statistics.median(latencies), 1),
        "append_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1], 1),
        "concurrent_threads": args.threads,
        "concurrent_appends": per_thread * args.threads,
        "concurrent_appends_per_s": round(per_thread * args.threads / concurrent_s, 1),
        "verify_records": report.records,
        "verify_s": round(verify_s, 2),
        "chain_ok": report.ok,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
