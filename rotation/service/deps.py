"""The collaborators every service function receives, and how the real ones are built.

``build_dependencies(boot, inline=...)`` is the one place that wires adapters over the official
Azure SDKs. Tests build ``Dependencies`` from fakes (``tests/fakes``) instead.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from rotation.adapters.host_storage import StorageConnection, host_storage
from rotation.ports import AuditLog, Clock, DataKeys, Journal, KeyStore, StorageAccounts, Vaults, Workspaces
from rotation.settings import Settings

if TYPE_CHECKING:
    from rotation.bootstrap import Bootstrap

RUN_QUEUE = "rotation-run"


class Dispatcher(Protocol):
    def dispatch(self, rotation_id: str) -> None:
        """Have ``run_rotation(rotation_id)`` run: now (inline) or from the ``rotation-run`` queue."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class InlineDispatcher:
    """Runs the rotation in this process, now (CLI, local server, tests)."""

    def __init__(self) -> None:
        self.runner: Callable[[str], object] | None = None
        self.dispatched: list[str] = []

    def dispatch(self, rotation_id: str) -> None:
        self.dispatched.append(rotation_id)
        if self.runner is not None:
            self.runner(rotation_id)


class QueueDispatcher:
    """Enqueues ``{"rotation_id": ...}`` on the ``rotation-run`` queue for the queue trigger."""

    def __init__(self, connection: StorageConnection, queue_name: str = RUN_QUEUE, **client_kwargs: Any) -> None:
        from azure.storage.queue import TextBase64EncodePolicy

        self._client = host_storage(connection).queue_client(
            queue_name, message_encode_policy=TextBase64EncodePolicy(), **client_kwargs
        )
        self._created = False

    def dispatch(self, rotation_id: str) -> None:
        from rotation.adapters.azure_errors import translated

        with translated("enqueue the rotation run", "Microsoft.Storage/storageAccounts/queueServices/queues/write"):
            if not self._created:
                from azure.core.exceptions import ResourceExistsError

                with contextlib.suppress(ResourceExistsError):
                    self._client.create_queue()
                self._created = True
            self._client.send_message(json.dumps({"rotation_id": rotation_id}))


def default_owner() -> str:
    """A name for this executor in leases: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Dependencies:
    settings: Settings
    clock: Clock
    keys: KeyStore
    vaults: Vaults
    storage_accounts: StorageAccounts
    workspaces: Workspaces
    data_keys: DataKeys
    journal: Journal
    audit: AuditLog
    dispatcher: Dispatcher
    #: How long an executor's claim on a rotation lasts without renewal (each journal write renews it).
    lease_seconds: float = 120.0
    #: The name this executor writes into leases.
    owner: str = field(default_factory=default_owner)
    #: The sleep tenacity uses between step attempts (tests inject a fake).
    sleep: Callable[[float], None] = time.sleep
    #: Upper bound on step attempts for transient failures.
    step_attempts: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.dispatcher, InlineDispatcher) and self.dispatcher.runner is None:
            from rotation.service.rotations import run_rotation

            self.dispatcher.runner = lambda rotation_id: run_rotation(self, rotation_id)


def build_dependencies(boot: Bootstrap, *, inline: bool) -> Dependencies:
    """Real adapters over the Azure SDKs, from the bootstrap's settings and credential.

    Args:
        inline: run dispatched rotations and re-wrap work in this process (CLI, local server)
            instead of through the queues (the Function app).
    """
    from rotation.adapters.journal import TableJournal
    from rotation.adapters.keyvault import KeyVaultKeyStore
    from rotation.adapters.storage_accounts import ArmStorageAccounts
    from rotation.adapters.vaults import ArmVaults
    from rotation.adapters.workspaces import ArmWorkspaces
    from rotation.audit.store import TableAuditLog

    # The re-wrap adapter lands separately (issue 9); imported by name so this module type-checks before it.
    blob_data_keys: Any = importlib.import_module("rotation.rewrap.adapter").BlobDataKeys
    settings = boot.settings
    credential = boot.credential
    transport = boot.transport_kwargs()
    dispatcher: Dispatcher = (
        InlineDispatcher() if inline else QueueDispatcher(boot.host_storage, RUN_QUEUE, **transport)
    )
    signer = None
    if settings.audit_signing_key:
        from rotation.audit.signing import KeyVaultCheckpointSigner

        signer = KeyVaultCheckpointSigner(
            settings.audit_signing_key, credential, transport, settings.verify_challenge_resource
        )
    return Dependencies(
        settings=settings,
        clock=SystemClock(),
        keys=KeyVaultKeyStore(credential, transport, verify_challenge_resource=settings.verify_challenge_resource),
        vaults=ArmVaults(settings.arm_endpoint, credential, transport),
        storage_accounts=ArmStorageAccounts(settings.arm_endpoint, credential, transport),
        workspaces=ArmWorkspaces(settings.arm_endpoint, credential, transport),
        data_keys=blob_data_keys(settings, credential, transport, inline=inline),
        journal=TableJournal(boot.host_storage, settings.journal_table),
        audit=TableAuditLog(boot.host_storage, settings.audit_table, signer),
        dispatcher=dispatcher,
    )
