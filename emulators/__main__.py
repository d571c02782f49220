"""``python -m emulators up --dir DIR``: start all of local Azure until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emulators.localazure import ALL_SERVICES, LocalAzureError, run_until_signalled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start local Azure and write DIR/endpoints.json")
    up.add_argument("--dir", type=Path, default=Path(".localazure"), help="state directory")
    up.add_argument(
        "--services", default=",".join(ALL_SERVICES), help=f"comma-separated subset of {','.join(ALL_SERVICES)}"
    )
    up.add_argument("--vault", action="append", default=[], help="a vault to create at start (repeatable)")
    args = parser.parse_args(argv)
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    try:
        return run_until_signalled(args.dir.resolve(), services, args.vault)
    except LocalAzureError as exc:
        print(f"local Azure did not start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
