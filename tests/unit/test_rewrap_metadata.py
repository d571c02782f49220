"""The ``encryptiondata`` record: parsing, classification and the rewrite that changes only the wrapping."""

from __future__ import annotations

import base64
import json

import pytest

from rotation.domain.model import KeyRef
from rotation.rewrap.metadata import (
    MalformedEncryptionData,
    check_unwrapped,
    parse_wrapped_key,
    rewrapped_metadata,
)
from rotation.rewrap.scan import ListedBlob, Status, classify

KEY = KeyRef("https://myvault.vault.azure.net", "cmk")
VAULT = "https://myvault.vault.azure.net"
OLD, NEW = "0" * 31 + "a", "0" * 31 + "b"


def _written_by_sdk(filler: bytes, agent: str, region_or_iv: str) -> str:
    """The metadata azure-storage-blob 12.31.1 writes, key order included: the key wrapped with ``OLD``, the
    ``agent`` (protocol, algorithm) and what the protocol adds (region info for 2.0, the IV for 1.0)."""
    return (
        '{"WrappedContentKey": {"KeyId": "https://myvault.vault.azure.net/keys/cmk/' + OLD + '", '
        '"EncryptedKey": "' + base64.b64encode(filler * 256).decode() + '", "Algorithm": "RSA-OAEP-256"}, '
        '"EncryptionAgent": ' + agent + ", " + region_or_iv + ", "
        '"KeyWrappingMetadata": {"EncryptionLibrary": "Python 12.31.1"}, "EncryptionMode": "FullBlob"}'
    )


V2 = _written_by_sdk(
    b"w",
    '{"Protocol": "2.0", "EncryptionAlgorithm": "AES_GCM_256"}',
    '"EncryptedRegionInfo": {"DataLength": 4194304, "NonceLength": 12}',
)
V1 = _written_by_sdk(
    b"v",
    '{"Protocol": "1.0", "EncryptionAlgorithm": "AES_CBC_256"}',
    '"ContentEncryptionIV": "0u5QyAB4zUT0eyoNPbVtPw=="',
)


def with_wrapped(**changes: object) -> str:
    doc = json.loads(V2)
    doc["WrappedContentKey"].update(changes)
    return json.dumps(doc)


def named(key_id: str, **changes: object) -> dict[str, str]:
    """Metadata of a blob whose ``KeyId`` is ``key_id`` (healthy unless ``changes`` say otherwise)."""
    return {"encryptiondata": with_wrapped(KeyId=key_id, **changes)}


class TestParsing:
    """Both protocols parse; the entry is found whatever its case; a blob without it parses to None."""

    @pytest.mark.parametrize(("raw", "protocol", "prefix"), [(V1, "1.0", b""), (V2, "2.0", b"2.0\0\0\0\0\0")])
    def test_protocols(self, raw: str, protocol: str, prefix: bytes) -> None:
        wrapped = parse_wrapped_key({"EncryptionData": raw, "owner": "a"})

        assert wrapped is not None
        assert wrapped.protocol == protocol
        assert wrapped.prefix == prefix
        assert wrapped.metadata_key == "EncryptionData"
        assert wrapped.key_id == KEY.version_uri(OLD)
        assert len(wrapped.encrypted_key) == 256

    def test_no_entry(self) -> None:
        assert parse_wrapped_key({"owner": "a"}) is None

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("{nope", "not JSON"),
            ("[1]", "not a JSON object"),
            ('{"WrappedContentKey": {}}', "lacks WrappedContentKey or EncryptionAgent"),
            (with_wrapped(EncryptedKey="***"), "not base64"),
            (with_wrapped(KeyId=""), "lacks KeyId"),
            (V2.replace('"2.0"', '"9.9"'), "unsupported encryption protocol"),
            (V1.replace("ContentEncryptionIV", "IV"), "without ContentEncryptionIV"),
        ],
    )
    def test_malformed_records_name_the_problem(self, raw: str, reason: str) -> None:
        with pytest.raises(MalformedEncryptionData, match=reason):
            parse_wrapped_key({"encryptiondata": raw})


