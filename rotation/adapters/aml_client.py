"""A small typed client for the one thing the service does to Azure ML workspaces: re-point their CMK.

Why not an SDK: azure-mgmt-machinelearningservices 1.0.1 (the newest on PyPI) speaks api-version
2020-08-01, whose update body has no ``encryption``; azure-ai-ml can send it but ships dozens of
packages into the Function. This client reuses azure-mgmt-core (the ARM pipeline, retries,
ARM challenge authentication, ``ARMPolling``) at api-version 2025-06-01 and reads only the few
fields the rotation needs. See docs/decisions/0001-aml-workspace-client.md.

Permissions (Azure RBAC on the workspace or a parent scope):

- ``get_workspace``, ``list_workspaces``: ``Microsoft.MachineLearningServices/workspaces/read``.
- ``update_key_identifier``: ``Microsoft.MachineLearningServices/workspaces/write`` and, to poll,
  ``Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read``.

Every SDK error is translated to :mod:`rotation.errors` here; none escapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import (
    ContentDecodePolicy,
    CustomHookPolicy,
    DistributedTracingPolicy,
    HeadersPolicy,
    NetworkTraceLoggingPolicy,
    ProxyPolicy,
    RedirectPolicy,
    RequestIdPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy
from azure.mgmt.core.polling.arm_polling import ARMPolling

from rotation.adapters.arm_common import arm_scope
from rotation.adapters.arm_operations import accepted_operation, poll_once
from rotation.adapters.arm_pacing import ArmPacer, ArmPacingPolicy, shared_pacer
from rotation.adapters.arm_rest import json_object
from rotation.adapters.azure_errors import (
    error_codes,
    provider_key_vault_unreachable,
    redacted,
    response_body,
    translate,
)
from rotation.domain.operations import Operation, OperationPoll
from rotation.errors import (
    InputError,
    ProviderKeyVaultUnavailable,
    RotationError,
    TransientError,
    VerificationFailed,
)

API_VERSION = "2025-06-01"
READ_ACTION = "Microsoft.MachineLearningServices/workspaces/read"
WRITE_ACTION = "Microsoft.MachineLearningServices/workspaces/write"
POLL_ACTION = "Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read"

#: The ARM actions each method needs (``ArmWorkspaces`` calls nothing else).
ACTIONS: Mapping[str, frozenset[str]] = {
    "get_workspace": frozenset({READ_ACTION}),
    "list_workspaces": frozenset({READ_ACTION}),
    # an update whose last poll carries no workspace is read back (READ_ACTION)
    "update_key_identifier": frozenset({WRITE_ACTION, POLL_ACTION, READ_ACTION}),
    "begin_key_update": frozenset({WRITE_ACTION}),
    "poll_key_update": frozenset({POLL_ACTION}),
}

#: Error codes with which a long-running operation may end ``Failed`` for a reason that may pass (ARM's own
#: transient codes and the RetryableError family ARM documents for 429s); any other failure is permanent.
_TRANSIENT_OPERATION_CODES = frozenset(
    code.lower()
    for code in (
        "InternalServerError",
        "ServiceUnavailable",
        "GatewayTimeout",
        "RequestTimeout",
        "TooManyRequests",
        "RetryableError",
        "RetryableErrorDueToAnotherOperation",
        "AnotherOperationInProgress",
    )
)

_WORKSPACE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WorkspaceEncryption:
    """What the rotation needs to know about one workspace. Encryption fields are "" when it has no CMK."""

    workspace_id: str  # ARM id as returned
    name: str
    location: str
    key_vault_arm_id: str
    key_identifier: str  # versioned or versionless key URI as stored
    identity_client_id: str | None
    status: str  # "Enabled" | "Disabled" ("Disabled" also when the workspace has no encryption block)
    provisioning_state: str
    principal_id: str | None  # system-assigned identity, if any
    user_assigned_identity: str | None = None  # encryption.identity.userAssignedIdentity, if set

    @property
    def has_cmk(self) -> bool:
        return self.status == "Enabled" and bool(self.key_identifier)


class AmlWorkspaceClient:
    """Reads AML workspaces and re-points their customer-managed key, through ARM."""

    def __init__(self, credential: TokenCredential, arm_endpoint: str, **client_kwargs: Any) -> None:
        """
        Args:
            credential: any azure-core ``TokenCredential`` (managed identity in Azure).
            arm_endpoint: ``https://management.azure.com`` or a sovereign/local endpoint.
            client_kwargs: passed to the pipeline and transport, e.g. ``connection_verify=ca_bundle``,
                ``retry_total=0``; plus ``polling_interval`` (seconds between LRO polls when the service
                sends no Retry-After, default 30), ``credential_scopes`` and ``pacer`` (an ``ArmPacer``;
                default the process-wide one).
        """
        self._polling_interval = float(client_kwargs.pop("polling_interval", 30))
        pacer: ArmPacer = client_kwargs.pop("pacer", None) or shared_pacer()
        scopes = client_kwargs.pop("credential_scopes", None) or [arm_scope(arm_endpoint)]
        self._endpoint = arm_endpoint.rstrip("/")
        policies = [
            RequestIdPolicy(**client_kwargs),
            HeadersPolicy(**client_kwargs),
            UserAgentPolicy(sdk_moniker="cmk-rotation-aml/1.0", **client_kwargs),
            ProxyPolicy(**client_kwargs),
            ContentDecodePolicy(**client_kwargs),
            RedirectPolicy(**client_kwargs),
            RetryPolicy(**client_kwargs),
            ArmPacingPolicy(pacer),
            ARMChallengeAuthenticationPolicy(credential, *scopes, **client_kwargs),
            CustomHookPolicy(**client_kwargs),
            NetworkTraceLoggingPolicy(**client_kwargs),
            DistributedTracingPolicy(**client_kwargs),
            ARMHttpLoggingPolicy(**client_kwargs),
        ]
        self._client: ARMPipelineClient[HttpRequest, HttpResponse] = ARMPipelineClient(
            base_url=self._endpoint, policies=policies, **client_kwargs
        )

    def __enter__(self) -> AmlWorkspaceClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- reads ------------------------------------------------------------------------------

    def get_workspace(self, workspace_id: str) -> WorkspaceEncryption:
        """One workspace. Safe to repeat.

        Raises:
            InputError: ``workspace_id`` is not a workspace resource id.
            PreconditionFailed: the workspace (or its group) does not exist, or ARM refused the request.
            PermissionDenied: the caller lacks ``workspaces/read``.
            TransientError: throttled (ThrottledError), 5xx or a connection error.
        """
        _check_workspace_id(workspace_id)
        response = self._send(
            HttpRequest("GET", self._url(workspace_id)), f"read workspace {workspace_id}", READ_ACTION
        )
        return _workspace(json_object(response))

    def list_workspaces(self, subscription_id: str) -> list[WorkspaceEncryption]:
        """Every workspace in a subscription, with or without CMK. Safe to repeat."""
        return list(self._iter_workspaces(subscription_id))

    def _iter_workspaces(self, subscription_id: str) -> Iterator[WorkspaceEncryption]:
        scope = f"/subscriptions/{subscription_id}"
        url: str | None = self._url(f"{scope}/providers/Microsoft.MachineLearningServices/workspaces")
        while url:
            page = json_object(self._send(HttpRequest("GET", url), f"list the workspaces of {scope}", READ_ACTION))
            for item in page.get("value") or []:
                yield _workspace(item)
            url = page.get("nextLink") or None

    # -- the key update ---------------------------------------------------------------------

    def begin_update_key_identifier(self, workspace_id: str, key_identifier: str) -> LROPoller[WorkspaceEncryption]:
        """Send the PATCH and return the poller (call ``.result()`` through :meth:`wait` to keep error translation)."""
        _check_workspace_id(workspace_id)
        _check_key_identifier(key_identifier)
        request = self._key_request(workspace_id, key_identifier)
        initial = self._run(request, f"update workspace {workspace_id}", WRITE_ACTION)
        polling = ARMPolling(self._polling_interval)
        return LROPoller(self._client, initial, _deserialize, polling)

    def begin_key_update(self, workspace_id: str, key_identifier: str) -> Operation | None:
        """Send the PATCH; the long-running operation ARM accepted (its polling URL and ``Retry-After``), or
        None when ARM answered with the final workspace. Nothing is polled here: see :meth:`poll_key_update`.

        Not safe to repeat while its operation runs (a second PATCH is a second operation). Raises as
        :meth:`update_key_identifier` does for the PATCH itself.
        """
        _check_workspace_id(workspace_id)
        _check_key_identifier(key_identifier)
        initial = self._run(
            self._key_request(workspace_id, key_identifier), f"update workspace {workspace_id}", WRITE_ACTION
        )
        return accepted_operation(initial.http_response, self._polling_interval)

    def poll_key_update(self, workspace_id: str, operation: Operation) -> OperationPoll:
        """One poll of an accepted key update (the caller has checked ``operation.url``). Safe to repeat.

        Raises:
            VerificationFailed: the operation ended ``Failed`` (the workspace normally keeps its key).
            ProviderKeyVaultUnavailable: ML could not reach Key Vault to check the key (may pass).
            TransientError: ended ``Canceled`` or failed with a transient code; throttled, 5xx, connection.
            PermissionDenied: the caller lacks the operation-status read.
        """
        what = f"update workspace {workspace_id}"

        def run(request: HttpRequest) -> PipelineResponse[HttpRequest, HttpResponse]:
            return self._client._pipeline.run(request)

        try:
            return poll_once(run, operation, self._polling_interval)
        except HttpResponseError as exc:
            raise _operation_failure(exc, what) from None
        except AzureError as exc:
            raise _translate(exc, f"poll the update of workspace {workspace_id}", POLL_ACTION) from None

    def update_key_identifier(self, workspace_id: str, key_identifier: str) -> WorkspaceEncryption:
        """PATCH ``properties.encryption.keyVaultProperties.keyIdentifier`` and poll the LRO to completion.

        Safe to repeat: setting the same key identifier again is a no-op change.

        Raises:
            InputError: malformed workspace id or key identifier.
            PreconditionFailed: ARM refused the change (400/409: e.g. a key outside the workspace's
                original vault, a key the workspace identity cannot use); the ARM code is in the message.
            PermissionDenied: the caller lacks ``workspaces/write`` (or the poll's read).
            VerificationFailed: the operation was accepted and ended ``Failed`` (the workspace normally keeps its key).
            ProviderKeyVaultUnavailable: ML could not reach Key Vault to check the key (may pass).
            TransientError: throttled (ThrottledError), 5xx, a connection error, or the operation ended
                ``Canceled`` or failed with a transient code.
        """
        poller = self.begin_update_key_identifier(workspace_id, key_identifier)
        return self.wait(poller, workspace_id)

    def wait(self, poller: LROPoller[WorkspaceEncryption], workspace_id: str) -> WorkspaceEncryption:
        """The poller's result, with errors raised while polling translated to :mod:`rotation.errors`.

        A poll that ends in 204 or an empty 200 (Location polling) has no workspace in it: the workspace is
        then read back with a GET.
        """
        what = f"update workspace {workspace_id}"
        try:
            result: WorkspaceEncryption | None = poller.result()
        except HttpResponseError as exc:
            raise _operation_failure(exc, what) from None
        except AzureError as exc:
            raise _translate(exc, f"poll the update of workspace {workspace_id}", POLL_ACTION) from None
        if result is None:
            return self.get_workspace(workspace_id)
        return result

    # -- plumbing ---------------------------------------------------------------------------

    def _key_request(self, workspace_id: str, key_identifier: str) -> HttpRequest:
        body = {"properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": key_identifier}}}}
        return HttpRequest(
            "PATCH",
            self._url(workspace_id),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            content=json.dumps(body),
        )

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        return f"{self._endpoint}{path_or_url}?api-version={API_VERSION}"

    def _run(self, request: HttpRequest, what: str, action: str) -> PipelineResponse[HttpRequest, HttpResponse]:
        try:
            pipeline_response: PipelineResponse[HttpRequest, HttpResponse] = self._client._pipeline.run(request)
        except AzureError as exc:
            raise _translate(exc, what, action) from None
        response = pipeline_response.http_response
        if response.status_code not in (200, 201, 202, 204):
            raise _translate(HttpResponseError(response=response), what, action)
        return pipeline_response

    def _send(self, request: HttpRequest, what: str, action: str) -> HttpResponse:
        response = self._run(request, what, action).http_response
        if response.status_code != 200:
            raise TransientError(f"could not {what}: ARM answered {response.status_code}")
        return response


def _check_workspace_id(workspace_id: str) -> None:
    if not _WORKSPACE_ID.match(workspace_id):
        raise InputError(
            f"{workspace_id!r} is not an ML workspace id (/subscriptions/<id>/resourceGroups/<group>/providers/"
            "Microsoft.MachineLearningServices/workspaces/<name>)"
        )


def _check_key_identifier(key_identifier: str) -> None:
    parts = urlsplit(key_identifier)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "https" or not parts.hostname or len(segments) not in (2, 3) or segments[0] != "keys":
        raise InputError(
            f"{key_identifier!r} is not a Key Vault key identifier (https://<vault>/keys/<name>[/<version>])"
        )


def _deserialize(pipeline_response: PipelineResponse[HttpRequest, HttpResponse]) -> WorkspaceEncryption:
    return _workspace(json_object(pipeline_response.http_response))


def _workspace(body: dict[str, Any]) -> WorkspaceEncryption:
    properties = body.get("properties") or {}
    encryption = properties.get("encryption") or {}
    key_vault = encryption.get("keyVaultProperties") or {}
    identity = body.get("identity") or {}
    return WorkspaceEncryption(
        workspace_id=str(body.get("id", "")),
        name=str(body.get("name", "")),
        location=str(body.get("location", "")),
        key_vault_arm_id=str(key_vault.get("keyVaultArmId") or ""),
        key_identifier=str(key_vault.get("keyIdentifier") or ""),
        identity_client_id=key_vault.get("identityClientId") or None,
        status=str(encryption.get("status") or "Disabled"),
        provisioning_state=str(properties.get("provisioningState") or "Succeeded"),
        principal_id=identity.get("principalId") or None,
        user_assigned_identity=(encryption.get("identity") or {}).get("userAssignedIdentity") or None,
    )


def _operation_failure(exc: HttpResponseError, what: str) -> RotationError:
    """How an update's long-running operation ended badly, as a rotation error.

    An operation resource that says ``Failed`` (HTTP 200, ARM async contract) is permanent unless its
    error says otherwise; ``Canceled`` changed nothing and may be repeated; any other failure while
    polling (a 4xx/5xx poll, a body without a status) is translated like any response.
    """
    body = response_body(exc)
    status = str(body.get("status", "")).lower() if isinstance(body, dict) else ""
    if (exc.status_code or 0) >= 300 or status not in ("failed", "canceled"):
        return _translate(exc, f"poll the {what}", POLL_ACTION)
    if status == "canceled":
        return TransientError(f"could not {what}: the operation was canceled; the workspace is unchanged")
    codes = error_codes(body)
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    detail = f"{'/'.join(codes) or 'no error code'}: {redacted(str(error.get('message') or ''))}"
    if provider_key_vault_unreachable(codes):
        return ProviderKeyVaultUnavailable(f"could not {what}: ML could not reach Key Vault ({detail})")
    if any(code.lower() in _TRANSIENT_OPERATION_CODES for code in codes):
        return TransientError(f"could not {what}: the operation failed ({detail})")
    # ARM normally reverts a failed update (RPC: "should", where that best represents the end state): the
    # roll-back reads the workspace first and writes only if it moved.
    return VerificationFailed(f"could not {what}: the operation failed ({detail})")


def _translate(exc: AzureError, what: str, action: str) -> RotationError:
    """An azure-core error as a rotation error; ARM's refusal of a key stays PreconditionFailed here
    (``ArmWorkspaces`` decides what it means, looking for "key" in the message: ``what`` must not name one),
    and a failure on a non-error status is transient."""
    return translate(exc, what, action, refused_key_fails_verification=False, non_error_status_transient=True)
