"""Checkpoints signed and verified by a Key Vault key, through the official SDK, against the Key Vault emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.keyvault.keys import KeyClient

from emulators.keyvault.admin_client import KeyVaultAdmin
from rotation.adapters.local_credential import LocalDevelopmentCredential
from rotation.audit.signing import KeyVaultCheckpointSigner
from rotation.audit.store import CHECKPOINTS, TableAuditLog, seq_key
from rotation.cli import main
from rotation.errors import PermissionDenied
from tests.fakes.audit import make_record
from tests.integration.vaults import new_vault

PRINCIPAL = "audit-signer"


@pytest.fixture
def signing_key(local_azure: dict[str, Any]) -> Iterator[tuple[KeyClient, str, KeyVaultAdmin, str]]:
    """A fresh vault with an RSA signing key; yields (key client, versionless key URI, admin, vault name)."""
    admin, vault, client = new_vault(local_azure, "au", PRINCIPAL)
    key = client.create_rsa_key(f"audit-{uuid.uuid4().hex[:8]}", size=2048)
    yield client, f"{vault['url'].rstrip('/')}/keys/{key.name}", admin, vault["name"]
    client.close()


def signer_for(local_azure: dict[str, Any], key_uri: str, principal: str = PRINCIPAL) -> KeyVaultCheckpointSigner:
    return KeyVaultCheckpointSigner(
        key_uri, LocalDevelopmentCredential(principal), {"connection_verify": local_azure["ca_bundle"]}, False
    )


class TestKeyVaultCheckpoints:
    """Periodic checkpoints are signed in Key Vault and anchor the chain, across signing-key versions."""

    def test_checkpoints_are_signed_and_verify(
        self, local_azure: dict[str, Any], signing_key: tuple[KeyClient, str, KeyVaultAdmin, str], table_name: str
    ) -> None:
        client, key_uri, _admin, _vault = signing_key
        store = TableAuditLog(
            local_azure["storage"]["connection_string"],
            table_name,
            signer_for(local_azure, key_uri),
            checkpoint_every=2,
        )
        for outcome in ("succeeded", "failed", "refused"):
            store.append(make_record(outcome))
        client.create_rsa_key(key_uri.rsplit("/", 1)[1], size=2048)  # the signing key itself rotates
        store.append(make_record("dry_run"))

        checkpoints = store.checkpoints()
        report = store.verify()

        assert [c.seq for c in checkpoints] == [2, 4]
        assert checkpoints[0].key_id != checkpoints[1].key_id
        assert all(c.key_id.startswith(key_uri + "/") for c in checkpoints)
        assert report.ok, report.problem
        assert report.anchored_through == 4

    def test_a_checkpoint_signed_by_another_key_is_refused(
        self, local_azure: dict[str, Any], signing_key: tuple[KeyClient, str, KeyVaultAdmin, str], table_name: str
    ) -> None:
        client, key_uri, _admin, _vault = signing_key
        other = client.create_rsa_key(f"forger-{uuid.uuid4().hex[:6]}", size=2048)
        connection = local_azure["storage"]["connection_string"]
        forged = TableAuditLog(
            connection, table_name, signer_for(local_azure, other.id.rsplit("/", 1)[0]), checkpoint_every=2
        )
        forged.append(make_record())
        forged.append(make_record())

        report = TableAuditLog(connection, table_name, signer_for(local_azure, key_uri)).verify()

        assert report.problem is not None
        assert report.problem.kind == "not_anchored"
        assert other.name in report.problem.message

    def test_a_tampered_signature_is_refused(
        self, local_azure: dict[str, Any], signing_key: tuple[KeyClient, str, KeyVaultAdmin, str], table_name: str
    ) -> None:
        from azure.data.tables import TableClient, UpdateMode

        _client, key_uri, _admin, _vault = signing_key
        connection = local_azure["storage"]["connection_string"]
        store = TableAuditLog(connection, table_name, signer_for(local_azure, key_uri), checkpoint_every=1)
        store.append(make_record())
        raw = TableClient.from_connection_string(connection, table_name)
        entity = raw.get_entity(CHECKPOINTS, seq_key(1))
        entity["signature"] = bytes(b ^ 1 for b in entity["signature"])
        raw.update_entity(entity, mode=UpdateMode.REPLACE)

        report = store.verify()

        assert report.problem is not None
        assert "does not verify" in report.problem.message

    def test_signing_without_permission_is_reported(
        self, local_azure: dict[str, Any], signing_key: tuple[KeyClient, str, KeyVaultAdmin, str]
    ) -> None:
        _client, key_uri, admin, vault = signing_key
        admin.set_role_assignments(vault, [{"principal_id": PRINCIPAL, "role": "Key Vault Crypto Officer"}])
        signer = signer_for(local_azure, key_uri, principal="someone-else")

        with pytest.raises(PermissionDenied) as caught:
            signer.sign(b"\x00" * 32)

        assert caught.value.permission == "keys/sign/action"


class TestCheckpointCommand:
    """``audit checkpoint`` signs on demand and ``audit verify`` reports the chain anchored."""

    def test_checkpoint_then_verify(
        self,
        local_azure: dict[str, Any],
        signing_key: tuple[KeyClient, str, KeyVaultAdmin, str],
        table_name: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        _client, key_uri, _admin, _vault = signing_key
        connection = local_azure["storage"]["connection_string"]
        store = TableAuditLog(connection, table_name)
        for outcome in ("succeeded", "rolled_back", "failed"):
            store.append(make_record(outcome))
        env = {
            "AzureWebJobsStorage": connection,
            "ROTATION_AUDIT_TABLE": table_name,
            "ROTATION_AUDIT_SIGNING_KEY": key_uri,
            "ROTATION_LOCAL_PRINCIPAL": PRINCIPAL,
            "ROTATION_CA_BUNDLE": local_azure["ca_bundle"],
            "ROTATION_VERIFY_CHALLENGE_RESOURCE": "false",
            "ROTATION_ARM_ENDPOINT": local_azure["arm"]["url"],
            "ROTATION_LOG_FORMAT": "console",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()

        signed = main(["--json", "audit", "checkpoint"])
        checkpoint = json.loads(capsys.readouterr().out)
        verified = main(["audit", "verify", "--json"])
        report = json.loads(capsys.readouterr().out)

        assert signed == 0
        assert checkpoint["seq"] == 3
        assert checkpoint["key_id"].startswith(key_uri + "/")
        assert verified == 0
        assert report["anchored_through"] == 3
        assert report["warnings"] == []
