"""The ``local_azure`` endpoints, read one way: the emulators' CA bundle, ARM's URL and the admin clients."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from emulators.arm.admin_client import ArmAdmin
from emulators.keyvault.admin_client import KeyVaultAdmin


@dataclass
class LocalEndpoints:
    """A view of the endpoints ``LocalAzure`` started (the ``local_azure`` fixture's value)."""

    endpoints: dict[str, Any]

    @property
    def ca(self) -> str:
        return str(self.endpoints["ca_bundle"])

    @property
    def arm_url(self) -> str:
        return str(self.endpoints["arm"]["url"])

    @cached_property
    def arm_admin(self) -> ArmAdmin:
        return ArmAdmin(self.endpoints["arm"]["admin"], self.ca)

    @cached_property
    def kv_admin(self) -> KeyVaultAdmin:
        return KeyVaultAdmin(self.endpoints["keyvault"]["admin"], self.ca)
