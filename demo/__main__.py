"""``make demo``: local Azure, a realistic estate, and one CMK rotation told end to end.

1. Start local Azure: Azurite plus this project's Key Vault and ARM emulators (HTTPS, generated CA).
2. Seed an estate (``demo/estate.py``): a vault with a CMK expiring in 20 days, a storage account
   pinned to its version, one following it versionless, an AML workspace, a container of
   client-side-encrypted blobs.
3. Key Vault notices the key is near expiry and emits ``Microsoft.KeyVault.KeyNearExpiry``; the
   event (Key Vault's own, real shape) is delivered to the Event Grid function ``on_key_vault_event``
   exactly as the Functions host would: decoded by the binding into a ``func.EventGridEvent``, and
   delivered twice (Event Grid delivers at least once): one rotation.
4. The rotation runs: new version, re-point, re-wrap. Storage adopts versionless keys once a day,
   so a day passes on the ARM emulator's clock and the ``reconcile`` timer function carries the
   rotation on, then retires the old version (the demo sets the grace period to 0 h; Azure: 24 h).
5. The steps, the consumers before and after, a blob decrypted with the new version only, the HTTP
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
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter

    from demo.estate import seed_estate
    from emulators.arm.admin_client import ArmAdmin
    from emulators.keyvault.admin_client import KeyVaultAdmin

    say("seeding the estate: vault + CMK expiring in 20 days, pinned and versionless storage, AML workspace, blobs")
    estate = seed_estate(endpoints, blobs=12)
    print(f"  managed key: {estate.key_uri} (version {estate.first_version})")
    print(f"  encrypted blobs: {estate.data_location} ({len(estate.blob_names)} blobs, client-side encryption 2.0)")
    before = estate.consumers()
    show_table(before)

    estate.apply(
        ROTATION_LOG_FORMAT="console",
        ROTATION_LOG_LEVEL="WARNING",
        ROTATION_RETIRE_GRACE_HOURS="0",
        ROTATION_AUDIT_SIGNING_KEY=estate.signing_key_uri,
    )
    from rotation import bootstrap
    from tests.functions_host import http, invoke

    # No queue trigger runs locally: started rotations and re-wrap work run in this process.
    bootstrap.use_inline_dispatch(True)

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

    say("delivering it to the Event Grid function on_key_vault_event (decoded by the Functions binding), twice")
    delivered = EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
    invoke("on_key_vault_event", delivered)
    invoke("on_key_vault_event", delivered)  # Event Grid delivers at least once: a repeat changes nothing
    listed = json.loads(http("GET", f"/api/rotations?key={quote(estate.key_uri, safe='')}").get_body())["rotations"]
    print(f"  rotations of the key after two deliveries: {len(listed)}")
    if len(listed) != 1:
        print("  FAILED: expected exactly one rotation")
        return 1
    rotation_id = listed[0]["rotation_id"]
    print(f"  rotation {rotation_id}, triggered by event {listed[0]['trigger']['event_id']}")

    status = _rotation(http, rotation_id)
    print(f"  status after the event: {status['status']} (stage {status['stage']})")
    say("a day passes on the ARM emulator: Storage's daily check moves the versionless account to the new version")
    ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"]).advance_clock(86400 + 60)
    say("the reconcile timer function runs: resumes what is unfinished, retires the old version once nothing uses it")
    from azure.functions.timer import TimerRequest

    for _ in range(3):
        invoke("reconcile", TimerRequest())
        status = _rotation(http, rotation_id)
        if status["status"] in ("retired", "failed", "rolled_back", "needs_human", "refused"):
            break
    print(f"  status: {status['status']}")

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
    body: dict[str, Any] = json.loads(response.get_body())
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
