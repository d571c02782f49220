"""Plain JSON values from the domain's dataclasses, enums and datetimes (views, the journal)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any

_PLAIN = (str, int, float, bool, type(None))


def jsonable(value: Any) -> Any:
    """Plain JSON types from dataclasses, enums, datetimes, tuples and mappings."""
    if type(value) in _PLAIN:  # exact types: a str or int Enum is converted below
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: jsonable(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


@cache
def _field_names(kind: type) -> tuple[str, ...]:
    # The journal encodes every consumer record on each save: looking the fields up once per class
    # (instead of per value) is most of the cost of a large rotation's entry.
    return tuple(f.name for f in dataclasses.fields(kind))
