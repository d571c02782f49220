"""Azure Resource Graph (``POST /providers/Microsoft.ResourceGraph/resources``) over the emulator's resources.

Request and answer (azure-mgmt-resourcegraph ``QueryRequest`` / ``QueryResponse``; SPECS
``specification/resourcegraph/resource-manager/Microsoft.ResourceGraph/stable/2024-04-01/resourcegraph.json``):
``{"subscriptions"?, "query", "options"?: {"$top", "$skip", "$skipToken", "resultFormat"}}`` ->
``{"totalRecords", "count", "resultTruncated", "$skipToken"?, "data": [...], "facets": []}``.

A **strict subset** of the query language is understood (docs/emulators/arm.md lists it); any other
query is a 400 in Resource Graph's own error shape (``BadRequest`` with an ``InvalidQuery`` detail,
as captured in Azure/azure-powershell#13762), never a silent empty answer:

    Resources
    | where <predicate> [or <predicate>]...      predicate: tostring(properties) contains "text"
                                                            properties contains "text"
                                                            type =~ "namespace/type"
    [| project <column>, ...]
    [| order by id [asc|desc]]

``contains`` is case-insensitive, over the JSON text of ``properties``. Rows carry ARG's columns
(``type`` lower-cased). Without ``subscriptions`` the query spans every subscription; either way a
row is returned only if the caller may read that resource (``{type}/read``), as Resource Graph
filters by the caller's RBAC. Each caller has a quota of queries per window (default 15 per 5 s,
"Guidance for throttled requests in Azure Resource Graph", learn.microsoft.com), reported on every
answer in ``x-ms-user-quota-remaining`` and ``x-ms-user-quota-resets-after`` (hh:mm:ss); over it the
answer is 429 ``RateLimiting``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from emulators.arm import errors
from emulators.arm.core import Call, Emulator, arm_json
from emulators.arm.provider import ResourceProvider
from emulators.arm.rbac import is_allowed
from emulators.arm.state import LOCAL_TENANT_ID

MAX_TOP = 1000
DEFAULT_TOP = 100
COLUMNS = (
    "id", "name", "type", "tenantId", "kind", "location", "resourceGroup", "subscriptionId",
    "managedBy", "sku", "plan", "properties", "tags", "identity", "zones", "extendedLocation",
)  # fmt: skip
_STRING = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_PREDICATE = re.compile(
    rf"^(?:(?P<contains>(?:tostring\(\s*properties\s*\)|properties)\s+contains\s+(?P<text>{_STRING}))"
    rf"|(?:type\s*=~\s*(?P<type>{_STRING})))$"
)
_ORDER = re.compile(r"^order\s+by\s+id(?:\s+(?P<dir>asc|desc))?$")

Renderer = Callable[[], Awaitable[list[dict[str, Any]]]]


class QueryError(Exception):
    """The query is outside the understood subset (or malformed); ``token`` names where."""

    def __init__(self, token: str, reason: str) -> None:
        super().__init__(reason)
        self.token = token
        self.reason = reason


@dataclass(frozen=True)
class Query:
    """A parsed query: OR-ed predicates, projected columns, order of ids."""

    contains: tuple[str, ...]
    types: tuple[str, ...]
    columns: tuple[str, ...]
    descending: bool

    def matches(self, row: dict[str, Any]) -> bool:
        text = json.dumps(row.get("properties") or {}, separators=(",", ":")).lower()
        return any(t.lower() in text for t in self.contains) or any(t.lower() == row["type"] for t in self.types)


def _literal(token: str) -> str:
    if token.startswith("'"):
        return token[1:-1]
    return str(json.loads(token))


def _split_pipes(query: str) -> list[str]:
    """Split on ``|`` outside string literals."""
    quote = _open_quote(query)
    if quote:
        raise QueryError(quote, "a string literal is not closed")
    return _split_outside_literals(query, r"\|")


def _split_or(clause: str) -> list[str]:
    """Split a where-clause on ``or`` outside string literals."""
    return _split_outside_literals(clause, r"\s+or\s+")


def _split_outside_literals(text: str, separator: str) -> list[str]:
    pieces, start = [], 0
    for match in re.finditer(separator, text):
        if not _open_quote(text[: match.start()]):
            pieces.append(text[start : match.start()].strip())
            start = match.end()
    pieces.append(text[start:].strip())
    return pieces


def _open_quote(prefix: str) -> str:
    """The quote character of the string literal ``prefix`` leaves open, or "" when it ends outside one."""
    quote, escaped = "", False
    for char in prefix:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
    return quote


def parse(query: str) -> Query:
    """Parse ``query``, or raise QueryError for anything outside the subset."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError("", "the query is empty")
    stages = _split_pipes(query.strip())
    if stages[0] not in ("Resources", "resources"):
        raise QueryError(stages[0].split(" ")[0], "only the Resources table is served")
    contains: list[str] = []
    types: list[str] = []
    columns: tuple[str, ...] = COLUMNS
    descending = False
    seen: set[str] = set()
    for stage in stages[1:]:
        operator = stage.split(None, 1)[0] if stage else ""
        if operator in seen or operator not in ("where", "project", "order"):
            raise QueryError(operator, f"the operator {operator!r} is not in the emulator's subset (or repeated)")
        seen.add(operator)
        body = stage[len(operator) :].strip()
        if operator == "where":
            for predicate in _split_or(body):
                match = _PREDICATE.match(predicate)
                if match is None:
                    raise QueryError(predicate[:40], f"the predicate {predicate!r} is not in the emulator's subset")
                if match["text"] is not None:
                    contains.append(_literal(match["text"]))
                else:
                    types.append(_literal(match["type"]))
        elif operator == "project":
            names = tuple(c.strip() for c in body.split(","))
            unknown = [c for c in names if c not in COLUMNS]
            if not names or unknown:
                raise QueryError(unknown[0] if unknown else "project", f"unknown columns {unknown}")
            columns = names
        else:
            order = _ORDER.match(stage)
            if order is None:
                raise QueryError(stage[:40], "only 'order by id [asc|desc]' is served")
            descending = order["dir"] == "desc"
    if "where" not in seen:
        raise QueryError("Resources", "a query without 'where' would list everything: not in the emulator's subset")
    return Query(tuple(contains), tuple(types), columns, descending)


