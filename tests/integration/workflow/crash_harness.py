"""A rotation in a real process that SIGKILLs itself around its Nth side effect (crash matrix).

    python -m tests.integration.workflow.crash_harness start  --env ENV.json --count-file F
    python -m tests.integration.workflow.crash_harness start  --env ENV.json --kill-at 3 --when after
    python -m tests.integration.workflow.crash_harness resume --env ENV.json
    python -m tests.integration.workflow.crash_harness sweep  --env ENV.json [--kill-at N --when before]

``start`` runs a rotation inline; the adapters' side-effecting methods are wrapped so the Nth call
kills the process with SIGKILL just before or just after delegating (nothing is flushed, no
``finally`` runs). Without ``--kill-at`` it counts the side effects into ``--count-file``.
``resume`` is the next trigger: it finds the interrupted rotation and drives it to the end (or
starts one when the crash came before the rotation was recorded). ``sweep`` runs the reconciler
(retirement) with the same wrapping, repeating until the key's rotation has retired. Each prints the
final view as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rotation.bootstrap import Bootstrap, build_dependencies
from rotation.domain.model import RotationStatus, Trigger, TriggerKind
from rotation.service import RotationView, list_rotations, run_rotation, start_rotation, sweep
from rotation.service.deps import Dependencies
from rotation.service.queries import holding_rotation
from rotation.settings import load_settings

#: Every method that changes something outside the process: (collaborator, method).
SIDE_EFFECTS = (
    ("journal", "begin"),
    ("keys", "create_version"),
    ("keys", "update_version"),
    ("storage_accounts", "set_key_version"),
    ("workspaces", "begin_key_identifier"),  # the PATCH; its operation is journalled, then polled
    ("workspaces", "poll_key_update"),  # not a side effect: a kill point between "accepted" and "done"
    ("data_keys", "begin_rewrap"),
    ("audit", "append"),
)
#: With ``--journal``: every journal write is a kill point too (the full, slow matrix).
JOURNAL_WRITES = (("journal", "save"),)

LEASE_SECONDS = 1.0


class _Counter:
    def __init__(self, kill_at: int | None, when: str) -> None:
        self.kill_at = kill_at
        self.when = when
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._lock:  # consumers are re-pointed concurrently: each call gets its own number
                self.calls.append(name)
                number = len(self.calls)
            if number == self.kill_at and self.when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = method(*args, **kwargs)
            if number == self.kill_at and self.when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return wrapper


def _deps(env: dict[str, str], owner: str) -> Dependencies:
    deps = build_dependencies(Bootstrap(load_settings(env)), inline=True)
    deps.owner = owner
    deps.lease_seconds = LEASE_SECONDS
    deps.sleep = lambda seconds: time.sleep(min(seconds, 0.2))
    return deps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("start", "resume", "sweep"))
    parser.add_argument("--journal", action="store_true", help="kill around journal writes too")
    parser.add_argument("--env", required=True)
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--when", choices=("before", "after"), default="before")
    parser.add_argument("--count-file")
    args = parser.parse_args(argv)
    env = json.loads(Path(args.env).read_text())
    key_uri = env["ROTATION_MANAGED_KEYS"]
    trigger = Trigger(TriggerKind.CLI, caller="crash-harness")

    if args.mode in ("start", "sweep"):
        deps = _deps(env, f"crashing-{os.getpid()}")
        counter = _Counter(args.kill_at, args.when)
        for attr, method in SIDE_EFFECTS + (JOURNAL_WRITES if args.journal else ()):
            target = getattr(deps, attr)
            setattr(target, method, counter.wrap(f"{attr}.{method}", getattr(target, method)))
        if args.mode == "start":
            view = start_rotation(deps, key_uri, trigger, reason="crash matrix")
        else:
            view = _sweep_until_retired(deps, key_uri)
        if args.count_file:
            Path(args.count_file).write_text(json.dumps(counter.calls))
        print(json.dumps(view.to_dict()))
        return 0

    deps = _deps(env, f"resumer-{os.getpid()}")
    deadline = time.monotonic() + 20
    while True:
        held = holding_rotation(deps, key_uri)
        if held is None:
            view = start_rotation(deps, key_uri, trigger, reason="crash matrix (nothing recorded before the crash)")
        else:
            view = run_rotation(deps, held.rotation_id)
        claimed_elsewhere = view.status == RotationStatus.RUNNING
        if not claimed_elsewhere or time.monotonic() > deadline:
            break
        time.sleep(0.3)  # the killed process's claim expires after LEASE_SECONDS
    print(json.dumps(view.to_dict()))
    return 0


def _sweep_until_retired(deps: Dependencies, key_uri: str) -> RotationView:
    """Run the reconciler until the key's latest rotation has retired (a crashed sweeper's claim lapses)."""
    deadline = time.monotonic() + 20
    while True:
        sweep(deps, Trigger(TriggerKind.TIMER))
        view = list_rotations(deps, key_uri, limit=1)[0]
        if view.status != RotationStatus.AWAITING_RETIREMENT or time.monotonic() > deadline:
            return view
        time.sleep(0.3)


if __name__ == "__main__":
    sys.exit(main())
