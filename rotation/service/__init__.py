"""Service functions: what the triggers, the HTTP API and the CLI call.

Each takes ``Dependencies`` (``rotation.service.deps``) first; nothing here builds a client.
"""

from rotation.service.deps import Dependencies, Dispatcher, InlineDispatcher
from rotation.service.executor import run_rotation
from rotation.service.oncall import abandon, retry_now, unretire
from rotation.service.queries import get_rotation, list_rotations, plan
from rotation.service.reconcile import handle_key_event, retire_if_due, sweep
from rotation.service.start import start_rotation
from rotation.service.views import EventOutcome, PlanView, RotationView, SweepItem, SweepReport

__all__ = [
    "Dependencies",
    "Dispatcher",
    "EventOutcome",
    "InlineDispatcher",
    "PlanView",
    "RotationView",
    "SweepItem",
    "SweepReport",
    "abandon",
    "get_rotation",
    "handle_key_event",
    "list_rotations",
    "plan",
    "retire_if_due",
    "retry_now",
    "run_rotation",
    "start_rotation",
    "sweep",
    "unretire",
]
