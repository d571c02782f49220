"""The canonical form of a record, its chain hash, and the scrubbing of free text."""

from __future__ import annotations

import base64
import json
import os
import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

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
from rotation.domain.model import (
    BlobEvidence,
    KindEvidence,
    RetirementEvidence,
    RewrapFailure,
    RewrapSummary,
)
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


#: A ``retired`` record as stored before records carried ``evidence`` (the text and chain hash written then).
STORED_BEFORE_EVIDENCE = (
    '{"consumers":[{"after":"0cdc5a7b8cae4fc6be0d6c8f79b7c407","before":"65f3c4bab25c46f9a91e59b63565d1c7'
    '","detail":"","kind":"storage_account","resource_id":"/subscriptions/00000000-0000-0000-0000-0000000'
    '00001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/amlstore","status":"changed"},{"'
    'after":"0cdc5a7b8cae4fc6be0d6c8f79b7c407","before":"65f3c4bab25c46f9a91e59b63565d1c7","detail":"","k'
    'ind":"ml_workspace","resource_id":"/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroup'
    's/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1","status":"changed"}],"key_uri":"htt'
    'ps://kv1.vault.azure.net/keys/aml-cmk","new_version":"0cdc5a7b8cae4fc6be0d6c8f79b7c407","old_version'
    '":"65f3c4bab25c46f9a91e59b63565d1c7","outcome":"retired","reason":"retired","record_id":"a84854734d4'
    'c451592238e5f6cd75fd0","recorded_at":"2026-11-27T10:00:00+00:00","rewrap":{"already_current":2,"fail'
    'ed":[{"blob":"a/b.bin","location":"https://data.blob.core.windows.net/cse","reason":"blob changed du'
    'ring re-wrap"}],"poison_messages":0,"remaining_on_old_versions":0,"rewrapped":40,"skipped_deleted":0'
    '},"rotation_id":"0b39de6c86a84829b15cfb65efed225e","schema":1,"steps":[{"detail":"","duration_ms":12'
    '0,"finished_at":"2026-11-27T10:00:00.120000+00:00","name":"preflight","started_at":"2026-11-27T10:00'
    ':00+00:00","status":"succeeded"},{"detail":"","duration_ms":780,"finished_at":"2026-11-27T10:00:00.9'
    '00000+00:00","name":"create_version","started_at":"2026-11-27T10:00:00.120000+00:00","status":"succe'
    'eded"},{"detail":"","duration_ms":3250,"finished_at":"2026-11-27T10:00:04.250000+00:00","name":"repo'
    'int_storage_account","started_at":"2026-11-27T10:00:01+00:00","status":"succeeded"}],"trigger":{"cal'
    'ler":"oncall@example.com","event_id":null,"event_type":null,"kind":"http"}}'
)
STORED_HASH = "c49b048427bcc68e5158af60ffc4a180500570a75cd848307fcd03f9a1c705e8"


#: A ``retired`` record with evidence as stored before re-wraps and surveys counted other keys' blobs.
STORED_BEFORE_OTHER_KEYS = (
    '{"consumers":[{"after":"5567e53adacd4e3281a997cb2e59f915","before":"0e64765e41ff48a183e8385b47e6179f'
    '","detail":"","kind":"storage_account","resource_id":"/subscriptions/00000000-0000-0000-0000-0000000'
    '00001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/amlstore","status":"changed"},{"'
    'after":"5567e53adacd4e3281a997cb2e59f915","before":"0e64765e41ff48a183e8385b47e6179f","detail":"","k'
    'ind":"ml_workspace","resource_id":"/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroup'
    's/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1","status":"changed"}],"evidence":{"c'
    'hecked_at":"2026-11-27T10:00:00+00:00","kinds":[{"blobs":null,"by_version":[["v2",2]],"consumers":2,'
    '"kind":"storage_account"},{"blobs":{"by_version":[["v2",4]],"history_by_version":[["v2",3]],"locatio'
    'ns":1,"snapshots":2,"soft_deleted":0,"surveyed":4,"versions":1},"by_version":[],"consumers":1,"kind"'
    ':"data_location"}],"old_version":"v1","references":["an account still on v1"]},"key_uri":"https://kv'
    '1.vault.azure.net/keys/aml-cmk","new_version":"5567e53adacd4e3281a997cb2e59f915","old_version":"0e64'
    '765e41ff48a183e8385b47e6179f","outcome":"retired","reason":"retired","record_id":"1fea05041b064ce891'
    '2fd98c2e105772","recorded_at":null,"rewrap":{"already_current":2,"failed":[{"blob":"a/b.bin","locati'
    'on":"https://data.blob.core.windows.net/cse","reason":"blob changed during re-wrap"}],"poison_messag'
    'es":0,"remaining_on_old_versions":0,"rewrapped":40,"skipped_deleted":0},"rotation_id":"9a336bd68d8b4'
    '715bba7c5f17d3923ab","schema":1,"steps":[{"detail":"","duration_ms":120,"finished_at":"2026-12-06T02'
    ':30:07.909817+00:00","name":"preflight","started_at":"2026-12-06T02:30:07.789817+00:00","status":"su'
    'cceeded"},{"detail":"","duration_ms":780,"finished_at":"2026-12-06T02:30:08.689817+00:00","name":"cr'
    'eate_version","started_at":"2026-12-06T02:30:07.909817+00:00","status":"succeeded"},{"detail":"","du'
    'ration_ms":3250,"finished_at":"2026-12-06T02:30:12.039817+00:00","name":"repoint_storage_account","s'
    'tarted_at":"2026-12-06T02:30:08.789817+00:00","status":"succeeded"}],"trigger":{"caller":"oncall@exa'
    'mple.com","event_id":null,"event_type":null,"kind":"http"}}'
)
STORED_BEFORE_OTHER_KEYS_HASH = "de3d24e5ba9ccfe4010735084fd1d9cef3e20db6ace96e947d65acf2e0c5deb9"


