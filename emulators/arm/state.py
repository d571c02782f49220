"""The emulator's state: resources, role assignments, clock, faults, throttle, LRO settings, counters.

Kept in memory and written atomically to ``STATE_DIR/state.json`` shortly after a change (one write per
burst of changes, ``PERSIST_DELAY_S``) and when the process stops, so a restarted emulator serves the same
resources. Resource ids are stored lower-cased as keys (ARM
compares them case-insensitively) while each resource keeps the casing it was created with.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

#: Changes are written at most once per this delay (the whole state is one file, and rewriting it after each
#: write of a 200-account estate was a third of the emulator's CPU); stopping the process writes at once.
PERSIST_DELAY_S = 0.5
LOCAL_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
_IDENTITY_NAMESPACE = uuid.UUID("5a3c9c1e-1c2b-4f0e-9a53-2f4d7f0c1a11")


#: How the ML workspace update (PATCH) answers; see docs/emulators/arm.md "LRO outcome modes".
ML_UPDATE_MODES = (
    "location",  # 202 + Location; polls answer 202, then 200 with the workspace
    "location-204",  # ... then 204 No Content
    "location-empty-200",  # ... then 200 with an empty body
    "sync",  # 200 with the workspace at once (the spec's other answer)
    "async-succeeded",  # 202 + Azure-AsyncOperation; the operation resource ends Succeeded
    "async-failed",  # ... ends Failed with an error object; the workspace is unchanged
    "async-canceled",  # ... ends Canceled; the workspace is unchanged
)
#: When the workspace shows the key an accepted update sets (docs/emulators/arm.md "LRO outcome modes"):
#: ``accepted``, at once (with provisioningState Updating), or ``completed``, when the operation ends Succeeded.
ML_UPDATE_APPLIES = ("accepted", "completed")
#: What a workspace keeps when its update ends ``Failed``/``Canceled`` (docs/emulators/arm.md "LRO outcome modes"):
#: its ``previous`` settings, or the ``requested`` ones (the RPC reverts them only where that "best represents"
#: the end state).
ML_UPDATE_FAILED_KEEPS = ("previous", "requested")
#: The error object of an ``async-failed`` operation unless the admin API sets another (not a Microsoft capture).
DEFAULT_LRO_ERROR = {
    "code": "WorkspaceUpdateFailed",
    "message": "The workspace update failed; the workspace keeps its previous settings.",
}


@dataclass
class LroSettings:
    retry_after_s: int = 1
    polls_until_done: int = 1
    ml_update: str = "location"
    ml_update_applies: str = "accepted"
    ml_update_failed_keeps: str = "previous"
    error: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LRO_ERROR))
    #: Seconds after its expected end (``retry_after_s`` times ``polls_until_done``) that an operation nobody polls
    #: ends by itself; a read of its resource then shows the outcome (docs/emulators/arm.md, "LRO polling").
    unpolled_grace_s: int = 30


#: Azure Resource Manager's token buckets per subscription and principal (learn.microsoft.com, "Understand how
#: Azure Resource Manager throttles requests", regional throttling, 2024): bucket size and refill per second.
ARM_BUCKETS = {
    "reads": {"bucket": 250, "refill_per_s": 25.0},
    "writes": {"bucket": 200, "refill_per_s": 10.0},
    "deletes": {"bucket": 200, "refill_per_s": 10.0},
}


@dataclass
class Throttle:
    enabled: bool = True
    buckets: dict[str, dict[str, float]] = field(
        default_factory=lambda: {kind: dict(bucket) for kind, bucket in ARM_BUCKETS.items()}
    )


@dataclass
class KeyVaultOutage:
    """The resource providers' own key checks fail as if Key Vault were unreachable (a mode; see the docs)."""

    failures_left: int | None = None  # checks that still fail, or None
    until: float | None = None  # unix time (real) the outage ends, or None
    providers: list[str] = field(default_factory=lambda: ["storage", "ml"])
    status: int = 400
    ml_delivery: str = "response"  # or "operation": 202, then the operation ends Failed

    def active(self, now: float) -> bool:
        if self.failures_left is not None:
            return self.failures_left > 0
        return self.until is not None and now < self.until


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
    keyvault_outage: KeyVaultOutage = field(default_factory=KeyVaultOutage)
    faults: list[dict[str, Any]] = field(default_factory=list)
    page_size: int | None = None
    counters: dict[str, int] = field(default_factory=dict)


def _settings(kind: Any, raw: Any) -> Any:
    """A settings dataclass from its saved form, ignoring fields an older emulator wrote."""
    known = set(kind.__dataclass_fields__)
    return kind(**{k: v for k, v in (raw or {}).items() if k in known})


class Store:
    """Owns :class:`State` and its file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.json"
        self.state = self._load()
        self._dirty = False

    def _load(self) -> State:
        if not self.path.exists():
            return State()
        raw = json.loads(self.path.read_text())
        raw["lro"] = _settings(LroSettings, raw.get("lro"))
        raw["throttle"] = _settings(Throttle, raw.get("throttle"))
        raw["keyvault_outage"] = _settings(KeyVaultOutage, raw.get("keyvault_outage"))
        known = set(State.__dataclass_fields__)
        return State(**{k: v for k, v in raw.items() if k in known})

    def save(self) -> None:
        """Called after every change: schedule one write of the state file for this burst of changes (at
        once when no event loop runs, as in a tool or a test using the store directly)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if not self._dirty:
            self._dirty = True
            loop.call_later(PERSIST_DELAY_S, self.flush)

    def flush(self) -> None:
        """Write the whole state atomically: the resource dicts serialised as they are (no deep copy), compactly."""
        self._dirty = False
        state = self.state
        snapshot: dict[str, Any] = {}
        for f in fields(state):
            value = getattr(state, f.name)
            snapshot[f.name] = asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
        data = json.dumps(snapshot, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.replace(tmp, self.path)

    # -- clock ------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.state.clock_offset

    @staticmethod
    def real_now() -> float:
        """Wall-clock time, for the durations of modes (the emulator's own clock may be moved by tests)."""
        return time.time()

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
