"""The ``KeyReferences`` port: every resource that names a key, through Azure Resource Graph.

One query per key, with no ``subscriptions`` in the request, so it spans every subscription the
identity can read (Resource Graph's tenant scope; rows the identity may not read are not returned),
not only ``ROTATION_SUBSCRIPTIONS``. Wire shape as azure-mgmt-resourcegraph 8.0.1 sends it
(``POST /providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01``, ``QueryRequest``),
paged with ``$skipToken``.

The query only narrows: ``contains`` (case-insensitive) on the JSON text of ``properties`` for the
vault host and key name, with and without ``:443``, plus storage's split form
(``"keyvaulturi":"https://host``). Each row is then read precisely: every string in ``properties``
that parses as a key identifier of this vault and key name (any case, any port form, versioned or
not) is one :class:`KeyReference` with its property path; a storage account's
``encryption.keyvaultproperties`` (vault URI + key name + version) counts as one too.

Quota: Resource Graph allows each user a number of queries per window and reports what is left in
``x-ms-user-quota-remaining`` / ``x-ms-user-quota-resets-after`` (learn.microsoft.com, "Guidance for
throttled requests in Azure Resource Graph"). When none is left the next page waits for the reset
(injectable ``sleep``); a 429 that outlasts the transport retries is ``ThrottledError`` carrying the
reset time. Permission: read on the resources (e.g. Reader); the query itself needs no action.

The consumer units of one plan (or one retirement check) each ask for the same key's references;
an answer is reused for ``reuse_s`` seconds (default 30) so that they cost one query per key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential

from rotation.adapters.arm_rest import ArmRest, json_object
from rotation.domain.model import KeyRef
from rotation.domain.references import KeyReference
from rotation.errors import InputError, ThrottledError

API_VERSION = "2021-03-01"
PATH = "/providers/Microsoft.ResourceGraph/resources"
PAGE_SIZE = 1000
QUERY = "Microsoft.ResourceGraph/resources/read"
#: The Azure actions each operation needs. Resource Graph returns only the resources the identity
#: may also read (``{type}/read``): what is not readable is not found.
ACTIONS: Mapping[str, frozenset[str]] = {"find": frozenset({QUERY})}


def reference_query(key: KeyRef) -> str:
    """The Resource Graph query that narrows the estate to resources that may name ``key``."""
    host = (urlsplit(key.vault_url).netloc or "").lower()
    hosts = [host] if ":" in host else [host, f"{host}:443"]
    needles = [f"{h}/keys/{key.name}" for h in hosts] + [f'"keyvaulturi":"https://{h}' for h in hosts]
    predicates = " or ".join(f"tostring(properties) contains {json.dumps(n)}" for n in needles)
    return f"Resources | where {predicates} | project id, type, subscriptionId, properties | order by id asc"


def query_body(query: str, page_size: int, skip_token: str | None) -> dict[str, Any]:
    """The ``QueryRequest`` of one page: no ``subscriptions``, so every subscription the identity can read."""
    options: dict[str, Any] = {"$top": page_size, "resultFormat": "objectArray", "allowPartialScopes": False}
    if skip_token:
        options["$skipToken"] = skip_token
    return {"query": query, "options": options}


def references_in(row: dict[str, Any], key: KeyRef) -> list[KeyReference]:
    """Every property of one Resource Graph row that names ``key``, precisely."""
    found = []
    for path, key_id in _key_ids(row.get("properties") or {}, "properties"):
        try:
            ref, version = KeyRef.parse(_keys_segment_lowered(key_id))
        except InputError:
            continue
        if ref.vault_url == key.vault_url and ref.name.lower() == key.name.lower():
            found.append(
                KeyReference(
                    resource_id=str(row.get("id", "")),
                    resource_type=str(row.get("type", "")).lower(),
                    subscription_id=str(row.get("subscriptionId", "")),
                    property_path=path,
                    key_id=key_id,
                    version=version,
                )
            )
    return found


def _keys_segment_lowered(uri: str) -> str:
    """``uri`` with its scheme and ``/keys/`` segment in lower case (a resource may state them in any case)."""
    parts = urlsplit(uri.strip())
    segments = parts.path.split("/")
    if len(segments) > 1 and segments[1].lower() == "keys":
        segments[1] = "keys"
    return f"{parts.scheme.lower()}://{parts.netloc}{'/'.join(segments)}"


def _key_ids(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(property path, key identifier) for every string that looks like one, and storage's split form."""
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        vault, name = lowered.get("keyvaulturi"), lowered.get("keyname")
        if isinstance(vault, str) and isinstance(name, str) and vault and name:
            version = lowered.get("keyversion") or ""
            yield path, f"{vault.rstrip('/')}/keys/{name}" + (f"/{version}" if version else "")
        for child, item in value.items():
            yield from _key_ids(item, f"{path}.{child}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _key_ids(item, f"{path}[{index}]")
    elif isinstance(value, str) and "/keys/" in value.lower() and value.lower().startswith("https://"):
        yield path, value


def seconds(hms: str | None) -> float | None:
    """``hh:mm:ss`` as seconds, or None."""
    try:
        hours, minutes, secs = (float(p) for p in str(hms).split(":"))
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + secs


class ArmKeyReferences:
    """Implements ``rotation.ports.KeyReferences``."""

    def __init__(
        self,
        rest: ArmRest,
        *,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = PAGE_SIZE,
        reuse_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rest = rest
        self._sleep = sleep
        self._page_size = page_size
        self._reuse_s = reuse_s
        self._monotonic = monotonic
        self._recent: dict[str, tuple[float, list[KeyReference]]] = {}

    @classmethod
    def connect(
        cls, arm_endpoint: str, credential: TokenCredential, transport_kwargs: dict[str, Any], **options: Any
    ) -> ArmKeyReferences:
        return cls(ArmRest(arm_endpoint, credential, transport_kwargs), **options)

    def find(self, key: KeyRef) -> list[KeyReference]:
        cache_key = f"{key.vault_url}/keys/{key.name.lower()}"
        now = self._monotonic()
        recent = self._recent.get(cache_key)
        if recent is not None and now - recent[0] < self._reuse_s:
            return list(recent[1])
        found = self._query_all(key)
        self._recent = {k: v for k, v in self._recent.items() if now - v[0] < self._reuse_s}
        self._recent[cache_key] = (now, found)
        return list(found)

    def _query_all(self, key: KeyRef) -> list[KeyReference]:
        query = reference_query(key)
        found: list[KeyReference] = []
        token: str | None = None
        while True:
            page, remaining, resets = self._query(query_body(query, self._page_size, token), key)
            for row in page.get("data") or []:
                if isinstance(row, dict):
                    found.extend(references_in(row, key))
            token = page.get("$skipToken") or None
            if not token:
                return found
            if remaining == 0 and resets:
                self._sleep(resets)

    def _query(self, body: dict[str, Any], key: KeyRef) -> tuple[dict[str, Any], int | None, float | None]:
        what = f"query Resource Graph for references to {key.uri}"
        try:
            response = self._rest.send("POST", self._rest.url(PATH, API_VERSION), what, QUERY, body)
        except ThrottledError as exc:
            raise ThrottledError(exc.message, retry_after=exc.retry_after or 5.0) from None
        headers = response.http_response.headers
        remaining = headers.get("x-ms-user-quota-remaining")
        return (
            json_object(response.http_response),
            int(remaining) if remaining is not None and remaining.isdigit() else None,
            seconds(headers.get("x-ms-user-quota-resets-after")),
        )
