"""Key rotation policies: ISO 8601 durations and the validation the service applies on PUT.

Service rules (keys.json 2025-07-01, learn.microsoft.com "Configure key auto-rotation", SDK recordings):
- ``expiryTime`` at least 28 days; rotate triggers at least 7 days after creation and 7 days before expiry;
- at most one Rotate and one Notify action; ``timeAfterCreate`` applies to Rotate only; action types are
  compared case-insensitively;
- a PUT without a Notify action comes back with ``Notify`` ``timeBeforeExpiry: P30D`` added.

Durations are converted with a year of 365 days and a month of 30 days.
"""

from __future__ import annotations

import re
from typing import Any

from emulators.keyvault.errors import bad_parameter

DAY = 86400
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
DEFAULT_NOTIFY = {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}


def duration_seconds(text: object, field: str) -> int:
    """Seconds in an ISO 8601 duration such as P90D, P3M, PT48H, P1Y10D; BadParameter otherwise."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise bad_parameter(f"The value of '{field}' is not a valid ISO 8601 duration: {text!r}.")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    days = parts.get("y", 0) * 365 + parts.get("mo", 0) * 30 + parts.get("w", 0) * 7 + parts.get("d", 0)
    return days * DAY + parts.get("h", 0) * 3600 + parts.get("mi", 0) * 60 + parts.get("s", 0)


def validate_policy(body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Validate a KeyRotationPolicy PUT body; return (lifetimeActions as stored, expiryTime or None)."""
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a key rotation policy object.")
    attributes = body.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise bad_parameter("The 'attributes' of a rotation policy must be an object.")
    expiry_time = attributes.get("expiryTime")
    expiry_s = None
    if expiry_time is not None:
        expiry_s = duration_seconds(expiry_time, "expiryTime")
        if expiry_s < 28 * DAY:
            raise bad_parameter("The expiryTime of a key rotation policy must be at least 28 days (P28D).")
    actions = body.get("lifetimeActions") or []
    if not isinstance(actions, list):
        raise bad_parameter("'lifetimeActions' must be an array.")
    stored: list[dict[str, Any]] = []
    seen: set[str] = set()
    for action in actions:
        if not isinstance(action, dict) or not isinstance(action.get("action"), dict):
            raise bad_parameter("Each lifetime action needs an 'action' with a 'type'.")
        kind = str(action["action"].get("type", "")).lower()
        if kind not in ("rotate", "notify"):
            raise bad_parameter(f"Invalid lifetime action type: {action['action'].get('type')!r}.")
        if kind in seen:
            raise bad_parameter("A key rotation policy can have at most one Rotate and one Notify action.")
        seen.add(kind)
        trigger = action.get("trigger")
        if not isinstance(trigger, dict):
            raise bad_parameter("Each lifetime action needs a 'trigger'.")
        after = trigger.get("timeAfterCreate")
        before = trigger.get("timeBeforeExpiry")
        if (after is None) == (before is None):
            raise bad_parameter("A lifetime action trigger needs exactly one of timeAfterCreate or timeBeforeExpiry.")
        if after is not None:
            if kind == "notify":
                raise bad_parameter("timeAfterCreate applies only to the Rotate action.")
            seconds = duration_seconds(after, "timeAfterCreate")
            if seconds < 7 * DAY:
                raise bad_parameter("The rotation time must be at least 7 days (P7D) after creation.")
            if expiry_s is not None and seconds > expiry_s - 7 * DAY:
                raise bad_parameter("The rotation time must be at least 7 days before the expiry time.")
            new_trigger = {"timeAfterCreate": after}
        else:
            seconds = duration_seconds(before, "timeBeforeExpiry")
            if seconds < 7 * DAY:
                raise bad_parameter("timeBeforeExpiry must be at least 7 days (P7D).")
            if kind == "rotate" and expiry_s is None:
                raise bad_parameter("A Rotate action with timeBeforeExpiry requires the policy's expiryTime.")
            if expiry_s is not None and seconds > expiry_s - 7 * DAY:
                raise bad_parameter("timeBeforeExpiry must leave at least 7 days after the version's creation.")
            new_trigger = {"timeBeforeExpiry": before}
        stored.append({"trigger": new_trigger, "action": {"type": "Rotate" if kind == "rotate" else "Notify"}})
    if "notify" not in seen:
        stored.append({"trigger": dict(DEFAULT_NOTIFY["trigger"]), "action": {"type": "Notify"}})
    return stored, expiry_time


def action_trigger(actions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    for action in actions:
        if action["action"]["type"] == kind:
            return dict(action["trigger"])
    return None
