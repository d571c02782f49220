"""Rotations against local Azure (Key Vault and ARM emulators, Azurite) through the real adapters."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest

from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.errors import RotationInProgress
from rotation.service import get_rotation, plan, start_rotation, sweep
from tests.integration.workflow.estate import RealEstate, build_estate, start_and_run_past_waiting

CLI = Trigger(TriggerKind.CLI, caller="integration-test")


@pytest.fixture
def estate(local_azure: dict[str, Any]) -> RealEstate:
    return build_estate(local_azure)


class TestRotationOnLocalAzure:
    """A rotation moves exactly the key's consumers, creates exactly one version, and retires later."""

    def test_plan_finds_exactly_the_consumers(self, estate: RealEstate) -> None:
        deps = estate.deps()

        result = plan(deps, estate.key.uri)

        assert result.ok, result.problems
        ids = {c.resource_id.lower() for c in result.consumers}
        assert ids == {i.lower() for i in estate.pinned + estate.versionless + estate.workspaces}
        assert result.unrelated_consumers == 2

    def test_rotation_moves_consumers_then_retires(self, estate: RealEstate) -> None:
        deps = estate.deps()
        before = estate.versions()
        unrelated_before = [estate.account_version(estate.unrelated[0]), estate.workspace_key(estate.unrelated[1])]

        view = start_rotation(deps, estate.key.uri, CLI, reason="integration")

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        after = estate.versions()
        assert len(after) == len(before) + 1
        new = view.new_version
        # (Key Vault's timestamps are in seconds: versions made within one second do not sort by age.)
        made = [v for v in after if v.version not in {b.version for b in before}]
        assert [v.version for v in made] == [new]
        assert made[0].tags == {"rotation-id": view.rotation_id}
        for account in estate.pinned:
            assert estate.account_version(account) == (new, new)
            _, _, _, _, group, _, _, _, name = account.split("/")
            encryption = estate.storage().storage_accounts.get_properties(group, name).encryption
            assert encryption.services.blob.enabled  # the PATCH kept the rest of the encryption block
            assert encryption.encryption_identity.encryption_user_assigned_identity == estate.identity_id
        for account in estate.versionless:
            assert estate.account_version(account)[0] == ""
        for workspace in estate.workspaces:
            assert estate.workspace_key(workspace).endswith("/" + str(new))
        assert [estate.account_version(estate.unrelated[0]), estate.workspace_key(estate.unrelated[1])] == (
            unrelated_before
        )
        assert len(estate.versions(estate.other_key)) == 1
        with pytest.raises(RotationInProgress):
            start_rotation(deps, estate.key.uri, CLI)

        waiting = sweep(deps, Trigger(TriggerKind.TIMER))
        deps.clock = _Shifted(timedelta(hours=25))
        not_adopted = sweep(deps, Trigger(TriggerKind.TIMER))
        estate.arm_admin.advance_clock(86400 * 2)  # Storage's daily check adopts the new version
        retired = sweep(deps, Trigger(TriggerKind.TIMER))

        assert waiting.count("waiting") == 1
        assert not_adopted.count("waiting") == 1
        assert "versionless" in not_adopted.items[0].detail
        assert retired.count("retired") == 1, retired.items
        old = next(v for v in estate.versions() if v.version == view.old_version)
        assert old.enabled is False
        assert get_rotation(deps, view.rotation_id).status == RotationStatus.RETIRED
        for account in estate.versionless:
            assert estate.account_version(account) == ("", new)

    def test_dry_run_changes_nothing(self, estate: RealEstate) -> None:
        deps = estate.deps()
        before = estate.versions()

        view = start_rotation(deps, estate.key.uri, CLI, dry_run=True)

        assert view.status == RotationStatus.DRY_RUN
        assert len(estate.versions()) == len(before)
        assert sum(c.status == "planned" for c in view.consumers) == 4
        assert all(estate.account_version(a)[0] == before[-1].version for a in estate.pinned)


