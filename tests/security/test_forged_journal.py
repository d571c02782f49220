"""Finding 2: journal rows are input. A forged or rewritten rotation makes the service act on nothing the
settings and a fresh discovery do not name, on every path that acts (run, resume, sweep, retire, rollback).

Over the in-memory fakes (they keep real state): the attacker edits journal entries directly, as anyone
with Table Data Contributor on AzureWebJobsStorage can.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rotation.domain.model import ConsumerChange, ConsumerKind, KeyRef, RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import Step, record_step
from rotation.errors import UnknownKeyError
from rotation.service import run_rotation, start_rotation, sweep
from tests.fakes.estate import KEY, OTHER_KEY, VAULT, Estate, standard_estate

pytestmark = pytest.mark.unit
CLI = Trigger(TriggerKind.CLI, caller="tester")
TIMER = Trigger(TriggerKind.TIMER)
UNMANAGED = KeyRef(VAULT, "unmanaged")


def estate_with_unmanaged_key() -> tuple[Estate, str]:
    estate, _old = standard_estate()
    only = estate.keys.add_key(UNMANAGED).version
    assert UNMANAGED.uri not in estate.settings.managed_keys
    return estate, only


def forge(estate: Estate, rotation_id: str, **changes: object) -> None:
    state, etag = estate.journal.load(rotation_id)
    estate.journal.save(replace(state, **changes), etag)  # type: ignore[arg-type]


class TestUnmanagedKeyInAJournalRow:
    """A rotation rewritten to name an unmanaged key is refused on the run and the sweep paths."""

    def test_run_creates_no_version_of_an_unmanaged_key(self) -> None:
        estate, _only = estate_with_unmanaged_key()
        view = start_rotation(estate.deps(inline=False), KEY.uri, CLI)
        forge(estate, view.rotation_id, key_uri=UNMANAGED.uri)

        with pytest.raises(UnknownKeyError):
            run_rotation(estate.deps(), view.rotation_id)

        assert len(estate.keys.all_versions(UNMANAGED)) == 1

    def test_sweep_disables_no_version_of_an_unmanaged_key(self) -> None:
        estate, only = estate_with_unmanaged_key()
        view = start_rotation(estate.deps(inline=False), KEY.uri, CLI)
        past = estate.clock.current - timedelta(days=30)
        forge(
            estate,
            view.rotation_id,
            key_uri=UNMANAGED.uri,
            status=RotationStatus.AWAITING_RETIREMENT,
            old_version=only,
            new_version=only,
            retire_after=past,
        )

        report = sweep(estate.deps(), TIMER)

        assert estate.keys.get_key(UNMANAGED, only).enabled is True
        assert report.count("retired") == 0


class TestStoredConsumersAreFoundAgain:
    """A consumer added to a journal row that a fresh discovery does not find as a consumer of the key is
    reported, not re-pointed."""

    def test_forged_consumer_is_not_repointed(self) -> None:
        estate, old = standard_estate()
        view = start_rotation(estate.deps(inline=False), KEY.uri, CLI)
        unrelated = next(a for a in estate.storage.accounts.values() if a.name == "unrelated")
        state, _ = estate.journal.load(view.rotation_id)
        kind = ConsumerKind.STORAGE_ACCOUNT
        forged = ConsumerChange(kind, unrelated.account_id, unrelated.key_version, None, "planned")
        planned = record_step(state, Step.PLAN, "succeeded", estate.clock.current, "forged")  # past the plan step
        forge(estate, view.rotation_id, steps=planned.steps, stage=planned.stage, old_version=old, consumers=(forged,))

        run_rotation(estate.deps(), view.rotation_id)

        after = estate.storage.get_account(unrelated.account_id)
        assert (after.key_name, after.key_version) == (OTHER_KEY.name, unrelated.key_version)
        final, _ = estate.journal.load(view.rotation_id)
        recorded = next(c for c in final.consumers if c.resource_id == unrelated.account_id)
        assert recorded.status != "changed"
        assert "not found" in recorded.detail


class TestRetireRederivesTheVersion:
    """A cut-over rotation rewritten so that its old version is the key's current one does not disable it."""

    def test_current_version_is_never_retired(self) -> None:
        estate, _old = standard_estate()
        view = start_rotation(estate.deps(), KEY.uri, CLI)
        assert view.status == RotationStatus.AWAITING_RETIREMENT
        current = estate.keys.latest(KEY).version
        # Consumers of the key outside the configured subscriptions are invisible to the reference check.
        estate.storage.accounts.clear()
        estate.workspaces.workspaces.clear()
        forge(estate, view.rotation_id, old_version=current, retire_after=estate.clock.current - timedelta(days=1))

        sweep(estate.deps(), TIMER)

        assert estate.keys.get_key(KEY, current).enabled is True
