"""A client for the blob proxy's admin API (tests, the demo): versioning and soft delete, transient faults,
and the clock."""

from __future__ import annotations

from typing import Any

from emulators.admin_http import AdminHttpClient


class BlobProxyAdmin(AdminHttpClient):
    """``admin_url`` is ``storage.blob_proxy_admin`` in ``endpoints.json`` (plain HTTP on loopback)."""

    def blob_service(self) -> dict[str, Any]:
        return dict(self._call("GET", "/admin/blob-service"))

    def set_blob_service(self, *, versioning: bool = False, soft_delete_days: int | None = None) -> dict[str, Any]:
        """Blob versioning on or off, soft delete on (days kept) or off (None), for the whole account."""
        body = {"versioning": versioning, "soft_delete_days": soft_delete_days}
        return dict(self._call("PUT", "/admin/blob-service", body))

    def set_faults(self, *rules: dict[str, Any]) -> list[dict[str, Any]]:
        """Replace the fault rules: each ``{"code": "ServerBusy" | "OperationTimedOut" | "InternalError",
        "count": N, "operations"?: [...], "containers"?: [...]}`` answers the next ``count`` matching
        requests with that error (``emulators/blobproxy/faults.py``)."""
        return list(self._call("PUT", "/admin/faults", {"rules": list(rules)})["rules"])

    def faults(self) -> list[dict[str, Any]]:
        """The rules in force, each with ``answered``: how many requests it has failed so far."""
        return list(self._call("GET", "/admin/faults")["rules"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/admin/faults")