def graph_error(status: int, code: str, details: list[dict[str, Any]]) -> errors.ArmError:
    """Resource Graph's error body: a support line as the message, the reasons in ``details``."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    message = f"Please provide below info when asking for support: timestamp = {now}, correlationId = {uuid.uuid4()}."
    return errors.ArmError(status, code, message, details=details)


def invalid_query(error: QueryError) -> errors.ArmError:
    return graph_error(
        400,
        "BadRequest",
        [
            {
                "code": "InvalidQuery",
                "message": "Query is invalid. Please refer to the documentation for the Azure Resource Graph "
                "service and fix the error before retrying.",
            },
            {
                "code": "InvalidQueryLanguage",
                "message": f"InvalidQueryLanguage: {error.reason} (docs/emulators/arm.md lists the emulator's subset)",
                "line": -1,
                "characterPositionInLine": -1,
                "token": error.token,
            },
        ],
    )


def rendered(provider: ResourceProvider) -> Renderer:
    """A provider's resources as ARM renders them, each brought up to date with the clock first."""

    async def render_all() -> list[dict[str, Any]]:
        found = []
        for _, resource in sorted(provider.resources().items()):
            await provider.refresh(resource)
            found.append(provider.render(resource))
        return found

    return render_all


def row_of(resource: dict[str, Any]) -> dict[str, Any]:
    """A rendered ARM resource as a Resources-table row."""
    parts = resource["id"].split("/")
    return {
        "id": resource["id"],
        "name": resource.get("name", parts[-1]),
        "type": str(resource.get("type", "")).lower(),
        "tenantId": LOCAL_TENANT_ID,
        "kind": resource.get("kind", ""),
        "location": str(resource.get("location", "")).replace(" ", "").lower(),
        "resourceGroup": parts[4].lower() if len(parts) > 4 else "",
        "subscriptionId": parts[2] if len(parts) > 2 else "",
        "managedBy": resource.get("managedBy", ""),
        "sku": resource.get("sku"),
        "plan": resource.get("plan"),
        "properties": resource.get("properties") or {},
        "tags": resource.get("tags") or {},
        "identity": resource.get("identity"),
        "zones": resource.get("zones"),
        "extendedLocation": resource.get("extendedLocation"),
    }


