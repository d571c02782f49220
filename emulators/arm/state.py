"""The emulator's state: resources, role assignments, clock, faults, throttle, LRO settings, counters.

Kept in memory and written atomically to ``STATE_DIR/state.json`` after every change, so a
restarted emulator serves the same resources. Resource ids are stored lower-cased as keys (ARM
compares them case-insensitively) while each resource keeps the casing it was created with.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOCAL_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
_IDENTITY_NAMESPACE = uuid.UUID("5a3c9c1e-1c2b-4f0e-9a53-2f4d7f0c1a11")


@dataclass
class LroSettings:
    retry_after_s: int = 1
    polls_until_done: int = 1


@dataclass
class Throttle:
    enabled: bool = False
    writes_per_minute: int | None = None


@dataclass
class State:
    clock_offset: float = 0.0
    resource_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    storage_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    workspaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)
    disk_encryption_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Resources of types the emulator does not model, seeded through the admin API (read by Resource Graph).
    generic_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    graph_quota: dict[str, float] = field(default_factory=lambda: {"queries": 15, "window_s": 5.0})
    role_assignments: list[dict[str, Any]] = field(default_factory=list)
    user_identities: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    lro: LroSettings = field(default_factory=LroSettings)
    throttle: Throttle = field(default_factory=Throttle)
    faults: list[dict[str, Any]] = field(default_factory=list)
    page_size: int | None = None
    counters: dict[str, int] = field(default_factory=dict)


class Store:
    """Owns :class:`State` and its file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.json"
        self.state = self._load()

    def _load(self) -> State:
        if not self.path.exists():
            return State()
        raw = json.loads(self.path.read_text())
        raw["lro"] = LroSettings(**raw.get("lro", {}))
        raw["throttle"] = Throttle(**raw.get("throttle", {}))
        known = set(State.__dataclass_fields__)
        return State(**{k: v for k, v in raw.items() if k in known})

    def save(self) -> None:
        data = json.dumps(asdict(self.state), indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.replace(tmp, self.path)

    # -- clock ------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.state.clock_offset

    def set_now(self, now: float) -> None:
        self.state.clock_offset = now - time.time()

    def advance(self, seconds: float) -> None:
        self.state.clock_offset += seconds

    # -- identities -------------------------------------------------------------------------

    def user_identity(self, identity_id: str) -> dict[str, str]:
        """principalId/clientId of a user-assigned identity: registered, else derived from its id."""
        registered = self.state.user_identities.get(identity_id.lower())
        if registered:
            return {"principalId": registered["principal_id"], "clientId": registered["client_id"]}
        return {
            "principalId": str(uuid.uuid5(_IDENTITY_NAMESPACE, identity_id.lower() + "#principal")),
            "clientId": str(uuid.uuid5(_IDENTITY_NAMESPACE, identity_id.lower() + "#client")),
        }

    def count(self, operation: str) -> None:
        self.state.counters[operation] = self.state.counters.get(operation, 0) + 1
