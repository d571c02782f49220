"""Live progress of a rotation for ``rotate`` and ``status --watch``, in three forms.

- a terminal: a progress bar per consumer step (rich), with the stage, elapsed time and what is in flight;
- not a terminal: one plain line each time something changes;
- ``--json``: one JSON object per line (the rotation's view) each time something changes.
"""

from __future__ import annotations

import json
from typing import IO, Any, Protocol


class Reporter(Protocol):
    def update(self, view: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def reporter(stream: IO[str], *, as_json: bool) -> Reporter:
    """The form that suits ``stream``: JSON lines, a live bar on a terminal, else plain lines."""
    if as_json:
        return JsonLines(stream)
    if stream.isatty():
        return LiveBar(stream)
    return PlainLines(stream)


def _changed(last: tuple[Any, ...] | None, view: dict[str, Any]) -> tuple[tuple[Any, ...], bool]:
    progress = view.get("progress") or {}
    key = (
        view["status"],
        view["stage"],
        tuple((s["step"], s["done"], s["total"]) for s in progress.get("steps", [])),
        tuple(progress.get("in_flight", [])),
    )
    return key, key != last


class _OnChange:
    """Writes one line each time the rotation's status, stage, counts or in-flight set change."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.last: tuple[Any, ...] | None = None

    def line(self, view: dict[str, Any]) -> str:
        raise NotImplementedError

    def update(self, view: dict[str, Any]) -> None:
        self.last, changed = _changed(self.last, view)
        if changed:
            self.stream.write(self.line(view) + "\n")
            self.stream.flush()

    def close(self) -> None:
        return None


class JsonLines(_OnChange):
    def line(self, view: dict[str, Any]) -> str:
        return json.dumps(view, default=str, separators=(",", ":"))


def describe(view: dict[str, Any]) -> str:
    """One plain line: status, stage, consumers done / total per step, elapsed, in flight, pending."""
    progress = view.get("progress") or {}
    steps = ", ".join(f"{s['step']} {s['done']}/{s['total']}" for s in progress.get("steps", []))
    parts = [f"{view['status']}", f"stage {view['stage']}"]
    if steps:
        parts.append(f"consumers {steps}")
    parts.append(f"elapsed {progress.get('elapsed_s', 0):.1f}s")
    if progress.get("in_flight"):
        parts.append("in flight: " + ", ".join(progress["in_flight"]))
    pending = list(progress.get("pending", []))
    if pending:
        more = f" (+{len(pending) - 5} more)" if len(pending) > 5 else ""
        parts.append("pending: " + ", ".join(pending[:5]) + more)
    return "  ".join(parts)


class PlainLines(_OnChange):
    def line(self, view: dict[str, Any]) -> str:
        return describe(view)


class LiveBar:
    """rich's live progress: one bar per consumer step, the stage and elapsed time in the description."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(file=stream, force_terminal=True)
        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=self.console, transient=False
        )
        self.tasks: dict[str, Any] = {}
        self.status = self.bars.add_task("starting", total=None)
        self.bars.start()

    def update(self, view: dict[str, Any]) -> None:
        progress = view.get("progress") or {}
        for step in progress.get("steps", []):
            task = self.tasks.get(step["step"])
            if task is None:
                task = self.tasks[step["step"]] = self.bars.add_task(step["step"], total=step["total"])
            self.bars.update(task, completed=step["done"], total=step["total"])
        flight = ", ".join(progress.get("in_flight", [])[:3])
        label = f"{view['status']}: {view['stage']}  {progress.get('elapsed_s', 0):.1f}s" + (
            f"  in flight: {flight}" if flight else ""
        )
        self.bars.update(self.status, description=label)

    def close(self) -> None:
        self.bars.stop()
