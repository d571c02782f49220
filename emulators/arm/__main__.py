"""``python -m emulators.arm --dir STATE_DIR --ready-file FILE --tls-cert PEM --tls-key PEM --ca-bundle CA
[--keyvault-admin URL]``: serve ARM over HTTPS on a free loopback port until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn

from emulators.arm.app import ArmApp
from emulators.arm.core import Emulator
from emulators.arm.keyvault import KeyVaultGateway
from emulators.arm.state import Store


def _write_atomically(path: Path, data: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(data)
    os.replace(tmp, path)


class _Server(uvicorn.Server):
    """uvicorn that writes the ready file once it listens."""

    def __init__(self, config: uvicorn.Config, ready_file: Path, url: str) -> None:
        super().__init__(config)
        self.ready_file = ready_file
        self.url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            _write_atomically(self.ready_file, json.dumps({"url": self.url, "admin": self.url}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.arm", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="state directory")
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--ca-bundle", required=True, help="CA bundle to trust when calling the Key Vault emulator")
    parser.add_argument("--keyvault-admin", default=None, help="base URL of the Key Vault emulator's admin API")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args.dir.mkdir(parents=True, exist_ok=True)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: uvicorn writes headers and body separately, and on the plain asyncio
    # loop (``asyncio.run`` below, not uvloop) Nagle + delayed ACK added ~40 ms to every answer.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"https://127.0.0.1:{port}"

    emulator = Emulator(Store(args.dir), KeyVaultGateway(args.keyvault_admin, args.ca_bundle))
    app = ArmApp(emulator).starlette()
    config = uvicorn.Config(
        app,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,  # idle keep-alive clients must not hold up SIGTERM
    )
    server = _Server(config, args.ready_file, url)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it with the handler found at start:
    # make that one a no-op so the state is saved and the process exits 0.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        emulator.store.flush()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
