"""The ARM emulator's Resource Graph endpoint, driven by azure-mgmt-resourcegraph unmodified.

One query spans every subscription (or the ones named), over every resource the emulator holds,
including generic resources seeded through the admin API; rows are filtered by the caller's RBAC;
pages are chained with ``$skipToken``; every answer carries the per-user quota headers; a query
outside the emulator's subset is a 400 in Resource Graph's error shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from tests.integration.emulators.test_arm import (
    TESTER,
    World,
    arm_error,
    cmk_account_body,
    identity_with_access,
    world,
)
from tests.integration.mgmt_clients import mgmt_client

__all__ = ["world"]  # the fixture, imported for this module


@pytest.fixture
def graph_world(world: World) -> Iterator[World]:
    world.arm_admin.set_graph_quota(queries=1000, window_s=5)
    yield world
    world.arm_admin.set_graph_quota()


def graph(world: World, principal: str = TESTER, **kwargs: Any) -> ResourceGraphClient:
    return mgmt_client(ResourceGraphClient, arm_url=world.arm_url, ca=world.ca, principal=principal, **kwargs)


def cosmos_id(subscription_id: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/rg-data"
        f"/providers/Microsoft.DocumentDB/databaseAccounts/cosmos{uuid.uuid4().hex[:8]}"
    )


def key_query(world: World) -> str:
    host = world.vault["url"].split("://", 1)[1].rstrip("/")
    return (
        f'Resources | where tostring(properties) contains "{host}/keys/{world.key_name}"'
        " | project id, type, subscriptionId, properties"
    )


def query_all(client: ResourceGraphClient, query: str, *, top: int = 1000, **kwargs: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    token = None
    while True:
        options = QueryRequestOptions(top=top, skip_token=token)
        answer = client.resources(QueryRequest(query=query, options=options, **kwargs))
        rows += answer.data
        token = answer.skip_token
        if not token:
            return rows


class TestQueryAcrossTheEstate:
    """Every resource whose properties name the key is found, of any type, in any subscription."""

    def test_storage_account_and_generic_cosmos_account_in_another_subscription(self, graph_world: World) -> None:
        world = graph_world
        identity_id, identity = identity_with_access(world)
        account = f"sa{uuid.uuid4().hex[:12]}"
        world.storage().storage_accounts.begin_create(
            world.resource_group, account, cmk_account_body(world, identity_id, identity)
        ).result()
        elsewhere = str(uuid.uuid4())
        # Cosmos DB names its key in properties.keyVaultKeyUri; here in another case ("contains" ignores case).
        shouted = f"{world.vault['url'].rstrip('/')}/keys/{world.key_name}".upper()
        cosmos = cosmos_id(elsewhere)
        world.arm_admin.put_generic_resource(cosmos, {"keyVaultKeyUri": shouted}, kind="GlobalDocumentDB")
        world.arm_admin.put_generic_resource(cosmos_id(elsewhere), {"keyVaultKeyUri": "https://other.vault/keys/x"})

        rows = query_all(graph(world), key_query(world))

        by_id = {r["id"]: r for r in rows}
        assert set(by_id) == {world.account_id(account), cosmos}
        assert by_id[cosmos]["type"] == "microsoft.documentdb/databaseaccounts"
        assert by_id[cosmos]["subscriptionId"] == elsewhere
        assert by_id[cosmos]["properties"] == {"keyVaultKeyUri": shouted}

    def test_named_subscriptions_limit_the_scope(self, graph_world: World) -> None:
        world = graph_world
        elsewhere = str(uuid.uuid4())
        world.arm_admin.put_generic_resource(
            cosmos_id(elsewhere), {"keyVaultKeyUri": f"{world.vault['url'].rstrip('/')}/keys/{world.key_name}"}
        )

        rows = query_all(graph(world), key_query(world), subscriptions=[world.subscription_id])

        assert rows == []

    def test_rows_are_filtered_by_the_callers_read_permission(self, graph_world: World) -> None:
        world = graph_world
        visible, hidden = str(uuid.uuid4()), str(uuid.uuid4())
        uri = {"keyVaultKeyUri": f"{world.vault['url'].rstrip('/')}/keys/{world.key_name}"}
        seen_id = cosmos_id(visible)
        world.arm_admin.put_generic_resource(seen_id, uri)
        world.arm_admin.put_generic_resource(cosmos_id(hidden), uri)
        world.arm_admin.set_role_assignments(
            [{"principal_id": "graph-reader", "role": "Reader", "scope": f"/subscriptions/{visible}"}]
        )

        rows = query_all(graph(world, "graph-reader"), key_query(world))

        assert [r["id"] for r in rows] == [seen_id]


class TestPaging:
    """$top cuts the answer into pages chained by $skipToken; totalRecords counts them all."""

    def test_pages_of_one_are_chained(self, graph_world: World) -> None:
        world = graph_world
        sub = str(uuid.uuid4())
        uri = {"keyVaultKeyUri": f"{world.vault['url'].rstrip('/')}/keys/{world.key_name}/abc"}
        ids = sorted(cosmos_id(sub) for _ in range(3))
        for resource_id in ids:
            world.arm_admin.put_generic_resource(resource_id, uri)

        first = graph(world).resources(QueryRequest(query=key_query(world), options=QueryRequestOptions(top=1)))
        rows = query_all(graph(world), key_query(world), top=1)

        assert (first.total_records, first.count, first.result_truncated) == (3, 1, "false")
        assert first.skip_token
        assert [r["id"] for r in rows] == sorted(ids, key=str.lower)

    def test_a_skip_token_of_another_query_is_refused(self, graph_world: World) -> None:
        world = graph_world
        with pytest.raises(HttpResponseError) as caught:
            graph(world).resources(
                QueryRequest(query=key_query(world), options=QueryRequestOptions(skip_token="bm90LWEtdG9rZW4="))
            )

        assert caught.value.status_code == 400


class TestStrictSubset:
    """A query the emulator does not understand is a 400 in Resource Graph's shape, never an empty answer."""

    @pytest.mark.parametrize(
        "query",
        [
            "Resources | where properties.encryption.keySource == 'Microsoft.Keyvault'",
            "Resources | summarize count() by type",
            "ResourceContainers | where type =~ 'microsoft.resources/subscriptions'",
            "Resources | where tostring(properties) contains 'x' | join (Resources) on id",
            "Resources | project id",
        ],
    )
    def test_unsupported_query_is_bad_request(self, graph_world: World, query: str) -> None:
        with pytest.raises(HttpResponseError) as caught:
            graph(graph_world).resources(QueryRequest(query=query))

        error = arm_error(caught.value)
        assert caught.value.status_code == 400
        assert error["code"] == "BadRequest"
        assert error["message"].startswith("Please provide below info when asking for support")
        assert [d["code"] for d in error["details"]][:1] == ["InvalidQuery"]


class TestQuota:
    """Every answer says how many queries are left and when the window resets; over the quota is 429."""

    def test_headers_count_down_then_throttle(self, graph_world: World) -> None:
        world = graph_world
        world.arm_admin.set_graph_quota(queries=2, window_s=60)
        client = graph(world, f"quota-{uuid.uuid4().hex[:6]}", retry_total=0)
        seen: list[tuple[str, str]] = []

        def keep_headers(response: Any, _deserialized: Any, _headers: Any) -> None:
            headers = response.http_response.headers
            seen.append((headers["x-ms-user-quota-remaining"], headers["x-ms-user-quota-resets-after"]))

        for _ in range(2):
            client.resources(QueryRequest(query=key_query(world)), cls=keep_headers)
        with pytest.raises(HttpResponseError) as caught:
            client.resources(QueryRequest(query=key_query(world)))

        assert [remaining for remaining, _ in seen] == ["1", "0"]
        assert all(len(resets.split(":")) == 3 for _, resets in seen)
        assert caught.value.status_code == 429
        assert arm_error(caught.value)["code"] == "RateLimiting"
        assert caught.value.response is not None
        assert caught.value.response.headers["x-ms-user-quota-remaining"] == "0"
