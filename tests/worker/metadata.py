"""The host's checks on worker-indexed function metadata, before it loads any function.

Mirrors what the Functions host does with a ``FunctionMetadataResponse`` (azure-functions-host:
``Utility.cs`` and ``FunctionDescriptorProvider.cs`` for the name rules; the WebJobs SDK's name
resolver for ``%setting%``): a function that fails any check is put in error and never loaded, which
in Azure means it silently never runs. Here every failure is collected and raised at once.

- function names match ``^[a-z][a-z0-9_\\-]{0,127}$`` (case-insensitive, not ``host``) and are unique;
- binding names match ``^([a-zA-Z][a-zA-Z0-9]{0,127}|\\$return)$`` and are unique per function;
- exactly one trigger binding; ``$return`` has direction ``out``;
- every ``%NAME%`` in a binding's string properties is an app setting ("'%NAME%' does not resolve to
  a value"), and a ``connection`` names a setting (or its ``__accountName`` / ``__queueServiceUri``
  identity-based form);
- after resolution a queue name is a valid queue name and a timer schedule has six NCRONTAB fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,127}$(?<!^host$)", re.IGNORECASE)
BINDING_NAME = re.compile(r"^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$")
SETTING_TOKEN = re.compile(r"%([^%]+)%")
QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
IDENTITY_SUFFIXES = ("__accountName", "__queueServiceUri", "__serviceUri", "__blobServiceUri")


class MetadataError(ValueError):
    """The host would put one or more functions in error; the message lists every problem."""


@dataclass(frozen=True)
class IndexedFunction:
    """One function that passed the checks, with its bindings resolved against the app settings."""

    name: str
    function_id: str
    bindings: list[dict[str, Any]]
    metadata: Any


def resolve(value: str, settings: Mapping[str, str]) -> str:
    """Replace each ``%NAME%`` with its app setting; ``KeyError`` naming the first that has none."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise KeyError(name)
        return settings[name]

    return SETTING_TOKEN.sub(one, value)


def validate(results: Iterable[Any], settings: Mapping[str, str]) -> list[IndexedFunction]:
    """Check every ``RpcFunctionMetadata``; raise :class:`MetadataError` listing every problem."""
    problems: list[str] = []
    indexed: list[IndexedFunction] = []
    seen: set[str] = set()
    for meta in results:
        name = meta.name
        if not FUNCTION_NAME.match(name):
            problems.append(f"{name}: invalid function name")
        if name.lower() in seen:
            problems.append(f"{name}: duplicate function name")
        seen.add(name.lower())
        bindings = [json.loads(raw) for raw in meta.raw_bindings]
        own = _check_bindings(name, bindings, settings)
        problems.extend(own)
        if not own:
            resolved = [{k: _resolved(v, settings) for k, v in b.items()} for b in bindings]
            indexed.append(IndexedFunction(name, meta.function_id, resolved, meta))
    if problems:
        raise MetadataError("; ".join(problems))
    return indexed


def _resolved(value: Any, settings: Mapping[str, str]) -> Any:
    return resolve(value, settings) if isinstance(value, str) else value


def _check_bindings(function: str, bindings: list[dict[str, Any]], settings: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    names = [b.get("name", "") for b in bindings]
    for name in names:
        if not BINDING_NAME.match(name):
            problems.append(f"{function}: invalid binding name {name!r}")
    if len(set(names)) != len(names):
        problems.append(f"{function}: duplicate binding names")
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        problems.append(f"{function}: {len(triggers)} trigger bindings (exactly one is allowed)")
    for binding in bindings:
        if binding.get("name") == "$return" and binding.get("direction") != "OUT":
            problems.append(f"{function}: $return must have direction out")
        for key, value in binding.items():
            if isinstance(value, str):
                try:
                    resolve(value, settings)
                except KeyError as missing:
                    problems.append(f"{function}: binding {key} '%{missing.args[0]}%' does not resolve to a value")
        problems.extend(_check_resolved(function, binding, settings))
    return problems


def _check_resolved(function: str, binding: Mapping[str, Any], settings: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    try:
        resolved = {k: _resolved(v, settings) for k, v in binding.items()}
    except KeyError:
        return problems  # already reported
    connection = resolved.get("connection")
    if connection and not (
        connection in settings or any(f"{connection}{suffix}" in settings for suffix in IDENTITY_SUFFIXES)
    ):
        problems.append(f"{function}: storage connection '{connection}' does not exist")
    if resolved.get("type") == "queueTrigger" and not QUEUE_NAME.match(str(resolved.get("queueName", ""))):
        problems.append(f"{function}: {resolved.get('queueName')!r} is not a valid queue name")
    if resolved.get("type") == "timerTrigger" and len(str(resolved.get("schedule", "")).split()) != 6:
        problems.append(f"{function}: schedule {resolved.get('schedule')!r} is not a 6-field NCRONTAB expression")
    return problems
