"""The official ARM management clients pointed at the local ARM emulator: one constructor for every test."""

from __future__ import annotations

from typing import Any, TypeVar

from rotation.adapters.local_credential import LocalDevelopmentCredential

ARM_SCOPE = "https://management.azure.com/.default"

ClientT = TypeVar("ClientT")


def mgmt_client(
    client_class: type[ClientT],
    *,
    arm_url: str,
    ca: str,
    principal: str,
    subscription_id: str | None = None,
    **kwargs: Any,
) -> ClientT:
    """``client_class`` (an azure-mgmt-* client) acting as ``principal``, unmodified, against the emulator.

    ``subscription_id`` None is for tenant-level clients (Resource Graph). LROs poll every 50 ms unless
    ``polling_interval`` says otherwise.
    """
    kwargs.setdefault("polling_interval", 0.05)
    scoped = () if subscription_id is None else (subscription_id,)
    return client_class(  # type: ignore[call-arg]
        LocalDevelopmentCredential(principal),
        *scoped,
        base_url=arm_url,
        connection_verify=ca,
        credential_scopes=[ARM_SCOPE],
        **kwargs,
    )


def resource_id(subscription_id: str, resource_group: str, resource_type: str, name: str) -> str:
    """``/subscriptions/…/resourceGroups/…/providers/{resource_type}/{name}``."""
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{resource_type}/{name}"