class TestUnwrappedCheck:
    """A protocol-2 content key must carry its 8-byte prefix; every content key is 256 bits."""

    def test_prefix_required_for_v2(self) -> None:
        wrapped = parse_wrapped_key({"encryptiondata": V2})
        assert wrapped is not None

        check_unwrapped(wrapped, b"2.0\0\0\0\0\0" + b"k" * 32)
        with pytest.raises(MalformedEncryptionData, match="prefix"):
            check_unwrapped(wrapped, b"k" * 40)

    def test_v1_key_length(self) -> None:
        wrapped = parse_wrapped_key({"encryptiondata": V1})
        assert wrapped is not None

        check_unwrapped(wrapped, b"k" * 32)
        with pytest.raises(MalformedEncryptionData, match="256 bits"):
            check_unwrapped(wrapped, b"k" * 16)


class TestRewrite:
    """Only KeyId, EncryptedKey and Algorithm change; every other entry, and the JSON key order, stay."""

    def test_only_the_wrapping_changes(self) -> None:
        metadata = {"owner": "a", "EncryptionData": V2, "z": "last"}
        wrapped = parse_wrapped_key(metadata)
        assert wrapped is not None

        updated = rewrapped_metadata(metadata, wrapped, KEY.version_uri(NEW), b"n" * 256, "RSA-OAEP")

        assert list(updated) == ["owner", "EncryptionData", "z"]
        assert updated["owner"] == "a"
        assert updated["z"] == "last"
        before, after = json.loads(V2), json.loads(updated["EncryptionData"])
        assert list(after) == list(before)
        assert list(after["WrappedContentKey"]) == ["KeyId", "EncryptedKey", "Algorithm"]
        assert after["WrappedContentKey"] == {
            "KeyId": KEY.version_uri(NEW),
            "EncryptedKey": base64.b64encode(b"n" * 256).decode(),
            "Algorithm": "RSA-OAEP",
        }
        assert {k: v for k, v in after.items() if k != "WrappedContentKey"} == {
            k: v for k, v in before.items() if k != "WrappedContentKey"
        }
        assert metadata["EncryptionData"] == V2  # the input is not modified


class TestClassify:
    """Each blob is old (re-wrap), current (leave), another key's (leave, not a failure: data locations
    are shared) or failed with a reason. Keys are the same by vault and name, case-insensitively, and
    versions compare case-insensitively; versionless KeyIds, KeyIds of the key with a malformed version,
    unparseable KeyIds and malformed metadata are failures, never unwrapped."""

    @pytest.mark.parametrize(
        ("metadata", "status", "reason"),
        [
            ({"encryptiondata": V2}, Status.OLD, ""),
            (named(KEY.version_uri(NEW)), Status.CURRENT, ""),
            (named(KEY.version_uri(NEW.upper())), Status.CURRENT, ""),
            (named(f"https://MyVault.Vault.Azure.NET:443/keys/CMK/{OLD.upper()}"), Status.OLD, ""),
            (named(f"{VAULT}/keys/CMK/{NEW}"), Status.CURRENT, ""),
            (named(f"https://kv2.v.net/keys/cmk/{OLD}"), Status.OTHER_KEY, "another key"),
            (named(f"{VAULT}/keys/other/{OLD}"), Status.OTHER_KEY, "another key"),
            (named(f"{VAULT}/keys/cmk-2/{NEW}"), Status.OTHER_KEY, "another key"),
            (named(f"{VAULT}/keys/cmk"), Status.FAILED, "no key version"),
            (named(f"{VAULT}/keys/cmk/{OLD}-x"), Status.FAILED, "not a Key Vault key URI"),
            (named("local:kek-1"), Status.FAILED, "not a Key Vault key URI"),
            ({"owner": "a"}, Status.FAILED, "no encryptiondata"),
            ({"encryptiondata": "{"}, Status.FAILED, "malformed"),
            ({"encryptiondata": "[1]"}, Status.FAILED, "malformed"),
            ({"encryptiondata": with_wrapped(KeyId=["not", "a", "string"])}, Status.FAILED, "malformed"),
            (named(f"{VAULT}/keys/other/{OLD}", EncryptedKey="%%"), Status.FAILED, "malformed"),
        ],
    )  # fmt: skip
    def test_verdicts(self, metadata: dict[str, str], status: Status, reason: str) -> None:
        verdict = classify(ListedBlob("b", "etag", metadata), KEY, NEW)

        assert verdict.status is status
        assert reason in verdict.reason
