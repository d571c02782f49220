"""A small client for the ARM emulator's admin API, for tests, the demo and benchmarks.

admin = ArmAdmin(endpoints["arm"]["admin"], endpoints["ca_bundle"])
admin.create_resource_group(subscription_id, "rg-demo")
admin.set_role_assignments([{"principal_id": oid, "role": "Reader", "scope": f"/subscriptions/{sub}"}])
admin.advance_clock(86400)                 # runs the storage daily versionless-key check
admin.account_access(account_id)           # -> {"accessible": bool, "reason": str | None, ...}
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
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

    # -- throttle, faults, LRO timing and outcomes, Key Vault outage, counters --------------

    def set_throttle(
        self,
        *,
        enabled: bool | None = None,
        reads: tuple[int, float] | None = None,
        writes: tuple[int, float] | None = None,
        deletes: tuple[int, float] | None = None,
        initial: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """ARM's token buckets per subscription and principal: ``(bucket size, refill per second)`` per kind.

        Defaults are Azure's (reads 250/25, writes 200/10, deletes 200/10, enabled); every bucket starts full,
        or with ``initial[kind]`` tokens (not Azure's: to measure a sustained rate from a drained bucket; the
        kind's size and refill must be given with it).
        """
        body: dict[str, Any] = {} if enabled is None else {"enabled": enabled}
        for kind, bucket in (("reads", reads), ("writes", writes), ("deletes", deletes)):
            if bucket is not None:
                body[kind] = {"bucket": bucket[0], "refill_per_s": bucket[1]}
        for kind, tokens in (initial or {}).items():
            if kind not in body:
                raise ValueError(f"initial[{kind!r}] needs the {kind} bucket's size and refill too")
            body[kind]["initial"] = tokens
        return dict(self._call("PUT", "/admin/throttle", body))

    def throttle(self) -> dict[str, Any]:
        """The throttle settings in force: ``{"enabled", "reads"|"writes"|"deletes": {"bucket", "refill_per_s",
        "initial"?}}``."""
        return dict(self._call("GET", "/admin/throttle"))

    @contextmanager
    def throttle_settings(self, **changes: Any) -> Iterator[dict[str, Any]]:
        """``set_throttle(**changes)`` for the ``with`` block (yields the settings in force), then the throttle
        settings as they were before the block, whatever happened in it (every bucket starts again)."""
        before = self.throttle()
        try:
            yield self.set_throttle(**changes)
        finally:
            self._call("PUT", "/admin/throttle", before)

    def throttle_stats(self, subscription_id: str | None = None) -> list[dict[str, Any]]:
        """What each token bucket answered: ``granted``, ``throttled`` (429s), ``first_request_at``,
        ``last_granted_at`` (seconds on the emulator's monotonic clock), ``tokens`` left, by subscription,
        principal and kind."""
        query = "?" + urllib.parse.urlencode({"subscription_id": subscription_id}) if subscription_id else ""
        return list(self._call("GET", f"/admin/throttle/stats{query}")["value"])

    def reset_throttle(self) -> dict[str, Any]:
        """Azure's bucket sizes and refill rates, enabled, every bucket full."""
        return self.set_throttle(enabled=True, reads=(250, 25.0), writes=(200, 10.0), deletes=(200, 10.0))

    def set_faults(self, *rules: dict[str, Any]) -> list[dict[str, Any]]:
        """``{"rate", "kind": "status"|"latency"|"drop", "status"?, "latency_ms"?, "operations"?, "count"?}``."""
        return list(self._call("PUT", "/admin/faults", {"rules": list(rules)})["rules"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/admin/faults")

    def set_lro(
        self,
        retry_after_s: int | None = None,
        polls_until_done: int | None = None,
        *,
        ml_update: str | None = None,
        error: dict[str, Any] | None = None,
        ml_update_applies: str | None = None,
        unpolled_grace_s: int | None = None,
        ml_update_failed_keeps: str | None = None,
    ) -> dict[str, Any]:
        """LRO timing, and how an ML workspace update answers (``ml_update``: ``location`` (default),
        ``location-204``, ``location-empty-200``, ``sync``, ``async-succeeded``, ``async-failed``,
        ``async-canceled``); ``error`` is the error object an ``async-failed`` operation ends with;
        ``ml_update_applies``: the workspace shows the new key when the update is ``accepted`` (default) or
        ``completed``; ``ml_update_failed_keeps``: a failed or canceled update leaves the ``previous``
        settings (default) or the ``requested`` ones; ``unpolled_grace_s``: an operation nobody polls ends by
        itself that long after its expected end (default 30)."""
        body = {
            k: v
            for k, v in (
                ("retry_after_s", retry_after_s),
                ("polls_until_done", polls_until_done),
                ("ml_update", ml_update),
                ("error", error),
                ("ml_update_applies", ml_update_applies),
                ("unpolled_grace_s", unpolled_grace_s),
                ("ml_update_failed_keeps", ml_update_failed_keeps),
            )
            if v is not None
        }
        return dict(self._call("PUT", "/admin/lro", body))

    @contextmanager
    def lro_settings(self, **changes: Any) -> Iterator[dict[str, Any]]:
        """``set_lro(**changes)`` for the ``with`` block (yields the settings in force), then every LRO
        setting as it was before the block, whatever happened in it."""
        before = self.set_lro()
        try:
            yield self.set_lro(**changes)
        finally:
            self._call("PUT", "/admin/lro", before)

    def start_keyvault_outage(
        self,
        *,
        count: int | None = None,
        duration_s: float | None = None,
        providers: tuple[str, ...] = ("storage", "ml"),
        status: int = 400,
        ml_delivery: str = "response",
    ) -> dict[str, Any]:
        """The resource providers' own key checks fail for ``count`` checks or ``duration_s`` seconds."""
        body: dict[str, Any] = {"providers": list(providers), "status": status, "ml_delivery": ml_delivery}
        if count is not None:
            body["count"] = count
        if duration_s is not None:
            body["duration_s"] = duration_s
        return dict(self._call("PUT", "/admin/keyvault-outage", body))

    def end_keyvault_outage(self) -> dict[str, Any]:
        return dict(self._call("DELETE", "/admin/keyvault-outage"))

    def keyvault_outage(self) -> dict[str, Any]:
        return dict(self._call("GET", "/admin/keyvault-outage"))

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

    def seed_storage_accounts(
        self, subscription_id: str, resource_group: str, accounts: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Create many storage accounts at once (each ``{"name", <the create body>}``), validated as a PUT is,
        stored ``Succeeded``, without spending the ARM write bucket; returns them as ARM renders them."""
        body = {"subscription_id": subscription_id, "resource_group": resource_group, "accounts": accounts}
        return list(self._call("POST", "/admin/storage-accounts", body)["value"])

    def account_access(self, account_id: str) -> dict[str, Any]:
        """``{"accessible": bool, "reason": str | None, "key_in_use": str | None}``, judged live against the vault."""
        query = urllib.parse.urlencode({"id": account_id})
        return dict(self._call("GET", f"/admin/storage-accounts/access?{query}"))

    def set_key_report(self, account_id: str, report: str) -> dict[str, Any]:
        """How the account reports ``currentVersionedKeyIdentifier``: ``versioned`` (the version in use,
        the default), ``empty`` (``""``) or ``absent``; the version it uses is unchanged."""
        return dict(self._call("PUT", "/admin/storage-accounts/key-report", {"id": account_id, "report": report}))

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
