"""An unknown resource is ``PreconditionFailed`` (``NotFound``) on every ARM consumer port, fake and real alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rotation.errors import PreconditionFailed
from tests.contracts.arm_world import ArmWorld


@pytest.mark.parametrize(
    ("resource_type", "get"),
    [
        pytest.param("Microsoft.Storage/storageAccounts", lambda arm: arm.storage.get_account, id="storage account"),
        pytest.param(
            "Microsoft.MachineLearningServices/workspaces", lambda arm: arm.workspaces.get_workspace, id="workspace"
        ),
    ],
)
def test_an_unknown_resource_is_not_found(
    arm: ArmWorld, resource_type: str, get: Callable[[ArmWorld], Callable[[str], object]]
) -> None:
    with pytest.raises(PreconditionFailed) as caught:
        get(arm)(arm.missing_id(resource_type))

    assert caught.value.code == "NotFound"
