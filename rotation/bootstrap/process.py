"""The worker process's composition: one bootstrap and what is built from it, on first use.

Every trigger, HTTP route and CLI command asks here. Tests and the local server replace parts:
:func:`override` (the bootstrap), :func:`override_dependencies` (fakes for every route and trigger),
:func:`use_inline_dispatch` (run started rotations in-process: local server, demo, CLI).

Dispatch mode: in Azure a started rotation is enqueued on ``rotation-run`` and driven by the queue
trigger (queued). The local server, the demo and the CLI have no queue trigger, so rotations run
in-process there.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rotation.bootstrap.clients import Bootstrap
from rotation.bootstrap.wiring import build_dependencies, open_audit_log, open_data_keys
from rotation.logs import configure_logging
from rotation.settings import load_settings

if TYPE_CHECKING:
    from rotation.audit.store import TableAuditLog
    from rotation.rewrap.adapter import BlobDataKeys
    from rotation.service.deps import Dependencies


class _Process:
    """What this worker process has built (one per process)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # rewrap_data_keys() asks current() while holding it
        self.bootstrap: Bootstrap | None = None
        self.dependencies_override: Dependencies | None = None
        self.inline = False
        self.dependencies: tuple[Bootstrap, bool, Dependencies] | None = None
        self.audit_log: tuple[Bootstrap, TableAuditLog] | None = None
        self.rewrap_data_keys: BlobDataKeys | None = None


_process = _Process()


def current() -> Bootstrap:
    """The process-wide bootstrap, built from the environment on first use.

    Raises:
        SettingsError: a setting is missing or malformed.
    """
    with _process.lock:
        if _process.bootstrap is None:
            settings = load_settings()
            configure_logging(settings.log_format, settings.log_level)
            _process.bootstrap = Bootstrap(settings)
        return _process.bootstrap


def override(bootstrap: Bootstrap | None) -> None:
    """Replace the process-wide bootstrap (tests, the local server, the CLI)."""
    with _process.lock:
        _process.bootstrap = bootstrap


def dependencies() -> Dependencies:
    """The dependencies for this worker process, built once per bootstrap and dispatch mode.

    Raises:
        SettingsError: a setting is missing or malformed.
    """
    override_ = _process.dependencies_override
    if override_ is not None:
        return override_
    boot = current()
    with _process.lock:
        built = _process.dependencies
        if built is None or built[0] is not boot or built[1] != _process.inline:
            built = (boot, _process.inline, build_dependencies(boot, inline=_process.inline))
            _process.dependencies = built
        return built[2]


def override_dependencies(dependencies: Dependencies | None) -> None:
    """Use ``dependencies`` for every route and trigger (tests, fakes); ``None`` restores the default."""
    with _process.lock:
        _process.dependencies_override = dependencies


def use_inline_dispatch(inline: bool = True) -> None:
    """Run started rotations in-process (local server, demo) instead of enqueueing them."""
    with _process.lock:
        _process.inline = inline


def inline_dispatch() -> bool:
    """Whether started rotations run in-process."""
    return _process.inline


def audit_log() -> TableAuditLog:
    """The process's audit log, built once per bootstrap (the HTTP audit routes)."""
    boot = current()
    with _process.lock:
        built = _process.audit_log
        if built is None or built[0] is not boot:
            built = (boot, open_audit_log(boot))
            _process.audit_log = built
        return built[1]


def rewrap_data_keys() -> BlobDataKeys:
    """The worker process's queued re-wrap adapter (the ``rewrap_worker`` trigger), built on first use.

    One per process, so its Key Vault clients, the new version's public key and the adaptive
    limiter are shared by every invocation the process runs.
    """
    with _process.lock:
        if _process.rewrap_data_keys is None:
            boot = current()
            _process.rewrap_data_keys = open_data_keys(boot, inline=False)
        return _process.rewrap_data_keys


def reset_rewrap_data_keys() -> None:
    """Close and forget the process's re-wrap adapter (tests, settings changes)."""
    with _process.lock:
        if _process.rewrap_data_keys is not None:
            _process.rewrap_data_keys.close()
        _process.rewrap_data_keys = None
