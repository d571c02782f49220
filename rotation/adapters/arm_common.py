"""Shared ARM plumbing for the adapters: scopes, resource-id parsing, client keywords."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from rotation.adapters.arm_pacing import ArmPacer, ArmPacingPolicy, shared_pacer
from rotation.errors import InputError, excerpt
from rotation.retry import TRANSPORT_RETRY

DEFAULT_SCOPE = "https://management.azure.com/.default"

_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


def arm_scope(arm_endpoint: str) -> str:
    """The token scope for an ARM endpoint (the public cloud's for a local emulator)."""
    host = (urlsplit(arm_endpoint).hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "::1", "management.azure.com"):
        return DEFAULT_SCOPE
    return f"{arm_endpoint.rstrip('/')}/.default"


def parse_resource_id(resource_id: str) -> tuple[str, str, str]:
    """(subscription, resource group, name) of a provider resource id."""
    match = _RESOURCE_ID.match(resource_id.rstrip("/"))
    if match is None:
        raise InputError(f"{excerpt(resource_id)} is not an ARM resource id")
    return match["sub"], match["rg"], match["name"]


def resource_id_of_type(resource_id: str, provider_path: str, noun: str) -> str:
    """``resource_id`` if it is an ARM resource id under ``provider_path`` (lower case, e.g.
    ``/providers/microsoft.compute/diskencryptionsets/``); otherwise an ``InputError`` naming ``noun``."""
    parse_resource_id(resource_id)
    if provider_path not in resource_id.lower():
        raise InputError(f"{resource_id!r} is not a {noun} id")
    return resource_id


def client_kwargs(arm_endpoint: str, transport_kwargs: dict[str, Any], pacer: ArmPacer | None = None) -> dict[str, Any]:
    """Keywords for an azure-mgmt client: transport retries, the endpoint, and pacing from ARM's rate-limit
    headers (``pacer``, else the process-wide one) after the retry policy."""
    return {
        **TRANSPORT_RETRY,
        **transport_kwargs,
        "base_url": arm_endpoint.rstrip("/"),
        "credential_scopes": [arm_scope(arm_endpoint)],
        "per_retry_policies": [ArmPacingPolicy(pacer or shared_pacer())],
    }
