"""Properties of planning over generated estates: exactly the key's consumers, never another key's."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from rotation.consumers import REGISTRY
from rotation.domain.model import ConsumerKind, KeyRef, KeyVersion
from rotation.domain.plan import Observed, build_plan
from tests.fakes.arm import FakeStorageAccounts, FakeVaults, FakeWorkspaces

VAULT = "https://kv.vault.azure.net"
KEYS = [KeyRef(VAULT, "cmk"), KeyRef(VAULT, "other"), KeyRef("https://kv2.vault.azure.net", "cmk")]
VERSIONS = ["v1", "v2", ""]

consumer = st.tuples(st.sampled_from(["storage", "workspace"]), st.integers(0, 2), st.sampled_from(VERSIONS))


class TestPlanProperties:
    """For any mix of consumers: the plan lists exactly those of the key, one change each, others counted."""

    @settings(max_examples=150, deadline=None)
    @given(st.lists(consumer, max_size=12))
    def test_exactly_the_consumers_of_the_key(self, consumers: list[tuple[str, int, str]]) -> None:
        vaults = FakeVaults()
        vault = vaults.add(VAULT)
        vaults.add("https://kv2.vault.azure.net")
        storage, workspaces = FakeStorageAccounts(), FakeWorkspaces(vaults)
        accounts, spaces = [], []
        for i, (kind, key_index, version) in enumerate(consumers):
            key = KEYS[key_index]
            if kind == "storage":
                accounts.append(storage.add(f"sa{i}", key, version, in_use="v1"))
            else:
                spaces.append(workspaces.add(f"ws{i}", key, version, vault_arm_id=vault.arm_id))
        now = datetime(2026, 1, 1, tzinfo=UTC)
        versions = tuple(KeyVersion(KEYS[0], v, True, now.replace(hour=h)) for h, v in enumerate(("v1", "v2")))
        observed = Observed(KEYS[0], versions, vault, {"storage_account": accounts, "ml_workspace": spaces})

        plan = build_plan(observed, REGISTRY.units)

        mine = [c for i, c in enumerate(consumers) if c[1] == 0]
        assert len(plan.consumers) == len(mine)
        assert len(plan.changes) == len(mine)
        assert plan.unrelated == len(consumers) - len(mine)
        assert plan.old_version == "v2"
        tracking = [c for c in plan.changes if c.status == "tracking"]
        assert len(tracking) == sum(1 for kind, k, v in mine if kind == "storage" and v == "")
        assert all(c.kind in (ConsumerKind.STORAGE_ACCOUNT, ConsumerKind.ML_WORKSPACE) for c in plan.changes)
        assert {c.resource_id.rsplit("/", 1)[-1] for c in plan.changes} == {
            f"{'sa' if kind == 'storage' else 'ws'}{i}" for i, (kind, k, _v) in enumerate(consumers) if k == 0
        }
