"""The composition root: the one place that builds real clients and wires them together.

Triggers, the HTTP API and the CLI take every collaborator from here; nothing below this package
builds an SDK client for the app or chooses an implementation of a port.

- :func:`current`, :func:`override`: the process's :class:`Bootstrap` (settings, credential,
  AzureWebJobsStorage, transport options).
- :func:`dependencies`: the ``Dependencies`` every service function takes (:func:`override_dependencies`
  puts fakes in; :func:`use_inline_dispatch` runs started rotations in-process).
- :func:`audit_log`: the audit trail the HTTP routes read; :func:`rewrap_data_keys`: the re-wrap
  queue worker's adapter.
- :func:`build_dependencies`, :func:`open_audit_log`: the same wiring for a given bootstrap (CLI,
  integration tests); :func:`wire_inline`: an ``InlineDispatcher`` runs ``run_rotation`` itself.

Nothing runs at import time, and importing this package loads no SDK.
"""

from rotation.bootstrap.clients import CA_BUNDLE_VARIABLES, PROXY_VARIABLES, Bootstrap, transport_kwargs
from rotation.bootstrap.process import (
    audit_log,
    current,
    dependencies,
    inline_dispatch,
    override,
    override_dependencies,
    reset_rewrap_data_keys,
    rewrap_data_keys,
    use_inline_dispatch,
)
from rotation.bootstrap.wiring import build_dependencies, open_audit_log, open_data_keys, wire_inline

__all__ = [
    "CA_BUNDLE_VARIABLES",
    "PROXY_VARIABLES",
    "Bootstrap",
    "audit_log",
    "build_dependencies",
    "current",
    "dependencies",
    "inline_dispatch",
    "open_audit_log",
    "open_data_keys",
    "override",
    "override_dependencies",
    "reset_rewrap_data_keys",
    "rewrap_data_keys",
    "transport_kwargs",
    "use_inline_dispatch",
    "wire_inline",
]
