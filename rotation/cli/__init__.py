"""``python -m rotation`` (also the ``cmk-rotation`` console script): the on-call engineer's CLI.

A thin shell over the same service functions the triggers call. Each command group lives in its
own module exposing ``register(subparsers)``; they are listed in ``COMMAND_MODULES``.

Exit codes: 0 ok, 1 operational failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rotation.errors import InputError, RotationError, SettingsError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# Each module defines ``register(subparsers: argparse._SubParsersAction) -> None`` and sets
# ``func`` on its parsers: ``func(args: argparse.Namespace) -> int``.
COMMAND_MODULES: tuple[str, ...] = ("rotation.cli.audit", "rotation.cli.rotations")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors; keep the message short
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m rotation", description="Rotate customer-managed keys and everything using them.")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def emit(args: argparse.Namespace, payload: Any, render: Callable[[Any], str]) -> None:
    """Print ``payload`` as JSON with ``--json``, else as ``render(payload)`` for people."""
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(render(payload))


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (InputError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RotationError as exc:
        print(f"failed ({exc.code}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
