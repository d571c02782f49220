"""ARM long-running operations that outlive an invocation: what the journal keeps of one, and the check
every journalled polling URL passes before a token is sent to it. Pure: no I/O.

When ARM accepts a PATCH as a long-running operation it answers 201/202 with where to poll
(``Azure-AsyncOperation``, else ``Location``) and ``Retry-After``. The journal keeps exactly that
(``Operation``) beside the consumer's intent, never azure-core's continuation token (a pickle: read
back from storage it would be code to run). A later invocation rebuilds polling from the URL, after
``polling_url_problem`` has checked it against the settings: the journal is input, and a URL that
points anywhere else must never receive the service's ARM token.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

#: Bounds on the wait between polls, whatever ``Retry-After`` says (a hostile or absent header).
MIN_POLL_INTERVAL_S = 1.0
MAX_POLL_INTERVAL_S = 300.0
#: The longest wait between reads of a resource whose operation's polling URL was lost: the interval the ARM
#: RPC has clients wait when an operation gives no ``Retry-After`` (async-api-reference.md, 60 s).
MAX_READ_BACK_INTERVAL_S = 60.0
#: ``provisioningState`` values that end an operation (ARM RPC v1.0 async-api-reference.md, "ProvisioningState
#: property": only these three are terminal; any other value means an operation is still running, and a
#: resource that reports none counts as ``Succeeded``).
TERMINAL_PROVISIONING_STATES = ("succeeded", "failed", "canceled")

_RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/(?P<ns>[^/]+)/[^/]+/[^/]+$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Operation:
    """An accepted long-running write: the URL to poll and the interval ARM asked for.

    ``header`` is the header the URL came from (``Azure-AsyncOperation`` or ``Location``): it decides how
    a poll's answer is read. Never a token, never a pickled poller.
    """

    url: str
    header: Literal["Azure-AsyncOperation", "Location"]
    retry_after_s: float = MIN_POLL_INTERVAL_S
    accepted_at: datetime | None = None


@dataclass(frozen=True)
class OperationPoll:
    """One poll's answer: still running (poll again after ``retry_after_s``), done, or gone.

    ``gone``: the operation record no longer exists (404: ARM keeps them for a limited time); the caller
    reads the resource back and judges from its state.
    """

    status: Literal["running", "done", "gone"]
    retry_after_s: float = MIN_POLL_INTERVAL_S


class OperationPending(Exception):
    """A consumer's operation is still running at the invocation's budget: its intent and polling URL stay
    journalled and a later invocation polls on (``rotation.service.executor``). Not a ``RotationError``:
    nothing failed, so nothing catches it as a failure, and no retry sends the write again."""

    def __init__(self, target: str, retry_after_s: float) -> None:
        super().__init__(f"operation on {target} still running")
        self.target = target
        self.retry_after_s = retry_after_s


def provisioning_ended(state: str | None) -> bool:
    """Whether a resource's ``provisioningState`` is terminal: no operation on it is still running."""
    return not state or state.lower() in TERMINAL_PROVISIONING_STATES


def provisioning_succeeded(state: str | None) -> bool:
    """Whether a resource's ``provisioningState`` says its last operation ended ``Succeeded`` (absent: yes)."""
    return not state or state.lower() == "succeeded"


def poll_interval(retry_after: str | float | None, default: float = MIN_POLL_INTERVAL_S) -> float:
    """Seconds to wait before the next poll: ``Retry-After`` (seconds) within the bounds, else ``default``."""
    try:
        value = float(retry_after) if retry_after is not None else default
    except ValueError:
        value = default
    if math.isnan(value):
        value = default
    return min(max(value, MIN_POLL_INTERVAL_S), MAX_POLL_INTERVAL_S)


def polling_url_problem(url: object, arm_endpoint: str, resource_id: str) -> str | None:
    """Why ``url`` must not be polled for ``resource_id``'s operation (log-safe), or None when it may be.

    It must be https, on the configured ARM endpoint's host and port, with no user info or fragment,
    and its path under the resource's own subscription and provider: either below the resource's
    resource group and provider (``.../providers/Microsoft.ContainerRegistry/registries/r/operationStatuses/x``)
    or one of the provider's operation-status paths (``/subscriptions/{sub}/providers/{namespace}/locations/...``
    or ``.../operations/...``). Checked when ARM answers and again when the journal is read back.
    """
    if not isinstance(url, str) or not url or len(url) > 4096:
        return "the polling URL is missing or not text"
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        return "the polling URL contains whitespace or control characters"
    resource = _RESOURCE.match(resource_id.rstrip("/"))
    if resource is None:
        return f"{resource_id[:200]!r} is not an ARM resource id"
    try:
        parts = urlsplit(url)
        port = parts.port
        expected = urlsplit(arm_endpoint)
        expected_port = expected.port
    except ValueError:
        return "the polling URL does not parse"
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        return f"the polling URL is not https (scheme {parts.scheme[:20]!r})"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "the polling URL carries user info"
    if host != (expected.hostname or "").lower() or (port or 443) != (expected_port or 443):
        return f"the polling URL's host {host[:100]!r} is not the configured ARM endpoint's"
    if parts.fragment:
        return "the polling URL has a fragment"
    segments = parts.path.split("/")
    if any(s in (".", "..") or "%" in s for s in segments):
        return "the polling URL's path has dot or encoded segments"
    path = parts.path.lower().rstrip("/")
    sub, rg, namespace = (resource["sub"].lower(), resource["rg"].lower(), resource["ns"].lower())
    own_group = f"/subscriptions/{sub}/resourcegroups/{rg}/providers/{namespace}/"
    provider_status = (
        f"/subscriptions/{sub}/providers/{namespace}/locations/",
        f"/subscriptions/{sub}/providers/{namespace}/operations/",
    )
    if path.startswith(own_group) or path.startswith(provider_status):
        return None
    return f"the polling URL's path is not under {namespace} in subscription {sub}"
