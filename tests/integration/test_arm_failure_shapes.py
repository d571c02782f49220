"""The service's ARM adapters meet each failure shape Azure can answer (docs/emulators/arm.md, modes).

What must hold, per shape of an ML workspace update or a resource provider's Key Vault outage:
done (the adapter returns the workspace as it now is), failed permanently (``VerificationFailed``: the
rotation rolls the consumer back), or may pass (``TransientError``; an RP-side Key Vault outage as
``ProviderKeyVaultUnavailable``, so the rotation is retried rather than rolled back).
"""

from __future__ import annotations

import pytest

from rotation.adapters.arm_pacing import ArmPacer
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.adapters.storage_accounts import ArmStorageAccounts
from rotation.adapters.workspaces import ArmWorkspaces
from rotation.errors import ProviderKeyVaultUnavailable, TransientError, VerificationFailed
from tests.integration.emulators.test_arm import TESTER, World, create_cmk_account, world
from tests.integration.emulators.test_arm_ml import aml, create_cmk_workspace

__all__ = ["world"]  # the fixture, imported for this module


def workspaces(world: World) -> ArmWorkspaces:
    return ArmWorkspaces(
        world.arm_url, LocalDevelopmentCredential(TESTER), {"connection_verify": world.ca}, polling_interval=0.05
    )


def storage_accounts(world: World, pacer: ArmPacer | None = None) -> ArmStorageAccounts:
    return ArmStorageAccounts(
        world.arm_url, LocalDevelopmentCredential(TESTER), {"connection_verify": world.ca}, pacer=pacer
    )


def key_of(world: World, workspace_id: str) -> str:
    with aml(world) as client:
        return client.get_workspace(workspace_id).key_identifier


class TestWorkspaceUpdateDone:
    """Every successful ending gives back the workspace on the new key; an empty ending is read back with a GET."""

    @pytest.mark.parametrize("mode", ["sync", "location", "location-204", "location-empty-200", "async-succeeded"])
    def test_repointed(self, world: World, mode: str) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.set_lro(ml_update=mode)
        world.arm_admin.reset_counters()

        updated = workspaces(world).set_key_identifier(created.workspace_id, new_id)

        assert updated.key_identifier == new_id
        assert updated.workspace_id == created.workspace_id
        assert updated.identity_principal_id == created.principal_id
        if mode in ("location-204", "location-empty-200"):
            assert world.arm_admin.counters()["Workspaces_Get"] == 1  # the read-back


class TestWorkspaceUpdateFailed:
    """An operation that ends Failed rolls back; one that may pass (Canceled, a transient code) is retried."""

    def test_failed_with_an_error_is_verification_failed(self, world: World) -> None:
        created = create_cmk_workspace(world)
        world.arm_admin.set_lro(
            ml_update="async-failed", error={"code": "BadArgument", "message": "the encryption update was rejected"}
        )

        with pytest.raises(VerificationFailed) as caught:
            workspaces(world).set_key_identifier(created.workspace_id, world.new_version())

        assert "BadArgument" in caught.value.message
        assert "the encryption update was rejected" in caught.value.message
        assert key_of(world, created.workspace_id) == created.key_identifier

    def test_failed_with_a_transient_code_may_pass(self, world: World) -> None:
        created = create_cmk_workspace(world)
        world.arm_admin.set_lro(ml_update="async-failed", error={"code": "InternalServerError", "message": "oops"})

        with pytest.raises(TransientError) as caught:
            workspaces(world).set_key_identifier(created.workspace_id, world.new_version())

        assert not isinstance(caught.value, ProviderKeyVaultUnavailable)
        assert "InternalServerError" in caught.value.message

    def test_canceled_may_pass(self, world: World) -> None:
        created = create_cmk_workspace(world)
        world.arm_admin.set_lro(ml_update="async-canceled")

        with pytest.raises(TransientError) as caught:
            workspaces(world).set_key_identifier(created.workspace_id, world.new_version())

        assert "canceled" in caught.value.message
        assert key_of(world, created.workspace_id) == created.key_identifier


class TestProviderKeyVaultOutage:
    """The provider's own key check failing for want of Key Vault is ProviderKeyVaultUnavailable, in every shape."""

    @pytest.mark.parametrize("delivery", ["response", "operation"])
    def test_workspace(self, world: World, delivery: str) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.start_keyvault_outage(count=1, providers=("ml",), ml_delivery=delivery)
        adapter = workspaces(world)

        with pytest.raises(ProviderKeyVaultUnavailable) as caught:
            adapter.set_key_identifier(created.workspace_id, new_id)
        unchanged = key_of(world, created.workspace_id)
        after_the_outage = adapter.set_key_identifier(created.workspace_id, new_id)

        assert caught.value.code == "ProviderKeyVaultUnavailable"
        assert "KeyVaultUnavailable" in caught.value.message
        assert unchanged == created.key_identifier
        assert after_the_outage.key_identifier == new_id

    @pytest.mark.parametrize("status", [400, 503])
    def test_storage_account(self, world: World, status: int) -> None:
        name = create_cmk_account(world)
        new_version = world.new_version().rsplit("/", 1)[-1]
        # more failures than the SDK's transport retries, so the outage outlasts them
        world.arm_admin.start_keyvault_outage(count=10, providers=("storage",), status=status)
        adapter = storage_accounts(world)

        with pytest.raises(ProviderKeyVaultUnavailable) as caught:
            adapter.set_key_version(world.account_id(name), world.vault["url"], world.key_name, new_version)
        world.arm_admin.end_keyvault_outage()
        moved = adapter.set_key_version(world.account_id(name), world.vault["url"], world.key_name, new_version)

        assert "KeyVaultServiceUnavailable" in caught.value.message
        assert isinstance(caught.value, TransientError)
        assert moved.key_version == new_version
