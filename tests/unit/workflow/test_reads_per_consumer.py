"""A large estate's rotation reads ARM in proportion to its consumers, once each, not once per read-site.

ARM's read bucket (250, refilled 25/s per subscription and principal) is what a rotation of hundreds
of consumers runs into: five reads per storage account made 200 accounts wait ~35 s for the bucket.
A consumer's read before its write comes from the step's discovery, its read-back from the write's
answer, and ``verify_consumers`` reads a kind by one listing. The fakes count the calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import start_rotation
from tests.fakes.estate import KEY, Estate, pinned_estate

CLI = Trigger(TriggerKind.CLI)


def _counted(calls: Counter[str], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(*args, **kwargs)

    return counted


def _estate(accounts: int, workspaces: int) -> tuple[Estate, Counter[str]]:
    estate, _ = pinned_estate(accounts, bound=4, workspaces=workspaces)
    calls: Counter[str] = Counter()
    for port, names in (
        (estate.storage, ("list_accounts", "get_account", "set_key_version")),
        (estate.workspaces, ("list_workspaces", "get_workspace", "begin_key_identifier")),
    ):
        for name in names:
            setattr(port, name, _counted(calls, name, getattr(port, name)))
    return estate, calls


class TestReadsPerConsumer:
    """One write per consumer and no read of one consumer at a time: the listings are a few per step,
    whatever the estate's size."""

    def test_no_read_of_one_consumer_before_its_write(self) -> None:
        estate, calls = _estate(accounts=40, workspaces=6)

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert (calls["set_key_version"], calls["begin_key_identifier"]) == (40, 6)
        assert calls["get_account"] == 0  # read by the listing before, the PATCH's answer after
        assert calls["get_workspace"] == 6  # read by the listing before, once after its long-running operation

    def test_listings_do_not_grow_with_the_estate(self) -> None:
        small, small_calls = _estate(accounts=3, workspaces=2)
        large, large_calls = _estate(accounts=60, workspaces=2)

        start_rotation(small.deps(), KEY.uri, CLI)
        start_rotation(large.deps(), KEY.uri, CLI)

        assert large_calls["list_accounts"] == small_calls["list_accounts"] <= 4

    def test_a_write_answered_with_another_version_is_rolled_back(self) -> None:
        estate, _ = _estate(accounts=3, workspaces=0)
        storage = estate.storage
        write = storage.set_key_version

        def answers_the_old_one(account_id: str, vault_url: str, key_name: str, key_version: str, **kw: Any) -> Any:
            before = storage.get_account(account_id)
            write(account_id, vault_url, key_name, key_version, **kw)
            return before  # Azure's answer: the account is still on the version it had

        storage.set_key_version = answers_the_old_one  # type: ignore[method-assign]

        view = start_rotation(estate.deps(), KEY.uri, CLI)

        assert view.status == RotationStatus.ROLLED_BACK
        assert view.error is not None
        assert "reads back" in view.error["message"]
        assert {c.status for c in view.consumers} >= {"rolled_back"}
