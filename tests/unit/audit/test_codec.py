"""The canonical form of a record, its chain hash, and the scrubbing of free text."""

from __future__ import annotations

import base64
import json
import os
import random
from dataclasses import replace

from rotation.audit.codec import (
    GENESIS_HASH,
    SCRUBBED,
    canonical_json,
    chain_hash,
    fit_body,
    record_from_dict,
    record_to_dict,
    scrub,
)
from rotation.domain.model import RewrapFailure, RewrapSummary
from tests.fakes.audit import make_record


class TestRoundTrip:
    """A record survives canonical JSON unchanged, for every outcome."""

    def test_every_outcome_round_trips(self) -> None:
        from datetime import UTC, datetime

        records = [
            make_record(o, recorded_at=datetime(2026, 11, 27, 10, 0, tzinfo=UTC))
            for o in ("succeeded", "dry_run", "refused", "failed", "rolled_back", "retired", "needs_human")
        ]

        rebuilt = [record_from_dict(json.loads(canonical_json(record_to_dict(r)))) for r in records]

        assert rebuilt == records

    def test_the_same_record_always_serialises_to_the_same_text(self) -> None:
        record = make_record()

        first, second = canonical_json(record_to_dict(record)), canonical_json(record_to_dict(replace(record)))

        assert first == second
        assert json.loads(first)["key_uri"] == record.key_uri


class TestChainHash:
    """The hash covers position, predecessor and text: changing any of them changes it."""

    def test_hash_depends_on_every_input(self) -> None:
        body = canonical_json(record_to_dict(make_record()))

        base = chain_hash(1, GENESIS_HASH, body)

        assert len(base) == 64
        assert chain_hash(2, GENESIS_HASH, body) != base
        assert chain_hash(1, "1" * 64, body) != base
        assert chain_hash(1, GENESIS_HASH, body.replace("succeeded", "failed")) != base
        assert chain_hash(1, GENESIS_HASH, body) == base


class TestScrub:
    """Free text never carries a token, key or connection secret into the audit trail."""

    def test_credentials_are_redacted(self) -> None:
        jwt = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiJhYmMifQ.c2lnbmF0dXJlLWJ5dGVz"
        key = base64.b64encode(os.urandom(32)).decode()
        texts = [
            f"request failed with Authorization: Bearer {jwt}",
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + key + ";EndpointSuffix=core.windows.net",
            f"unwrapped data key {key} for blob x",
            "https://a.blob.core.windows.net/c/b?sv=2024-01-01&sig=abcdEFGH1234%2Bxyz&se=2026",
            "-----BEGIN " + "PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",  # split: no PEM in git
        ]

        scrubbed = [scrub(t) for t in texts]

        for original, clean in zip(texts, scrubbed, strict=True):
            assert SCRUBBED in clean, original
        assert jwt not in scrubbed[0]
        assert key not in scrubbed[1]
        assert key not in scrubbed[2]
        assert "abcdEFGH1234" not in scrubbed[3]
        assert "MIIEvQIBADANBg" not in scrubbed[4]

    def test_identifiers_are_kept(self) -> None:
        texts = [
            "https://kv1.vault.azure.net/keys/aml-cmk/0123456789abcdef0123456789abcdef",
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ml-prod/providers/"
            "Microsoft.MachineLearningServices/workspaces/ws-prod-eastus2",
            "hash " + "ab" * 32,
            "storage account amlstore could not unwrap with the new version (403 KeyVaultAccessDenied)",
        ]

        assert [scrub(t) for t in texts] == texts

    def test_records_are_scrubbed_when_serialised(self) -> None:
        record = replace(make_record("failed"), reason="token eyJhbGciOiJub25lIn0.eyJvaWQiOiJ4In0.c2ln leaked")

        stored = record_to_dict(record)

        assert "eyJ" not in canonical_json(stored)
        assert stored["reason"].startswith("token [redacted]")


class TestFitBody:
    """A record too long for one entity sheds re-wrap failure rows, keeping a count of what it left out."""

    def test_long_failure_lists_are_cut_with_a_count(self) -> None:
        failures = tuple(
            RewrapFailure("https://d.blob.core.windows.net/c", f"blob-{i:06d}", "conflict") for i in range(5000)
        )
        record = replace(make_record(), rewrap=RewrapSummary(rewrapped=1, failed=failures))

        body = json.loads(fit_body(record, 60_000))

        assert len(canonical_json(body)) <= 60_000
        kept = len(body["rewrap"]["failed"])
        assert 0 < kept < 5000
        assert body["rewrap"]["failed_omitted"] == 5000 - kept

    def test_short_records_are_untouched(self) -> None:
        record = make_record()

        assert fit_body(record, 60_000) == canonical_json(record_to_dict(record))


class TestScrubRandomness:
    """Random key-sized base64 is caught nearly always; ARM paths in reasons survive."""

    def test_random_keys_are_redacted(self) -> None:
        draw = random.Random(20261127).randbytes  # fixed draws, so the measured rate is reproducible
        short = [base64.b64encode(draw(32)).decode() for _ in range(500)]
        short += [base64.urlsafe_b64encode(draw(32)).decode().rstrip("=") for _ in range(500)]
        long = [base64.b64encode(draw(n)).decode() for n in (48, 64, 256) for _ in range(100)]

        missed_short = [k for k in short if k in scrub(f"value {k} end")]
        missed_long = [k for k in long if k in scrub(f"value {k} end")]

        assert len(missed_short) <= 10  # about 0.3% of 32-byte keys look like words to the heuristic
        assert missed_long == []

    def test_resource_paths_survive(self) -> None:
        text = (
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
            "Microsoft.Storage/storageAccounts/amlstore1234567890abc refused the new version"
        )

        assert scrub(text) == text
