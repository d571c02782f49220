"""An RP-side Key Vault outage during rotations of several keys, then its end (issue 15, "Done when"):
within a few reconciler ticks every consumer is on the newest version, with one new version per key.
Real SDK clients against the ARM and Key Vault emulators; the ARM emulator's Key Vault outage mode makes
Storage and ML refuse their key checks as unreachable while it lasts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.domain.model import KeyRef, Trigger, TriggerKind
from rotation.service import sweep
from tests.integration.workflow.estate import RealEstate, build_estate

TIMER = Trigger(TriggerKind.TIMER)


@pytest.fixture
def estate(local_azure: dict[str, Any]) -> Iterator[RealEstate]:
    estate = build_estate(local_azure, pinned=1, versionless=0, workspaces=1)
    yield estate
    estate.arm_admin.end_keyvault_outage()


def consumers(estate: RealEstate, key: KeyRef) -> set[str]:
    """The versions the key's consumers are on (pinned accounts and workspaces)."""
    accounts = estate.pinned if key == estate.key else [estate.unrelated[0]]
    workspaces = estate.workspaces if key == estate.key else [estate.unrelated[1]]
    found = {estate.account_version(a)[0] for a in accounts}
    found |= {estate.workspace_key(w).rstrip("/").rsplit("/", 1)[-1] for w in workspaces}
    return found


def newest(estate: RealEstate, key: KeyRef) -> str:
    return str(estate.versions(key)[-1].version)


def test_outage_then_its_end_heals_within_a_few_ticks(estate: RealEstate) -> None:
    keys = (estate.key, estate.other_key)
    client = estate.keys()
    for key in keys:  # both keys' only version expires in 3 days: the reconciler must rotate them
        client.update_key_properties(key.name, expires_on=datetime.now(UTC) + timedelta(days=3))
    managed = ",".join(k.uri for k in keys)
    estate.arm_admin.start_keyvault_outage(duration_s=600)

    for _ in range(2):  # ticks during the outage
        sweep(estate.deps(ROTATION_MANAGED_KEYS=managed), TIMER)
    during = {k: consumers(estate, k) for k in keys}
    versions_during = {k: len(estate.versions(k)) for k in keys}
    estate.arm_admin.end_keyvault_outage()
    ticks = 0
    while ticks < 4 and not all(consumers(estate, k) == {newest(estate, k)} for k in keys):
        sweep(estate.deps(ROTATION_MANAGED_KEYS=managed), TIMER)
        ticks += 1

    assert all(newest(estate, k) not in during[k] for k in keys)  # the outage held every consumer back
    assert versions_during == dict.fromkeys(keys, 2)
    assert ticks <= 3
    for key in keys:
        assert consumers(estate, key) == {newest(estate, key)}
        assert len(estate.versions(key)) == 2  # one new version per key, whatever the ticks
