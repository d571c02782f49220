"""A small client for the ARM emulator's admin API, for tests, the demo and benchmarks.

admin = ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"])
admin.create_resource_group(subscription_id, "rg-demo")
admin.set_role_assignments([{"principal_id": oid, "role": "Reader", "scope": f"/subscriptions/{sub}"}])
admin.advance_clock(86400)                 # runs the storage daily versionless-key check
admin.account_access(account_id)           # -> {"accessible": bool, "reason": str | None, ...}
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from emulators.admin_http import AdminApiError, AdminHttpClient


class ArmAdminError(AdminApiError):
    """The admin API answered with an error status."""


class ArmAdmin(AdminHttpClient):
    error_type = ArmAdminError
    unwrap_error_message = False

    # -- RBAC -------------------------------------------------------------------------------

    def set_role_assignments(self, assignments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace every assignment: ``[{"principal_id", "role" | "actions", "scope"?}]``; [] allows all."""
        return list(self._call("PUT", "/admin/role-assignments", {"value": assignments})["value"])

    def add_role_assignment(self, principal_id: str, role: str, scope: str = "/") -> dict[str, Any]:
        return dict(
            self._call("POST", "/admin/role-assignments", {"principal_id": principal_id, "role": role, "scope": scope})
        )

    def role_assignments(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/admin/role-assignments")["value"])

    # -- throttle, faults, LRO timing, counters ---------------------------------------------

    def set_throttle(self, writes_per_minute: int | None = None, *, enabled: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"writes_per_minute": writes_per_minute}
        if enabled is not None:
            body["enabled"] = enabled
        return dict(self._call("PUT", "/admin/throttle", body))

    def set_faults(self, *rules: dict[str, Any]) -> list[dict[str, Any]]:
        """``{"rate", "kind": "status"|"latency"|"drop", "status"?, "latency_ms"?, "operations"?, "count"?}``."""
        return list(self._call("PUT", "/admin/faults", {"rules": list(rules)})["rules"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/admin/faults")

    def set_lro(self, retry_after_s: int | None = None, polls_until_done: int | None = None) -> dict[str, Any]:
        body = {
            k: v for k, v in (("retry_after_s", retry_after_s), ("polls_until_done", polls_until_done)) if v is not None
        }
        return dict(self._call("PUT", "/admin/lro", body))

    def set_page_size(self, page_size: int | None) -> None:
        """Page list responses (absolute ``nextLink`` with ``$skiptoken``); None lists everything at once."""
        self._call("PUT", "/admin/paging", {"page_size": page_size})

    def counters(self) -> dict[str, int]:
        """Requests per operation name (e.g. ``Workspaces_Update``, ``Workspaces_OperationStatus``)."""
        return dict(self._call("GET", "/admin/counters"))

    def reset_counters(self) -> None:
        self._call("DELETE", "/admin/counters")

    # -- resources --------------------------------------------------------------------------

    def create_resource_group(self, subscription_id: str, name: str, location: str = "eastus") -> dict[str, Any]:
        return dict(
            self._call(
                "POST",
                "/admin/resource-groups",
                {"subscription_id": subscription_id, "name": name, "location": location},
            )
        )

    def register_user_assigned_identity(
        self, identity_id: str, principal_id: str | None = None, client_id: str | None = None
    ) -> dict[str, str]:
        body = {"id": identity_id, "principal_id": principal_id, "client_id": client_id}
        return dict(self._call("POST", "/admin/user-assigned-identities", body))

    def account_access(self, account_id: str) -> dict[str, Any]:
        """``{"accessible": bool, "reason": str | None, "key_in_use": str | None}``, judged live against the vault."""
        query = urllib.parse.urlencode({"id": account_id})
        return dict(self._call("GET", f"/admin/storage-accounts/access?{query}"))

    # -- the wider estate ---------------------------------------------------------------------

    def put_generic_resource(
        self, resource_id: str, properties: dict[str, Any], *, location: str = "eastus", kind: str = ""
    ) -> dict[str, Any]:
        """Seed a resource of a type the emulator does not model; Resource Graph returns it."""
        body = {"id": resource_id, "properties": properties, "location": location, "kind": kind}
        return dict(self._call("POST", "/admin/generic-resources", body))

    def delete_generic_resource(self, resource_id: str) -> None:
        query = urllib.parse.urlencode({"id": resource_id})
        self._call("DELETE", f"/admin/generic-resources?{query}")

    def key_access(self, resource_id: str) -> dict[str, Any]:
        """A registry's or disk encryption set's ``{"accessible", "reason", "keys_in_use"}``, judged live."""
        query = urllib.parse.urlencode({"id": resource_id})
        return dict(self._call("GET", f"/admin/key-access?{query}"))

    def auto_rotate(self, resource_id: str) -> dict[str, Any]:
        """Run a registry's or disk encryption set's automatic key-version check now: ``{"changed", "resource"}``."""
        return dict(self._call("POST", "/admin/auto-rotate", {"id": resource_id}))

    def set_graph_quota(self, queries: int = 15, window_s: float = 5) -> dict[str, Any]:
        """Resource Graph queries allowed per caller per window (Azure's default: 15 per 5 s)."""
        return dict(self._call("PUT", "/admin/resource-graph", {"queries": queries, "window_s": window_s}))
