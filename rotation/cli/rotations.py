"""``plan``, ``rotate``, ``status`` and ``sweep``: the on-call engineer's rotation commands.

- ``plan --key URI``: the key's consumers, what a rotation would change, and any blocker.
- ``rotate --key URI [--dry-run] [--reason TEXT]``: rotate now, in this process (or show what would happen).
- ``status [--key URI] [--active] [ROTATION_ID] [--watch]``: one rotation in detail, or a table of
  rotations; ``--watch`` follows one (or the key's running one) until it stops running.
- ``sweep``: run the reconciler once (resume, retire, retry, rotate keys near expiry).
- ``retry ROTATION_ID [--reason TEXT]``: the next attempt of a stopped rotation now (or resume it).
- ``abandon ROTATION_ID --reason TEXT``: release the key; consumers stay where they are.
- ``unretire --key URI --version V --reason TEXT``: re-enable a version this service retired.

Human-readable by default, ``--json`` for machines. ``rotate`` and ``status --watch`` show live
progress (``rotation.cli.progress``): a bar on a terminal, plain lines otherwise, JSON lines with
``--json`` (``rotate --json`` prints only the final view). Exit 1 when a rotation ends failed, refused or
rolled back, or a sweep item failed.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rotation.cli import EXIT_FAILED, EXIT_OK, emit, table
from rotation.errors import RotationError

if TYPE_CHECKING:
    from rotation.service.deps import Dependencies

_BAD = ("failed", "refused", "rolled_back", "needs_human")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
        return parser

    plan = add("plan", "show a key's consumers and what a rotation would change")
    plan.add_argument("--key", required=True, metavar="URI", help="versionless key URI of a managed key")
    plan.set_defaults(func=plan_command)

    rotate = add("rotate", "rotate a managed key now and move every consumer to the new version")
    rotate.add_argument("--key", required=True, metavar="URI", help="versionless key URI of a managed key")
    rotate.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    rotate.add_argument("--reason", default="", help="why (recorded in the journal and audit trail)")
    rotate.set_defaults(func=rotate_command)

    status = add("status", "one rotation in detail, or recent rotations")
    status.add_argument("rotation_id", nargs="?", metavar="ROTATION_ID")
    status.add_argument("--key", metavar="URI", help="only rotations of this key")
    status.add_argument("--active", action="store_true", help="only rotations not finished")
    status.add_argument("--limit", type=int, default=20)
    status.add_argument("--watch", action="store_true", help="follow the rotation live until it stops running")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between reads with --watch")
    status.set_defaults(func=status_command)

    sweep = add("sweep", "run the reconciler once: resume, retire due versions, rotate keys near expiry")
    sweep.set_defaults(func=sweep_command)

    retry = add("retry", "start the next attempt of a stopped rotation now (adopting its version), or resume it")
    retry.add_argument("rotation_id", metavar="ROTATION_ID")
    retry.add_argument("--reason", default="", help="why (recorded in the journal and audit trail)")
    retry.set_defaults(func=retry_command)

    abandon = add("abandon", "stop a rotation and release its key; consumers stay where they are")
    abandon.add_argument("rotation_id", metavar="ROTATION_ID")
    abandon.add_argument("--reason", required=True, help="why (recorded in the journal and audit trail)")
    abandon.set_defaults(func=abandon_command)

    unretire = add("unretire", "re-enable a key version this service retired (emergency)")
    unretire.add_argument("--key", required=True, metavar="URI", help="versionless key URI of a managed key")
    unretire.add_argument("--version", required=True, metavar="V", help="the retired version to re-enable")
    unretire.add_argument("--reason", required=True, help="why (recorded in the journal and audit trail)")
    unretire.set_defaults(func=unretire_command)


def _deps() -> Dependencies:
    from rotation import bootstrap

    return bootstrap.build_dependencies(bootstrap.current(), inline=True)


def _caller() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


MAX_HISTORY_ROWS = 50


def render_plan(plan: dict[str, Any]) -> str:
    in_use = {r["resource_id"]: r["version_in_use"] for r in plan.get("references", ())}
    rows = [
        (
            c["kind"],
            c["resource_id"].rsplit("/", 1)[-1],
            c["before"],
            in_use.get(c["resource_id"]) or ("unknown" if c["resource_id"] in in_use else ""),
            c["after"] or "(new)",
            c["status"],
        )
        for c in plan["consumers"]
    ]
    lines = [
        f"key:      {plan['key_uri']}",
        f"replaces: {plan['old_version']}",
        f"verdict:  {'safe to rotate' if plan['ok'] else 'REFUSED'}",
        "",
        table(rows, ["kind", "consumer", "before", "in use", "after", "plan"]) if rows else "(no consumers found)",
        f"unrelated CMK consumers left alone: {plan['unrelated_consumers']}",
    ]
    # The blob counts of the data locations: to re-wrap, with problems, of other keys (left alone).
    lines += [f"client-side-encrypted blobs: {c['detail']}" for c in plan["consumers"] if c["kind"] == "data_location"]
    history = plan.get("blob_history") or []
    if history:
        held = [(h["location"] + "/" + h["blob"], h["entry"], h["key_version"]) for h in history[:MAX_HISTORY_ROWS]]
        lines += ["", "blob history on this key (no rotation moves these; each keeps its version from retiring):"]
        lines.append(table(held, ["blob", "entry", "key version"]))
        if len(history) > MAX_HISTORY_ROWS:
            lines.append(f"... and {len(history) - MAX_HISTORY_ROWS} more (--json lists them all)")
    lines += [f"problem: {p}" for p in plan["problems"]]
    return "\n".join(lines)


def _after(change: dict[str, Any]) -> str:
    return str(change["after"] or ("(new)" if change["status"] == "planned" else ""))


def render_rotation(view: dict[str, Any]) -> str:
    lines = [
        f"rotation: {view['rotation_id']}  ({view['status']})",
        f"key:      {view['key_uri']}",
        f"versions: {view['old_version'] or '-'} -> {view['new_version'] or '-'}",
        f"trigger:  {view['trigger']['kind']}" + (f"  reason: {view['reason']}" if view["reason"] else ""),
    ]
    if view.get("retire_after"):
        lines.append(f"retires old version after: {view['retire_after']}")
    if view.get("error"):
        lines.append(f"error:    {view['error']['code']}: {view['error']['message']}")
    if view.get("attempt", 1) > 1:
        lines.append(f"attempt:  {view['attempt']} (retry of {view['retry_of']})")
    if view.get("waiting_for"):
        lines.append(f"waiting:  {view['waiting_for']}")
        lines += [f"on-call:  python -m rotation {action}" for action in view.get("on_call", ())]
    if view.get("progress"):
        from rotation.cli.progress import describe

        lines.append(f"progress: {describe(view)}")
    steps = [(s["name"], s["status"], s["detail"]) for s in view["steps"]]
    if steps:
        lines += ["", table(steps, ["step", "status", "detail"])]
    consumers = [
        (c["kind"], c["resource_id"].rsplit("/", 1)[-1], c["before"], _after(c), c["status"]) for c in view["consumers"]
    ]
    if consumers:
        lines += ["", table(consumers, ["kind", "consumer", "before", "after", "status"])]
    if view.get("rewrap"):
        r = view["rewrap"]
        lines.append(
            f"\nre-wrap: {r['rewrapped']} re-wrapped, {r['already_current']} current, {len(r['failed'])} failed, "
            f"{r['remaining_on_old_versions']} remaining, {r.get('other_keys', 0)} of other keys left alone"
        )
    if view.get("evidence"):
        lines += ["", *render_evidence(view["evidence"])]
    return "\n".join(lines)


def render_evidence(evidence: dict[str, Any]) -> list[str]:
    """The latest retirement check: when, each kind's consumers by version, the blobs, the references."""
    lines = [f"retirement evidence (checked {evidence['checked_at']}, old version {evidence['old_version']}):"]
    for kind in evidence["kinds"]:
        counts = ", ".join(f"{v}: {n}" for v, n in kind["by_version"])
        lines.append(f"  {kind['kind']}: {kind['consumers']} consumers" + (f" ({counts})" if counts else ""))
        blobs = kind.get("blobs")
        if blobs:
            by_version = ", ".join(f"{v}: {n}" for v, n in blobs["by_version"]) or "none"
            lines.append(f"    blobs surveyed in {blobs['locations']} locations: {blobs['surveyed']} ({by_version})")
            lines.append(f"    blobs of other keys (left alone): {blobs.get('other_keys', 0)}")
            lines.append(
                f"    history on this key: {blobs['versions']} versions, {blobs['snapshots']} snapshots, "
                f"{blobs['soft_deleted']} soft-deleted"
            )
    lines.append(f"  references to the old version: {len(evidence['references'])}")
    lines += [f"    {r}" for r in evidence["references"]]
    return lines