class ResourceGraph:
    """Answers queries over the rows the ``sources`` render."""

    def __init__(self, emulator: Emulator, sources: Sequence[Renderer]) -> None:
        self.emulator = emulator
        self.sources = sources
        self.windows: dict[str, tuple[float, int]] = {}

    def _quota(self, principal: str) -> dict[str, str]:
        """Count one query against the caller's quota; the quota headers, or 429 RateLimiting."""
        settings = self.emulator.state.graph_quota
        limit, window = int(settings["queries"]), float(settings["window_s"])
        now = time.monotonic()
        started, used = self.windows.get(principal.lower(), (now, 0))
        if now - started >= window:
            started, used = now, 0
        resets = max(0.0, window - (now - started))
        headers = {"x-ms-user-quota-resets-after": _hms(resets)}
        if used >= limit:
            headers["x-ms-user-quota-remaining"] = "0"
            error = graph_error(
                429,
                "RateLimiting",
                [
                    {
                        "code": "RateLimiting",
                        "message": "Client application has been throttled and should not attempt to repeat the "
                        "request until an amount of time has elapsed. Please see "
                        "https://aka.ms/resourcegraph-throttling for help.",
                    }
                ],
            )
            error.headers.update(headers)
            self.emulator.store.count("ResourceGraph_Throttled")
            raise error
        self.windows[principal.lower()] = (started, used + 1)
        headers["x-ms-user-quota-remaining"] = str(limit - used - 1)
        return headers

    async def resources(self, call: Call) -> Response:
        headers = self._quota(call.principal)
        body = call.json()
        subscriptions = body.get("subscriptions")
        if body.get("managementGroups"):
            raise invalid_query(QueryError("managementGroups", "management-group scopes are not served"))
        if subscriptions is not None and (
            not isinstance(subscriptions, list) or not all(isinstance(s, str) for s in subscriptions)
        ):
            raise errors.invalid_request_content(
                "Error converting value to type 'List`1[String]'. Path 'subscriptions'"
            )
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise errors.invalid_request_content("Error converting value to type 'QueryRequestOptions'. Path 'options'")
        if options.get("resultFormat", "objectArray") != "objectArray":
            raise invalid_query(QueryError("resultFormat", "only resultFormat 'objectArray' is served"))
        try:
            query = parse(body.get("query", ""))
        except QueryError as error:
            raise invalid_query(error) from None
        top = _bounded_int(options.get("$top", DEFAULT_TOP), "$top", 1, MAX_TOP)
        start = _bounded_int(options.get("$skip", 0), "$skip", 0, 10**9)
        fingerprint = hashlib.sha256(json.dumps([body.get("query"), subscriptions]).encode()).hexdigest()[:16]
        if options.get("$skipToken"):
            start = _token_offset(str(options["$skipToken"]), fingerprint)
        rows = await self._rows(call.principal, subscriptions)
        matched = sorted((r for r in rows if query.matches(r)), key=lambda r: r["id"].lower(), reverse=query.descending)
        page = [{c: r[c] for c in query.columns} for r in matched[start : start + top]]
        more = start + top < len(matched)
        answer: dict[str, Any] = {
            "totalRecords": len(matched),
            "count": len(page),
            # Paging needs the id column; without it the answer is cut short and says so.
            "resultTruncated": "true" if more and "id" not in query.columns else "false",
            "data": page,
            "facets": [],
        }
        if more and "id" in query.columns:
            answer["$skipToken"] = _token(start + top, fingerprint)
        return arm_json(answer, headers=headers)

    async def _rows(self, principal: str, subscriptions: list[str] | None) -> list[dict[str, Any]]:
        wanted = {s.lower() for s in subscriptions} if subscriptions is not None else None
        assignments = self.emulator.state.role_assignments
        rows = []
        for source in self.sources:
            for resource in await source():
                row = row_of(resource)
                if wanted is not None and row["subscriptionId"].lower() not in wanted:
                    continue
                if not is_allowed(assignments, principal, f"{resource.get('type', '')}/read", row["id"]):
                    continue
                rows.append(row)
        return rows


def _hms(seconds: float) -> str:
    whole = math.ceil(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _bounded_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise errors.ArmError(400, "BadRequest", f"The option '{name}' must be an integer from {low} to {high}.")
    return value


def _token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": fingerprint}).encode()).decode()


def _token_offset(token: str, fingerprint: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(decoded["o"])
        same = decoded["q"] == fingerprint
    except (ValueError, KeyError, TypeError):
        same, offset = False, 0
    if not same or offset < 0:
        raise errors.ArmError(400, "BadRequest", "The $skipToken is not valid for this query.")
    return offset
