"""``python -m emulators.keyvault --dir STATE_DIR --ready-file FILE --tls-cert PEM --tls-key PEM [--vault NAME]...``"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from emulators.keyvault.server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.keyvault", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="state directory (persists across restarts)")
    parser.add_argument("--ready-file", type=Path, required=True, help="written when every listener is up")
    parser.add_argument("--tls-cert", type=Path, required=True, help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, required=True, help="server private key (PEM)")
    parser.add_argument("--vault", action="append", default=[], help="a vault to create at start (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    emulator = Emulator(args.dir, args.ready_file, args.tls_cert, args.tls_key, args.vault)
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(emulator.run())
    except ImportError:
        asyncio.run(emulator.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
