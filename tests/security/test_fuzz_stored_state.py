"""A hypothesis pass over every decoder of stored state: journal rows, re-wrap work rows, queue messages,
audit rows, blob metadata and events. Whatever the stored bytes, each decoder either returns a value in
the configured scope or raises its one documented error: nothing else escapes the per-item boundary.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotation.adapters.journal import MalformedJournalEntry, decode_state, encode_state
from rotation.audit.chain import ChainEntry, Head, verify
from rotation.audit.store import _entry
from rotation.domain.events import EventScope, IgnoredEvent, KeyVaultEvent, MalformedEvent, parse_event
from rotation.domain.model import KeyRef, RotationStatus, Trigger, TriggerKind
from rotation.domain.steps import RotationState
from rotation.rewrap.checkpoint import MalformedRow, _item, _run
from rotation.rewrap.keys import UNWRAP_ALGORITHMS
from rotation.rewrap.metadata import parse_wrapped_key
from rotation.rewrap.queue import WorkMessage
from rotation.rewrap.scan import ListedBlob, Status, classify
from rotation.rewrap.scope import OutOfScope, RewrapScope
from rotation.settings import DataLocation

pytestmark = pytest.mark.unit
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEY = KeyRef("https://kv.vault.azure.net", "cmk")
LOCATION = DataLocation("https://acct.blob.core.windows.net", "data", "train")
SCOPE = RewrapScope((KEY,), (LOCATION,))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# Strings near the real ones are more likely to find a gap than random text.
key_uris = st.sampled_from(
    [
        KEY.uri,
        KEY.uri.upper(),
        "https://KV.vault.azure.net:443/keys/CMK",
        "https://kv.vault.azure.net.evil.example/keys/cmk",
        "https://evil.example/keys/cmk",
        "https://127.0.0.1:1/keys/cmk",
        "http://kv.vault.azure.net/keys/cmk",
        "https://kv.vault.azure.net/keys/cmk/extra/segments",
        "https://user@kv.vault.azure.net/keys/cmk",
    ]
) | st.text(max_size=80)
account_urls = st.sampled_from(
    [
        LOCATION.account_url,
        LOCATION.account_url.upper(),
        "https://acct.blob.core.windows.net.evil.example",
        "https://evil.example",
        "https://127.0.0.1:1/acct",
        "http://acct.blob.core.windows.net",
    ]
) | st.text(max_size=40)
containers = st.sampled_from(["data", "DATA", "other", ""]) | st.text(max_size=12)
prefixes = st.sampled_from(["train", "train/sub", "", "tra", "../train"]) | st.text(max_size=12)


def entity(base: dict[str, Any]) -> Any:
    return st.fixed_dictionaries({}, optional={k: st.just(v) | json_values for k, v in base.items()})


RUN_ROW = {
    "PartitionKey": "rot-1",
    "RowKey": "run",
    "KeyUri": KEY.uri,
    "NewVersion": "a" * 32,
    "Locations": json.dumps([[LOCATION.account_url, "data", "train"]]),
    "Pass": 1,
    "Done": False,
    "Remaining": -1,
}
ITEM_ROW = {
    "PartitionKey": "rot-1", "RowKey": "item-01-000-000000", "Pass": 1, "Location": 0, "Seq": 0, "Marker": "",
    "Status": "pending", "HasNext": "unknown", "Enqueued": False, "LastName": "", "Rewrapped": 0,
    "AlreadyCurrent": 0, "SkippedDeleted": 0, "OtherKeys": 0, "Races": 0, "Owner": "", "LeaseUntil": 0.0,
}  # fmt: skip


class TestReWrapRowsAndMessages:
    """Work rows decode or raise MalformedRow; messages decode or raise ValueError; a decoded run is
    re-derived into the configured scope or refused with OutOfScope."""

    @FUZZ
    @given(entity(RUN_ROW), st.lists(st.tuples(account_urls, containers, prefixes), max_size=3), key_uris)
    def test_run_rows(self, row: dict[str, Any], locations: list[tuple[str, str, str]], key_uri: str) -> None:
        row = {**row, "KeyUri": key_uri} if "KeyUri" in row else row
        if "Locations" in row and isinstance(row["Locations"], str) and locations:
            row["Locations"] = json.dumps([list(loc) for loc in locations])
        try:
            run = _run(row)
        except MalformedRow:
            return
        try:
            key, found = SCOPE.key(run.key_uri), SCOPE.locations_of(run.locations)
        except OutOfScope:
            return
        assert key == KEY
        for loc in found:
            assert (loc.account_url, loc.container) == (LOCATION.account_url, LOCATION.container)
            assert loc.prefix.startswith(LOCATION.prefix)

    @FUZZ
    @given(entity(ITEM_ROW))
    def test_item_rows(self, row: dict[str, Any]) -> None:
        try:
            item = _item(row)
        except MalformedRow:
            return
        assert isinstance(item.location, int)

    def test_an_item_row_written_before_other_keys_were_counted_decodes(self) -> None:
        before = {name: value for name, value in ITEM_ROW.items() if name != "OtherKeys"}

        assert _item(before).other_keys == 0
        assert _item({**ITEM_ROW, "OtherKeys": 3}).other_keys == 3
        with pytest.raises(MalformedRow):
            _item({**ITEM_ROW, "OtherKeys": "many"})

    @FUZZ
    @given(st.text(max_size=200) | json_values.map(json.dumps) | st.just("[" * 5000 + "]" * 5000))
    def test_queue_messages(self, body: str) -> None:
        try:
            message = WorkMessage.from_json(body)
        except ValueError:
            return
        assert isinstance(message.rotation_id, str)
        assert message.item.startswith("item-")


def valid_state() -> dict[str, Any]:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    state = RotationState("rot-1", KEY.uri, RotationStatus.RUNNING, Trigger(TriggerKind.CLI), now, now)
    return dict(json.loads(encode_state(state)))


class TestJournalRows:
    """A stored rotation decodes into typed fields or raises MalformedJournalEntry, whatever is stored."""

    @FUZZ
    @given(st.dictionaries(st.sampled_from(sorted(valid_state())), json_values, max_size=6))
    def test_mutated_rotations(self, changes: dict[str, Any]) -> None:
        text = json.dumps({**valid_state(), **changes})
        try:
            state = decode_state(text)
        except MalformedJournalEntry:
            return
        assert isinstance(state.key_uri, str)
        assert isinstance(state.rotation_id, str)
        assert isinstance(state.status, RotationStatus)

    @FUZZ
    @given(st.text(max_size=200) | json_values.map(json.dumps))
    def test_arbitrary_text(self, text: str) -> None:
        try:
            decode_state(text)
        except MalformedJournalEntry:
            return


AUDIT_ROW = {"PartitionKey": "record", "RowKey": "000000000001", "seq": 1, "prev_hash": "0" * 64, "hash": "f" * 64,
             "body": "{}", "chunks": 1, "record_id": "r1"}  # fmt: skip


class TestAuditRows:
    """Audit rows decode into chain entries without raising, and verify names a problem instead of crashing."""

    @FUZZ
    @given(st.lists(entity(AUDIT_ROW), max_size=5), st.none() | st.integers(-5, 10))
    def test_verify_never_raises(self, rows: list[dict[str, Any]], head_seq: int | None) -> None:
        entries: list[ChainEntry] = [_entry(r) for r in rows]
        head = None if head_seq is None else Head(head_seq, "f" * 64)

        report = verify(entries, head, [], None, ids_by_seq={}, index=[], archive={})

        assert report.ok or report.problem is not None


ENCRYPTION = {
    "WrappedContentKey": {"KeyId": KEY.version_uri("0" * 32), "EncryptedKey": "AAAA", "Algorithm": "RSA-OAEP-256"},
    "EncryptionAgent": {"Protocol": "2.0", "EncryptionAlgorithm": "AES_GCM_256"},
    "EncryptedRegionInfo": {"DataLength": 4194304, "NonceLength": 12},
}


class TestBlobMetadata:
    """Blob metadata never makes the re-wrap act on another key, or unwrap with RSA1_5; a blob is counted as
    another key's only when its well-formed metadata names a Key Vault key that is not the rotated one."""

    @FUZZ
    @given(
        key_uris.map(lambda u: u + "/" + "0" * 32),
        st.sampled_from(["RSA-OAEP-256", "RSA-OAEP", "RSA1_5", "rsa1_5", "A256KW", ""]) | st.text(max_size=10),
        st.sampled_from(["1.0", "2.0", "2.1", "3.0"]) | st.text(max_size=4),
        st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=3),
    )
    def test_classify(self, kid: str, algorithm: str, protocol: str, extra: dict[str, str]) -> None:
        document = json.loads(json.dumps(ENCRYPTION))
        document["WrappedContentKey"].update(KeyId=kid, Algorithm=algorithm)
        document["EncryptionAgent"]["Protocol"] = protocol
        blob = ListedBlob("b", '"e"', {**extra, "EncryptionData": json.dumps(document)})

        verdict = classify(blob, KEY, "f" * 32)

        if verdict.status in (Status.OLD, Status.CURRENT):
            wrapped = parse_wrapped_key(blob.metadata)
            assert wrapped is not None
            assert KeyRef.parse(wrapped.key_id)[0].same_key(KEY)
            assert wrapped.algorithm in UNWRAP_ALGORITHMS
        elif verdict.status is Status.OTHER_KEY:
            wrapped = parse_wrapped_key(blob.metadata)
            assert wrapped is not None
            assert not KeyRef.parse(wrapped.key_id)[0].same_key(KEY)


