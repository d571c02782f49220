"""ISO 8601 timestamps as Azure writes them (ARM properties, Event Grid envelopes). Pure."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_BEYOND_MICROSECONDS = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp (``Z`` or an offset, up to 7 fractional digits), or None when it is not one.

    Azure writes 7 fractional digits ("...19.4556811Z"); ``datetime.fromisoformat`` takes at most 6.
    """
    if not isinstance(value, str) or not value:
        return None
    text = _BEYOND_MICROSECONDS.sub(r"\1", value.strip().replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
