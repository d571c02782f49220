"""The ARM emulator's failure-shape modes, seen through the official clients unmodified.

- ML workspace update outcomes (``/admin/lro`` ``ml_update``): the raw answers through the
  azure-mgmt-machinelearningservices client's pipeline, and what azure-mgmt-core's ``ARMPolling``
  makes of them through the project's AML client.
- The resource providers' Key Vault outage (``/admin/keyvault-outage``), through azure-mgmt-storage.
- ARM's token buckets (``/admin/throttle``), through azure-mgmt-storage.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest, HttpResponse

from emulators.arm.admin_client import ArmAdminError
from rotation.adapters.aml_client import WorkspaceEncryption
from tests.integration.emulators.test_arm import (
    TESTER,
    World,
    account_name,
    arm_error,
    cmk_account_body,
    create_cmk_account,
    identity_with_access,
    world,
)
from tests.integration.emulators.test_arm_disk_encryption_sets import create_set, des_id
from tests.integration.emulators.test_arm_ml import aml, create_cmk_workspace, legacy_client
from tests.integration.emulators.test_arm_registries import registry_id, registry_with_key

__all__ = ["world"]  # the fixture, imported for this module

API = "2025-06-01"


def patch_key(world: World, workspace: WorkspaceEncryption, key_id: str) -> HttpResponse:
    """The raw PATCH of the key identifier, through the official ML client's pipeline."""
    body = {"properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": key_id}}}}
    url = f"{world.arm_url}{workspace.workspace_id}?api-version={API}"
    response: HttpResponse = legacy_client(world)._send_request(HttpRequest("PATCH", url, json=body))
    return response


def get(world: World, url: str) -> HttpResponse:
    response: HttpResponse = legacy_client(world)._send_request(HttpRequest("GET", url))
    return response


