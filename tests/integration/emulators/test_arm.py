"""The ARM emulator's Microsoft.Storage provider and shared ARM behaviour, driven by azure-mgmt-storage.

Every test gets its own subscription, resource group and vault (random names), so tests do not
see each other's resources; emulator-wide settings (RBAC, throttle, faults, LRO timing) are
restored after each test that changes them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.keyvault.keys import KeyClient, KeyVaultKey
from azure.mgmt.storage import StorageManagementClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.arm.admin_client import ArmAdmin, ArmAdminError
from tests.integration.endpoints import LocalEndpoints
from tests.integration.mgmt_clients import ClientT, cmk_encryption, cmk_storage_account, mgmt_client, resource_id
from tests.integration.vaults import key_client

SAMPLES = Path(__file__).parent / "test_arm_samples"
TESTER = "arm-tester"  # the principal the tests act as


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((SAMPLES / name).read_text()))


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path in a JSON object (lists are not descended)."""
    if not isinstance(value, dict):
        return set()
    paths = set()
    for key, child in value.items():
        path = f"{prefix}.{key}" if prefix else key
        paths.add(path)
        paths |= key_paths(child, path)
    return paths


@dataclass
class World(LocalEndpoints):
    """A fresh subscription, resource group and vault with one RSA key, plus clients for them."""

    subscription_id: str
    resource_group: str
    vault: dict[str, Any]
    keys: KeyClient
    key_name: str

    def mgmt(self, client_class: type[ClientT], principal: str = TESTER, **kwargs: Any) -> ClientT:
        """An official management client for this world's subscription, acting as ``principal``."""
        return mgmt_client(
            client_class,
            arm_url=self.arm_url,
            ca=self.ca,
            principal=principal,
            subscription_id=self.subscription_id,
            **kwargs,
        )

    def storage(self, principal: str = TESTER, **kwargs: Any) -> StorageManagementClient:
        return self.mgmt(StorageManagementClient, principal, **kwargs)

    def resource_id(self, resource_type: str, name: str) -> str:
        return resource_id(self.subscription_id, self.resource_group, resource_type, name)

    def new_version(self, **kwargs: Any) -> str:
        return str(self.keys.create_rsa_key(self.key_name, size=2048, **kwargs).id)

    def key_client(self, vault: dict[str, Any]) -> KeyClient:
        return key_client(vault["url"], TESTER, self.ca, api_version="7.6")

    def new_vault(self, **options: Any) -> dict[str, Any]:
        return self.kv_admin.create_vault(
            f"kv{uuid.uuid4().hex[:10]}",
            subscription_id=self.subscription_id,
            resource_group=self.resource_group,
            location="eastus",
            **options,
        )

    def grant_key_access(self, *principals: str, vault: dict[str, Any] | None = None) -> None:
        """Turn on Key Vault RBAC: the tester administers, the principals may get/wrap/unwrap."""
        vault = vault or self.vault
        assignments = [{"principal_id": TESTER, "role": "Key Vault Crypto Officer"}]
        assignments += [{"principal_id": p, "role": "Key Vault Crypto Service Encryption User"} for p in principals]
        self.kv_admin.set_role_assignments(vault["name"], assignments)

    def identity_id(self, name: str) -> str:
        return self.resource_id("Microsoft.ManagedIdentity/userAssignedIdentities", name)

    def account_id(self, name: str) -> str:
        return self.resource_id("Microsoft.Storage/storageAccounts", name)


def restore_arm_defaults(arm_admin: ArmAdmin, *, lro_retry_after_s: int = 1) -> None:
    """Emulator-wide settings back to their defaults: no role assignments (all allowed), no throttle, no
    faults, no Key Vault outage, unpaged lists, LROs done after one poll (each ``Retry-After`` as given)."""
    arm_admin.set_role_assignments([])
    arm_admin.reset_throttle()
    arm_admin.clear_faults()
    arm_admin.end_keyvault_outage()
    arm_admin.set_lro(retry_after_s=lro_retry_after_s, polls_until_done=1, ml_update="location")
    arm_admin.set_page_size(None)


