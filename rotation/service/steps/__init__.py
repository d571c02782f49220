"""The step bodies the executor runs: the workflow's own, and the generic consumer steps.

Each body takes the executor (``StepRun``, ``rotation.service.executor``) and first checks "already done?"
against the world and the journal, then acts through ``write`` (intent journalled
before, outcome after; switched off in a dry run, where the body says what it would do) and ends
with ``finish_step`` or a "waiting"/"stop" result. Consumer steps take the unit that owns them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rotation.domain.steps import Step
from rotation.service.steps.consumers import REFUSED, found_again, repoint, settle, verify_consumers
from rotation.service.steps.cut_over import cut_over
from rotation.service.steps.key_version import new_version, plan, verify_version
from rotation.service.steps.retire import retire
from rotation.service.steps.run import StepResult, StepRun

#: The workflow's own steps (the consumer steps are each unit's ``repoint``/``settle``).
WORKFLOW_STEPS: Mapping[str, Callable[[StepRun], StepResult]] = {
    Step.PLAN: plan,
    Step.NEW_VERSION: new_version,
    Step.VERIFY_VERSION: verify_version,
    Step.VERIFY_CONSUMERS: verify_consumers,
    Step.CUT_OVER: cut_over,
    Step.RETIRE: retire,
}

__all__ = ["REFUSED", "WORKFLOW_STEPS", "found_again", "repoint", "settle"]