class TestWorkspaceUpdateOutcomes:
    """Each ``ml_update`` mode answers as the ARM async contract describes, and ARMPolling ends as expected."""

    def test_sync_answers_200_with_the_workspace(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.set_lro(ml_update="sync")

        response = patch_key(world, created, new_id)

        assert response.status_code == 200
        assert "Location" not in response.headers
        assert response.json()["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"] == new_id
        with aml(world) as client:
            assert client.get_workspace(created.workspace_id).key_identifier == new_id

    @pytest.mark.parametrize(
        ("mode", "final_status", "final_body"),
        [("location", 200, True), ("location-204", 204, False), ("location-empty-200", 200, False)],
    )
    def test_location_polling_ends(self, world: World, mode: str, final_status: int, final_body: bool) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.set_lro(ml_update=mode, polls_until_done=2)

        accepted = patch_key(world, created, new_id)
        running = get(world, accepted.headers["Location"])
        done = get(world, accepted.headers["Location"])

        assert accepted.status_code == 202
        assert "Azure-AsyncOperation" not in accepted.headers
        assert running.status_code == 202
        assert done.status_code == final_status
        assert bool(done.content) == final_body
        if final_body:
            assert done.json()["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"] == new_id
        with aml(world) as client:
            reread = client.get_workspace(created.workspace_id)
        assert reread.key_identifier == new_id
        assert reread.provisioning_state == "Succeeded"

    @pytest.mark.parametrize("mode", ["location-204", "location-empty-200"])
    def test_armpolling_gives_no_workspace_for_an_empty_end(self, world: World, mode: str) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.set_lro(ml_update=mode)

        with aml(world) as client:
            result = client.begin_update_key_identifier(created.workspace_id, new_id).result()

        assert result is None  # azure-core's _parse_resource: an empty final body is no resource

    def test_async_operation_succeeded(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.set_lro(ml_update="async-succeeded", polls_until_done=2)

        accepted = patch_key(world, created, new_id)
        running = get(world, accepted.headers["Azure-AsyncOperation"])
        done = get(world, accepted.headers["Azure-AsyncOperation"])

        assert accepted.status_code == 202
        assert "Location" not in accepted.headers
        assert (running.status_code, running.json()["status"]) == (200, "InProgress")
        assert (done.status_code, done.json()["status"]) == (200, "Succeeded")
        assert "error" not in done.json()
        with aml(world) as client:
            assert client.get_workspace(created.workspace_id).key_identifier == new_id

    def test_armpolling_reads_the_workspace_after_an_async_success(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.set_lro(ml_update="async-succeeded")
        world.arm_admin.reset_counters()

        with aml(world) as client:
            result = client.begin_update_key_identifier(created.workspace_id, new_id).result()

        assert result.key_identifier == new_id
        assert world.arm_admin.counters()["Workspaces_Get"] == 1  # the final GET of the PATCHed URL

    @pytest.mark.parametrize(("mode", "status"), [("async-failed", "Failed"), ("async-canceled", "Canceled")])
    def test_async_operation_ends_badly_and_nothing_changes(self, world: World, mode: str, status: str) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        error = {"code": "KeyVaultKeyNotPermitted", "message": "the key may not be used"}
        world.arm_admin.set_lro(ml_update=mode, error=error)

        accepted = patch_key(world, created, new_id)
        done = get(world, accepted.headers["Azure-AsyncOperation"])
        with aml(world) as client, pytest.raises(HttpResponseError) as caught:
            client.begin_update_key_identifier(created.workspace_id, new_id).result()
        with aml(world) as client:
            after = client.get_workspace(created.workspace_id)

        assert accepted.status_code == 202
        assert done.status_code == 200  # an operation resource is always 200; the outcome is in "status"
        assert done.json()["status"] == status
        if status == "Failed":
            assert done.json()["error"] == error
        else:
            assert "error" not in done.json()
        assert caught.value.status_code == 200
        assert after.key_identifier == created.key_identifier
        assert after.provisioning_state == status

    def test_a_failed_update_may_leave_the_requested_key(self, world: World) -> None:
        """``ml_update_failed_keeps: requested``: the operation ends Failed, the workspace shows the key asked for."""
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        with world.arm_admin.lro_settings(ml_update="async-failed", ml_update_failed_keeps="requested"):
            accepted = patch_key(world, created, new_id)
            done = get(world, accepted.headers["Azure-AsyncOperation"])
            with aml(world) as client:
                after = client.get_workspace(created.workspace_id)

        assert done.json()["status"] == "Failed"
        assert after.key_identifier == new_id
        assert after.provisioning_state == "Failed"

    def test_settings_are_validated(self, world: World) -> None:
        with pytest.raises(ArmAdminError, match="ml_update must be one of"):
            world.arm_admin.set_lro(ml_update="eventually")
        with pytest.raises(ArmAdminError, match="ARM error object"):
            world.arm_admin.set_lro(error={"message": "no code"})
        with pytest.raises(ArmAdminError, match="unpolled_grace_s"):
            world.arm_admin.set_lro(unpolled_grace_s=-1)
        with pytest.raises(ArmAdminError, match="ml_update_failed_keeps must be one of"):
            world.arm_admin.set_lro(ml_update_failed_keeps="half")


TERMINAL = ("Succeeded", "Failed", "Canceled")


def _patch(world: World, url: str, body: dict[str, Any]) -> HttpResponse:
    response: HttpResponse = legacy_client(world)._send_request(HttpRequest("PATCH", url, json=body))
    return response


def _read_until_ended(world: World, url: str) -> list[dict[str, Any]]:
    """GETs of a resource (never of its operation) until its provisioningState is terminal, each as read."""
    reads: list[dict[str, Any]] = []
    for _ in range(200):  # bounded: the operation ends about a second after it was accepted
        reads.append(get(world, url).json())
        if reads[-1]["properties"]["provisioningState"] in TERMINAL:
            return reads
        time.sleep(0.05)
    raise AssertionError(f"still {reads[-1]['properties']['provisioningState']} after {len(reads)} reads")


def _updated_workspace(world: World) -> tuple[str, str, dict[str, Any], str]:
    created = create_cmk_workspace(world)
    new = world.new_version()
    body = {"properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": new}}}}
    return f"{world.arm_url}{created.workspace_id}?api-version={API}", new, body, created.key_identifier


def _updated_registry(world: World) -> tuple[str, str, dict[str, Any], str]:
    old = str(world.keys.get_key(world.key_name).id)
    name, _, client_id = registry_with_key(world, old)
    new = world.new_version()
    kvp = {"keyIdentifier": new, "identity": client_id}
    body = {"properties": {"encryption": {"status": "enabled", "keyVaultProperties": kvp}}}
    return f"{world.arm_url}{registry_id(world, name)}?api-version=2025-11-01", new, body, old


def _updated_set(world: World) -> tuple[str, str, dict[str, Any], str]:
    old = str(world.keys.get_key(world.key_name).id)
    name, _ = create_set(world, old)
    new = world.new_version()
    body = {"properties": {"activeKey": {"keyUrl": new}}}
    return f"{world.arm_url}{des_id(world, name)}?api-version=2026-03-02", new, body, old


