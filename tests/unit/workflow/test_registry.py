"""The consumer registry: kinds in order, the run steps they imply, and no two owners for a name."""

from __future__ import annotations

import pytest

from rotation.consumers import REGISTRY, RUN_STEPS
from rotation.consumers.storage_accounts import STORAGE_ACCOUNTS
from rotation.domain.steps import HISTORICAL_RUN_STEPS
from tests.unit.workflow.toy_kind import FakeGadgets, GadgetUnit


class TestRegistry:
    """Registering is additive and checked; the step list follows the registry's order."""

    def test_todays_kinds_run_the_historical_list_plus_the_wider_estate(self) -> None:
        wider = ("repoint_registries", "repoint_disk_encryption_sets", "track_registries", "track_disk_encryption_sets")

        assert [u.kind for u in REGISTRY] == [
            "storage_account",
            "ml_workspace",
            "container_registry",
            "disk_encryption_set",
            "data_location",
            "unknown_reference",
        ]
        assert tuple(s for s in RUN_STEPS if s not in wider) == HISTORICAL_RUN_STEPS
        assert RUN_STEPS.index("repoint_disk_encryption_sets") < RUN_STEPS.index("track_versionless")
        assert RUN_STEPS.index("track_disk_encryption_sets") < RUN_STEPS.index("rewrap")

    def test_a_registered_kind_adds_its_step_after_the_others(self) -> None:
        registry = REGISTRY.register(GadgetUnit(FakeGadgets()))

        steps = registry.run_steps()

        assert steps.index("repoint_gadgets") == steps.index("repoint_disk_encryption_sets") + 1
        assert steps.index("repoint_gadgets") < steps.index("track_versionless")
        assert REGISTRY.run_steps() == RUN_STEPS
        assert registry.unit("gadget") is not None
        assert REGISTRY.unit("gadget") is None

    def test_owner_of_a_step(self) -> None:
        assert REGISTRY.owner("repoint_storage") == (STORAGE_ACCOUNTS, "repoint")
        assert REGISTRY.owner("track_versionless") == (STORAGE_ACCOUNTS, "settle")
        assert REGISTRY.owner("plan") is None

    def test_a_kind_registered_twice_is_refused(self) -> None:
        with pytest.raises(ValueError, match="registered twice"):
            REGISTRY.register(STORAGE_ACCOUNTS)

    def test_a_step_named_like_the_workflows_own_is_refused(self) -> None:
        unit = GadgetUnit(FakeGadgets())
        unit.repoint_step = "cut_over"

        with pytest.raises(ValueError, match="not the workflow's own"):
            REGISTRY.register(unit)
