"""Key Vault event payloads shaped like Event Grid's (protocol-facts section 2), for the event tests.

Microsoft publishes only Secret and Certificate samples (``/work/shared/reference/samples/eventgrid``);
Key events are built here with the same shape: PascalCase data, NBF/EXP as strings or integers.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

SAMPLES = Path("/work/shared/reference/samples/eventgrid")
VAULT = "cmk-vault"
VAULT_URL = f"https://{VAULT}.vault.azure.net"
KEY = "aml-cmk"
KEY_URI = f"{VAULT_URL}/keys/{KEY}"
VERSION = "876c4cb5bd2d4c8ea8d1aa9e8e4f53bd"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
TOPIC = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{VAULT}"


def key_event(
    event_type: str = "KeyNearExpiry",
    *,
    schema: str = "eventgrid",
    vault: str = VAULT,
    name: str = KEY,
    version: str = VERSION,
    nbf: object = "1559081980",
    exp: object = "1790000000",
    event_id: str | None = None,
) -> dict[str, Any]:
    """A Key Vault key event in Event Grid schema (``schema="eventgrid"``) or CloudEvents 1.0."""
    topic = TOPIC.replace(f"/vaults/{VAULT}", f"/vaults/{vault}")
    data = {
        "Id": f"https://{vault}.vault.azure.net/keys/{name}/{version}",
        "VaultName": vault,
        "ObjectType": "Key",
        "ObjectName": name,
        "Version": version,
        "NBF": nbf,
        "EXP": exp,
    }
    event_id = event_id or str(uuid.uuid4())
    if schema == "cloudevents":
        return {
            "source": topic,
            "subject": name,
            "type": f"Microsoft.KeyVault.{event_type}",
            "time": "2026-11-27T10:08:33.1036736Z",
            "id": event_id,
            "data": data,
            "specversion": "1.0",
        }
    return {
        "id": event_id,
        "topic": topic,
        "subject": name,
        "eventType": f"Microsoft.KeyVault.{event_type}",
        "eventTime": "2026-11-27T10:08:33.1036736Z",
        "data": data,
        "dataVersion": "1",
        "metadataVersion": "1",
    }


def sample(name: str) -> Any:
    """One of Microsoft's saved samples, parsed."""
    return json.loads((SAMPLES / name).read_text())
