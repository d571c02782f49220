"""Per-vault throttling with the documented limits (learn.microsoft.com/azure/key-vault/general/service-limits).

Key transactions per 10 s per vault: software RSA-2048 4,000 (create 20), RSA-3072 1,000, RSA-4096 500,
EC 4,000; HSM RSA-2048 2,000, RSA-3072 500, RSA-4096 250, EC 2,000 (create 10). Thresholds are weighted and
enforced on their sum, so each request costs ``base limit / limit of its key type`` units of the RSA-2048
software budget. Requests that get 429 do not count. Windows are fixed 10 s buckets of real (monotonic) time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

WINDOW_S = 10.0
DEFAULT_LIMIT = 4000
DEFAULT_CREATE_LIMIT = 20
_SOFTWARE = {("RSA", 2048): 4000, ("RSA", 3072): 1000, ("RSA", 4096): 500}
_HSM = {("RSA", 2048): 2000, ("RSA", 3072): 500, ("RSA", 4096): 250}


def weight(family: str | None, size: int, hsm: bool) -> float:
    """Cost of one non-create request on a key of this type, in RSA-2048 software units."""
    if family is None:
        return 1.0
    table = _HSM if hsm else _SOFTWARE
    limit = table.get((family, size), 2000 if hsm else 4000)
    return DEFAULT_LIMIT / limit


def create_weight(hsm: bool) -> float:
    return 2.0 if hsm else 1.0


@dataclass
class Throttle:
    enabled: bool = True
    limit_per_10s: int = DEFAULT_LIMIT
    create_limit_per_10s: int = DEFAULT_CREATE_LIMIT
    _window_start: float = field(default=0.0, repr=False)
    _used: float = field(default=0.0, repr=False)
    _created: float = field(default=0.0, repr=False)

    def charge(self, cost: float, create: bool) -> int | None:
        """Count a request; return None if allowed, else the Retry-After seconds."""
        if not self.enabled:
            return None
        now = time.monotonic()
        if now - self._window_start >= WINDOW_S:
            self._window_start, self._used, self._created = now, 0.0, 0.0
        retry_after = max(1, math.ceil(self._window_start + WINDOW_S - now))
        if create:
            if self._created + cost > self.create_limit_per_10s:
                return retry_after
            self._created += cost
            return None
        if self._used + cost > self.limit_per_10s:
            return retry_after
        self._used += cost
        return None

    def copy_settings(self) -> Throttle:
        """A fresh throttle (new window) with these settings."""
        return Throttle(self.enabled, self.limit_per_10s, self.create_limit_per_10s)

    def to_json(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "limit_per_10s": self.limit_per_10s,
            "create_limit_per_10s": self.create_limit_per_10s,
        }
