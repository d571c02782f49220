"""ARM error shapes: ``{"error": {"code", "message", "target"?, "details"?}}`` with the real codes.

Every failure the emulator reports is an :class:`ArmError`; the app turns it into the response.
Codes and message forms follow what Azure Resource Manager and the resource providers return
(see docs/emulators/arm.md for which strings are verbatim captures and which are best effort).
"""

from __future__ import annotations

from typing import Any


class ArmError(Exception):
    """An ARM error response: HTTP status, code, message and optional extras."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        inner: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        self.headers = headers or {}
        self.inner = inner

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details is not None:
            error["details"] = self.details
        if self.inner is not None:
            error["innerError"] = self.inner
        return {"error": error}


def resource_not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def resource_group_not_found(resource_group: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")


def subscription_not_found(subscription_id: str) -> ArmError:
    return ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found.")


def missing_api_version() -> ArmError:
    return ArmError(
        400,
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )


def invalid_api_version(api_version: str, supported: list[str]) -> ArmError:
    return ArmError(
        400,
        "InvalidApiVersionParameter",
        f"The api-version '{api_version}' is invalid. The supported versions are '{','.join(supported)}'.",
    )


def no_registered_provider(api_version: str, resource_type: str, supported: list[str], location: str) -> ArmError:
    return ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{location}' and API version '{api_version}' for "
        f"type '{resource_type}'. The supported api-versions are '{', '.join(supported)}'. "
        "The supported locations are 'eastus, eastus2, westus, westus2, westeurope, northeurope'.",
    )


def invalid_request_content(problem: str) -> ArmError:
    return ArmError(
        400,
        "InvalidRequestContent",
        f"The request content was invalid and could not be deserialized: '{problem}'.",
    )


def invalid_resource_id(path: str) -> ArmError:
    return ArmError(
        400,
        "InvalidResourceId",
        f"The request URI '{path}' does not identify a supported resource or collection. "
        "For more details please go to https://aka.ms/ARMResourceIdFormat",
    )


def authorization_failed(principal: str, action: str, scope: str) -> ArmError:
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{principal}' with object id '{principal}' does not have authorization to perform action "
        f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please "
        "refresh your credentials.",
    )


def authentication_failed(problem: str) -> ArmError:
    return ArmError(
        401,
        "AuthenticationFailed",
        f"Authentication failed. {problem}",
        headers={
            "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
            'error="invalid_token", error_description="The authentication failed because of missing '
            "'Authorization' header.\""
        },
    )


def throttled(subscription_id: str, principal: str, retry_after: int, kind: str = "writes") -> ArmError:
    """ARM's 429 for an empty token bucket (code and message form as documented for ARM throttling)."""
    operation = {"reads": "read", "writes": "write", "deletes": "delete"}.get(kind, kind)
    return ArmError(
        429,
        "SubscriptionRequestsThrottled",
        f"Number of '{operation}' requests for subscription '{subscription_id}' actor '{principal}' exceeded. "
        f"Please try again after '{retry_after}' seconds after additional tokens are available. "
        "Refer to https://aka.ms/arm-throttling",
        headers={"Retry-After": str(retry_after), f"x-ms-ratelimit-remaining-subscription-{kind}": "0"},
    )


def method_not_allowed(method: str, path: str) -> ArmError:
    return ArmError(
        405,
        "MethodNotAllowed",
        f"The requested resource does not support http method '{method}'.",
        target=path,
    )
