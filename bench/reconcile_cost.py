"""What one tick of the ``reconcile`` timer function costs against a big vault, from the Key Vault emulator's counters.

``python -m bench.reconcile_cost [--keys 5000]``: a vault of N keys, two of them managed (one inside
the near-expiry window, one far from it), the timer function's body run twice with the real adapters:
the first tick of a deployment (the vault's size unknown: a listing cut
at 2 pages, keys it did not reach deferred), then the next. Each tick's survey costs at most
min(managed keys, ceil(N / 25)) Key Vault calls (here 2), plus the one rotation the second tick starts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MANAGED = ("managed-near-expiry", "managed-later")


def seed_vault(endpoints: dict[str, Any], keys: int, managed: dict[str, timedelta]) -> SeededVault:
    """A new vault of ``keys`` keys in running local Azure: ``managed`` (name -> time to expiry) and EC fillers."""
    from azure.keyvault.keys import KeyClient

    from emulators.arm.admin_client import ArmAdmin
    from emulators.keyvault.admin_client import KeyVaultAdmin
    from rotation.adapters.local_credential import LocalDevelopmentCredential

    ca = endpoints["ca_bundle"]
    principal, subscription, suffix = str(uuid.uuid4()), str(uuid.uuid4()), uuid.uuid4().hex[:6]
    arm = ArmAdmin(endpoints["arm"]["admin"], ca)
    arm.create_resource_group(subscription, f"rg-sweep-{suffix}")
    arm.add_role_assignment(principal, "Contributor", f"/subscriptions/{subscription}")
    kv = KeyVaultAdmin(endpoints["keyvault"]["admin"], ca)
    vault = kv.create_vault(f"kv-sweep-{suffix}", subscription_id=subscription, resource_group=f"rg-sweep-{suffix}")
    kv.set_throttle(vault["name"], enabled=False)
    client = KeyClient(
        vault["url"], LocalDevelopmentCredential(principal), connection_verify=ca, verify_challenge_resource=False
    )
    now = datetime.now(UTC)
    for name, expires_in in managed.items():
        client.create_rsa_key(name, size=2048, expires_on=now + expires_in)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.create_ec_key(f"bulk-{i:05d}"), range(keys - len(managed))))
    settings = {
        "AzureWebJobsStorage": endpoints["storage"]["connection_string"],
        "ROTATION_MANAGED_KEYS": ",".join(f"{vault['url'].rstrip('/')}/keys/{name}" for name in managed),
        "ROTATION_SUBSCRIPTIONS": subscription,
        "ROTATION_ARM_ENDPOINT": endpoints["arm"]["url"],
        "ROTATION_CA_BUNDLE": ca,
        "ROTATION_LOCAL_PRINCIPAL": principal,
        "ROTATION_VERIFY_CHALLENGE_RESOURCE": "false",
        "ROTATION_JOURNAL_TABLE": f"sweep{suffix}",
        "ROTATION_AUDIT_TABLE": f"sweepaudit{suffix}",
        "ROTATION_SWEEP_TABLE": f"sweepmemory{suffix}",
        "ROTATION_REWRAP_QUEUE": f"sweep-{suffix}",
        "ROTATION_LOG_LEVEL": "WARNING",
    }
    return SeededVault(vault, client, kv, settings, time.monotonic() - started)


@dataclass
class SeededVault:
    vault: dict[str, Any]
    client: Any  # azure.keyvault.keys.KeyClient
    admin: Any  # emulators.keyvault.admin_client.KeyVaultAdmin
    settings: dict[str, str]
    seed_seconds: float


def measure_sweep(endpoints: dict[str, Any], keys: int) -> dict[str, Any]:
    """Seed a vault of ``keys`` keys in running local Azure, run ``reconcile`` once, return the counts.

    Sets the app settings in ``os.environ`` (callers restore them).
    """

    from rotation import bootstrap
    from rotation.triggers.timer import run_sweep

    days = (timedelta(days=5), timedelta(days=300))
    seeded = seed_vault(endpoints, keys, dict(zip(MANAGED, days, strict=True)))
    vault, client, kv, seeded_s = seeded.vault, seeded.client, seeded.admin, seeded.seed_seconds
    os.environ.update(seeded.settings)

    bootstrap.override(None)
    bootstrap.override_dependencies(None)
    bootstrap.use_inline_dispatch(True)
    ticks = []
    try:
        for _ in range(2):
            kv.reset_counters()
            started = time.monotonic()
            summary = run_sweep()  # the body of the ``reconcile`` function, which returns nothing to the host
            counters = dict(kv.counters().get(vault["name"], {}))
            survey = {name: summary[name] for name in ("list_calls", "key_reads")}  # as the sweep counted them
            ticks.append(
                {
                    "survey_calls": survey,  # the listing's pages and the managed keys' version listings
                    "deferred": len(summary["deferred"]),
                    "started": sum(1 for item in summary["items"] if item["action"] == "started"),
                    "action_calls": sum(counters.values()) - sum(survey.values()),  # the rotation it starts
                    "key_vault_calls": counters,
                    "sweep_seconds": round(time.monotonic() - started, 2),
                }
            )
    finally:
        bootstrap.use_inline_dispatch(False)
    return {
        "benchmark": "reconcile_cost",
        "keys_in_vault": keys,
        "managed_keys": len(MANAGED),
        "ticks": ticks,
        "versions": {name: sum(1 for _ in client.list_properties_of_key_versions(name)) for name in MANAGED},
        "seed_seconds": round(seeded_s, 1),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile_cost")
    parser.add_argument("--keys", type=int, default=5000, help="keys in the vault (default 5000)")
    args = parser.parse_args(argv)
    from emulators.localazure import LocalAzure

    saved = dict(os.environ)
    try:
        with LocalAzure(Path(tempfile.mkdtemp(prefix="bench-reconcile-"))) as local:
            return measure_sweep(local.endpoints, args.keys)
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
