"""Fault injection: error statuses, latency and dropped connections, at a rate, for chosen operations."""

from __future__ import annotations

import random
from dataclasses import dataclass

KINDS = ("status", "latency", "drop")


@dataclass
class FaultRule:
    rate: float
    kind: str
    status: int = 503
    latency_ms: int = 0
    operations: tuple[str, ...] = ()
    count: int | None = None
    vault: str | None = None
    retry_after: int | None = None

    @classmethod
    def parse(cls, body: object) -> FaultRule:
        """Validate an admin PUT body; raises ValueError naming the problem."""
        if not isinstance(body, dict):
            raise ValueError("a fault rule is a JSON object")
        rate = body.get("rate", 1.0)
        if not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError("'rate' must be a number from 0 to 1")
        kind = body.get("kind")
        if kind not in KINDS:
            raise ValueError(f"'kind' must be one of {KINDS}")
        status = body.get("status", 503)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("'status' must be an HTTP error status (400-599)")
        latency = body.get("latency_ms", 0)
        if not isinstance(latency, int) or latency < 0:
            raise ValueError("'latency_ms' must be a non-negative integer")
        operations = body.get("operations") or []
        if not isinstance(operations, list) or not all(isinstance(o, str) for o in operations):
            raise ValueError("'operations' must be a list of operation names")
        count = body.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("'count' must be a positive integer")
        vault = body.get("vault")
        retry_after = body.get("retry_after")
        if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
            raise ValueError("'retry_after' must be a non-negative integer")
        return cls(float(rate), str(kind), status, latency, tuple(operations), count, vault, retry_after)

    def matches(self, vault: str, operation: str) -> bool:
        if self.vault is not None and self.vault != vault:
            return False
        if self.operations and operation not in self.operations:
            return False
        return random.random() < self.rate  # noqa: S311 - fault sampling, not security

    def to_json(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "kind": self.kind,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "operations": list(self.operations),
            "count": self.count,
            "vault": self.vault,
            "retry_after": self.retry_after,
        }
