"""``python -m rotation.api``: serve the HTTP API locally with uvicorn (the same ``create_app()`` as Azure).

There is no function key locally, so the server listens on loopback only and answers only requests
whose Host is a loopback name (``rotation.api.local_host``: against DNS rebinding). Started rotations run
in-process (no queue trigger runs locally). Settings come from the environment, as in Azure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rotation.settings import is_loopback


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rotation.api", description="Serve the HTTP API locally.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="port (default 7071, as `func start`)")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error("the local server has no function key: it listens on loopback addresses only")

    import uvicorn

    from rotation import bootstrap
    from rotation.api.app import create_app
    from rotation.api.local_host import LoopbackHostOnly
    from rotation.errors import SettingsError

    try:
        bootstrap.current()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bootstrap.use_inline_dispatch(True)
    uvicorn.run(LoopbackHostOnly(create_app()), host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
