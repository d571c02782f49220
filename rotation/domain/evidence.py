"""What a retirement relied on: every kind checked, when, with which counts (issue 16, fail closed).

The line is recorded in the retire step's detail (``status`` shows it) and in the ``retired`` audit
record's reason, so a disabled version can always be traced to the evidence that allowed it. Log-safe:
names, versions and counts only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from rotation.domain.model import KeyRef
from rotation.domain.plan import ConsumerPlanner, PlanContext


@runtime_checkable
class EvidenceReporter(Protocol):
    """A unit that says more about its items than the version each consumer uses (e.g. blob counts)."""

    def evidence(self, items: Sequence[Any]) -> str: ...


def retirement_evidence(
    planners: Sequence[ConsumerPlanner[Any]],
    found: Mapping[str, Sequence[Any]],
    key: KeyRef,
    checked_at: datetime,
    references: Sequence[str],
) -> str:
    """One line: when the check ran, each kind's consumers of ``key`` by the version they use, and
    the references found to the version being retired. Pure."""
    parts: list[str] = []
    for planner in planners:
        items = [i for i in found.get(planner.kind, ()) if planner.uses_key(i, key)]
        unit_plan = planner.plan(items, PlanContext(key, None, None))
        line = f"{planner.kind} {len(unit_plan.consumers)}"
        if isinstance(planner, EvidenceReporter):
            line += f" ({planner.evidence(items)})"
        elif unit_plan.consumers:
            versions = Counter(c.version_in_use or "unknown" for c in unit_plan.consumers)
            line += " (" + ", ".join(f"{v}: {n}" for v, n in sorted(versions.items())) + ")"
        parts.append(line)
    return (
        f"checked {checked_at.isoformat()}: " + "; ".join(parts) + f"; references to the old version: {len(references)}"
    )
