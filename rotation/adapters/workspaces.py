"""The ``Workspaces`` port over the team's ``AmlWorkspaceClient`` (azure-mgmt-core, api-version 2025-06-01).

Permissions: ``Microsoft.MachineLearningServices/workspaces/read`` and ``.../write`` (plus the
operation-status read to poll the long-running PATCH). ARM's refusal of a key the workspace cannot
use (400), or an update whose operation ends ``Failed``, is reported as ``VerificationFailed``: the
workspace stays on the key it had. ML failing to reach Key Vault itself is ``ProviderKeyVaultUnavailable``
(may pass); a ``Canceled`` operation is ``TransientError``. Requests are paced from ARM's rate-limit
headers (``arm_pacing``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential

from rotation.adapters.aml_client import AmlWorkspaceClient, WorkspaceEncryption
from rotation.adapters.arm_pacing import ArmPacer
from rotation.adapters.http_session import direct_session_kwargs, pool_for
from rotation.domain.model import WorkspaceKey
from rotation.domain.operations import Operation, OperationPoll
from rotation.errors import PermissionDenied, PreconditionFailed, VerificationFailed
from rotation.retry import TRANSPORT_RETRY

T = TypeVar("T")


def _workspace(found: WorkspaceEncryption) -> WorkspaceKey:
    return WorkspaceKey(
        workspace_id=found.workspace_id,
        name=found.name,
        key_vault_arm_id=found.key_vault_arm_id,
        key_identifier=found.key_identifier,
        identity_principal_id=found.principal_id,
        identity_client_id=found.identity_client_id,
        provisioning_state=found.provisioning_state,
    )


class ArmWorkspaces:
    """Implements ``rotation.ports.Workspaces``."""

    def __init__(
        self,
        arm_endpoint: str,
        credential: TokenCredential,
        transport_kwargs: dict[str, Any],
        *,
        polling_interval: float = 5.0,
        pacer: ArmPacer | None = None,
        callers: int = 1,
    ) -> None:
        """``callers``: threads that may call at once (a re-point step's bound): the client keeps that many
        connections (``pool_for``), so none opens and discards a TLS connection per request."""
        self._client = AmlWorkspaceClient(
            credential,
            arm_endpoint,
            polling_interval=polling_interval,
            pacer=pacer,
            **direct_session_kwargs({**TRANSPORT_RETRY, **transport_kwargs}, pool_for(callers)),
        )
        self._lock = threading.Lock()

    def list_workspaces(self, subscription_id: str) -> list[WorkspaceKey]:
        return [_workspace(w) for w in self._client.list_workspaces(subscription_id) if w.has_cmk]

    def get_workspace(self, workspace_id: str) -> WorkspaceKey:
        return _workspace(self._client.get_workspace(workspace_id))

    def set_key_identifier(self, workspace_id: str, key_identifier: str) -> WorkspaceKey:
        return _workspace(_key_refusal(lambda: self._client.update_key_identifier(workspace_id, key_identifier)))

    def begin_key_identifier(self, workspace_id: str, key_identifier: str) -> Operation | None:
        return _key_refusal(lambda: self._client.begin_key_update(workspace_id, key_identifier))

    def poll_key_update(self, workspace_id: str, operation: Operation) -> OperationPoll:
        return self._client.poll_key_update(workspace_id, operation)


def _key_refusal(call: Callable[[], T]) -> T:
    """``call()``; ARM's refusal of a key the workspace cannot use (a 400 naming the key) is ``VerificationFailed``."""
    try:
        return call()
    except PermissionDenied:
        raise
    except PreconditionFailed as exc:
        if "(400" in exc.message and "key" in exc.message.lower():
            raise VerificationFailed(exc.message) from None
        raise
