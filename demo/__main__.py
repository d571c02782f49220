"""``make demo``: local Azure, a realistic estate, and one CMK rotation told end to end.

1. Start local Azure: Azurite plus this project's Key Vault and ARM emulators (HTTPS, generated CA).
2. Seed an estate (``demo/estate.py``): a vault with a CMK expiring in 20 days, a storage account
   pinned to its version, one following it versionless, an AML workspace, a container of
   client-side-encrypted blobs.
3. The Function app starts in the real Python worker (``azure-functions-runtime`` on Python 3.13),
   driven over gRPC by the host stand-in of ``tests/worker``: indexed, checked, loaded.
4. Key Vault notices the key is near expiry and emits ``Microsoft.KeyVault.KeyNearExpiry``; the
   event (Key Vault's own, real shape) is delivered to the Event Grid function ``on_key_vault_event``
   through the worker, twice (Event Grid delivers at least once): one rotation, enqueued.
5. The rotation runs as in Azure: the queue listener delivers ``rotation-run`` and re-wrap messages
   to ``run_rotation`` and ``rewrap_worker``, the ``reconcile`` timer resumes it. Storage adopts
   versionless keys once a day, so a day passes on the ARM emulator's clock and ``reconcile``
   retires the old version (the demo sets the grace period to 0 h; Azure: 24 h).
6. The steps, the consumers before and after, a blob decrypted with the new version only, the HTTP
   API's view of the rotation, and the audit record with its chain verified.

Runs in about half a minute after set-up; exits non-zero if any part of the story fails.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from emulators.localazure import LocalAzure

_T0 = time.monotonic()


def say(title: str) -> None:
    print(f"\n== [{time.monotonic() - _T0:5.1f}s] {title}", flush=True)


def show_table(rows: list[dict[str, Any]]) -> None:
    from rotation.cli import table

    if not rows:
        print("  (none)")
        return
    headers = list(rows[0])
    print("  " + table([[r.get(h) for h in headers] for r in rows], headers).replace("\n", "\n  "))


def main() -> int:
    directory = Path(tempfile.mkdtemp(prefix="cmk-demo-"))
    say(f"starting local Azure (Azurite, Key Vault and ARM emulators) in {directory}")
    with LocalAzure(directory) as local:
        return _story(local.endpoints)


def _story(endpoints: dict[str, Any]) -> int:
    from demo.estate import seed_estate

    say("seeding the estate: vault + CMK expiring in 20 days, pinned and versionless storage, AML workspace, blobs")
    estate = seed_estate(endpoints, blobs=12)
    print(f"  managed key: {estate.key_uri} (version {estate.first_version})")
    print(f"  encrypted blobs: {estate.data_location} ({len(estate.blob_names)} blobs, client-side encryption 2.0)")
    before = estate.consumers()
    show_table(before)

    overrides = {
        "ROTATION_LOG_FORMAT": "console",
        "ROTATION_LOG_LEVEL": "WARNING",
        "ROTATION_RETIRE_GRACE_HOURS": "0",
        "ROTATION_AUDIT_SIGNING_KEY": estate.signing_key_uri,
    }
    estate.apply(**overrides)  # for the audit CLI at the end, which runs in this process

    from tests.worker.host import WorkerHost
    from tests.worker.queues import QueueListener

    say("starting the Function app in the Python worker (host stand-in over gRPC, as the Functions host does)")
    settings = {"FUNCTIONS_WORKER_RUNTIME": "python", **estate.settings(**overrides)}
    with WorkerHost(settings) as host, QueueListener(host) as listener:
        meta = host.init_response.worker_metadata
        print(f"  worker: azure-functions-runtime {meta.worker_version} on Python {meta.runtime_version}")
        for name, function in sorted(host.functions.items()):
            trigger = function.trigger
            where = trigger.get("queueName") or trigger.get("schedule") or trigger.get("route") or ""
            print(f"  indexed {name:<20} {trigger['type']:<17} {where}")
        return _through_worker(endpoints, estate, host, listener, before)


def _through_worker(endpoints: dict[str, Any], estate: Any, host: Any, listener: Any, before: Any) -> int:
    from emulators.arm.admin_client import ArmAdmin
    from emulators.keyvault.admin_client import KeyVaultAdmin
    from tests.worker import triggers
    from tests.worker.queues import settle

    def http(method: str, path: str) -> Any:
        return triggers.http(host, method, path)

    say("Key Vault's lifecycle run: the key is inside its Notify window, so Key Vault emits KeyNearExpiry")
    kv_admin = KeyVaultAdmin(endpoints["keyvault"]["admin"], endpoints["ca_bundle"])
    kv_admin.run_lifecycle()
    event = next(
        (
            e
            for e in reversed(kv_admin.events()["recent"])
            if e["eventType"] == "Microsoft.KeyVault.KeyNearExpiry" and e["subject"] == estate.key_name
        ),
        None,
    )
    if event is None:
        print("  FAILED: the Key Vault emulator emitted no KeyNearExpiry event")
        return 1
    print("  " + json.dumps(event, indent=2).replace("\n", "\n  "))

    say("delivering it to the Event Grid function on_key_vault_event through the worker, twice")
    for _ in range(2):  # Event Grid delivers at least once: a repeat changes nothing
        delivery = triggers.event_grid(host, "on_key_vault_event", event)
        if not delivery.succeeded:
            print(f"  FAILED: the invocation failed: {delivery.error}")
            return 1
    listed = http("GET", f"/api/rotations?key={quote(estate.key_uri, safe='')}").json()["rotations"]
    print(f"  rotations of the key after two deliveries: {len(listed)}")
    if len(listed) != 1:
        print("  FAILED: expected exactly one rotation")
        return 1
    rotation_id = listed[0]["rotation_id"]
    print(f"  rotation {rotation_id}, triggered by event {listed[0]['trigger']['event_id']}")

    status = _rotation(http, rotation_id)
    print(f"  status after the event: {status['status']} (stage {status['stage']}): enqueued on rotation-run")

    say("the queue triggers run it: rotation-run -> run_rotation, re-wrap work items -> rewrap_worker")
    delivered, ticks = settle(
        host, listener, lambda: _rotation(http, rotation_id)["status"] not in ("running", "waiting")
    )
    for function in sorted({d.function for d in delivered}):
        done = [d for d in delivered if d.function == function]
        print(f"  {function}: {len(done)} message(s), {sum(d.outcome == 'completed' for d in done)} completed")
    print(f"  reconcile ticks: {len(ticks)}")
    status = _rotation(http, rotation_id)
    print(f"  status: {status['status']} (stage {status['stage']})")

    say("a day passes on the ARM emulator: Storage's daily check moves the versionless account to the new version")
    ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"]).advance_clock(86400 + 60)
    say("the reconcile timer function runs: resumes what is unfinished, retires the old version once nothing uses it")
    for _ in range(3):
        triggers.timer(host, "reconcile")
        status = _rotation(http, rotation_id)
        if status["status"] in ("retired", "failed", "rolled_back", "needs_human", "refused"):
            break
    print(f"  status: {status['status']}")
    levels = {}
    for log in host.logs():
        level = host.pb2.RpcLog.Level.Name(log.level)
        levels[level] = levels.get(level, 0) + 1
    print(f"  worker log lines received over gRPC (RpcLog) by level: {levels}; on its stderr: {len(host.stderr)}")

    say("the rotation's steps (GET /api/rotations/{id} through the Function app's HTTP function)")
    show_table(
        [
            {
                "step": s["name"],
                "status": s["status"],
                "ms": _duration_ms(s),
                "detail": (s.get("detail") or "")[:70],
            }
            for s in status["steps"]
        ]
    )
    print(f"  old version {status['old_version']} -> new version {status['new_version']}")
    if status.get("rewrap"):
        rewrap = status["rewrap"]
        print(f"  re-wrap: {rewrap.get('rewrapped')} re-wrapped, {len(rewrap.get('failed') or [])} failed")

    say("consumers before and after")
    print("  before:")
    show_table(before)
    print("  after:")
    after = estate.consumers()
    show_table(after)
    plaintext = estate.read_blob(estate.blob_names[0])
    versions = _key_versions(estate)
    print(f"  {estate.blob_names[0]} decrypts: {plaintext[:34]!r}...")
    print(f"  key versions now: {versions}")

    say("the audit trail (python -m rotation audit list / show / checkpoint / verify)")
    from rotation import bootstrap
    from rotation.audit.service import list_records
    from rotation.cli import main as cli

    cli(["audit", "list", "--key", estate.key_uri])
    records = list_records(bootstrap.open_audit_log(bootstrap.current()), key_uri=estate.key_uri).records
    if records:
        print()
        cli(["audit", "show", records[0].record.record_id])
    print()
    cli(["audit", "checkpoint"])
    cli(["audit", "verify"])

    ok = status["status"] in ("retired", "awaiting_retirement") and all(
        row["in use"] == status["new_version"] for row in after
    )
    say("done: " + ("the key and every consumer moved to the new version" if ok else "FAILED: see above"))
    return 0 if ok else 1


def _rotation(http: Any, rotation_id: str) -> dict[str, Any]:
    response = http("GET", f"/api/rotations/{rotation_id}")
    body: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"GET /api/rotations/{rotation_id}: {response.status_code} {body}")
    return body


def _duration_ms(step: dict[str, Any]) -> str:
    from datetime import datetime

    if not step.get("finished_at"):
        return ""
    started = datetime.fromisoformat(step["started_at"])
    finished = datetime.fromisoformat(step["finished_at"])
    return str(int((finished - started).total_seconds() * 1000))


def _key_versions(estate: Any) -> str:
    from azure.keyvault.keys import KeyClient

    from rotation.adapters.local_credential import LocalDevelopmentCredential

    client = KeyClient(
        estate.vault_url,
        LocalDevelopmentCredential(estate.principal),
        connection_verify=estate.endpoints["ca_bundle"],
        verify_challenge_resource=False,
    )
    listed = sorted(client.list_properties_of_key_versions(estate.key_name), key=lambda p: p.created_on)
    return ", ".join(f"{p.version[:8]}… ({'enabled' if p.enabled else 'disabled'})" for p in listed)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