def _evidence(references: tuple[str, ...] = ()) -> RetirementEvidence:
    blobs = BlobEvidence(1, 4, (("v2", 4),), versions=1, snapshots=2, soft_deleted=0, history_by_version=(("v2", 3),))
    return RetirementEvidence(
        datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        "v1",
        (KindEvidence("storage_account", 2, (("v2", 2),)), KindEvidence("data_location", 1, (), blobs)),
        references,
    )


class TestEvidenceField:
    """A ``retired`` record carries its evidence as a field; records written before it still verify."""

    def test_a_record_written_before_the_field_keeps_its_text_and_hash(self) -> None:
        record = record_from_dict(json.loads(STORED_BEFORE_EVIDENCE))

        assert record.evidence is None
        assert canonical_json(record_to_dict(record)) == STORED_BEFORE_EVIDENCE
        assert chain_hash(1, GENESIS_HASH, STORED_BEFORE_EVIDENCE) == STORED_HASH

    def test_evidence_round_trips_as_structured_data(self) -> None:
        record = replace(make_record("retired"), evidence=_evidence(("an account still on v1",)))

        body = record_to_dict(record)
        rebuilt = record_from_dict(json.loads(canonical_json(body)))

        assert rebuilt == record
        data_location = body["evidence"]["kinds"][1]
        assert data_location["blobs"]["snapshots"] == 2
        assert data_location["blobs"]["history_by_version"] == [["v2", 3]]
        assert body["evidence"]["checked_at"] == "2026-11-27T10:00:00+00:00"

    def test_a_record_written_before_other_keys_were_counted_keeps_its_text_and_hash(self) -> None:
        record = record_from_dict(json.loads(STORED_BEFORE_OTHER_KEYS))

        assert record.rewrap is not None
        assert record.rewrap.other_keys == 0
        assert record.evidence is not None
        assert [k.blobs.other_keys for k in record.evidence.kinds if k.blobs is not None] == [0]
        assert canonical_json(record_to_dict(record)) == STORED_BEFORE_OTHER_KEYS
        assert chain_hash(1, GENESIS_HASH, STORED_BEFORE_OTHER_KEYS) == STORED_BEFORE_OTHER_KEYS_HASH

    def test_other_keys_counts_round_trip(self) -> None:
        evidence = _evidence()
        kinds = tuple(
            replace(k, blobs=replace(k.blobs, other_keys=5)) if k.blobs is not None else k for k in evidence.kinds
        )
        record = replace(make_record("retired"), evidence=replace(evidence, kinds=kinds))
        assert record.rewrap is not None
        record = replace(record, rewrap=replace(record.rewrap, other_keys=7))

        body = record_to_dict(record)
        rebuilt = record_from_dict(json.loads(canonical_json(body)))

        assert rebuilt == record
        assert body["rewrap"]["other_keys"] == 7
        assert body["evidence"]["kinds"][1]["blobs"]["other_keys"] == 5

    def test_references_in_the_evidence_are_scrubbed(self) -> None:
        secret = base64.b64encode(os.urandom(32)).decode()
        record = replace(make_record("retired"), evidence=_evidence((f"AccountKey={secret}",)))

        body = canonical_json(record_to_dict(record))

        assert secret not in body
        assert f"AccountKey={SCRUBBED}" in body

    def test_malformed_evidence_is_refused_not_guessed(self) -> None:
        body = record_to_dict(replace(make_record("retired"), evidence=_evidence()))
        body["evidence"]["kinds"][0]["consumers"] = "two"

        with pytest.raises(TypeError):
            record_from_dict(body)