def _key_of(body: dict[str, Any]) -> str:
    properties = body["properties"]
    if "activeKey" in properties:
        return str(properties["activeKey"]["keyUrl"])
    return str(properties["encryption"]["keyVaultProperties"]["keyIdentifier"])


class TestAnOperationNobodyPolls:
    """An accepted update runs to its end whether or not anyone polls it (ARM RPC async-api-reference.md: GETs
    of the resource show a non-terminal provisioningState while it runs, then a terminal one): a client that
    lost the polling URL learns the outcome from the resource alone. ``unpolled_grace_s`` 0: it ends at its
    expected end (here one second)."""

    @pytest.mark.parametrize("resource", [_updated_workspace, _updated_registry, _updated_set])
    def test_the_resource_reads_updating_then_succeeded(self, world: World, resource: Any) -> None:
        url, new, body, old = resource(world)
        with world.arm_admin.lro_settings(
            ml_update="async-succeeded", ml_update_applies="completed", unpolled_grace_s=0
        ):
            world.arm_admin.reset_counters()
            accepted = _patch(world, url, body)
            reads = _read_until_ended(world, url)
            counters = world.arm_admin.counters()

        assert accepted.status_code in (201, 202)
        assert reads[0]["properties"]["provisioningState"] == "Updating"
        assert reads[-1]["properties"]["provisioningState"] == "Succeeded"
        assert _key_of(reads[-1]) == new
        assert not any(name.endswith("_OperationStatus") for name in counters)
        if "workspaces" in url:
            assert _key_of(reads[0]) == old  # ml_update_applies completed: the key shows when the update ends

    def test_a_workspace_update_that_fails_unpolled_keeps_its_key(self, world: World) -> None:
        url, _, body, old = _updated_workspace(world)
        with world.arm_admin.lro_settings(ml_update="async-failed", unpolled_grace_s=0):
            accepted = _patch(world, url, body)
            reads = _read_until_ended(world, url)
            polled = get(world, accepted.headers["Azure-AsyncOperation"])

        assert reads[0]["properties"]["provisioningState"] == "Updating"
        assert reads[-1]["properties"]["provisioningState"] == "Failed"
        assert _key_of(reads[-1]) == old
        assert polled.status_code == 404  # its record went with it, as an expired ARM operation's does


def _cmk_account(world: World) -> tuple[str, str, dict[str, Any]]:
    """A CMK account on the world's key: (name, identity id, identity block)."""
    identity_id, identity = identity_with_access(world)
    return create_cmk_account(world, identity_id=identity_id, identity=identity), identity_id, identity


def _repoint_patch(world: World, identity_id: str, identity: dict[str, Any], version: str) -> dict[str, Any]:
    patch = cmk_account_body(world, identity_id, identity, version)
    del patch["location"], patch["sku"], patch["kind"]
    return patch


