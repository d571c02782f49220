"""The ``encryptiondata`` metadata of client-side-encrypted blobs (azure-storage-blob protocols 1.0, 2.0, 2.1).

Pure functions. Parsing keeps the JSON exactly as written apart from the three wrapping fields, so a
re-wrapped blob carries the same entries in the same order (Java readers need the order), and every
other metadata entry of the blob is written back unchanged (``set_blob_metadata`` replaces all).

A protocol-2 content key is wrapped together with an 8-byte prefix (``b"2.0\\0\\0\\0\\0\\0"``); the
re-wrap wraps the unwrapped bytes as they are, prefix included, and checks the prefix first.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

METADATA_KEY = "encryptiondata"
PROTOCOLS = ("1.0", "2.0", "2.1")
V2_PROTOCOLS = ("2.0", "2.1")


class MalformedEncryptionData(ValueError):
    """The blob's ``encryptiondata`` cannot be used; the message is log-safe (no key bytes)."""


@dataclass(frozen=True)
class WrappedKey:
    """What the re-wrap needs from a blob's ``encryptiondata``. ``document`` is the parsed JSON."""

    metadata_key: str  # the metadata name as stored (metadata names are case-insensitive)
    key_id: str
    encrypted_key: bytes
    algorithm: str
    protocol: str
    document: dict[str, Any]

    @property
    def prefix(self) -> bytes:
        """The bytes a protocol-2 unwrapped content key starts with (empty for 1.0)."""
        return self.protocol.encode().ljust(8, b"\0") if self.protocol in V2_PROTOCOLS else b""


def find_encryption_data(metadata: Mapping[str, str]) -> tuple[str, str] | None:
    """The (name as stored, value) of the ``encryptiondata`` entry, matched case-insensitively."""
    for name, value in metadata.items():
        if name.lower() == METADATA_KEY:
            return name, value
    return None


def parse_wrapped_key(metadata: Mapping[str, str]) -> WrappedKey | None:
    """Parse the blob's wrapped content key; None when the blob has no ``encryptiondata``.

    Raises:
        MalformedEncryptionData: the entry exists but is not a usable client-side-encryption record.
    """
    found = find_encryption_data(metadata)
    if found is None:
        return None
    name, raw = found
    try:
        document = json.loads(raw)
    except (ValueError, TypeError):
        raise MalformedEncryptionData("encryptiondata is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedEncryptionData("encryptiondata is not a JSON object")
    wrapped = document.get("WrappedContentKey")
    agent = document.get("EncryptionAgent")
    if not isinstance(wrapped, dict) or not isinstance(agent, dict):
        raise MalformedEncryptionData("encryptiondata lacks WrappedContentKey or EncryptionAgent")
    key_id, encrypted, algorithm = wrapped.get("KeyId"), wrapped.get("EncryptedKey"), wrapped.get("Algorithm")
    if not all(isinstance(v, str) and v for v in (key_id, encrypted, algorithm)):
        raise MalformedEncryptionData("WrappedContentKey lacks KeyId, EncryptedKey or Algorithm")
    protocol = agent.get("Protocol")
    if protocol not in PROTOCOLS:
        raise MalformedEncryptionData(f"unsupported encryption protocol {str(protocol)[:16]!r}")
    if protocol == "1.0" and not isinstance(document.get("ContentEncryptionIV"), str):
        raise MalformedEncryptionData("protocol 1.0 without ContentEncryptionIV")
    if protocol in V2_PROTOCOLS and not isinstance(document.get("EncryptedRegionInfo"), dict):
        raise MalformedEncryptionData(f"protocol {protocol} without EncryptedRegionInfo")
    try:
        encrypted_key = base64.b64decode(str(encrypted), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEncryptionData("EncryptedKey is not base64") from None
    return WrappedKey(name, str(key_id), encrypted_key, str(algorithm), str(protocol), document)


def check_unwrapped(wrapped: WrappedKey, content_key: bytes) -> None:
    """Raise MalformedEncryptionData when the unwrapped bytes are not what the protocol writes."""
    prefix = wrapped.prefix
    if prefix and content_key[: len(prefix)] != prefix:
        raise MalformedEncryptionData(f"unwrapped key lacks the protocol {wrapped.protocol} prefix")
    if len(content_key) != len(prefix) + 32:
        raise MalformedEncryptionData("unwrapped content key is not 256 bits")


def rewrapped_metadata(
    metadata: Mapping[str, str], wrapped: WrappedKey, key_id: str, encrypted_key: bytes, algorithm: str
) -> dict[str, str]:
    """All of ``metadata`` with only KeyId, EncryptedKey and Algorithm of ``encryptiondata`` replaced.

    Entry order and JSON key order are kept; the JSON is written with ``json.dumps`` defaults, as the SDK does.
    """
    document = json.loads(json.dumps(wrapped.document))  # a deep copy that keeps key order
    document["WrappedContentKey"]["KeyId"] = key_id
    document["WrappedContentKey"]["EncryptedKey"] = base64.b64encode(encrypted_key).decode()
    document["WrappedContentKey"]["Algorithm"] = algorithm
    updated = dict(metadata)
    updated[wrapped.metadata_key] = json.dumps(document)
    return updated
