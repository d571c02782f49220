"""ARM long-running operations polled one request at a time, from a URL the journal kept.

azure-core's ``LROPoller`` polls an operation to its end inside one process; its continuation token,
the way to resume it elsewhere, is a pickle, and a pickle read back from storage is code to run. So
an operation that must outlive an invocation is kept as its polling URL and ``Retry-After``
(``rotation.domain.operations.Operation``) and polled here with the ARM asynchronous-operation
contract that ``azure.mgmt.core.polling.arm_polling.ARMPolling`` implements (azure-resource-manager-rpc
``v1.0/async-api-reference.md``):

- ``Azure-AsyncOperation``: the operation resource answers 200 with ``status``; ``Succeeded`` ends it,
  ``Failed`` and ``Canceled`` end it badly (raised as ``HttpResponseError`` for the caller to translate,
  as ``LROPoller.result()`` would), anything else is still running.
- ``Location``: 202 while running; any other 2xx (200 with or without the resource, 201, 204) ends it.
- 404 on either: the operation record is gone (ARM keeps them for a limited time): ``gone``.

The URL is checked against the settings by the caller before it is polled (``polling_url_problem``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.rest import HttpRequest, HttpResponse

from rotation.domain.operations import Operation, OperationPoll, poll_interval

Response = PipelineResponse[HttpRequest, HttpResponse]

_TERMINAL_FAILURES = ("failed", "canceled", "cancelled")


def accepted_operation(response: HttpResponse, default_interval: float) -> Operation | None:
    """The operation an answer to a PATCH/PUT points at, or None when the answer is already final.

    ``Azure-AsyncOperation`` wins over ``Location`` (as ``ARMPolling``); a ``Location`` counts on a 201 or
    202 only (a 200 with a Location is final).
    """
    headers = response.headers
    retry = poll_interval(headers.get("Retry-After"), default_interval)
    async_url = headers.get("Azure-AsyncOperation")
    if async_url and response.status_code in (200, 201, 202):
        return Operation(async_url, "Azure-AsyncOperation", retry)
    location = headers.get("Location")
    if location and response.status_code in (201, 202):
        return Operation(location, "Location", retry)
    return None


def poll_once(run: Callable[[HttpRequest], Response], operation: Operation, default_interval: float) -> OperationPoll:
    """One GET of ``operation``'s URL, read by the ARM contract.

    Raises:
        HttpResponseError: the operation ended ``Failed``/``Canceled``, or the poll was answered with an
            error other than 404 (the caller translates it, as it translates ``LROPoller.result()``).
        AzureError: the request itself failed (connection, retries exhausted).
    """
    response = run(HttpRequest("GET", operation.url, headers={"Accept": "application/json"})).http_response
    retry = poll_interval(response.headers.get("Retry-After"), default_interval)
    if response.status_code == 404:
        return OperationPoll("gone", retry)
    if not 200 <= response.status_code < 300:
        raise HttpResponseError(response=response)
    if operation.header == "Location":
        return OperationPoll("running" if response.status_code == 202 else "done", retry)
    status = _status(response)
    if status == "succeeded":
        return OperationPoll("done", retry)
    if status in _TERMINAL_FAILURES:
        raise HttpResponseError(message=f"the operation ended {status}", response=response)
    if status is None:
        raise HttpResponseError(message="the operation resource has no status", response=response)
    return OperationPoll("running", retry)


def _status(response: HttpResponse) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    status = body.get("status") if isinstance(body, dict) else None
    return status.lower() if isinstance(status, str) and status else None
