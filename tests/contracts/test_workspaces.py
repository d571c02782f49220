"""The ``Workspaces`` contract: ``FakeWorkspaces`` and ``ArmWorkspaces`` (the ARM emulator) agree.

CMK workspaces are listed per subscription with their vault and key identifier; setting the key
identifier (a long-running PATCH) reads back and is safe to repeat; a key the resource provider
refuses is ``VerificationFailed`` and the workspace stays on its key; an unknown workspace is
``PreconditionFailed`` (``NotFound``).
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
    """Listing finds the subscription's CMK workspaces, each as ``get_workspace`` reads it."""

    def test_list_and_get(self, world: ArmWorld) -> None:
        listed = {w.workspace_id.lower(): w for w in world.workspaces.list_workspaces(world.subscription)}

        found = listed[world.workspace.lower()]

        assert found.key_identifier == world.key.version_uri(world.old)
        assert found.key_vault_arm_id.lower() == world.vault_arm_id.lower()
        assert world.workspaces.get_workspace(world.workspace) == found
        assert world.workspaces.list_workspaces("00000000-0000-0000-0000-00000000dead") == []

    def test_unknown_workspace_is_not_found(self, world: ArmWorld) -> None:
        with pytest.raises(PreconditionFailed) as caught:
            world.workspaces.get_workspace(world.missing_id("Microsoft.MachineLearningServices/workspaces"))

        assert caught.value.code == "NotFound"


class TestSetKeyIdentifier:
    """The PATCH is absolute, safe to repeat, and reads back; a refused key changes nothing."""

    def test_repoint_reads_back_and_repeats(self, world: ArmWorld) -> None:
        kid = world.key.version_uri(world.new)

        first = world.workspaces.set_key_identifier(world.workspace, kid)
        again = world.workspaces.set_key_identifier(world.workspace, kid)

        read = world.workspaces.get_workspace(world.workspace)
        assert first == again == read
        assert read.key_identifier == kid

    def test_a_refused_key_leaves_the_workspace(self, world: ArmWorld) -> None:
        refused = world.key.version_uri(world.refusing_version())

        with pytest.raises(VerificationFailed):
            world.workspaces.set_key_identifier(world.workspace, refused)

        assert world.workspaces.get_workspace(world.workspace).key_identifier == world.key.version_uri(world.old)