class TestEvents:
    """An event is acted on only for a managed key in an allowed vault; anything else is ignored or malformed."""

    @FUZZ
    @given(
        st.sampled_from(["KeyNearExpiry", "KeyExpired", "KeyNewVersionCreated", "SecretNearExpiry"]),
        st.sampled_from(["kv", "KV", "other", "kv.evil"]),
        st.sampled_from(["cmk", "CMK", "Cmk", "cmk2", "other"]),
        st.dictionaries(st.sampled_from(["subject", "topic", "id", "eventTime", "data"]), json_values, max_size=2),
    )
    def test_events(self, kind: str, vault: str, name: str, overrides: dict[str, Any]) -> None:
        payload: dict[str, Any] = {
            "id": "e1", "topic": f"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/{vault}",
            "subject": name, "eventType": f"Microsoft.KeyVault.{kind}", "eventTime": "2026-12-01T00:00:00Z",
            "dataVersion": "1", "metadataVersion": "1",
            "data": {"Id": f"https://{vault}.vault.azure.net/keys/{name}/{'a' * 32}", "VaultName": vault,
                     "ObjectType": "Key", "ObjectName": name, "Version": "a" * 32, "NBF": None, "EXP": None},
        }  # fmt: skip
        payload.update(overrides)
        scope = EventScope.from_settings([KEY.uri], [])
        try:
            parsed = parse_event(payload, scope)
        except MalformedEvent:
            return
        if isinstance(parsed, KeyVaultEvent):
            assert parsed.key == KEY
        else:
            assert isinstance(parsed, IgnoredEvent)