def plan_command(args: argparse.Namespace) -> int:
    from rotation.service import plan

    result = plan(_deps(), args.key).to_dict()
    emit(args, result, render_plan)
    return EXIT_OK if result["ok"] else EXIT_FAILED


def rotate_command(args: argparse.Namespace) -> int:
    from rotation.domain.model import Trigger, TriggerKind
    from rotation.service import start_rotation

    trigger = Trigger(TriggerKind.CLI, caller=_caller())
    deps = _deps()
    if args.dry_run or getattr(args, "json", False):
        view = start_rotation(deps, args.key, trigger, reason=args.reason, dry_run=args.dry_run).to_dict()
    else:
        view = _with_live_progress(
            deps, args.key, lambda: start_rotation(deps, args.key, trigger, reason=args.reason).to_dict()
        )
    emit(args, view, render_rotation)
    return EXIT_FAILED if view["status"] in _BAD else EXIT_OK


def _with_live_progress(deps: Dependencies, key_uri: str, rotate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``rotate`` in a thread and show the key's running rotation live on stderr until it returns."""
    from rotation.cli.progress import reporter
    from rotation.service.queries import holding_rotation
    from rotation.service.views import RotationView

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["view"] = rotate()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="rotate", daemon=True)
    live = reporter(sys.stderr, as_json=False)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
            with contextlib.suppress(RotationError):
                held = holding_rotation(deps, key_uri)
                if held is not None:
                    live.update(RotationView.from_state(held).to_dict())
        if "view" in outcome:
            live.update(outcome["view"])
    finally:
        live.close()
    if "error" in outcome:
        raise outcome["error"]
    return dict(outcome["view"])


