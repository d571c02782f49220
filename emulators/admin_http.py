"""What the emulators' admin clients (ARM and Key Vault) share: the JSON-over-HTTPS call and the clock."""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.error
import urllib.request
from typing import Any


class AdminApiError(RuntimeError):
    """The admin API answered with an error status; ``status`` and the message are kept."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class AdminHttpClient:
    """Calls an emulator's admin API at ``admin_url``, trusting ``ca_bundle`` (the emulators' generated CA)."""

    #: Raised for an error status.
    error_type: type[AdminApiError] = AdminApiError
    #: Report only ``error.message`` of a JSON error body (otherwise the whole body).
    unwrap_error_message = True

    def __init__(self, admin_url: str, ca_bundle: str | None = None, timeout: float = 30.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - admin URL of the local emulator
            self.admin_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            if self.unwrap_error_message:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    detail = json.loads(detail)["error"]["message"]
            raise self.error_type(exc.code, detail) from None
        return json.loads(raw) if raw else None

    # -- the emulator's clock (both emulators have one) ---------------------------------------

    def now(self) -> float:
        return float(self._call("GET", "/admin/clock")["now"])

    def set_clock(self, now: float) -> float:
        return float(self._call("PUT", "/admin/clock", {"now": now})["now"])

    def advance_clock(self, seconds: float) -> float:
        return float(self._call("PUT", "/admin/clock", {"advance_seconds": seconds})["now"])
