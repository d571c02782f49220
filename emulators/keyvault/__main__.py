"""``python -m emulators.keyvault --dir STATE_DIR --ready-file FILE [--tls-cert PEM --tls-key PEM] [--vault NAME]...``

Without ``--tls-cert``/``--tls-key`` the emulator makes its own CA and server certificate under
``STATE_DIR/tls`` and names the CA bundle in the ready file (``"ca_bundle"``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from emulators.keyvault.server import Emulator
from emulators.tls import ensure_tls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.keyvault", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="state directory (persists across restarts)")
    parser.add_argument("--ready-file", type=Path, required=True, help="written when every listener is up")
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM); generated when omitted")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM); generated when omitted")
    parser.add_argument("--vault", action="append", default=[], help="a vault to create at start (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ca_bundle = None
    if args.tls_cert is None or args.tls_key is None:
        if args.tls_cert is not None or args.tls_key is not None:
            parser.error("give both --tls-cert and --tls-key, or neither")
        tls = ensure_tls(args.dir / "tls")
        args.tls_cert, args.tls_key, ca_bundle = tls.cert, tls.key, tls.ca_bundle
    emulator = Emulator(args.dir, args.ready_file, args.tls_cert, args.tls_key, vaults=args.vault, ca_bundle=ca_bundle)
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(emulator.run())
    except ImportError:
        asyncio.run(emulator.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