class TestResourceProviderKeyVaultOutage:
    """While the outage lasts, the providers' own key checks fail with their Key Vault-unreachable error."""

    def test_storage_refuses_for_a_count_of_checks_then_accepts(self, world: World) -> None:
        name, identity_id, identity = _cmk_account(world)
        new_version = world.new_version().rsplit("/", 1)[-1]
        patch = _repoint_patch(world, identity_id, identity, new_version)
        client = world.storage(retry_total=0)
        world.arm_admin.start_keyvault_outage(count=2, providers=("storage",))

        failures = []
        for _ in range(2):
            with pytest.raises(HttpResponseError) as caught:
                client.storage_accounts.update(world.resource_group, name, patch)
            failures.append(caught.value)
        unchanged = client.storage_accounts.get_properties(world.resource_group, name)
        updated = client.storage_accounts.update(world.resource_group, name, patch)

        assert [(f.status_code, arm_error(f)["code"]) for f in failures] == [(400, "KeyVaultServiceUnavailable")] * 2
        assert unchanged.encryption.key_vault_properties.key_version != new_version
        assert updated.encryption.key_vault_properties.key_version == new_version
        assert world.arm_admin.keyvault_outage()["active"] is False

    def test_status_503_and_a_duration(self, world: World) -> None:
        name, identity_id, identity = _cmk_account(world)
        patch = _repoint_patch(world, identity_id, identity, world.new_version().rsplit("/", 1)[-1])
        world.arm_admin.start_keyvault_outage(duration_s=600, status=503)

        with pytest.raises(HttpResponseError) as caught:
            world.storage(retry_total=0).storage_accounts.update(world.resource_group, name, patch)
        during = world.arm_admin.keyvault_outage()
        after = world.arm_admin.end_keyvault_outage()

        assert caught.value.status_code == 503
        assert arm_error(caught.value)["code"] == "KeyVaultServiceUnavailable"
        assert during["active"] is True
        assert during["seconds_left"] > 0
        assert after["active"] is False

    def test_only_the_named_providers_are_affected(self, world: World) -> None:
        name, identity_id, identity = _cmk_account(world)
        new_version = world.new_version().rsplit("/", 1)[-1]
        world.arm_admin.start_keyvault_outage(count=5, providers=("ml",))

        updated = world.storage().storage_accounts.update(
            world.resource_group, name, _repoint_patch(world, identity_id, identity, new_version)
        )

        assert updated.encryption.key_vault_properties.key_version == new_version
        assert world.arm_admin.keyvault_outage()["failures_left"] == 5

    def test_ml_refuses_the_patch_with_its_user_error(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.start_keyvault_outage(count=1)

        refused = patch_key(world, created, new_id)

        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "UserError"
        assert error["innerError"]["innerError"]["code"] == "KeyVaultUnavailable"

    def test_ml_accepts_and_the_operation_fails(self, world: World) -> None:
        created = create_cmk_workspace(world)
        new_id = world.new_version()
        world.arm_admin.start_keyvault_outage(count=1, ml_delivery="operation")

        accepted = patch_key(world, created, new_id)
        done = get(world, accepted.headers["Azure-AsyncOperation"])
        with aml(world) as client:
            after = client.get_workspace(created.workspace_id)

        assert accepted.status_code == 202
        assert done.json()["status"] == "Failed"
        assert [d["code"] for d in done.json()["error"]["details"]] == ["KeyVaultUnavailable"]
        assert after.key_identifier == created.key_identifier

    def test_outage_settings_are_validated(self, world: World) -> None:
        with pytest.raises(ArmAdminError, match="exactly one of"):
            world.arm_admin.start_keyvault_outage()
        with pytest.raises(ArmAdminError, match="status must be 400 or 503"):
            world.arm_admin.start_keyvault_outage(count=1, status=500)


class TestTokenBuckets:
    """Buckets per subscription, principal and kind; 429 with Retry-After when empty; headers on every answer."""

    def test_every_answer_reports_what_is_left(self, world: World) -> None:
        world.arm_admin.set_throttle(reads=(250, 0.001), writes=(200, 0.001))  # no refill within the test
        client = world.storage()
        headers: list[dict[str, str]] = []

        def keep(response: Any) -> None:
            headers.append(dict(response.http_response.headers))

        list(client.storage_accounts.list_by_resource_group(world.resource_group, raw_response_hook=keep))
        body = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        client.storage_accounts.begin_create(world.resource_group, account_name(), body, polling=False)
        with pytest.raises(HttpResponseError) as missing:
            client.storage_accounts.get_properties(world.resource_group, account_name())

        assert headers[0]["x-ms-ratelimit-remaining-subscription-reads"] == "249"
        assert missing.value.response is not None
        assert missing.value.response.headers["x-ms-ratelimit-remaining-subscription-reads"] == "248"
        # the create's 202 is not seen by a hook of another call: read it from a second raw write
        raw = legacy_client(world)._send_request(
            HttpRequest(
                "PUT",
                f"{world.arm_url}/subscriptions/{world.subscription_id}/resourcegroups/rg-{uuid.uuid4().hex[:6]}"
                "?api-version=2024-11-01",
                json={"location": "eastus"},
            )
        )
        assert raw.headers["x-ms-ratelimit-remaining-subscription-writes"] == "198"
        assert "x-ms-ratelimit-remaining-subscription-reads" not in raw.headers

    def test_empty_write_bucket_answers_429_per_subscription_and_principal(self, world: World) -> None:
        world.arm_admin.set_throttle(writes=(2, 0.01))
        body = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        client = world.storage(retry_total=0)
        for _ in range(2):
            client.storage_accounts.begin_create(world.resource_group, account_name(), body).result()

        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.begin_create(world.resource_group, account_name(), body)
        other_principal = world.storage(principal="someone-else", retry_total=0)
        other_principal.storage_accounts.begin_create(world.resource_group, account_name(), body).result()
        reads_still_allowed = list(client.storage_accounts.list_by_resource_group(world.resource_group))

        assert caught.value.status_code == 429
        assert arm_error(caught.value)["code"] == "SubscriptionRequestsThrottled"
        assert caught.value.response is not None
        assert int(caught.value.response.headers["Retry-After"]) >= 1
        assert caught.value.response.headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"
        assert len(reads_still_allowed) == 3

    def test_disabled_throttle_never_answers_429_but_still_reports(self, world: World) -> None:
        world.arm_admin.set_throttle(enabled=False, writes=(1, 0.01))
        body = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        client = world.storage(retry_total=0)
        seen: list[str] = []

        def keep(response: Any) -> None:
            if response.http_request.method == "PUT":
                seen.append(response.http_response.headers["x-ms-ratelimit-remaining-subscription-writes"])

        for _ in range(3):
            client.storage_accounts.begin_create(world.resource_group, account_name(), body, raw_response_hook=keep)

        assert seen == ["0", "0", "0"]

    def test_a_bucket_set_to_start_drained_and_what_each_bucket_answered(self, world: World) -> None:
        world.arm_admin.set_throttle(
            reads=(250, 25.0), writes=(200, 0.001), deletes=(200, 10.0), initial={"writes": 1}
        )  # one write, then no refill within the test
        body = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        client = world.storage(retry_total=0)

        client.storage_accounts.begin_create(world.resource_group, account_name(), body, polling=False)
        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.begin_create(world.resource_group, account_name(), body, polling=False)
        list(client.storage_accounts.list_by_resource_group(world.resource_group))
        stats = {s["kind"]: s for s in world.arm_admin.throttle_stats(world.subscription_id)}

        assert caught.value.status_code == 429
        assert (stats["writes"]["granted"], stats["writes"]["throttled"]) == (1, 1)
        assert (stats["reads"]["granted"], stats["reads"]["throttled"]) == (1, 0)
        assert stats["writes"]["last_granted_at"] >= stats["writes"]["first_request_at"]
        assert {s["principal"] for s in stats.values()} == {TESTER}

    def test_throttle_settings_are_restored_after_the_block(self, world: World) -> None:
        world.arm_admin.set_throttle(writes=(150, 5.0), initial={"writes": 7})
        before = world.arm_admin.throttle()

        inside: list[dict[str, Any]] = []

        def fail_inside_the_block() -> None:
            with world.arm_admin.throttle_settings(writes=(2, 1.0), initial={"writes": 0}):
                inside.append(world.arm_admin.throttle()["writes"])
                raise RuntimeError("the block failed")

        with pytest.raises(RuntimeError):
            fail_inside_the_block()

        assert inside == [{"bucket": 2, "refill_per_s": 1.0, "initial": 0}]
        assert world.arm_admin.throttle() == before
        assert before["writes"] == {"bucket": 150, "refill_per_s": 5.0, "initial": 7}

    def test_bucket_settings_are_validated(self, world: World) -> None:
        with pytest.raises(ArmAdminError, match=r"writes\.initial must be a whole number"):
            world.arm_admin.set_throttle(writes=(200, 10.0), initial={"writes": -1})
        with pytest.raises(ArmAdminError, match=r"writes\.bucket must be a positive integer"):
            world.arm_admin.set_throttle(writes=(0, 1.0))
        with pytest.raises(ArmAdminError, match="refill_per_s must be a positive number"):
            world.arm_admin.set_throttle(reads=(5, 0))


class TestKeyReport:
    """An account can report its in-use version (default), an empty one, or none; it uses the same key."""

    def test_each_report_through_the_storage_client(self, world: World) -> None:
        name, _, _ = _cmk_account(world)
        client = world.storage()
        account_id = str(client.storage_accounts.get_properties(world.resource_group, name).id)

        def reported() -> str | None:
            props = client.storage_accounts.get_properties(world.resource_group, name)
            return props.encryption.key_vault_properties.current_versioned_key_identifier  # type: ignore[no-any-return]

        versioned = reported()
        world.arm_admin.set_key_report(account_id, "empty")
        empty = reported()
        world.arm_admin.set_key_report(account_id, "absent")
        absent = reported()
        access = world.arm_admin.account_access(account_id)
        world.arm_admin.set_key_report(account_id, "versioned")

        assert versioned is not None
        assert versioned.rsplit("/", 1)[-1] == world.keys.get_key(world.key_name).properties.version
        assert (empty, absent) == ("", None)
        assert access["accessible"] is True
        assert access["key_in_use"] == versioned
        assert reported() == versioned

    def test_an_unknown_report_is_refused(self, world: World) -> None:
        name, _, _ = _cmk_account(world)
        account_id = str(world.storage().storage_accounts.get_properties(world.resource_group, name).id)

        with pytest.raises(ArmAdminError) as refused:
            world.arm_admin.set_key_report(account_id, "sometimes")

        assert refused.value.status == 400
        assert "report" in str(refused.value)
