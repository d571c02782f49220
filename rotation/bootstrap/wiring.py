"""How the real adapters are built and wired together, for one :class:`Bootstrap`.

Adapters and the SDKs are imported inside the functions: importing the composition root (as every
trigger module does) must stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotation.adapters.journal import TableJournal
    from rotation.audit.signing import KeyVaultCheckpointSigner
    from rotation.audit.store import TableAuditLog
    from rotation.bootstrap.clients import Bootstrap
    from rotation.rewrap.adapter import BlobDataKeys
    from rotation.service.deps import Dependencies, Dispatcher


def wire_inline(deps: Dependencies) -> Dependencies:
    """Have an :class:`InlineDispatcher` that has no runner yet run ``run_rotation(deps, id)``; return ``deps``."""
    from rotation.service.deps import InlineDispatcher

    dispatcher = deps.dispatcher
    if isinstance(dispatcher, InlineDispatcher) and dispatcher.runner is None:
        from rotation.service import run_rotation

        dispatcher.runner = lambda rotation_id: run_rotation(deps, rotation_id)
    return deps


def build_dependencies(boot: Bootstrap, *, inline: bool) -> Dependencies:
    """Real adapters over the Azure SDKs, from the bootstrap's settings and credential.

    Args:
        inline: run dispatched rotations and re-wrap work in this process (CLI, local server)
            instead of through the queues (the Function app).
    """
    from rotation.adapters.arm_rest import ArmRest
    from rotation.adapters.disk_encryption_sets import ArmDiskEncryptionSets
    from rotation.adapters.keyvault import KeyVaultKeyStore
    from rotation.adapters.registries import ArmContainerRegistries
    from rotation.adapters.resource_graph import ArmKeyReferences
    from rotation.adapters.run_queue import QueueDispatcher
    from rotation.adapters.storage_accounts import ArmStorageAccounts
    from rotation.adapters.sweep_memory import TableSweepMemory
    from rotation.adapters.vaults import ArmVaults
    from rotation.adapters.workspaces import ArmWorkspaces
    from rotation.service.deps import Dependencies, InlineDispatcher, SystemClock
    from rotation.settings import RUN_QUEUE

    settings = boot.settings
    credential = boot.credential
    transport = boot.transport_kwargs()
    dispatcher: Dispatcher = (
        InlineDispatcher() if inline else QueueDispatcher(boot.host_storage, RUN_QUEUE, **transport)
    )
    arm = ArmRest(settings.arm_endpoint, credential, transport)
    deps = Dependencies(
        settings=settings,
        clock=SystemClock(),
        keys=KeyVaultKeyStore(credential, transport, verify_challenge_resource=settings.verify_challenge_resource),
        vaults=ArmVaults(arm),
        storage_accounts=ArmStorageAccounts(
            settings.arm_endpoint, credential, transport, callers=settings.repoint_concurrency
        ),
        workspaces=ArmWorkspaces(settings.arm_endpoint, credential, transport, callers=settings.repoint_concurrency),
        data_keys=open_data_keys(boot, inline=inline),
        container_registries=ArmContainerRegistries(arm),
        disk_encryption_sets=ArmDiskEncryptionSets(arm),
        key_references=ArmKeyReferences(arm),
        journal=open_journal(boot),
        audit=open_audit_log(boot),
        dispatcher=dispatcher,
        sweep_store=TableSweepMemory(boot.host_storage, settings.sweep_table),
        # In-process runs (CLI, local server) poll operations to the end; the queue trigger has a budget.
        invocation_budget_seconds=None if inline else settings.invocation_budget_seconds,
    )
    return wire_inline(deps)


def open_journal(boot: Bootstrap) -> TableJournal:
    """The rotations' journal: ``ROTATION_JOURNAL_TABLE`` in AzureWebJobsStorage. Every intent and outcome of a
    rotation is a write through this client, one at a time (the executor's lock): the lean session, few connections."""
    from rotation.adapters.http_session import direct_session_kwargs, pool_for
    from rotation.adapters.journal import TableJournal

    kwargs = direct_session_kwargs(boot.transport_kwargs(), pool_for(1))
    return TableJournal(boot.host_storage, boot.settings.journal_table, **kwargs)


def open_data_keys(boot: Bootstrap, *, inline: bool) -> BlobDataKeys:
    """The re-wrap adapter: work runs in this process (``inline``) or through the re-wrap queue."""
    from rotation.rewrap.adapter import BlobDataKeys

    return BlobDataKeys(boot.settings, boot.credential, boot.transport_kwargs(), inline=inline)


def open_audit_log(boot: Bootstrap) -> TableAuditLog:
    """The app's audit log: ``ROTATION_AUDIT_TABLE`` in AzureWebJobsStorage.

    Checkpoints are signed with ``ROTATION_AUDIT_SIGNING_KEY`` when it is set: every 100 records and at
    least every ``ROTATION_AUDIT_CHECKPOINT_MINUTES`` (default 60) while records arrive.
    """
    from datetime import timedelta

    from rotation.audit.store import TableAuditLog

    minutes = boot.settings.audit_checkpoint_minutes
    interval = timedelta(minutes=minutes) if minutes > 0 else None
    return TableAuditLog(
        boot.host_storage, boot.settings.audit_table, _checkpoint_signer(boot), checkpoint_interval=interval
    )


def _checkpoint_signer(boot: Bootstrap) -> KeyVaultCheckpointSigner | None:
    settings = boot.settings
    if not settings.audit_signing_key:
        return None
    from rotation.audit.signing import KeyVaultCheckpointSigner

    return KeyVaultCheckpointSigner(
        settings.audit_signing_key, boot.credential, boot.transport_kwargs(), settings.verify_challenge_resource
    )
