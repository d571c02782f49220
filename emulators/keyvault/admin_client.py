"""A small client for the emulator's admin API, for tests, the demo and the ARM emulator.

admin = KeyVaultAdmin(endpoints["keyvault"]["admin"], endpoints["ca_bundle"])
vault = admin.create_vault("kv-demo")            # -> {"name", "url", "arm_id", ...}
admin.set_role_assignments("kv-demo", [{"principal_id": "...", "role": "Key Vault Crypto User"}])
admin.advance_clock(86400 * 60)
"""

from __future__ import annotations

from typing import Any

from emulators.admin_http import AdminApiError, AdminHttpClient

__all__ = ["AdminApiError", "KeyVaultAdmin"]


class KeyVaultAdmin(AdminHttpClient):
    # vaults
    def create_vault(self, name: str, **options: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/admin/vaults", {"name": name, **options}))

    def ensure_vault(self, name: str, **options: Any) -> dict[str, Any]:
        """Create the vault, or return it as it is if it already exists (e.g. after a restart)."""
        try:
            return self.create_vault(name, **options)
        except AdminApiError as exc:
            if exc.status != 409:
                raise
            return self.get_vault(name)

    def list_vaults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/admin/vaults")["value"])

    def get_vault(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/admin/vaults/{name}"))

    # behaviours whose Azure answer is not verified (store.MODES), per vault
    def set_modes(self, vault: str, **modes: str) -> dict[str, str]:
        """E.g. ``set_modes("kv", disabled_version_get="forbidden")``: GET of a disabled version answers 403."""
        return dict(self._call("PUT", f"/admin/vaults/{vault}/modes", modes))

    def modes(self, vault: str) -> dict[str, str]:
        return dict(self._call("GET", f"/admin/vaults/{vault}/modes"))

    # clock: now, set_clock and advance_clock come from AdminHttpClient; lifecycle runs on it
    def run_lifecycle(self) -> None:
        self._call("POST", "/admin/lifecycle", {})

    # RBAC
    def set_role_assignments(self, vault: str, assignments: list[dict[str, str]]) -> list[dict[str, str]]:
        return list(self._call("PUT", f"/admin/vaults/{vault}/role-assignments", {"value": assignments})["value"])

    def role_assignments(self, vault: str) -> list[dict[str, str]]:
        return list(self._call("GET", f"/admin/vaults/{vault}/role-assignments")["value"])

    # throttling
    def set_throttle(
        self,
        vault: str | None = None,
        *,
        limit_per_10s: int | None = None,
        create_limit_per_10s: int | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        body = {
            "vault": vault,
            "limit_per_10s": limit_per_10s,
            "create_limit_per_10s": create_limit_per_10s,
            "enabled": enabled,
        }
        return dict(self._call("PUT", "/admin/throttle", {k: v for k, v in body.items() if v is not None}))

    def throttle(self) -> dict[str, Any]:
        return dict(self._call("GET", "/admin/throttle"))

    # faults
    def set_faults(self, *rules: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._call("PUT", "/admin/faults", {"rules": list(rules)})["rules"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/admin/faults")

    # counters
    def counters(self) -> dict[str, dict[str, int]]:
        return dict(self._call("GET", "/admin/counters"))

    def reset_counters(self) -> None:
        self._call("DELETE", "/admin/counters")

    # events
    def set_event_sink(self, sink: dict[str, Any] | None) -> dict[str, Any]:
        return dict(self._call("PUT", "/admin/events", {"sink": sink}))

    def events(self) -> dict[str, Any]:
        return dict(self._call("GET", "/admin/events"))