def status_command(args: argparse.Namespace) -> int:
    from rotation.service import get_rotation, list_rotations

    deps = _deps()
    if args.watch:
        return _watch(deps, args)
    if args.rotation_id:
        view = get_rotation(deps, args.rotation_id).to_dict()
        emit(args, view, render_rotation)
        return EXIT_OK
    views = [v.to_dict() for v in list_rotations(deps, args.key, active_only=args.active, limit=args.limit)]

    def render(payload: list[dict[str, Any]]) -> str:
        rows = [
            (
                v["rotation_id"],
                v["key_uri"],
                v["status"],
                v["stage"],
                f"{v['old_version'] or '-'} -> {v['new_version'] or '-'}",
                v["updated_at"][:19].replace("T", " "),
                v.get("waiting_for", ""),
                "; ".join(v.get("on_call", ())),
            )
            for v in payload
        ]
        headers = ["rotation", "key", "status", "stage", "versions", "updated (UTC)", "waiting for", "on-call can"]
        return table(rows, headers) if rows else "(none)"

    emit(args, views, render)
    return EXIT_OK


def _watch(deps: Dependencies, args: argparse.Namespace) -> int:
    """Follow one rotation (by id, or the key's latest) until it stops running; live progress on stdout."""
    from rotation.cli.progress import reporter
    from rotation.errors import InputError
    from rotation.service import get_rotation, list_rotations

    if args.interval <= 0:
        raise InputError("--interval must be a positive number of seconds")
    rotation_id = args.rotation_id
    if rotation_id is None:
        if not args.key:
            raise InputError("status --watch needs a ROTATION_ID or --key")
        latest = list_rotations(deps, args.key, limit=1)
        if not latest:
            raise InputError(f"no rotation of {args.key}")
        rotation_id = latest[0].rotation_id
    live = reporter(sys.stdout, as_json=getattr(args, "json", False))
    try:
        while True:
            view = get_rotation(deps, rotation_id).to_dict()
            live.update(view)
            if view["status"] != "running":
                break
            time.sleep(args.interval)
    finally:
        live.close()
    return EXIT_FAILED if view["status"] in _BAD else EXIT_OK


def sweep_command(args: argparse.Namespace) -> int:
    from rotation.domain.model import Trigger, TriggerKind
    from rotation.service import sweep

    report = sweep(_deps(), Trigger(TriggerKind.CLI, caller=_caller()))
    payload = report.to_dict()

    def render(data: dict[str, Any]) -> str:
        rows = [(i["key_uri"], i["rotation_id"] or "-", i["action"], i["detail"]) for i in data["items"]]
        summary = ", ".join(
            f"{n} {a}" for a in ("started", "resumed", "retired", "waiting", "failed") if (n := report.count(a))
        )
        return (table(rows, ["key", "rotation", "action", "detail"]) if rows else "nothing to do") + (
            f"\n{summary}" if summary else ""
        )

    emit(args, payload, render)
    return EXIT_FAILED if report.failed else EXIT_OK


def _trigger() -> Any:
    from rotation.domain.model import Trigger, TriggerKind

    return Trigger(TriggerKind.CLI, caller=_caller())


def retry_command(args: argparse.Namespace) -> int:
    from rotation.service import retry_now

    view = retry_now(_deps(), args.rotation_id, _trigger(), reason=args.reason).to_dict()
    emit(args, view, render_rotation)
    return EXIT_FAILED if view["status"] in _BAD else EXIT_OK


def abandon_command(args: argparse.Namespace) -> int:
    from rotation.service import abandon

    view = abandon(_deps(), args.rotation_id, _trigger(), reason=args.reason).to_dict()
    emit(args, view, render_rotation)
    return EXIT_OK


def unretire_command(args: argparse.Namespace) -> int:
    from rotation.service import unretire

    view = unretire(_deps(), args.key, args.version, _trigger(), reason=args.reason).to_dict()
    emit(args, view, render_rotation)
    return EXIT_OK
