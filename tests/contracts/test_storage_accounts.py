"""The ``StorageAccounts`` contract: ``FakeStorageAccounts`` and ``ArmStorageAccounts`` (the ARM emulator) agree.

Accounts on customer-managed keys are listed per subscription with their vault, key and version; a
PATCH of the version is absolute and reads back; ``""`` makes an account follow the key versionless;
a version the resource provider refuses is ``VerificationFailed`` and the account stays where it was;
an unknown account is ``PreconditionFailed`` (``NotFound``).
"""

from __future__ import annotations

import pytest

from rotation.errors import PreconditionFailed, VerificationFailed
from tests.contracts.arm_world import ArmWorld, fake_world, real_world
from tests.contracts.conftest import BOTH


@pytest.fixture(params=BOTH)
def world(request: pytest.FixtureRequest) -> ArmWorld:
    return fake_world() if request.param == "fake" else real_world(request.getfixturevalue("local_azure"))


class TestReads:
    """Listing finds every CMK account of the subscription, each as ``get_account`` reads it."""

    def test_list_and_get(self, world: ArmWorld) -> None:
        listed = {a.account_id.lower(): a for a in world.storage.list_accounts(world.subscription)}

        pinned, versionless = listed[world.pinned.lower()], listed[world.versionless.lower()]

        assert set(listed) == {world.pinned.lower(), world.versionless.lower(), world.unrelated.lower()}
        assert (pinned.vault_url, pinned.key_name, pinned.key_version) == (
            world.key.vault_url,
            world.key.name,
            world.old,
        )
        assert pinned.current_versioned_key_id == world.key.version_uri(world.old)
        assert (versionless.key_name, versionless.key_version, versionless.versionless) == (world.key.name, "", True)
        assert listed[world.unrelated.lower()].key_name == world.other_key.name
        assert world.storage.get_account(world.pinned) == pinned
        assert world.storage.list_accounts("00000000-0000-0000-0000-00000000dead") == []

    def test_unknown_account_is_not_found(self, world: ArmWorld) -> None:
        with pytest.raises(PreconditionFailed) as caught:
            world.storage.get_account(world.missing_id("Microsoft.Storage/storageAccounts"))

        assert caught.value.code == "NotFound"


class TestSetKeyVersion:
    """The PATCH is absolute, safe to repeat, and reads back."""

    def test_repoint_reads_back_and_repeats(self, world: ArmWorld) -> None:
        first = world.storage.set_key_version(world.pinned, world.key.vault_url, world.key.name, world.new)
        again = world.storage.set_key_version(world.pinned, world.key.vault_url, world.key.name, world.new)

        read = world.storage.get_account(world.pinned)

        assert first == again == read
        assert (read.key_version, read.current_versioned_key_id) == (world.new, world.key.version_uri(world.new))
        assert world.storage.get_account(world.unrelated).key_name == world.other_key.name

    def test_versionless(self, world: ArmWorld) -> None:
        updated = world.storage.set_key_version(world.pinned, world.key.vault_url, world.key.name, "")

        read = world.storage.get_account(world.pinned)

        assert updated == read
        assert (read.key_version, read.versionless) == ("", True)

    def test_a_refused_version_leaves_the_account(self, world: ArmWorld) -> None:
        refused = world.refusing_version()

        with pytest.raises(VerificationFailed):
            world.storage.set_key_version(world.pinned, world.key.vault_url, world.key.name, refused)

        read = world.storage.get_account(world.pinned)
        assert (read.key_version, read.current_versioned_key_id) == (world.old, world.key.version_uri(world.old))
