"""The ``Vaults`` contract: ``FakeVaults`` and ``ArmVaults`` (the ARM emulator over the Key Vault emulator) agree.

A vault is found by its URL in the configured subscriptions (the URL compared as Key Vault's
identifiers are: case-insensitive host, no trailing slash, no default port) with its ARM id, soft
delete and purge protection; a vault outside them is ``PreconditionFailed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rotation.errors import PreconditionFailed
from rotation.ports import Vaults
from tests.contracts.conftest import BOTH


@dataclass
class Subscription:
    vaults: Vaults
    id: str
    add: Callable[[bool], tuple[str, str]]  # (purge protection) -> (vault URL, ARM id)


@pytest.fixture(params=BOTH)
def subscription(request: pytest.FixtureRequest) -> Subscription:
    return fake_subscription() if request.param == "fake" else real_subscription(request.getfixturevalue("local_azure"))


def fake_subscription() -> Subscription:
    from tests.fakes.arm import SUBSCRIPTION, FakeVaults

    vaults = FakeVaults()

    def add(purge_protection: bool) -> tuple[str, str]:
        vault = vaults.add(f"https://kv{uuid.uuid4().hex[:8]}.vault.azure.net", purge_protection=purge_protection)
        return vault.vault_url, vault.arm_id

    return Subscription(vaults, SUBSCRIPTION, add)


def real_subscription(local_azure: dict[str, Any]) -> Subscription:
    from emulators.arm.admin_client import ArmAdmin
    from emulators.keyvault.admin_client import KeyVaultAdmin
    from rotation.adapters.local_credential import LocalDevelopmentCredential
    from rotation.adapters.vaults import ArmVaults
    from tests.integration.workflow.estate import OPERATOR

    ca = local_azure["ca_bundle"]
    subscription, group = str(uuid.uuid4()), f"rg-{uuid.uuid4().hex[:8]}"
    ArmAdmin(local_azure["arm"]["admin"], ca).create_resource_group(subscription, group)
    admin = KeyVaultAdmin(local_azure["keyvault"]["admin"], ca)

    def add(purge_protection: bool) -> tuple[str, str]:
        created = admin.create_vault(
            f"kv{uuid.uuid4().hex[:10]}",
            subscription_id=subscription,
            resource_group=group,
            enable_purge_protection=purge_protection,
        )
        return str(created["url"]), str(created["arm_id"])

    vaults = ArmVaults.connect(
        local_azure["arm"]["url"], LocalDevelopmentCredential(OPERATOR), {"connection_verify": ca}
    )
    return Subscription(vaults, subscription, add)


class TestGetVault:
    """The vault is found whatever the form of its URL, with its protection settings."""

    def test_found_with_its_settings(self, subscription: Subscription) -> None:
        protected_url, protected_id = subscription.add(True)
        unprotected_url, _ = subscription.add(False)

        protected = subscription.vaults.get_vault(protected_url, [subscription.id])
        unprotected = subscription.vaults.get_vault(unprotected_url, [subscription.id])

        assert protected.vault_url == protected_url.rstrip("/").lower()
        assert protected.arm_id.lower() == protected_id.lower()
        assert (protected.soft_delete_enabled, protected.purge_protection_enabled) == (True, True)
        assert (unprotected.soft_delete_enabled, unprotected.purge_protection_enabled) == (True, False)

    def test_url_forms(self, subscription: Subscription) -> None:
        url, _ = subscription.add(True)
        host = url.split("//", 1)[1].rstrip("/")

        forms = [f"https://{host.upper()}/", f"https://{host}"]
        if ":" not in host:  # the default port written out (the emulators' vaults have their own port)
            forms.append(f"https://{host}:443")

        assert {subscription.vaults.get_vault(f, [subscription.id]).vault_url for f in forms} == {
            f"https://{host}".lower()
        }

    def test_outside_the_subscriptions_is_refused(self, subscription: Subscription) -> None:
        url, _ = subscription.add(True)

        with pytest.raises(PreconditionFailed):
            subscription.vaults.get_vault(url, [str(uuid.uuid4())])
        with pytest.raises(PreconditionFailed):
            subscription.vaults.get_vault(f"https://missing{uuid.uuid4().hex[:6]}.vault.azure.net", [subscription.id])