class _Shifted:
    """A clock ahead of real time (the grace period passes without waiting for it)."""

    def __init__(self, ahead: timedelta) -> None:
        self.ahead = ahead

    def now(self):  # type: ignore[no-untyped-def]
        from datetime import UTC, datetime

        return datetime.now(UTC) + self.ahead


class _VaultKek:
    """azure-storage-blob's KeyEncryptionKey over a Key Vault key version (as a data owner writes blobs)."""

    def __init__(self, kid: str, ca: str) -> None:
        from azure.keyvault.keys.crypto import CryptographyClient

        from rotation.adapters.local_credential import LocalDevelopmentCredential

        self.kid = kid
        self.client = CryptographyClient(
            kid, LocalDevelopmentCredential("data-owner"), connection_verify=ca, verify_challenge_resource=False
        )

    def wrap_key(self, key: bytes) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        return bytes(self.client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, key).encrypted_key)

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        return bytes(self.client.unwrap_key(KeyWrapAlgorithm(algorithm), key).key)

    def get_kid(self) -> str:
        return self.kid

    def get_key_wrap_algorithm(self) -> str:
        return "RSA-OAEP-256"


class TestRotationWithDataKeys:
    """The re-wrap runs as a step: client-side-encrypted blobs move to the new version before cut-over."""

    def test_rewrap_step(self, estate: RealEstate, local_azure: dict[str, Any]) -> None:
        import os

        from tests.integration.rewrap_helpers import decrypting_client, encrypted_client, new_container

        container = new_container(local_azure)
        old_kid = estate.keys().get_key(estate.key.name).id
        payloads = {f"blob-{i}": os.urandom(2000 + i) for i in range(6)}
        writer = encrypted_client(container, _VaultKek(str(old_kid), estate.ca), "2.0")
        for name, data in payloads.items():
            writer.upload_blob(name, data)
        location = f"{container.url.rsplit('/', 1)[0]}/{container.container_name}"
        deps = estate.deps(ROTATION_DATA_LOCATIONS=location)

        view = start_and_run_past_waiting(deps, estate.key.uri, CLI)

        assert view.status == RotationStatus.AWAITING_RETIREMENT, view.error
        assert view.rewrap is not None
        assert view.rewrap.rewrapped == len(payloads)
        assert view.rewrap.failed == ()
        new_kid = estate.key.version_uri(str(view.new_version))
        reader = decrypting_client(container, lambda kid: _VaultKek(kid, estate.ca) if kid == new_kid else None)
        for name, data in payloads.items():
            assert reader.download_blob(name).readall() == data
        container.delete_container()


class TestAutoRotationEvent:
    """A version Key Vault rotated by itself is adopted (no second version); a redelivery is a no-op."""

    def test_adopts_key_vault_rotation(self, estate: RealEstate) -> None:
        import uuid

        from rotation.domain.model import KeyVaultEvent
        from rotation.service import handle_key_event

        rotated = estate.keys().rotate_key(estate.key.name)
        version = str(rotated.properties.version)
        event = KeyVaultEvent(str(uuid.uuid4()), "KeyNewVersionCreated", estate.key, version, "kv", None, None, None)
        deps = estate.deps()

        first = handle_key_event(deps, event)
        again = handle_key_event(deps, event)

        assert first.outcome == "adopted", first.reason
        assert again.outcome == "duplicate"
        assert len(estate.versions()) == 2
        for account in estate.pinned:
            assert estate.account_version(account) == (version, version)
        for workspace in estate.workspaces:
            assert estate.workspace_key(workspace).endswith("/" + version)
        assert get_rotation(deps, str(first.rotation_id)).status == RotationStatus.AWAITING_RETIREMENT


