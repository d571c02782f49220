"""The ``Workspaces`` contract: ``FakeWorkspaces`` and ``ArmWorkspaces`` (the ARM emulator) agree.

CMK workspaces are listed per subscription with their vault and key identifier; setting the key
identifier (a long-running PATCH) reads back and is safe to repeat; a key the resource provider
refuses is ``VerificationFailed`` and the workspace stays on its key; an unknown workspace is
``PreconditionFailed`` (``NotFound``; with the other ports in ``test_unknown_resources``).
"""

from __future__ import annotations

import pytest

from rotation.domain.operations import polling_url_problem
from rotation.errors import VerificationFailed
from tests.contracts.arm_world import ArmWorld


class TestReads:
    """Listing finds the subscription's CMK workspaces, each as ``get_workspace`` reads it."""

    def test_list_and_get(self, arm: ArmWorld) -> None:
        listed = {w.workspace_id.lower(): w for w in arm.workspaces.list_workspaces(arm.subscription)}

        found = listed[arm.workspace.lower()]

        assert found.key_identifier == arm.key.version_uri(arm.old)
        assert found.key_vault_arm_id.lower() == arm.vault_arm_id.lower()
        assert arm.workspaces.get_workspace(arm.workspace) == found
        assert arm.workspaces.list_workspaces("00000000-0000-0000-0000-00000000dead") == []


class TestSetKeyIdentifier:
    """The PATCH is absolute, safe to repeat, and reads back; a refused key changes nothing."""

    def test_repoint_reads_back_and_repeats(self, arm: ArmWorld) -> None:
        kid = arm.key.version_uri(arm.new)

        first = arm.workspaces.set_key_identifier(arm.workspace, kid)
        again = arm.workspaces.set_key_identifier(arm.workspace, kid)

        read = arm.workspaces.get_workspace(arm.workspace)
        assert first == again == read
        assert read.key_identifier == kid

    def test_a_refused_key_leaves_the_workspace(self, arm: ArmWorld) -> None:
        refused = arm.key.version_uri(arm.refusing_version())

        with pytest.raises(VerificationFailed):
            arm.workspaces.set_key_identifier(arm.workspace, refused)

        assert arm.workspaces.get_workspace(arm.workspace).key_identifier == arm.key.version_uri(arm.old)


class TestKeyUpdateAsAnOperation:
    """The same PATCH sent alone answers with the operation to poll (a URL the service may poll), polled one
    request at a time until done; then the workspace reads back the key. A refused key is refused at once."""

    def test_begin_then_poll_until_done(self, arm: ArmWorld) -> None:
        kid = arm.key.version_uri(arm.new)

        operation = arm.workspaces.begin_key_identifier(arm.workspace, kid)
        answers = []
        for _ in range(20):
            if operation is None:
                break
            answers.append(arm.workspaces.poll_key_update(arm.workspace, operation).status)
            if answers[-1] != "running":
                break

        assert operation is not None
        assert polling_url_problem(operation.url, arm.arm_endpoint, arm.workspace) is None
        assert operation.retry_after_s >= 1
        assert answers[-1] == "done"
        assert set(answers[:-1]) <= {"running"}
        assert arm.workspaces.get_workspace(arm.workspace).key_identifier == kid

    def test_a_refused_key_is_refused_when_sent(self, arm: ArmWorld) -> None:
        refused = arm.key.version_uri(arm.refusing_version())

        with pytest.raises(VerificationFailed):
            arm.workspaces.begin_key_identifier(arm.workspace, refused)

        assert arm.workspaces.get_workspace(arm.workspace).key_identifier == arm.key.version_uri(arm.old)
