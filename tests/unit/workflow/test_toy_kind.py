"""A consumer kind registered from outside ``rotation/`` takes part in every step, like the built-in ones."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from rotation.consumers import REGISTRY
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import plan, run_rotation, start_rotation, sweep
from tests.fakes.estate import KEY, Estate, rewrap_estate, standard_estate
from tests.unit.workflow.toy_kind import FakeGadgets, GadgetUnit

CLI = Trigger(TriggerKind.CLI)
TIMER = Trigger(TriggerKind.TIMER)


def gadget_estate() -> tuple[Estate, str, FakeGadgets]:
    estate, old = standard_estate()
    gadgets = FakeGadgets()
    gadgets.add("g1", KEY.version_uri(old))
    gadgets.add("g2", KEY.version_uri(old))
    gadgets.add("elsewhere", "https://kv-main.vault.azure.net/keys/other/x1")
    estate.consumers = REGISTRY.register(GadgetUnit(gadgets))
    return estate, old, gadgets


def adopt_versionless(estate: Estate, version: str) -> None:
    estate.follower_adopts(version)


class TestToyKind:
    """Registering a unit is all it takes: planned, re-pointed, verified, retired; rolled back on a bad read-back."""

    def test_plan_lists_it_with_its_permissions(self) -> None:
        estate, _old, _gadgets = gadget_estate()

        result = plan(estate.deps(), KEY.uri)

        assert sorted(c.resource_id for c in result.consumers if c.kind == "gadget") == ["/gadgets/g1", "/gadgets/g2"]
        assert result.unrelated_consumers == 3
        assert result.permissions["repoint_gadgets"] == ("Toy/gadgets/write",)
        assert "Toy/gadgets/read" in result.permissions["plan"]

    def test_repoints_verifies_and_retires(self) -> None:
        estate, old, gadgets = gadget_estate()

        view = start_rotation(estate.deps(), KEY.uri, CLI)
        new = str(view.new_version)
        adopt_versionless(estate, new)
        gadgets.set_key("/gadgets/g2", KEY.version_uri(old))  # someone puts one back after cut-over
        estate.clock.advance(timedelta(hours=25))
        blocked = sweep(estate.deps(), TIMER)
        gadgets.set_key("/gadgets/g2", KEY.version_uri(new))
        retired = sweep(estate.deps(), TIMER)

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert "repoint_gadgets" in [s.name for s in view.steps]
        assert next(s for s in view.steps if s.name == "verify_consumers").status == "succeeded"
        assert {c.resource_id: c.status for c in view.consumers if c.kind == "gadget"} == {
            "/gadgets/g1": "changed",
            "/gadgets/g2": "changed",
        }
        assert ("/gadgets/g1", KEY.version_uri(new)) in gadgets.writes
        assert gadgets.get("/gadgets/elsewhere").key_id.endswith("/other/x1")
        assert blocked.count("waiting") == 1
        assert "gadget g2 uses it" in blocked.items[0].detail
        assert retired.count("retired") == 1
        assert estate.keys.all_versions(KEY)[0].enabled is False

    def test_a_bad_read_back_rolls_it_back(self) -> None:
        estate, old, gadgets = gadget_estate()
        gadgets.corrupt = 1

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.ROLLED_BACK
        rolled = [c for c in view.consumers if c.status == "rolled_back"]
        assert [c.resource_id for c in rolled] == ["/gadgets/g1"]
        assert gadgets.get("/gadgets/g1").key_id == KEY.version_uri(old)
        assert gadgets.writes[-1] == ("/gadgets/g1", KEY.version_uri(old))
        assert view.error is not None
        assert "g1 reads back corrupted" in view.error["message"]
        assert "rolled_back" in [r.outcome for r in estate.audit.for_rotation(view.rotation_id)]

    def test_dry_run_walks_its_step(self) -> None:
        estate, _old, gadgets = gadget_estate()

        view = start_rotation(estate.deps(), KEY.uri, CLI, dry_run=True)

        step = next(s for s in view.steps if s.name == "repoint_gadgets")
        assert (step.status, step.detail) == ("skipped", "would re-point 2 gadgets: g1, g2")
        assert gadgets.writes == []
        assert estate.journal.writes == 0


class TestInsertedStep:
    """A rotation journalled before a kind (and its step) was registered resumes without it, untouched."""

    def test_resumes_under_the_new_build(self) -> None:
        estate, old = rewrap_estate()
        in_flight = start_rotation(estate.deps(), KEY.uri, CLI)  # waits on its re-wrap
        gadgets = FakeGadgets()
        gadgets.add("g1", KEY.version_uri(old))
        estate.consumers = REGISTRY.register(GadgetUnit(gadgets))  # the deploy adds a kind and its step

        run_rotation(estate.deps(), in_flight.rotation_id)
        resumed = run_rotation(estate.deps(), in_flight.rotation_id)

        assert in_flight.status == RotationStatus.WAITING
        assert resumed.status == RotationStatus.AWAITING_RETIREMENT, resumed.error
        assert [s.name for s in resumed.steps] == list(REGISTRY.run_steps())
        assert gadgets.writes == []
        state, _ = estate.journal.load(in_flight.rotation_id)
        assert "repoint_gadgets" not in state.run_steps
        assert "repoint_gadgets" in estate.consumers.run_steps()

    def test_the_next_rotation_runs_the_new_step(self) -> None:
        estate, old, gadgets = gadget_estate()
        first = start_rotation(replace(estate.deps(), consumers=REGISTRY), KEY.uri, CLI)
        adopt_versionless(estate, str(first.new_version))
        gadgets.set_key("/gadgets/g1", KEY.version_uri(str(first.new_version)))
        gadgets.set_key("/gadgets/g2", KEY.version_uri(str(first.new_version)))
        estate.clock.advance(timedelta(hours=25))
        sweep(estate.deps(), TIMER)

        second = start_rotation(estate.deps(), KEY.uri, CLI)

        assert old != first.new_version
        assert second.status == RotationStatus.AWAITING_RETIREMENT, second.error
        assert "repoint_gadgets" in [s.name for s in second.steps]
        assert gadgets.get("/gadgets/g1").key_id == KEY.version_uri(str(second.new_version))

    def test_a_build_without_the_kind_stops_for_a_human(self) -> None:
        estate, old, gadgets = gadget_estate()
        view = start_rotation(estate.deps(inline=False), KEY.uri, CLI)  # journalled with repoint_gadgets
        estate.consumers = REGISTRY  # a deploy that dropped the kind while the rotation waited

        result = run_rotation(estate.deps(), view.rotation_id)

        assert result.status == RotationStatus.NEEDS_HUMAN
        assert result.error is not None
        assert "repoint_gadgets" in result.error["message"]
        assert len(estate.keys.all_versions(KEY)) == 1
        assert gadgets.writes == []
        assert all(a.key_version in ("", old) for a in estate.storage.accounts.values() if a.key_name == KEY.name)