@pytest.fixture
def world(local_azure: dict[str, Any]) -> Iterator[World]:
    local = LocalEndpoints(local_azure)
    # Emulator-wide settings are shared by the session: start from the defaults whatever ran before.
    # Retry-After: 0 lets the SDK poll at its polling_interval (0.05 s here) instead of sleeping 1 s per LRO.
    restore_arm_defaults(local.arm_admin, lro_retry_after_s=0)
    subscription_id = str(uuid.uuid4())
    resource_group = f"rg-{uuid.uuid4().hex[:8]}"
    local.arm_admin.create_resource_group(subscription_id, resource_group)
    vault = local.kv_admin.create_vault(
        f"kv{uuid.uuid4().hex[:10]}", subscription_id=subscription_id, resource_group=resource_group, location="eastus"
    )
    keys = key_client(vault["url"], TESTER, local.ca, api_version="7.6")
    key_name = f"cmk-{uuid.uuid4().hex[:6]}"
    keys.create_rsa_key(key_name, size=2048)
    yield World(local_azure, subscription_id, resource_group, vault, keys, key_name)
    restore_arm_defaults(local.arm_admin)


def identity_with_access(world: World) -> tuple[str, dict[str, Any]]:
    """A user-assigned identity allowed to use the world's key, and the ``identity`` block naming it."""
    identity_id = world.identity_id(f"uai-{uuid.uuid4().hex[:6]}")
    registered = world.arm_admin.register_user_assigned_identity(identity_id)
    world.grant_key_access(registered["principal_id"])
    return identity_id, {"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}}


def cmk_account_body(world: World, identity_id: str, identity: dict[str, Any], version: str = "") -> dict[str, Any]:
    return cmk_storage_account(world.vault["url"], world.key_name, version, identity_id, identity)


def create_cmk_account(world: World, *, identity_id: str = "", identity: dict[str, Any] | None = None) -> str:
    """A CMK account pinned to the world's current key version (a new key-capable identity unless given)."""
    if not identity_id or identity is None:
        identity_id, identity = identity_with_access(world)
    version = world.keys.get_key(world.key_name).properties.version
    name = account_name()
    world.storage().storage_accounts.begin_create(
        world.resource_group, name, cmk_account_body(world, identity_id, identity, version)
    ).result()
    return name


def account_name() -> str:
    return f"sa{uuid.uuid4().hex[:12]}"


def arm_error(exc: HttpResponseError) -> dict[str, Any]:
    assert exc.response is not None
    return dict(exc.response.json()["error"])


class TestCreateWithCustomerManagedKey:
    """PUT create is long-running, checks the key as the account's identity, and reports the version in use."""

    def test_pinned_version(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        version_id = world.keys.get_key(world.key_name).id
        version = version_id.rsplit("/", 1)[-1]
        world.arm_admin.reset_counters()

        account = (
            world.storage()
            .storage_accounts.begin_create(
                world.resource_group, account_name(), cmk_account_body(world, identity_id, identity, version)
            )
            .result()
        )

        kvp = account.encryption.key_vault_properties
        assert account.provisioning_state == "Succeeded"
        assert kvp.current_versioned_key_identifier == version_id
        assert kvp.key_version == version
        assert kvp.last_key_rotation_timestamp is not None
        counters = world.arm_admin.counters()
        assert counters["StorageAccounts_Create"] == 1
        assert counters["StorageAccounts_OperationStatus"] >= 1

    def test_identity_without_key_access_is_refused_and_nothing_is_created(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        world.grant_key_access("someone-else")
        name = account_name()
        client = world.storage()

        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.begin_create(
                world.resource_group, name, cmk_account_body(world, identity_id, identity)
            ).result()

        assert caught.value.status_code == 400
        assert arm_error(caught.value)["code"] == "KeyVaultAuthenticationFailure"
        with pytest.raises(ResourceNotFoundError):
            client.storage_accounts.get_properties(world.resource_group, name)

    def test_vault_without_purge_protection_is_refused(self, world: World) -> None:
        unprotected = world.new_vault(enable_purge_protection=False)
        world.key_client(unprotected).create_rsa_key(world.key_name, size=2048)
        identity_id, identity = identity_with_access(world)
        body = cmk_account_body(world, identity_id, identity)
        body["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"] = unprotected["url"]

        with pytest.raises(HttpResponseError) as caught:
            world.storage().storage_accounts.begin_create(world.resource_group, account_name(), body).result()

        assert arm_error(caught.value) == {
            "code": "KeyVaultPolicyError",
            "message": "Keyvault policy recoverable is not set",
        }

    def test_key_that_is_not_rsa_is_refused(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        ec_key = world.keys.create_ec_key(f"ec-{uuid.uuid4().hex[:4]}", curve="P-256")
        body = cmk_account_body(world, identity_id, identity)
        body["properties"]["encryption"]["keyvaultproperties"]["keyname"] = ec_key.name

        with pytest.raises(HttpResponseError) as caught:
            world.storage().storage_accounts.begin_create(world.resource_group, account_name(), body).result()

        assert caught.value.status_code == 400
        assert arm_error(caught.value)["code"] == "KeyVaultKeyTypeOrSizeNotSupported"


def pinned_account(world: World) -> tuple[str, str, dict[str, Any], KeyVaultKey]:
    """A storage account created on the world's key pinned to its current version.

    Returns its name, the identity id and ``identity`` block it uses, and the key as it was then.
    """
    identity_id, identity = identity_with_access(world)
    key = world.keys.get_key(world.key_name)
    name = account_name()
    world.storage().storage_accounts.begin_create(
        world.resource_group, name, cmk_account_body(world, identity_id, identity, key.properties.version)
    ).result()
    return name, identity_id, identity, key


class TestRepointStorageAccount:
    """PATCH is synchronous (200), moves the account to a new version, and refuses an unusable version."""

    def test_repoint_to_new_version(self, world: World) -> None:
        name, identity_id, _, _ = pinned_account(world)
        client = world.storage()
        second_id = world.new_version()
        encryption = cmk_encryption(world.vault["url"], world.key_name, second_id.rsplit("/", 1)[-1], identity_id)
        patch = {"properties": {"encryption": encryption}}

        updated = client.storage_accounts.update(world.resource_group, name, patch)

        assert updated.encryption.key_vault_properties.current_versioned_key_identifier == second_id
        reread = client.storage_accounts.get_properties(world.resource_group, name)
        assert reread.encryption.key_vault_properties.current_versioned_key_identifier == second_id

    def test_disabled_version_is_refused_and_nothing_changes(self, world: World) -> None:
        name, identity_id, identity, first = pinned_account(world)
        client = world.storage()
        disabled_id = world.new_version()
        world.keys.update_key_properties(world.key_name, disabled_id.rsplit("/", 1)[-1], enabled=False)
        patch = cmk_account_body(world, identity_id, identity, disabled_id.rsplit("/", 1)[-1])
        del patch["location"], patch["sku"], patch["kind"]

        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.update(world.resource_group, name, patch)

        assert caught.value.status_code == 400
        assert arm_error(caught.value)["code"] == "KeyVaultKeyDisabled"
        reread = client.storage_accounts.get_properties(world.resource_group, name)
        assert reread.encryption.key_vault_properties.current_versioned_key_identifier == first.id
        assert reread.encryption.key_vault_properties.key_version == first.properties.version

    def test_any_write_is_refused_while_the_version_in_use_is_disabled(self, world: World) -> None:
        name, _, _, key = pinned_account(world)
        client = world.storage()
        world.keys.update_key_properties(world.key_name, key.properties.version, enabled=False)

        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.update(world.resource_group, name, {"tags": {"touched": "yes"}})

        assert arm_error(caught.value)["code"] == "KeyVaultKeyDisabled"
        assert client.storage_accounts.get_properties(world.resource_group, name).tags == {}

    def test_unknown_version_is_refused(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        name = account_name()
        client = world.storage()
        client.storage_accounts.begin_create(
            world.resource_group, name, cmk_account_body(world, identity_id, identity)
        ).result()
        patch = cmk_account_body(world, identity_id, identity, uuid.uuid4().hex)
        del patch["location"], patch["sku"], patch["kind"]

        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.update(world.resource_group, name, patch)

        assert arm_error(caught.value)["code"] == "KeyVaultVersionNotFound"


class TestVersionlessDailyCheck:
    """A versionless account adopts the newest version only when the emulator's clock passes its daily check."""

    def test_adopts_new_version_after_a_day(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        first_id = world.keys.get_key(world.key_name).id
        name = account_name()
        client = world.storage()
        created = client.storage_accounts.begin_create(
            world.resource_group, name, cmk_account_body(world, identity_id, identity)
        ).result()
        second_id = world.new_version()
        before = client.storage_accounts.get_properties(world.resource_group, name)

        world.arm_admin.advance_clock(86400 + 60)

        after = client.storage_accounts.get_properties(world.resource_group, name)
        assert created.encryption.key_vault_properties.current_versioned_key_identifier == first_id
        assert before.encryption.key_vault_properties.current_versioned_key_identifier == first_id
        assert after.encryption.key_vault_properties.current_versioned_key_identifier == second_id
        assert after.encryption.key_vault_properties.key_version == ""
        assert (
            after.encryption.key_vault_properties.last_key_rotation_timestamp
            > created.encryption.key_vault_properties.last_key_rotation_timestamp
        )


class TestAccountAccess:
    """An account whose key version in use is disabled (or otherwise unusable) reads as inaccessible."""

    def test_inaccessible_once_version_in_use_is_disabled(self, world: World) -> None:
        version = world.keys.get_key(world.key_name).properties.version
        name = create_cmk_account(world)
        before = world.arm_admin.account_access(world.account_id(name))

        world.keys.update_key_properties(world.key_name, version, enabled=False)

        after = world.arm_admin.account_access(world.account_id(name))
        assert before["accessible"] is True
        assert after["accessible"] is False
        assert after["reason"].startswith("KeyVaultKeyDisabled")

    @pytest.mark.parametrize("retire", ["expire", "delete", "revoke"])
    def test_inaccessible_once_version_in_use_expires_is_deleted_or_access_is_revoked(
        self, world: World, retire: str
    ) -> None:
        version = world.keys.get_key(world.key_name).properties.version
        name = create_cmk_account(world)

        if retire == "expire":
            world.keys.update_key_properties(world.key_name, version, expires_on=_in_days(-1))
        elif retire == "delete":
            world.keys.begin_delete_key(world.key_name).result()
        else:
            world.grant_key_access("someone-else")

        access = world.arm_admin.account_access(world.account_id(name))
        expected = {
            "expire": "KeyVaultKeyExpired",
            "delete": "KeyVaultVersionNotFound",
            "revoke": "KeyVaultAuthenticationFailure",
        }
        assert access["accessible"] is False
        assert access["reason"].startswith(expected[retire])

    def test_rotation_that_keeps_the_old_version_enabled_stays_accessible(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        name = account_name()
        world.storage().storage_accounts.begin_create(
            world.resource_group, name, cmk_account_body(world, identity_id, identity)
        ).result()
        world.new_version()

        access = world.arm_admin.account_access(world.account_id(name))

        assert access == {"accessible": True, "reason": None, "key_in_use": access["key_in_use"]}
        assert access["key_in_use"] is not None


class TestStorageListAndDelete:
    """Accounts are listed by group and by subscription, found case-insensitively, and deleted."""

    def test_list_get_case_insensitive_and_delete(self, world: World) -> None:
        client = world.storage()
        name = account_name()
        client.storage_accounts.begin_create(
            world.resource_group, name, {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        ).result()

        by_group = [a.name for a in client.storage_accounts.list_by_resource_group(world.resource_group)]
        by_subscription = [a.name for a in client.storage_accounts.list()]
        shouted = client.storage_accounts.get_properties(world.resource_group.upper(), name.upper())
        client.storage_accounts.delete(world.resource_group, name)

        assert by_group == [name]
        assert by_subscription == [name]
        assert shouted.name == name
        with pytest.raises(ResourceNotFoundError) as caught:
            client.storage_accounts.get_properties(world.resource_group, name)
        assert arm_error(caught.value)["code"] == "ResourceNotFound"


class TestSeedStorageAccounts:
    """The admin seed creates many accounts at once, validated as a create is (CMK checked), all or none."""

    def test_seeded_accounts_are_read_as_created_ones_without_spending_arm_writes(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        version = world.keys.get_key(world.key_name).properties.version
        names = [account_name() for _ in range(3)]
        world.arm_admin.reset_counters()

        seeded = world.arm_admin.seed_storage_accounts(
            world.subscription_id,
            world.resource_group,
            [{"name": n, **cmk_account_body(world, identity_id, identity, version)} for n in names],
        )
        counters = world.arm_admin.counters()
        read = world.storage().storage_accounts.get_properties(world.resource_group, names[1])

        assert [a["name"] for a in seeded] == names
        assert counters == {}
        assert read.provisioning_state == "Succeeded"
        assert read.encryption.key_vault_properties.key_version == version
        assert read.encryption.key_vault_properties.current_versioned_key_identifier.endswith("/" + str(version))
        assert read.encryption.encryption_identity.encryption_user_assigned_identity == identity_id

    def test_one_unusable_key_refuses_the_whole_seed(self, world: World) -> None:
        identity_id, identity = identity_with_access(world)
        good = {"name": account_name(), **cmk_account_body(world, identity_id, identity)}
        bad = {"name": account_name(), **cmk_account_body(world, identity_id, identity, "0" * 32)}

        with pytest.raises(ArmAdminError, match="KeyVaultVersionNotFound"):
            world.arm_admin.seed_storage_accounts(world.subscription_id, world.resource_group, [good, bad])

        assert list(world.storage().storage_accounts.list_by_resource_group(world.resource_group)) == []

    def test_names_must_be_given_and_unique(self, world: World) -> None:
        body = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        name = account_name()

        with pytest.raises(ArmAdminError, match="unique"):
            world.arm_admin.seed_storage_accounts(
                world.subscription_id, world.resource_group, [{"name": name, **body}, {"name": name, **body}]
            )
        with pytest.raises(ArmAdminError, match="every account needs a"):
            world.arm_admin.seed_storage_accounts(world.subscription_id, world.resource_group, [body])


class TestPaging:
    """With paging on, lists answer pages linked by an absolute nextLink, and the SDK follows them."""

    def test_sdk_follows_next_links(self, world: World) -> None:
        client = world.storage()
        body = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        names = sorted(account_name() for _ in range(3))
        for name in names:
            client.storage_accounts.begin_create(world.resource_group, name, body).result()
        world.arm_admin.set_page_size(2)
        world.arm_admin.reset_counters()

        listed = sorted(a.name for a in client.storage_accounts.list())

        assert listed == names
        assert world.arm_admin.counters()["StorageAccounts_List"] == 2


class TestApiVersions:
    """The SDK's default api-version and 2025-01-01 both work; unknown ones get ARM's errors."""

    def test_2025_01_01_and_sdk_default(self, world: World) -> None:
        name = account_name()
        world.storage().storage_accounts.begin_create(
            world.resource_group, name, {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        ).result()

        old = world.storage(api_version="2025-01-01").storage_accounts.get_properties(world.resource_group, name)
        new = world.storage().storage_accounts.get_properties(world.resource_group, name)

        assert old.name == new.name == name

    @pytest.mark.parametrize(
        ("api_version", "code"),
        [("2019-01-01", "NoRegisteredProviderFound"), ("not-a-version", "InvalidApiVersionParameter")],
    )
    def test_unknown_api_version(self, world: World, api_version: str, code: str) -> None:
        client = world.storage(api_version=api_version)

        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.get_properties(world.resource_group, account_name())

        assert caught.value.status_code == 400
        assert arm_error(caught.value)["code"] == code


class TestArmErrorShapes:
    """Malformed bodies and wrong ids get ARM's error shapes, never a 500, and the emulator keeps serving."""

    def test_malformed_json_body(self, world: World) -> None:
        client = world.storage()

        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.begin_create(world.resource_group, account_name(), b"{not json").result()

        assert caught.value.status_code == 400
        assert arm_error(caught.value)["code"] == "InvalidRequestContent"
        assert list(client.storage_accounts.list_by_resource_group(world.resource_group)) == []

    def test_missing_resource_group(self, world: World) -> None:
        client = world.storage()

        with pytest.raises(ResourceNotFoundError) as caught:
            client.storage_accounts.get_properties(f"rg-missing-{uuid.uuid4().hex[:6]}", account_name())

        assert arm_error(caught.value)["code"] == "ResourceGroupNotFound"

    @pytest.mark.parametrize(
        ("path", "code"),
        [
            ("/subscriptions/not-a-guid/providers/Microsoft.Storage/storageAccounts", "InvalidSubscriptionId"),
            ("/subscriptions/{sub}/providers/Microsoft.Nope/things", "InvalidResourceNamespace"),
            ("/subscriptions/{sub}/providers/Microsoft.Storage/storageAccountz", "InvalidResourceType"),
            ("/nonsense", "InvalidResourceId"),
        ],
    )
    def test_wrong_resource_ids(self, world: World, path: str, code: str) -> None:
        client = world.storage()
        url = world.arm_url + path.format(sub=world.subscription_id) + "?api-version=2025-01-01"

        response = client.send_request(HttpRequest("GET", url))

        assert response.status_code in (400, 404)
        assert response.json()["error"]["code"] == code
        assert client.send_request(HttpRequest("GET", url)).status_code == response.status_code

    def test_request_without_token_is_401(self, world: World) -> None:
        from azure.core import PipelineClient

        anonymous: PipelineClient[HttpRequest, Any] = PipelineClient(world.arm_url, connection_verify=world.ca)
        url = f"{world.arm_url}/subscriptions/{world.subscription_id}/providers/Microsoft.Storage/storageAccounts"

        response = anonymous.send_request(HttpRequest("GET", url, params={"api-version": "2025-01-01"}))

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "AuthenticationFailed"
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")

    def test_invalid_account_name(self, world: World) -> None:
        with pytest.raises(HttpResponseError) as caught:
            world.storage().storage_accounts.begin_create(
                world.resource_group,
                "Bad_Name",
                {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"},
            ).result()

        assert arm_error(caught.value)["code"] == "AccountNameInvalid"


class TestRbac:
    """With role assignments configured, each action needs a role granting it at the resource's scope."""

    def test_reader_cannot_write_and_error_names_action_and_scope(self, world: World) -> None:
        world.arm_admin.set_role_assignments(
            [{"principal_id": "reader", "role": "Reader", "scope": f"/subscriptions/{world.subscription_id}"}]
        )
        reader = world.storage(principal="reader")
        name = account_name()

        with pytest.raises(HttpResponseError) as caught:
            reader.storage_accounts.begin_create(
                world.resource_group, name, {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
            ).result()

        error = arm_error(caught.value)
        assert caught.value.status_code == 403
        assert error["code"] == "AuthorizationFailed"
        assert "'Microsoft.Storage/storageAccounts/write'" in error["message"]
        assert f"'{world.account_id(name)}'" in error["message"]
        assert list(reader.storage_accounts.list()) == []

    def test_storage_account_contributor_on_group_may_create(self, world: World) -> None:
        scope = f"/subscriptions/{world.subscription_id}/resourceGroups/{world.resource_group}"
        world.arm_admin.set_role_assignments(
            [{"principal_id": "operator", "role": "Storage Account Contributor", "scope": scope}]
        )

        account = (
            world.storage(principal="operator")
            .storage_accounts.begin_create(
                world.resource_group,
                account_name(),
                {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"},
            )
            .result()
        )

        assert account.provisioning_state == "Succeeded"


class TestThrottleAndFaults:
    """Write throttling answers 429 with Retry-After; injected faults are seen and counted."""

    def test_writes_over_the_limit_get_429_with_retry_after(self, world: World) -> None:
        world.arm_admin.set_throttle(writes=(1, 0.01))
        client = world.storage(retry_total=0)
        body = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
        client.storage_accounts.begin_create(world.resource_group, account_name(), body).result()

        with pytest.raises(HttpResponseError) as caught:
            client.storage_accounts.begin_create(world.resource_group, account_name(), body).result()

        assert caught.value.status_code == 429
        assert arm_error(caught.value)["code"] == "SubscriptionRequestsThrottled"
        assert caught.value.response is not None
        assert int(caught.value.response.headers["Retry-After"]) >= 1

    def test_transient_fault_is_retried_by_the_sdk(self, world: World) -> None:
        world.arm_admin.set_faults(
            {"rate": 1.0, "kind": "status", "status": 503, "operations": ["StorageAccounts_List"], "count": 1}
        )
        world.arm_admin.reset_counters()

        listed = list(world.storage(retry_backoff_factor=0.01).storage_accounts.list())

        assert listed == []
        assert world.arm_admin.counters()["StorageAccounts_List"] == 2

    def test_dropped_connection_surfaces_as_connection_error(self, world: World) -> None:
        world.arm_admin.set_faults({"rate": 1.0, "kind": "drop", "operations": ["StorageAccounts_List"], "count": 1})

        started = time.monotonic()
        with pytest.raises(Exception) as caught:  # noqa: PT011 - azure-core raises its transport error here
            list(world.storage(retry_total=0).storage_accounts.list())

        assert "Incomplete" in type(caught.value).__name__ or "Response" in type(caught.value).__name__
        assert time.monotonic() - started < 10
        assert list(world.storage().storage_accounts.list()) == []


class TestStorageMatchesMicrosoftExamples:
    """Responses carry every field of the Microsoft examples for CMK accounts (2025-01-01)."""

    def test_enable_cmk_example(self, world: World) -> None:
        example = sample("storage.StorageAccountEnableCMK.2025-01-01.json")
        client = world.storage(api_version="2025-01-01")
        name = account_name()
        client.storage_accounts.begin_create(
            world.resource_group,
            name,
            {
                "location": "eastus",
                "sku": {"name": "Standard_GRS"},
                "kind": "Storage",
                "identity": {"type": "SystemAssigned"},
            },
        ).result()
        principal = client.storage_accounts.get_properties(world.resource_group, name).identity.principal_id
        world.grant_key_access(principal)
        request = example["parameters"]["parameters"]
        request["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"] = world.vault["url"]
        request["properties"]["encryption"]["keyvaultproperties"]["keyname"] = world.key_name

        response = client.send_request(
            HttpRequest(
                "PATCH",
                f"{world.arm_url}{world.account_id(name)}?api-version=2025-01-01",
                json=request,
            )
        )

        assert response.status_code == 200
        body = response.json()
        expected = key_paths(example["responses"]["200"]["body"])
        # Not modelled by the emulator: geo-replication (secondary*) and the example's tags.
        expected -= {p for p in expected if p.startswith(("properties.secondary", "properties.statusOfSecondary"))}
        expected -= {p for p in expected if p.startswith("tags.")}
        assert expected <= key_paths(body)
        assert body["properties"]["encryption"]["keyvaultproperties"]["currentVersionedKeyIdentifier"] == (
            world.keys.get_key(world.key_name).id
        )

    def test_expiration_timestamp_example(self, world: World) -> None:
        example = sample("storage.StorageAccountGetPropertiesCMKVersionExpirationTime.2025-01-01.json")
        world.keys.create_rsa_key(world.key_name, size=2048, expires_on=_in_days(400))
        identity_id, identity = identity_with_access(world)
        name = account_name()
        world.storage().storage_accounts.begin_create(
            world.resource_group, name, cmk_account_body(world, identity_id, identity)
        ).result()

        response = world.storage().send_request(
            HttpRequest("GET", f"{world.arm_url}{world.account_id(name)}?api-version=2025-01-01")
        )

        expected_kvp = example["responses"]["200"]["body"]["properties"]["encryption"]["keyvaultproperties"]
        assert set(expected_kvp) <= set(response.json()["properties"]["encryption"]["keyvaultproperties"])

    def test_user_assigned_identity_example(self, world: World) -> None:
        example = sample(
            "storage.StorageAccountUpdateUserAssignedIdentityWithFederatedIdentityClientId.2025-01-01.json"
        )
        identity_id, _ = identity_with_access(world)
        request = json.loads(
            json.dumps(example["parameters"]["parameters"]).replace(
                "/subscriptions/{subscription-id}/resourceGroups/res9101/providers/Microsoft.ManagedIdentity/"
                "userAssignedIdentities/{managed-identity-name}",
                identity_id,
            )
        )
        request["location"] = "eastus"
        request["kind"] = "StorageV2"  # the example asks for "Storage" but its response shows StorageV2 (accessTier)
        request["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"] = world.vault["url"]
        request["properties"]["encryption"]["keyvaultproperties"]["keyname"] = world.key_name

        account = (
            world.storage(api_version="2025-01-01")
            .storage_accounts.begin_create(world.resource_group, account_name(), request)
            .result()
        )

        expected = key_paths(example["responses"]["200"]["body"])
        wire = world.storage().send_request(HttpRequest("GET", f"{world.arm_url}{account.id}?api-version=2025-01-01"))
        got = key_paths(wire.json())
        expected = {p for p in expected if not p.startswith("identity.userAssignedIdentities.")}
        assert expected <= got
        assert wire.json()["identity"]["userAssignedIdentities"][identity_id].keys() == {"principalId", "clientId"}
        assert wire.json()["properties"]["encryption"]["identity"]["federatedIdentityClientId"] == (
            "3109d1c4-a5de-4d84-8832-feabb916a4b6"
        )


class TestResourceGroupsAndVaults:
    """Resource groups can be created through ARM; vaults are readable with soft delete and purge protection."""

    def test_put_resource_group_and_read_vault(self, world: World) -> None:
        client = world.storage()
        group = f"rg-{uuid.uuid4().hex[:8]}"
        base = f"{world.arm_url}/subscriptions/{world.subscription_id}"

        created = client.send_request(
            HttpRequest("PUT", f"{base}/resourcegroups/{group}?api-version=2021-04-01", json={"location": "eastus"})
        )
        vault = client.send_request(
            HttpRequest("GET", f"{world.arm_url}{world.vault['arm_id']}?api-version=2023-07-01")
        )
        listed = client.send_request(
            HttpRequest("GET", f"{base}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01")
        )

        assert created.status_code == 201
        assert created.json()["name"] == group
        properties = vault.json()["properties"]
        assert properties["vaultUri"] == world.vault["url"] + "/"
        assert properties["enableSoftDelete"] is True
        assert properties["enablePurgeProtection"] is True
        assert properties["enableRbacAuthorization"] is True
        assert [v["name"] for v in listed.json()["value"]] == [world.vault["name"]]


def _in_days(days: int) -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


class TestProcessLifecycle:
    """The emulator stops cleanly on SIGTERM and serves the same resources after a restart."""

    def test_state_survives_restart(self, tmp_path: Path) -> None:
        from emulators.localazure import LocalAzure

        subscription_id, group = str(uuid.uuid4()), f"rg-{uuid.uuid4().hex[:6]}"
        with LocalAzure(tmp_path, services=["arm"]) as first:
            ArmAdmin(first.endpoints["arm"]["admin"], first.endpoints["ca_bundle"]).create_resource_group(
                subscription_id, group
            )
            process = first._processes[0].popen

        with LocalAzure(tmp_path, services=["arm"]) as second:
            client = mgmt_client(
                StorageManagementClient,
                arm_url=second.endpoints["arm"]["url"],
                ca=second.endpoints["ca_bundle"],
                principal=TESTER,
                subscription_id=subscription_id,
            )
            listed = list(client.storage_accounts.list_by_resource_group(group))
            client.close()

        assert process.returncode == 0
        assert listed == []  # the group exists (a missing one is ResourceGroupNotFound)


_FIELDS = [
    "location", "sku", "name", "kind", "tags", "identity", "type", "userAssignedIdentities", "properties",
    "encryption", "keySource", "keyvaultproperties", "keyname", "keyversion", "keyvaulturi", "services", "blob",
    "keyType", "enabled", "keyVaultProperties", "keyIdentifier", "keyVaultArmId", "status", "identityClientId",
    "userAssignedIdentity", "description", "friendlyName",
]  # fmt: skip
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["", "Microsoft.Keyvault", "StorageV2", "x"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=12,
)


class TestNeverA500:
    """Whatever JSON arrives at a write route, the answer is a success or an ARM-shaped 4xx, never a 500."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=_json_values, method_route=st.sampled_from(["PUT sa", "PATCH sa", "PUT ws", "PATCH ws", "PUT rg"]))
    def test_fuzzed_bodies(self, world: World, body: Any, method_route: str) -> None:
        targets = _fuzz_targets(world)
        method, route = method_route.split()

        response = world.storage(retry_total=0).send_request(HttpRequest(method, targets[route], json=body))

        assert response.status_code < 500, response.text()
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}
            assert response.json()["error"]["code"]


_created_targets: dict[str, dict[str, str]] = {}


def _fuzz_targets(world: World) -> dict[str, str]:
    """URLs of an existing CMK storage account, CMK workspace and group (created once per world)."""
    if world.subscription_id not in _created_targets:
        identity_id, identity = identity_with_access(world)
        name = account_name()
        world.storage().storage_accounts.begin_create(
            world.resource_group, name, cmk_account_body(world, identity_id, identity)
        ).result()
        workspace = {
            "location": "eastus",
            "identity": identity,
            "properties": {
                "encryption": {
                    "status": "Enabled",
                    "identity": {"userAssignedIdentity": identity_id},
                    "keyVaultProperties": {
                        "keyVaultArmId": world.vault["arm_id"],
                        "keyIdentifier": world.keys.get_key(world.key_name).id,
                    },
                }
            },
        }
        base = f"{world.arm_url}/subscriptions/{world.subscription_id}/resourceGroups/{world.resource_group}"
        ws_url = f"{base}/providers/Microsoft.MachineLearningServices/workspaces/fuzz?api-version=2025-06-01"
        assert world.storage().send_request(HttpRequest("PUT", ws_url, json=workspace)).status_code == 202
        _created_targets[world.subscription_id] = {
            "sa": f"{world.arm_url}{world.account_id(name)}?api-version=2025-01-01",
            "ws": ws_url,
            "rg": f"{base}?api-version=2021-04-01",
        }
    return _created_targets[world.subscription_id]
