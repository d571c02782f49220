"""Transient storage faults, set through the admin API: the next N matching requests answer an error.

Azure Storage answers a request it cannot serve now with one of these (learn.microsoft.com/rest/api/
storageservices/common-rest-api-error-codes, the codes every storage service can return):

- 503 ``ServerBusy``: "The server is currently unable to receive requests. Please retry your request."
- 500 ``OperationTimedOut``: "The operation could not be completed within the permitted time."
- 500 ``InternalError``: "The server encountered an internal error. Please retry the request."

in the error shape of every other refusal of the proxy (status, ``x-ms-error-code``, XML ``Error`` body).
azure-storage-blob retries all three (``_shared/policies.py``, ``is_retry``: any 5xx but 501 and 505).

A rule is bounded by its count and ends by itself; it can name the operations it hits and the containers.
Azurite never sees a faulted request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from emulators.blobproxy.state import Refusal

SHAPES: dict[str, Refusal] = {
    "ServerBusy": Refusal(
        503, "ServerBusy", "The server is currently unable to receive requests. Please retry your request."
    ),
    "OperationTimedOut": Refusal(
        500, "OperationTimedOut", "The operation could not be completed within the permitted time."
    ),
    "InternalError": Refusal(
        500, "InternalError", "The server encountered an internal error. Please retry the request."
    ),
}

#: The operations a rule can name, by the Blob REST API's names.
OPERATIONS = ("ListBlobs", "GetBlob", "GetBlobProperties", "SetBlobMetadata", "PutBlob")


def operation_of(method: str, parts: list[str], query: dict[str, list[str]]) -> str | None:
    """The Blob REST operation of a request (only those a rule can name), from its method, path and query."""
    comp = query.get("comp", [None])[0]
    if len(parts) == 2 and method == "GET" and comp == "list" and query.get("restype") == ["container"]:
        return "ListBlobs"
    if len(parts) != 3 or not parts[2]:
        return None
    if method == "PUT" and comp == "metadata":
        return "SetBlobMetadata"
    if comp is not None:
        return None
    return {"GET": "GetBlob", "HEAD": "GetBlobProperties", "PUT": "PutBlob"}.get(method)


@dataclass
class FaultRule:
    code: str
    count: int
    operations: tuple[str, ...] = ()  # empty: every operation listed in OPERATIONS
    containers: tuple[str, ...] = ()  # empty: every container
    answered: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict) or set(raw) - {"code", "count", "operations", "containers"}:
            raise ValueError('a fault rule is {"code", "count", "operations"?, "containers"?}')
        code = raw.get("code")
        if code not in SHAPES:
            raise ValueError(f"code must be one of {sorted(SHAPES)}")
        count = raw.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("count must be a positive integer (a fault rule ends when it has answered that many)")
        operations = tuple(raw.get("operations") or ())
        unknown = set(operations) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; expected some of {list(OPERATIONS)}")
        containers = raw.get("containers") or ()
        if not isinstance(containers, list | tuple) or not all(isinstance(c, str) and c for c in containers):
            raise ValueError("containers must be a list of container names")
        return cls(code, count, operations, tuple(containers))

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "status": SHAPES[self.code].status,
            "count": self.count,
            "operations": list(self.operations),
            "containers": list(self.containers),
            "answered": self.answered,
        }

    def matches(self, operation: str, container: str) -> bool:
        return (
            self.answered < self.count
            and (not self.operations or operation in self.operations)
            and (not self.containers or container in self.containers)
        )


class Faults:
    """The rules in force; thread-safe (the proxy answers requests concurrently)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def set(self, raw: Any) -> list[dict[str, Any]]:
        """Replace every rule with ``{"rules": [rule, ...]}``; nothing changes when one is invalid."""
        if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
            raise ValueError('expected {"rules": [{"code", "count", "operations"?, "containers"?}, ...]}')
        rules = [FaultRule.from_json(item) for item in raw["rules"]]
        with self._lock:
            self._rules = rules
            return [r.to_json() for r in rules]

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def answer(self, method: str, parts: list[str], query: dict[str, list[str]]) -> Refusal | None:
        """The fault this request meets (the first rule it matches spends one of its count), or None."""
        operation = operation_of(method, parts, query)
        if operation is None:
            return None
        with self._lock:
            for rule in self._rules:
                if rule.matches(operation, parts[1]):
                    rule.answered += 1
                    return SHAPES[rule.code]
        return None
