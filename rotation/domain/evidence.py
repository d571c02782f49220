"""What a retirement relied on: every kind checked, when, with which counts (issue 16, fail closed).

``retirement_evidence`` builds a ``RetirementEvidence`` (structured: the journal keeps the latest check
with the rotation, ``status`` shows it, the ``retired`` audit record carries it as a field) and its
``line()`` goes into the retire step's detail and the audit record's reason, so a disabled version can
always be traced to the evidence that allowed it. Log-safe: names, versions and counts only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from rotation.domain.model import BlobEvidence, KeyRef, KindEvidence, RetirementEvidence
from rotation.domain.plan import ConsumerPlanner, PlanContext


@runtime_checkable
class EvidenceReporter(Protocol):
    """A unit that says more about its items than the version each consumer uses (blob counts)."""

    def evidence(self, items: Sequence[Any]) -> BlobEvidence: ...


def retirement_evidence(
    planners: Sequence[ConsumerPlanner[Any]],
    found: Mapping[str, Sequence[Any]],
    key: KeyRef,
    *,
    checked_at: datetime,
    old_version: str,
    references: Sequence[str],
) -> RetirementEvidence:
    """When the check ran, each kind's consumers of ``key`` by the version they use, and the references
    found to ``old_version``. Pure."""
    kinds: list[KindEvidence] = []
    for planner in planners:
        items = [i for i in found.get(planner.kind, ()) if planner.uses_key(i, key)]
        unit_plan = planner.plan(items, PlanContext(key, None, None))
        if isinstance(planner, EvidenceReporter):  # its consumers use many versions: the blob counts say which
            kinds.append(KindEvidence(planner.kind, len(unit_plan.consumers), (), planner.evidence(items)))
            continue
        versions = Counter(c.version_in_use or "unknown" for c in unit_plan.consumers)
        kinds.append(KindEvidence(planner.kind, len(unit_plan.consumers), tuple(sorted(versions.items()))))
    return RetirementEvidence(checked_at, old_version, tuple(kinds), tuple(references))
