"""Audit fakes: an in-memory ``AuditLog``, a local ``CheckpointSigner`` and a record builder.

- ``FakeAuditLog`` keeps every record, in append order. It keeps real state: records are stored
  as appended (stamped with ``recorded_at`` when the caller left it unset), never updated (a repeated
  id is a no-op, as in the Table store), and read back in chain order with the same filters the
  Table-backed store applies. ``tests/contracts/test_audit_log.py`` holds both to the same tests.
- ``LocalCheckpointSigner`` signs checkpoints with an RSA key generated in memory (RS256).
- ``make_record(outcome)`` builds a realistic record of one rotation outcome.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rotation.domain.model import AuditRecord


class FakeAuditLog:
    """Implements ``rotation.ports.AuditLog`` in memory."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self._records: list[AuditRecord] = []
        self._lock = threading.Lock()

    def append(self, record: AuditRecord) -> str:
        """Store ``record`` at the end of the chain and return its id, as ``TableAuditLog`` does.

        Idempotent by record id: a repeated id writes nothing and returns the id (records are never
        updated). A record without an id is given one.
        """
        with self._lock:
            if not record.record_id:
                record = replace(record, record_id=uuid.uuid4().hex)
            if any(r.record_id == record.record_id for r in self._records):
                return record.record_id
            if record.recorded_at is None:
                record = replace(record, recorded_at=self._now())
            self._records.append(record)
            return record.record_id

    def records(self, key_uri: str | None = None, since: datetime | None = None) -> Iterable[AuditRecord]:
        """Records in append order, filtered by key (case-insensitive) and ``recorded_at >= since``."""
        with self._lock:
            snapshot = list(self._records)
        return [
            r
            for r in snapshot
            if (key_uri is None or r.key_uri.lower() == key_uri.rstrip("/").lower())
            and (since is None or (r.recorded_at is not None and r.recorded_at >= since))
        ]

    # -- test helpers --------------------------------------------------------------------------

    @property
    def all(self) -> list[AuditRecord]:
        """Every record appended, in order."""
        with self._lock:
            return list(self._records)

    def for_rotation(self, rotation_id: str) -> list[AuditRecord]:
        """Every record of one rotation, in order."""
        return [r for r in self.all if r.rotation_id == rotation_id]


class LocalCheckpointSigner:
    """A ``CheckpointSigner`` with an RSA key generated in memory (RS256), standing in for Key Vault.

    ``key_uri`` is the versionless id it claims; each instance is one version of that key.
    Verification accepts only versions this signer (or a signer it was given as ``older``) made.
    """

    def __init__(
        self,
        key_uri: str = "https://audit.vault.local/keys/audit-signing",
        older: tuple[LocalCheckpointSigner, ...] = (),
    ) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key_uri = key_uri
        self.version = uuid.uuid4().hex
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public = {self.key_id: self._private.public_key()}
        for signer in older:
            self._public.update(signer._public)
        self.signed = 0

    @property
    def key_id(self) -> str:
        return f"{self.key_uri}/{self.version}"

    def sign(self, digest: bytes) -> Any:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        from rotation.audit.signing import RS256, Signature

        value = self._private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        self.signed += 1
        return Signature(key_id=self.key_id, algorithm=RS256, value=value)

    def verify(self, key_id: str, algorithm: str, digest: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        public = self._public.get(key_id)
        if public is None or algorithm != "RS256":
            return False
        try:
            public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


# Outcomes the store tests append, one record of each, to make a chain of distinct records.
OUTCOMES = ("succeeded", "dry_run", "refused", "failed", "rolled_back")


def make_record(
    outcome: str = "succeeded",
    *,
    key_uri: str = "https://kv1.vault.azure.net/keys/aml-cmk",
    reason: str = "",
    caller: str | None = "oncall@example.com",
    recorded_at: datetime | None = None,
) -> AuditRecord:
    """A realistic record of one rotation outcome (steps, consumers, re-wrap) for store tests."""
    from datetime import timedelta

    from rotation.domain.model import (
        ConsumerChange,
        ConsumerKind,
        RewrapFailure,
        RewrapSummary,
        StepRecord,
        Trigger,
        TriggerKind,
    )

    start = recorded_at or datetime.now(UTC)
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    changed = outcome in ("succeeded", "retired", "rolled_back", "needs_human")
    steps = (
        StepRecord("preflight", "succeeded", start, start + timedelta(milliseconds=120)),
        StepRecord(
            "create_version",
            "succeeded" if outcome != "refused" else "skipped",
            start + timedelta(milliseconds=120),
            start + timedelta(milliseconds=900),
            detail="dry run: not created" if outcome == "dry_run" else "",
        ),
        StepRecord(
            "repoint_storage_account",
            "failed" if outcome in ("failed", "rolled_back") else "succeeded",
            start + timedelta(seconds=1),
            start + timedelta(seconds=4, milliseconds=250),
            detail="verification failed: account could not unwrap with the new version"
            if outcome == "rolled_back"
            else "",
        ),
    )
    consumers = (
        ConsumerChange(
            ConsumerKind.STORAGE_ACCOUNT,
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/amlstore",
            old,
            new if changed else old,
            {"succeeded": "changed", "retired": "changed", "rolled_back": "rolled_back", "needs_human": "failed"}.get(
                outcome, "planned" if outcome == "dry_run" else "unchanged"
            ),
        ),
        ConsumerChange(
            ConsumerKind.ML_WORKSPACE,
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1",
            old,
            new if changed else old,
            "changed" if changed else "unchanged",
        ),
    )
    rewrap = RewrapSummary(
        rewrapped=40,
        already_current=2,
        failed=(RewrapFailure("https://data.blob.core.windows.net/cse", "a/b.bin", "blob changed during re-wrap"),),
    )
    return AuditRecord(
        record_id=uuid.uuid4().hex,
        rotation_id=None if outcome == "refused" else uuid.uuid4().hex,
        key_uri=key_uri,
        old_version=old,
        new_version=None if outcome in ("refused", "dry_run") else new,
        trigger=Trigger(TriggerKind.HTTP, caller=caller) if caller else Trigger(TriggerKind.TIMER),
        outcome=outcome,  # type: ignore[arg-type]
        reason=reason or {"refused": "vault has no purge protection"}.get(outcome, outcome),
        steps=steps if outcome != "refused" else steps[:1],
        consumers=consumers,
        rewrap=rewrap if changed else None,
        recorded_at=recorded_at,
    )
