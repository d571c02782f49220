"""The triggers tests start and sweep rotations with: an operator at the CLI, and the timer."""

from __future__ import annotations

from rotation.domain.model import Trigger, TriggerKind

CLI = Trigger(TriggerKind.CLI, caller="tester")
TIMER = Trigger(TriggerKind.TIMER)
