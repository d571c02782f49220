"""ARM requests over azure-mgmt-core's pipeline, for the adapters that need no mgmt SDK.

The container-registry, disk-encryption-set and Resource Graph adapters speak the same wire shapes
as azure-mgmt-containerregistry, azure-mgmt-compute and azure-mgmt-resourcegraph (the integration
tests drive the emulator with those SDKs and compare), without shipping them
(docs/decisions/0004-estate-adapters-on-azure-mgmt-core.md). What they need from azure-core is here:
ARM challenge authentication, the transport retry policy, pacing from ARM's rate-limit headers
(``arm_pacing``), ``ARMPolling`` for long-running
operations, and translation of every azure-core error into :mod:`rotation.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import ContentDecodePolicy, RequestIdPolicy, RetryPolicy, UserAgentPolicy
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy
from azure.mgmt.core.polling.arm_polling import ARMPolling

from rotation.adapters.arm_common import arm_scope
from rotation.adapters.arm_operations import accepted_operation, poll_once
from rotation.adapters.arm_pacing import ArmPacer, ArmPacingPolicy, shared_pacer
from rotation.adapters.azure_errors import translate
from rotation.domain.operations import Operation, OperationPoll
from rotation.errors import TransientError
from rotation.retry import TRANSPORT_RETRY

T = TypeVar("T")
Response = PipelineResponse[HttpRequest, HttpResponse]


@dataclass(frozen=True)
class ArmWrite:
    """A write to one resource: the request, and how errors name it (``what``, the ``action`` it needs)."""

    method: str
    path: str
    api_version: str
    body: Any
    what: str
    action: str


class ArmRest:
    """One ARM endpoint: JSON reads, writes and long-running operations, errors already translated."""

    def __init__(
        self,
        arm_endpoint: str,
        credential: TokenCredential,
        transport_kwargs: dict[str, Any],
        *,
        polling_interval: float = 5.0,
        pacer: ArmPacer | None = None,
    ) -> None:
        """
        Args:
            transport_kwargs: passed to the pipeline and transport (``connection_verify``, ``transport``, ...).
            polling_interval: seconds between LRO polls when ARM sends no ``Retry-After``.
            pacer: paces requests from ARM's rate-limit headers (default: the process-wide one).
        """
        self.endpoint = arm_endpoint.rstrip("/")
        self._polling_interval = polling_interval
        kwargs = {**TRANSPORT_RETRY, **transport_kwargs}
        self._client: ARMPipelineClient[HttpRequest, HttpResponse] = ARMPipelineClient(
            base_url=self.endpoint,
            per_call_policies=[],
            policies=[
                RequestIdPolicy(**kwargs),
                UserAgentPolicy(sdk_moniker="cmk-rotation/1.0", **kwargs),
                ContentDecodePolicy(**kwargs),
                RetryPolicy(**kwargs),
                ArmPacingPolicy(pacer or shared_pacer()),
                ARMChallengeAuthenticationPolicy(credential, arm_scope(arm_endpoint)),
                ARMHttpLoggingPolicy(**kwargs),
            ],
            **transport_kwargs,
        )

    def url(self, path: str, api_version: str) -> str:
        return f"{self.endpoint}{path}?api-version={api_version}"

    def send(self, method: str, url: str, what: str, action: str, body: Any = None) -> Response:
        """One request; a non-2xx answer or any azure-core error raised as its rotation error."""
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body)
        try:
            response: Response = self._client._pipeline.run(HttpRequest(method, url, headers=headers, content=content))
        except AzureError as exc:
            raise translate(exc, what, action, non_error_status_transient=True) from None
        if not 200 <= response.http_response.status_code < 300:
            raise translate(HttpResponseError(response=response.http_response), what, action)
        return response

    def get(self, path: str, api_version: str, what: str, action: str) -> dict[str, Any]:
        return json_object(self.send("GET", self.url(path, api_version), what, action).http_response)

    def long_running(self, write: ArmWrite, result: Callable[[dict[str, Any]], T]) -> T:
        """Send a long-running write and poll it to the end with ``ARMPolling`` (Location or Azure-AsyncOperation).

        For PUT and PATCH the final resource is read from the resource's own URL, as azure-core does.
        """
        initial = self._send_write(write)

        def deserialize(pipeline_response: Response) -> T:
            return result(json_object(pipeline_response.http_response))

        poller: LROPoller[T] = LROPoller(self._client, initial, deserialize, ARMPolling(self._polling_interval))
        try:
            return poller.result()
        except AzureError as exc:
            raise translate(exc, f"poll: {write.what}", write.action, non_error_status_transient=True) from None

    def begin(self, write: ArmWrite) -> Operation | None:
        """Send a write; the long-running operation ARM accepted (polling URL, ``Retry-After``), or None when
        its answer is final. Nothing is polled here (``poll``): the caller journals the operation first."""
        return accepted_operation(self._send_write(write).http_response, self._polling_interval)

    def _send_write(self, write: ArmWrite) -> Response:
        return self.send(write.method, self.url(write.path, write.api_version), write.what, write.action, write.body)

    def poll(self, operation: Operation, *, what: str, action: str) -> OperationPoll:
        """One poll of an accepted operation (the caller has checked its URL), errors translated as
        ``long_running`` translates them. Safe to repeat."""
        try:
            return poll_once(self._client._pipeline.run, operation, self._polling_interval)
        except AzureError as exc:
            raise translate(exc, f"poll: {what}", action, non_error_status_transient=True) from None


class ArmRestAdapter:
    """An adapter whose every call goes through one ``ArmRest``."""

    def __init__(self, rest: ArmRest) -> None:
        self._rest = rest

    @classmethod
    def connect(
        cls, arm_endpoint: str, credential: TokenCredential, transport_kwargs: dict[str, Any], **options: Any
    ) -> Self:
        return cls(ArmRest(arm_endpoint, credential, transport_kwargs, **options))


def json_object(response: HttpResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise TransientError(f"ARM answered {response.status_code} with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise TransientError("ARM answered with JSON that is not an object")
    return body
