"""An independent detector of secrets in stored audit entities (not the store's own scrubber).

Flags: JWTs (``eyJ...``), storage connection secrets (``AccountKey=``, SAS ``sig=``,
``SharedAccessSignature``), PEM blocks, ``Bearer`` tokens, and base64/base64url runs that decode
to a key-sized value (16 to 512 bytes: AES keys, RSA-wrapped data keys) and look random.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.data.tables import TableServiceClient

KEY_SIZES = frozenset({16, 24, 32, 48, 64, 128, 256, 384, 512})
_MARKERS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)AccountKey\s*="),
    re.compile(r"(?i)SharedAccessSignature\s*="),
    re.compile(r"(?i)[?&;]sig=[^&\s]+"),
    re.compile(r"-----BEGIN [A-Z ]*(PRIVATE )?KEY-----"),
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._-]{16,}"),
)
_STD = re.compile(r"[A-Za-z0-9+/]{22,}={0,2}")
_URL = re.compile(r"[A-Za-z0-9_-]{22,}")
#: Properties that are public by design: checkpoint signatures are made to be read.
PUBLIC_PROPERTIES = frozenset({("checkpoint", "signature")})


def _decoded_size(token: str, alphabet: str) -> int | None:
    body = token.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded, validate=True) if alphabet == "std" else base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        return None
    return len(raw)


def _random_looking(token: str) -> bool:
    body = token.rstrip("=")
    if re.fullmatch(r"[0-9a-fA-F]+", body) or re.fullmatch(r"[0-9a-fA-F-]+", body):
        return False  # hex digests, Key Vault versions, GUIDs
    counts: dict[str, int] = {}
    for c in body:
        counts[c] = counts.get(c, 0) + 1
    entropy = -sum(n / len(body) * math.log2(n / len(body)) for n in counts.values())
    return entropy >= 4.6 or (entropy >= 4.0 and re.search(r"[a-z]{6,}", body) is None)


def find_secrets(text: str) -> list[str]:
    """Every fragment of ``text`` that looks like a token, key or connection secret."""
    found = [m.group(0) for pattern in _MARKERS for m in pattern.finditer(text)]
    for pattern, alphabet in ((_STD, "std"), (_URL, "url")):
        for match in pattern.finditer(text):
            token = match.group(0)
            size = _decoded_size(token, alphabet)
            if size in KEY_SIZES and _random_looking(token):
                found.append(token)
    return found


@dataclass(frozen=True)
class Finding:
    table: str
    partition: str
    row: str
    prop: str
    fragment: str


def _values(value: Any) -> Iterable[str]:
    if isinstance(value, bytes):
        yield base64.b64encode(value).decode()
    elif isinstance(value, str):
        yield value
    else:
        yield str(value)


def scan_entity(table: str, entity: Mapping[str, Any]) -> list[Finding]:
    partition, row = str(entity.get("PartitionKey")), str(entity.get("RowKey"))
    findings = []
    for prop, value in entity.items():
        if (partition, prop) in PUBLIC_PROPERTIES:
            continue
        for text in _values(value):
            findings.extend(Finding(table, partition, row, prop, f[:24] + "...") for f in find_secrets(text))
    return findings


def is_audit_table(entities: list[Mapping[str, Any]]) -> bool:
    return any(e.get("PartitionKey") == "record" and "prev_hash" in e and "hash" in e for e in entities)


def scan_archive(connection_string: str, container: str = "rotation-audit") -> tuple[int, list[Finding]]:
    """Scan every line of every archive blob: (lines scanned, findings)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(connection_string, container)
    lines = 0
    findings: list[Finding] = []
    try:
        for blob in client.list_blobs():
            text = client.download_blob(blob.name).readall().decode("utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                lines += 1
                try:
                    item = json.loads(line)
                except ValueError:
                    item = {"line": line}
                item.pop("signature", None)  # checkpoint signatures are public by design
                findings.extend(
                    Finding(container, blob.name, str(number), "line", f[:24] + "...")
                    for f in find_secrets(json.dumps(item))
                )
    except ResourceNotFoundError:
        return 0, []
    finally:
        client.close()
    return lines, findings


def scan_audit_tables(connection_string: str) -> tuple[int, int, list[Finding]]:
    """Scan every audit table in the account: (tables scanned, entities scanned, findings)."""
    service = TableServiceClient.from_connection_string(connection_string)
    tables = entities_seen = 0
    findings: list[Finding] = []
    try:
        for table in service.list_tables():
            client = service.get_table_client(table.name)
            entities = list(client.list_entities())
            if not is_audit_table(entities):
                continue
            tables += 1
            entities_seen += len(entities)
            for entity in entities:
                findings.extend(scan_entity(table.name, entity))
    finally:
        service.close()
    return tables, entities_seen, findings
