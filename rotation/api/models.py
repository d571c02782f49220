"""Request and response bodies of the HTTP API, as pydantic models (they also write the OpenAPI document).

Requests are strict: unknown fields, wrong types and oversized strings are refused with 400 and the
reason. Response models document what the service views' ``to_dict()`` return; extra fields are
allowed so the service may add to them without breaking the contract.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_KEY_URI_CHARS = 2048
MAX_REASON_CHARS = 500
ROTATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def key_uri_field() -> Any:
    """The body field naming a managed key (a fresh ``Field`` per model)."""
    return Field(
        min_length=1,
        max_length=MAX_KEY_URI_CHARS,
        description="Versionless key URI of a managed key, e.g. https://myvault.vault.azure.net/keys/aml-cmk",
        examples=["https://myvault.vault.azure.net/keys/aml-cmk"],
    )


class StartRotation(BaseModel):
    """Start a rotation of one managed key."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = key_uri_field()
    reason: str = Field(default="", max_length=MAX_REASON_CHARS, description="Why; recorded in the audit trail")
    dry_run: bool = Field(default=False, description="Plan and verify everything but change nothing")


class RetryRotation(BaseModel):
    """Retry a stopped rotation now (a new attempt adopting its version), or resume a running one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(default="", max_length=MAX_REASON_CHARS, description="Why; recorded in the audit trail")


class AbandonRotation(BaseModel):
    """Stop a rotation and release its key; consumers stay where they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS, description="Why; recorded in the audit trail")


class UnretireVersion(BaseModel):
    """Re-enable a key version this service retired (emergency)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = key_uri_field()
    version: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$", description="The retired version to re-enable"
    )
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS, description="Why; recorded in the audit trail")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code from the service's error tree")
    message: str
    request_id: str | None = Field(default=None, description="Correlates with the service's logs")
    rotation_id: str | None = Field(default=None, description="For RotationInProgress: the rotation holding the key")


class ErrorBody(BaseModel):
    error: ErrorDetail


class StepOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    status: str


class RotationOut(BaseModel):
    """A rotation's state: status, versions, steps, what happened to each consumer."""

    model_config = ConfigDict(extra="allow")

    rotation_id: str
    key_uri: str
    status: str
    stage: str | None = None
    old_version: str | None = None
    new_version: str | None = None
    trigger: dict[str, Any] | None = None
    reason: str | None = None
    dry_run: bool | None = None
    started_at: str | None = None
    updated_at: str | None = None
    retire_after: str | None = None
    steps: list[StepOut] = Field(default_factory=list)
    consumers: list[dict[str, Any]] = Field(default_factory=list)
    rewrap: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempt: int = 1
    retry_of: str | None = None
    waiting_for: str = ""
    on_call: list[str] = Field(default_factory=list)


class RotationAccepted(BaseModel):
    """The rotation was accepted: poll ``status_url`` for its progress."""

    rotation_id: str
    status_url: str
    status: str
    rotation: RotationOut


class RotationList(BaseModel):
    rotations: list[RotationOut]


class PlanOut(BaseModel):
    """What a rotation of the key would do now: versions, consumers and the steps."""

    model_config = ConfigDict(extra="allow")

    key_uri: str


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str
    status: str
    storage: str
    problem: str | None = None