class TestNoSecretsAnywhere:
    """A full rotation on local Azure leaves no key material, token or connection secret in its JSON logs,
    its journal entities or its audit records."""

    def test_scan(self, estate: RealEstate, local_azure: dict[str, Any]) -> None:
        import base64
        import io
        import json

        from azure.data.tables import TableClient

        from emulators.localazure import AZURITE_KEY
        from rotation.adapters.local_credential import LocalDevelopmentCredential
        from rotation.logs import configure_logging

        probes: list[bytes] = []

        def recording_probe(size: int) -> bytes:
            probes.append(os.urandom(size))
            return probes[-1]

        stream = io.StringIO()
        configure_logging("json", "DEBUG", stream)
        deps = estate.deps()
        deps.keys._probe_source = recording_probe  # type: ignore[attr-defined]
        token = LocalDevelopmentCredential("rotation-operator").get_token("https://vault.azure.net/.default").token

        try:
            view = start_rotation(deps, estate.key.uri, CLI, reason="scan")
        finally:
            configure_logging("console", "INFO")  # stop writing into this test's buffer

        connection = local_azure["storage"]["connection_string"]
        entities = list(TableClient.from_connection_string(connection, estate.journal_table).list_entities())
        audit = [json.dumps(r, default=str) for r in deps.audit.records(estate.key.uri)]
        text = stream.getvalue() + json.dumps(entities, default=str) + "".join(audit)
        assert view.status == RotationStatus.AWAITING_RETIREMENT
        assert probes, "the wrap/unwrap probe ran"
        assert "rotation_summary" in stream.getvalue()
        assert len(entities) >= 2
        secrets = [AZURITE_KEY, token, token.split(".")[0], token.split(".")[1]]  # any bearer token starts alike
        for probe in probes:
            secrets += [
                probe.hex(),
                base64.b64encode(probe).decode(),
                base64.urlsafe_b64encode(probe).decode().rstrip("="),
            ]
        leaked = [s[:12] for s in secrets if s in text]
        assert leaked == []


class TestRollbackOnLocalAzure:
    """A consumer Azure refuses the new version for stays on (is put back on) the old one; the rotation stops
    rolled back for a human, the old version stays enabled, and the refusal is audited."""

    def test_refused_account_rolls_back(self, estate: RealEstate) -> None:
        import uuid

        from rotation.adapters.aml_client import AmlWorkspaceClient
        from rotation.adapters.local_credential import LocalDevelopmentCredential
        from tests.integration.workflow.estate import OPERATOR, account_body, new_identity

        old = estate.versions()[-1].version
        identity_id, _ = new_identity(estate.arm_admin, estate.subscription_id, estate.resource_group)
        body = account_body(estate.vault["url"], estate.key.name, str(old), identity_id)
        name = f"sa{uuid.uuid4().hex[:12]}"
        refused = str(estate.storage().storage_accounts.begin_create(estate.resource_group, name, body).result().id)
        with AmlWorkspaceClient(LocalDevelopmentCredential(OPERATOR), estate.arm_url, connection_verify=estate.ca) as c:
            workspace_principals = [str(c.get_workspace(w).principal_id) for w in estate.workspaces]
        users = [estate.identity_principal, *workspace_principals]  # not the new account's identity
        roles = [{"principal_id": OPERATOR, "role": "Key Vault Crypto Officer"}]
        roles += [{"principal_id": p, "role": "Key Vault Crypto Service Encryption User"} for p in users]
        estate.kv_admin.set_role_assignments(estate.vault["name"], roles)
        deps = estate.deps()
        try:
            view = start_rotation(deps, estate.key.uri, CLI)
        finally:
            estate.kv_admin.set_role_assignments(estate.vault["name"], [])

        assert view.status == RotationStatus.ROLLED_BACK, view.error
        assert view.error is not None
        assert "KeyVault" in view.error["message"]
        rolled = [c for c in view.consumers if c.status == "rolled_back"]
        assert [c.resource_id.lower() for c in rolled] == [refused.lower()]
        assert estate.account_version(refused)[0] == old
        for account in estate.pinned:
            assert estate.account_version(account)[0] in (old, view.new_version)
        assert next(v for v in estate.versions() if v.version == old).enabled
        outcomes = [r.outcome for r in deps.audit.records(estate.key.uri) if r.rotation_id == view.rotation_id]
        assert outcomes == ["rolled_back"]
