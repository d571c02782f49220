"""The ``StorageAccounts`` contract: ``FakeStorageAccounts`` and ``ArmStorageAccounts`` (the ARM emulator) agree.

Accounts on customer-managed keys are listed per subscription with their vault, key and version; a
PATCH of the version is absolute and reads back; ``""`` makes an account follow the key versionless;
a version the resource provider refuses is ``VerificationFailed`` and the account stays where it was;
an unknown account is ``PreconditionFailed`` (``NotFound``; with the other ports in ``test_unknown_resources``).
"""

from __future__ import annotations

import pytest

from rotation.errors import VerificationFailed
from tests.contracts.arm_world import ArmWorld


class TestReads:
    """Listing finds every CMK account of the subscription, each as ``get_account`` reads it."""

    def test_list_and_get(self, arm: ArmWorld) -> None:
        listed = {a.account_id.lower(): a for a in arm.storage.list_accounts(arm.subscription)}

        pinned, versionless = listed[arm.pinned.lower()], listed[arm.versionless.lower()]

        assert set(listed) == {arm.pinned.lower(), arm.versionless.lower(), arm.unrelated.lower()}
        assert (pinned.vault_url, pinned.key_name, pinned.key_version) == (
            arm.key.vault_url,
            arm.key.name,
            arm.old,
        )
        assert pinned.current_versioned_key_id == arm.key.version_uri(arm.old)
        assert (versionless.key_name, versionless.key_version, versionless.versionless) == (arm.key.name, "", True)
        assert listed[arm.unrelated.lower()].key_name == arm.other_key.name
        assert arm.storage.get_account(arm.pinned) == pinned
        assert arm.storage.list_accounts("00000000-0000-0000-0000-00000000dead") == []


class TestSetKeyVersion:
    """The PATCH is absolute, safe to repeat, and reads back."""

    def test_repoint_reads_back_and_repeats(self, arm: ArmWorld) -> None:
        first = arm.storage.set_key_version(arm.pinned, arm.key.vault_url, arm.key.name, arm.new)
        again = arm.storage.set_key_version(arm.pinned, arm.key.vault_url, arm.key.name, arm.new)

        read = arm.storage.get_account(arm.pinned)

        assert first == again == read
        assert (read.key_version, read.current_versioned_key_id) == (arm.new, arm.key.version_uri(arm.new))
        assert arm.storage.get_account(arm.unrelated).key_name == arm.other_key.name

    def test_versionless(self, arm: ArmWorld) -> None:
        updated = arm.storage.set_key_version(arm.pinned, arm.key.vault_url, arm.key.name, "")

        read = arm.storage.get_account(arm.pinned)

        assert updated == read
        assert (read.key_version, read.versionless) == ("", True)

    def test_a_refused_version_leaves_the_account(self, arm: ArmWorld) -> None:
        refused = arm.refusing_version()

        with pytest.raises(VerificationFailed):
            arm.storage.set_key_version(arm.pinned, arm.key.vault_url, arm.key.name, refused)

        read = arm.storage.get_account(arm.pinned)
        assert (read.key_version, read.current_versioned_key_id) == (arm.old, arm.key.version_uri(arm.old))
