"""Structured logging: structlog over stdlib logging.

In Azure the app runs inside the Python language worker, which puts its own handler on the root
logger and sends every stdlib record to the Functions host over gRPC with the record's level (the
host forwards it to Application Insights). There each event goes out once, through that handler, as
one JSON object; nothing is written to stderr, which the host would forward a second time as
``Host.Function.Console`` with a level guessed from the text. Elsewhere (CLI, local server, tests) a
stderr handler of this module renders the events: JSON lines, or for people with
``ROTATION_LOG_FORMAT=console``. Context (``rotation_id``, ``key``, ``trigger``) is bound once
per invocation with :func:`bound` and rides on every line logged inside it.

A redaction processor drops the values of fields whose names say they hold secrets; it is a
second line of defence, not a licence to log them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

_SECRET_FIELD_MARKERS = (
    "token",
    "secret",
    "password",
    "connection_string",
    "account_key",
    "encryptedkey",
    "encrypted_key",
    "data_key",
    "key_material",
    "plaintext",
    "authorization",
)
REDACTED = "[redacted]"


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of any field whose name marks it as secret."""
    for name in list(event_dict):
        lowered = name.lower()
        if any(marker in lowered for marker in _SECRET_FIELD_MARKERS):
            event_dict[name] = REDACTED
    return event_dict


class _JsonEventDict(dict[str, Any]):
    """An event dict that prints as JSON.

    Handlers this module does not own (the Azure Functions worker's, which forwards records to
    Application Insights) format a structlog record with ``record.getMessage()``, i.e. ``str(msg)``;
    without this they would ship a Python ``repr`` that KQL cannot parse.
    """

    def __str__(self) -> str:
        return json.dumps(self, default=str)


def json_for_foreign_handlers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor (last before ``wrap_for_formatter``): see :class:`_JsonEventDict`."""
    return _JsonEventDict(event_dict)


# Packages of the Python language worker: the 3.11/3.12 worker, and the library the 3.13+ worker loads.
_WORKER_MODULES = ("azure_functions_worker", "azure_functions_runtime")


def in_functions_worker() -> bool:
    """Whether this process is an Azure Functions Python worker (its root handler talks to the host)."""
    return any(name in sys.modules for name in _WORKER_MODULES)


def configure_logging(fmt: str = "json", level: str = "INFO", stream: Any = None) -> None:
    """Route structlog through stdlib logging with one renderer for every record.

    Inside the Functions worker with no ``stream`` given, no handler is added: the worker's own
    handler sends each record to the host (see the module docstring).

    Args:
        fmt: ``json`` (one JSON object per line, for Application Insights) or ``console``.
        level: the minimum stdlib level.
        stream: where the handler writes (default ``sys.stderr``, or nowhere inside the worker).
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            # The worker's handler only calls str() on the event: tracebacks must be text before it.
            structlog.processors.format_exc_info,
            json_for_foreign_handlers,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "rotation"]:
        root.removeHandler(existing)
    if stream is not None or not in_functions_worker():
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(formatter)
        handler.set_name("rotation")
        root.addHandler(handler)
    root.setLevel(level)
    # The Azure SDKs log every HTTP request at INFO, headers included; keep them to warnings.
    logging.getLogger("azure").setLevel(logging.WARNING)


def get_logger(name: str = "rotation") -> Any:
    """A structlog logger; bind context with :func:`bound` rather than passing it around."""
    return structlog.stdlib.get_logger(name)


@contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Bind ``context`` (e.g. ``rotation_id``, ``key``, ``trigger``) to every log line inside."""
    with structlog.contextvars.bound_contextvars(**context):
        yield
