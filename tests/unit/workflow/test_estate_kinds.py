"""Container registries, disk encryption sets and unknown references take part in plan, rotation and retirement.

The estate: a pinned and a versionless registry, a pinned and an auto-rotating disk encryption set, a
Cosmos DB account (no unit for it) naming the key without a version in another subscription, and a
storage account pinned to the old version in a subscription outside ``ROTATION_SUBSCRIPTIONS``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import plan, start_rotation, sweep
from tests.fakes.estate import KEY, Estate, standard_estate
from tests.unit.workflow.test_toy_kind import adopt_versionless

CLI = Trigger(TriggerKind.CLI)
TIMER = Trigger(TriggerKind.TIMER)
ELSEWHERE = str(uuid.UUID(int=7))


def wider_estate() -> tuple[Estate, str, dict[str, str]]:
    estate, old = standard_estate()
    ids = {
        "acr_pinned": estate.registries.add("acrpinned", KEY, old).registry_id,
        "acr_follows": estate.registries.add("acrfollows", KEY, None, in_use=old).registry_id,
        "des_pinned": estate.disk_encryption_sets.add("despinned", KEY, old).set_id,
        "des_auto": estate.disk_encryption_sets.add("desauto", KEY, old, auto_rotation=True).set_id,
        "cosmos": estate.references.add_resource(
            "Microsoft.DocumentDB/databaseAccounts", "cosmos", {"keyVaultKeyUri": KEY.uri}, subscription=ELSEWHERE
        ),
        "far_account": estate.references.add_resource(
            "Microsoft.Storage/storageAccounts",
            "faraway",
            {
                "encryption": {
                    "keyvaultproperties": {"keyvaulturi": KEY.vault_url, "keyname": KEY.name, "keyversion": old}
                }
            },
            subscription=ELSEWHERE,
        ),
    }
    return estate, old, ids


class TestPlan:
    """The plan lists every reference found, with its kind and the version it uses."""

    def test_every_reference_with_kind_and_version(self) -> None:
        estate, old, ids = wider_estate()

        result = plan(estate.deps(), KEY.uri)

        by_id = {c.resource_id: c for c in result.consumers}
        kinds = {key: (by_id[i].kind, by_id[i].before, by_id[i].status) for key, i in ids.items()}
        assert kinds == {
            "acr_pinned": ("container_registry", old, "planned"),
            "acr_follows": ("container_registry", "versionless", "tracking"),
            "des_pinned": ("disk_encryption_set", old, "planned"),
            "des_auto": ("disk_encryption_set", "versionless", "tracking"),
            "cosmos": ("unknown_reference", "versionless", "unchanged"),
            "far_account": ("unknown_reference", old, "unchanged"),
        }
        assert f"in use: {old}" in by_id[ids["acr_follows"]].detail
        assert f"in use: {old}" in by_id[ids["des_auto"]].detail
        assert "(properties.keyVaultKeyUri) names the key without a version" in by_id[ids["cosmos"]].detail
        assert f"properties.encryption.keyvaultproperties) names {old}" in by_id[ids["far_account"]].detail
        assert result.ok, result.problems
        assert estate.references.queries == 3  # one per kind found through it: the adapter reuses the answer


class TestRotationAndRetirement:
    """Pinned ones move; self-rotating ones are tracked; retirement waits for, and names, each of the others."""

    def test_moves_tracks_blocks_then_retires(self) -> None:
        estate, old, ids = wider_estate()

        view = start_rotation(estate.deps(), KEY.uri, CLI)
        new = str(view.new_version)
        adopt_versionless(estate, new)
        estate.clock.advance(timedelta(hours=25))
        blocked = sweep(estate.deps(), TIMER)
        estate.registries.auto_rotate(ids["acr_follows"], KEY, new)
        estate.disk_encryption_sets.auto_rotate(ids["des_auto"], KEY, new)  # old key still in previousKeys
        still = sweep(estate.deps(), TIMER)
        estate.disk_encryption_sets.auto_rotate(ids["des_auto"], KEY, new, finished=True)
        estate.references.remove_resource(ids["cosmos"])
        estate.references.remove_resource(ids["far_account"])
        enabled_until_resolved = estate.keys.get_key(KEY, old).enabled
        retired = sweep(estate.deps(), TIMER)

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        statuses = {c.resource_id: c.status for c in view.consumers}
        assert statuses[ids["acr_pinned"]] == statuses[ids["des_pinned"]] == "changed"
        assert statuses[ids["acr_follows"]] == statuses[ids["des_auto"]] == "tracking"
        cosmos = next(c for c in view.consumers if c.resource_id == ids["cosmos"])
        assert (cosmos.kind, cosmos.status) == ("unknown_reference", "unchanged")
        assert "properties.keyVaultKeyUri" in cosmos.detail
        audited = [r for r in estate.audit.for_rotation(view.rotation_id) if r.outcome == "succeeded"]
        assert any(c.resource_id == ids["cosmos"] and "properties.keyVaultKeyUri" in c.detail
                   for c in audited[0].consumers)  # fmt: skip
        assert estate.registries.get_registry(ids["acr_pinned"]).key_identifier == KEY.version_uri(new)
        assert estate.disk_encryption_sets.get_set(ids["des_pinned"]).key_url == KEY.version_uri(new)
        detail = blocked.items[0].detail
        for name in ("acrfollows", "desauto", ids["cosmos"], ids["far_account"], "properties.keyVaultKeyUri"):
            assert name in detail, name
        assert "desauto still uses it (previous key" in still.items[0].detail
        assert ids["cosmos"] in still.items[0].detail
        assert enabled_until_resolved is True
        assert retired.count("retired") == 1
        assert estate.keys.get_key(KEY, old).enabled is False

    def test_a_refused_registry_rolls_the_rotation_back(self) -> None:
        estate, old, ids = wider_estate()
        estate.registries.faults.add("set_key_identifier", _refused())

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.ROLLED_BACK
        assert estate.registries.get_registry(ids["acr_pinned"]).key_identifier == KEY.version_uri(old)
        assert estate.disk_encryption_sets.get_set(ids["des_pinned"]).key_url == KEY.version_uri(old)

    def test_dry_run_describes_the_new_steps(self) -> None:
        estate, _old, _ids = wider_estate()

        view = start_rotation(estate.deps(), KEY.uri, CLI, dry_run=True)

        details = {s.name: s.detail for s in view.steps}
        assert details["repoint_registries"] == "would re-point 1 pinned container registries: acrpinned"
        assert details["repoint_disk_encryption_sets"] == "would re-point 1 pinned disk encryption sets: despinned"
        assert estate.registries.writes == estate.disk_encryption_sets.writes == []


def _refused() -> Exception:
    from rotation.errors import VerificationFailed

    return VerificationFailed(
        "could not re-point container registry acrpinned: the key was refused (KeyVaultKeyDisabled)"
    )
