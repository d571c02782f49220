"""``audit list|show|verify|checkpoint``: read and check the tamper-evident audit trail.

- ``audit list [--key URI] [--since DATE] [--status OUTCOME] [--rotation ID] [--limit N]``: records,
  oldest first.
- ``audit show ID``: one record (by id or ``#seq``) as a timeline of steps and consumer changes.
- ``audit verify``: walk the hash chain and the signed checkpoints; exit 1 naming the first
  broken record.
- ``audit checkpoint``: sign the current end of the chain now (needs ``ROTATION_AUDIT_SIGNING_KEY``).

``--json`` works before or after the subcommand.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rotation.cli import EXIT_FAILED, EXIT_OK, emit, table

if TYPE_CHECKING:
    from rotation.audit.store import TableAuditLog


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    audit = subparsers.add_parser("audit", help="read and verify the audit trail")
    commands = audit.add_subparsers(dest="audit_command", required=True, parser_class=type(audit))

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
        # SUPPRESS: an absent flag here must not undo a --json given before the subcommand.
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
        return parser

    listing = add("list", "audit records, oldest first (the newest --limit of those matching)")
    listing.add_argument("--key", metavar="URI", help="only records of this key (versionless key URI)")
    listing.add_argument("--since", metavar="DATE", help="only records at or after DATE (YYYY-MM-DD or ISO 8601)")
    listing.add_argument("--status", metavar="OUTCOME", help="only records with this outcome, e.g. failed")
    listing.add_argument("--rotation", metavar="ID", help="only records of this rotation")
    listing.add_argument("--limit", type=int, default=100, help="at most this many records (default 100)")
    listing.set_defaults(func=list_command)

    show = add("show", "one audit record as a timeline: steps with durations, consumers before and after")
    show.add_argument("record", metavar="ID", help="the record id, or #N for the record with sequence number N")
    show.set_defaults(func=show_command)

    verify = add("verify", "check the hash chain and its signed checkpoints; exit 1 naming the first broken record")
    verify.set_defaults(func=verify_command)

    checkpoint = add("checkpoint", "sign the current end of the chain now (ROTATION_AUDIT_SIGNING_KEY)")
    checkpoint.set_defaults(func=checkpoint_command)


def _audit_log() -> TableAuditLog:
    from rotation import bootstrap

    return bootstrap.open_audit_log(bootstrap.current())


def list_command(args: argparse.Namespace) -> int:
    from rotation.audit.service import list_records, parse_key, parse_rotation_id, parse_since, parse_status

    result = list_records(
        _audit_log(),
        key_uri=parse_key(args.key),
        since=parse_since(args.since),
        status=parse_status(args.status),
        rotation_id=parse_rotation_id(args.rotation),
        limit=args.limit,
    )

    def render(payload: dict[str, Any]) -> str:
        rows = [
            (
                f"#{r['seq']}",
                (r["recorded_at"] or "")[:19].replace("T", " "),
                r["key_uri"],
                r["outcome"],
                f"{r['old_version'] or '-'} -> {r['new_version'] or '-'}",
                r["trigger"] + (f" ({r['caller']})" if r["caller"] else ""),
                r["record_id"],
            )
            for r in payload["records"]
        ]
        shown = f"{len(rows)} of {payload['matched']} matching records"
        return table(rows, ["seq", "recorded (UTC)", "key", "outcome", "versions", "trigger", "id"]) + f"\n{shown}"

    emit(args, result.to_dict(), render)
    return EXIT_OK


def show_command(args: argparse.Namespace) -> int:
    from rotation.audit.service import render_timeline, show_record

    stored = show_record(_audit_log(), args.record)
    if getattr(args, "json", False):
        emit(args, stored.to_dict(), str)
    else:
        print(render_timeline(stored))
    return EXIT_OK


def verify_command(args: argparse.Namespace) -> int:
    from rotation.audit.service import render_verify, verify_chain

    report = verify_chain(_audit_log())
    emit(args, report.to_dict(), lambda _payload: render_verify(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def checkpoint_command(args: argparse.Namespace) -> int:
    checkpoint = _audit_log().checkpoint()
    if checkpoint is None:
        emit(args, {"checkpoint": None}, lambda _p: "the audit chain is empty: nothing to sign")
        return EXIT_OK
    payload = {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "created_at": checkpoint.created_at.isoformat(),
        "key_id": checkpoint.key_id,
        "algorithm": checkpoint.algorithm,
    }
    emit(args, payload, lambda p: f"signed checkpoint at #{p['seq']} ({p['hash']}) with {p['key_id']}")
    return EXIT_OK
