"""The ARM emulator's Microsoft.MachineLearningServices provider, driven by the project's AML client.

Workspaces are created with azure-mgmt-machinelearningservices 1.0.1 (api-version 2020-08-01, which
can express CMK at creation) and re-pointed with :class:`AmlWorkspaceClient` (2025-06-01).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from azure.core.rest import HttpRequest
from azure.mgmt.machinelearningservices import MachineLearningServicesMgmtClient
from azure.mgmt.machinelearningservices.models import (
    EncryptionProperty,
    Identity,
    KeyVaultProperties,
    Workspace,
    WorkspaceUpdateParameters,
)

from rotation.adapters.aml_client import AmlWorkspaceClient, WorkspaceEncryption
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.errors import InputError, PermissionDenied, PreconditionFailed, ThrottledError, TransientError
from tests.integration.emulators.test_arm import TESTER, World, key_paths, sample, world

__all__ = ["world"]  # the fixture, imported for this module


def legacy_client(world: World, principal: str = TESTER, **kwargs: Any) -> MachineLearningServicesMgmtClient:
    return world.mgmt(MachineLearningServicesMgmtClient, principal, **kwargs)


def aml(world: World, principal: str = TESTER, **kwargs: Any) -> AmlWorkspaceClient:
    kwargs.setdefault("polling_interval", 0.05)
    return AmlWorkspaceClient(
        LocalDevelopmentCredential(principal), world.arm_url, connection_verify=world.ca, **kwargs
    )


def workspace_name() -> str:
    return f"ws-{uuid.uuid4().hex[:10]}"


def create_cmk_workspace(world: World, key_id: str | None = None) -> WorkspaceEncryption:
    """A system-assigned CMK workspace (created before the vault turns RBAC on), then granted the key."""
    name = workspace_name()
    workspace = Workspace(
        location="eastus",
        identity=Identity(type="SystemAssigned"),
        encryption=EncryptionProperty(
            status="Enabled",
            key_vault_properties=KeyVaultProperties(
                key_vault_arm_id=world.vault["arm_id"],
                key_identifier=key_id or world.keys.get_key(world.key_name).id,
            ),
        ),
    )
    legacy_client(world).workspaces.begin_create_or_update(world.resource_group, name, workspace).result()
    with aml(world) as client:
        created = client.get_workspace(workspace_id(world, name))
    assert created.principal_id is not None
    world.grant_key_access(created.principal_id)
    return created


def workspace_id(world: World, name: str) -> str:
    return (
        f"/subscriptions/{world.subscription_id}/resourceGroups/{world.resource_group}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{name}"
    )


class TestReadWorkspaces:
    """Workspaces created by the 2020-08-01 SDK read back through the AML client, CMK or not."""

    def test_get_and_list(self, world: World) -> None:
        key_id = world.keys.get_key(world.key_name).id
        cmk = create_cmk_workspace(world, key_id)
        plain = workspace_name()
        legacy_client(world).workspaces.begin_create_or_update(
            world.resource_group, plain, Workspace(location="eastus")
        ).result()

        with aml(world) as client:
            listed = {w.name: w for w in client.list_workspaces(world.subscription_id)}

        assert cmk.key_identifier == key_id
        assert cmk.key_vault_arm_id == world.vault["arm_id"]
        assert cmk.status == "Enabled"
        assert cmk.provisioning_state == "Succeeded"
        assert cmk.has_cmk
        assert set(listed) == {cmk.name, plain}
        assert listed[plain].key_identifier == ""
        assert listed[plain].key_vault_arm_id == ""
        assert listed[plain].status == "Disabled"
        assert not listed[plain].has_cmk


class TestCaseInsensitiveIds:
    """Workspace ids are compared case-insensitively; the answer keeps the id as created."""

    def test_get_with_shouted_id(self, world: World) -> None:
        created = create_cmk_workspace(world)
        shouted = created.workspace_id.replace(world.resource_group, world.resource_group.upper()).replace(
            "/workspaces/" + created.name, "/WORKSPACES/" + created.name.upper()
        )

        with aml(world) as client:
            found = client.get_workspace(shouted)

        assert found.workspace_id == created.workspace_id


class TestListPages:
    """list_workspaces follows nextLink across pages."""

    def test_all_pages_are_read(self, world: World) -> None:
        names = {workspace_name() for _ in range(3)}
        for name in names:
            legacy_client(world).workspaces.begin_create_or_update(
                world.resource_group, name, Workspace(location="eastus")
            ).result()
        world.arm_admin.set_page_size(2)
        world.arm_admin.reset_counters()

        with aml(world) as client:
            listed = {w.name for w in client.list_workspaces(world.subscription_id)}

        assert listed == names
        assert world.arm_admin.counters()["Workspaces_ListBySubscription"] == 2


class TestLegacySdkLifecycle:
    """The 2020-08-01 SDK lists and deletes workspaces; a deleted workspace is then not found."""

    def test_list_and_delete(self, world: World) -> None:
        created = create_cmk_workspace(world)
        client = legacy_client(world)

        listed = [w.name for w in client.workspaces.list_by_resource_group(world.resource_group)]
        client.workspaces.begin_delete(world.resource_group, created.name).result()

        assert listed == [created.name]
        with aml(world) as aml_client, pytest.raises(PreconditionFailed) as caught:
            aml_client.get_workspace(created.workspace_id)
        assert "ResourceNotFound" in caught.value.message


class TestUpdateKeyIdentifier:
    """PATCH keyIdentifier is a polled LRO; only a usable key in the original vault is accepted."""

    def test_repoint_to_new_version_polls_to_completion(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.set_lro(retry_after_s=0, polls_until_done=3)
        world.arm_admin.reset_counters()

        with aml(world) as client:
            poller = client.begin_update_key_identifier(created.workspace_id, new_id)
            in_flight = client.get_workspace(created.workspace_id)
            updated = client.wait(poller, created.workspace_id)
            reread = client.get_workspace(created.workspace_id)

        assert in_flight.provisioning_state == "Updating"
        assert updated.key_identifier == new_id
        assert updated.provisioning_state == "Succeeded"
        assert reread.key_identifier == new_id
        counters = world.arm_admin.counters()
        assert counters["Workspaces_Update"] == 1
        assert counters["Workspaces_OperationStatus"] == 3

    def test_versionless_key_in_same_vault_is_accepted(self, world: World) -> None:
        created = create_cmk_workspace(world)
        versionless = f"{world.vault['url']}/keys/{world.key_name}"

        with aml(world) as client:
            updated = client.update_key_identifier(created.workspace_id, versionless)

        assert updated.key_identifier == versionless

    def test_key_in_another_vault_is_refused(self, world: World) -> None:
        created = create_cmk_workspace(world)
        other = world.new_vault()
        other_key = world.key_client(other).create_rsa_key("elsewhere", size=2048)
        world.grant_key_access(str(created.principal_id), vault=other)

        with aml(world) as client, pytest.raises(PreconditionFailed) as caught:
            client.update_key_identifier(created.workspace_id, other_key.id)
        with aml(world) as client:
            after = client.get_workspace(created.workspace_id)

        assert "UserError" in caught.value.message
        assert "original Azure Key Vault" in caught.value.message
        assert after.key_identifier == created.key_identifier

    def test_disabled_version_is_refused(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.keys.update_key_properties(world.key_name, new_id.rsplit("/", 1)[-1], enabled=False)

        with aml(world) as client, pytest.raises(PreconditionFailed) as caught:
            client.update_key_identifier(created.workspace_id, new_id)
        with aml(world) as client:
            after = client.get_workspace(created.workspace_id)

        assert "disabled" in caught.value.message
        assert after.key_identifier == created.key_identifier

    def test_key_the_workspace_identity_cannot_use_is_refused(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.grant_key_access("not-the-workspace")

        with aml(world) as client, pytest.raises(PreconditionFailed) as caught:
            client.update_key_identifier(created.workspace_id, new_id)

        assert str(created.principal_id) in caught.value.message


class TestErrorTranslation:
    """ARM failures reach callers as rotation.errors, never as SDK exceptions."""

    def test_missing_workspace_is_precondition_failed_naming_it(self, world: World) -> None:
        missing = workspace_id(world, workspace_name())

        with aml(world) as client, pytest.raises(PreconditionFailed) as caught:
            client.get_workspace(missing)

        assert missing in caught.value.message
        assert "ResourceNotFound" in caught.value.message

    def test_reader_gets_permission_denied_naming_the_action(self, world: World) -> None:
        created = create_cmk_workspace(world)
        world.arm_admin.set_role_assignments(
            [{"principal_id": "reader", "role": "Reader", "scope": f"/subscriptions/{world.subscription_id}"}]
        )

        with aml(world, principal="reader") as client:
            readable = client.get_workspace(created.workspace_id)
            with pytest.raises(PermissionDenied) as caught:
                client.update_key_identifier(created.workspace_id, world.new_version())

        assert readable.name == created.name
        assert caught.value.permission == "Microsoft.MachineLearningServices/workspaces/write"

    def test_rotation_operator_role_may_update_and_poll(self, world: World) -> None:
        created = create_cmk_workspace(world)
        scope = f"/subscriptions/{world.subscription_id}/resourceGroups/{world.resource_group}"
        world.arm_admin.set_role_assignments(
            [{"principal_id": "operator", "role": "CMK Rotation Consumer Operator", "scope": scope}]
        )
        new_id = world.new_version()

        with aml(world, principal="operator") as client:
            updated = client.update_key_identifier(created.workspace_id, new_id)

        assert updated.key_identifier == new_id

    def test_throttled_write_keeps_retry_after(self, world: World) -> None:
        created = create_cmk_workspace(world)
        world.arm_admin.set_throttle(writes=(1, 0.01))

        with aml(world, retry_total=0) as client:
            client.update_key_identifier(created.workspace_id, world.new_version())
            with pytest.raises(ThrottledError) as caught:
                client.update_key_identifier(created.workspace_id, world.new_version())

        assert caught.value.retry_after is not None
        assert caught.value.retry_after >= 1

    def test_server_error_is_transient(self, world: World) -> None:
        created = create_cmk_workspace(world)
        world.arm_admin.set_faults({"rate": 1.0, "kind": "status", "status": 503, "operations": ["Workspaces_Get"]})

        with aml(world, retry_total=0) as client, pytest.raises(TransientError) as caught:
            client.get_workspace(created.workspace_id)

        assert not isinstance(caught.value, ThrottledError)
        assert "503" in caught.value.message

    def test_dropped_connection_is_transient(self, world: World) -> None:
        created = create_cmk_workspace(world)
        world.arm_admin.set_faults({"rate": 1.0, "kind": "drop", "operations": ["Workspaces_Get"], "count": 1})

        with aml(world, retry_total=0) as client, pytest.raises(TransientError) as caught:
            client.get_workspace(created.workspace_id)

        assert not isinstance(caught.value, ThrottledError)
        assert created.workspace_id in caught.value.message

    def test_malformed_inputs_are_input_errors(self, world: World) -> None:
        with aml(world) as client:
            with pytest.raises(InputError):
                client.get_workspace("/subscriptions/x/resourceGroups/y")
            with pytest.raises(InputError):
                client.update_key_identifier(workspace_id(world, "ws"), "not a key uri")


class TestLegacyApiVersion:
    """2020-08-01 (azure-mgmt-machinelearningservices 1.0.1) cannot express the key update, and is not
    silently accepted when someone sends encryption with it anyway."""

    def test_sdk_update_model_has_no_encryption(self) -> None:
        parameters = WorkspaceUpdateParameters(description="d", encryption={"keyVaultProperties": {}})

        serialized = parameters.serialize()

        assert "encryption" not in WorkspaceUpdateParameters._attribute_map
        assert serialized == {"properties": {"description": "d"}}

    def test_emulator_refuses_2020_08_01_patch_with_encryption(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        client = legacy_client(world)
        body = {"properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": new_id}}}}

        response = client._send_request(
            HttpRequest("PATCH", f"{world.arm_url}{created.workspace_id}?api-version=2020-08-01", json=body)
        )
        described = client.workspaces.update(
            world.resource_group, created.name, WorkspaceUpdateParameters(description="still works")
        )

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "UserError"
        assert "2020-08-01" in response.json()["error"]["message"]
        assert described.description == "still works"
        assert described.encryption.key_vault_properties.key_identifier == created.key_identifier


class TestMlMatchesMicrosoftExamples:
    """The 2025-06-01 create and update examples are accepted and answered with their fields."""

    def test_create_and_update_examples(self, world: World) -> None:
        create = sample("ml.Workspace.create.2025-06-01.json")
        update = sample("ml.Workspace.update.2025-06-01.json")
        identity_id = world.identity_id("testuai")
        registered = world.arm_admin.register_user_assigned_identity(identity_id)
        world.grant_key_access(registered["principal_id"])
        text = json.dumps(create["parameters"]["body"])
        text = text.replace(
            "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/workspace-1234/providers/"
            "Microsoft.KeyVault/vaults/testkv",
            world.vault["arm_id"],
        )
        text = text.replace(
            "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/workspace-1234",
            "/".join(identity_id.split("/")[:5]),
        )
        text = text.replace(
            "https://testkv.vault.azure.net/keys/testkey/aabbccddee112233445566778899aabb",
            world.keys.get_key(world.key_name).id,
        )
        name = workspace_name()
        url = f"{world.arm_url}{workspace_id(world, name)}?api-version=2025-06-01"
        client = legacy_client(world)

        created = client._send_request(
            HttpRequest("PUT", url, content=text, headers={"Content-Type": "application/json"})
        )
        first = _poll(client, created)
        patched = client._send_request(HttpRequest("PATCH", url, json=update["parameters"]["parameters"]))
        second = _poll(client, patched)

        assert created.status_code == 202
        assert patched.status_code == 202
        expected_create = key_paths(create["responses"]["200"]["body"])
        expected_create = {p for p in expected_create if not p.startswith("identity.userAssignedIdentities.")}
        assert expected_create <= key_paths(first)
        assert first["identity"]["userAssignedIdentities"][identity_id].keys() == {"principalId", "clientId"}
        assert key_paths(update["responses"]["200"]["body"]) <= key_paths(second)
        assert second["properties"]["friendlyName"] == "New friendly name"
        assert second["properties"]["encryption"] == first["properties"]["encryption"]


def _poll(client: MachineLearningServicesMgmtClient, accepted: Any) -> dict[str, Any]:
    """Follow a 202's Location until it answers 200 (what ARMPolling does), returning the body."""
    location = accepted.headers["Location"]
    for _ in range(50):
        response = client._send_request(HttpRequest("GET", location))
        if response.status_code == 200:
            return dict(response.json())
        assert response.status_code == 202
        time.sleep(0.05)
    raise AssertionError("the operation did not complete")
