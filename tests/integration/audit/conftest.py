"""Audit test ordering: the session-end secret scan runs after every other test of the session."""

from __future__ import annotations

import pytest

SESSION_END = "_audit_session_end"


def session_end(function):  # type: ignore[no-untyped-def]
    """Mark a test to run last in the session (it inspects what every other test wrote)."""
    setattr(function, SESSION_END, True)
    return function


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    last = [i for i in items if getattr(getattr(i, "function", None), SESSION_END, False)]
    if last:
        items[:] = [i for i in items if i not in last] + last
