"""``python -m emulators.blobproxy --dir STATE_DIR --ready-file FILE --upstream http://127.0.0.1:PORT``

Serves HTTP on a free loopback port in front of Azurite's blob endpoint (``--upstream``, its origin) and,
once listening, writes ``FILE`` atomically: ``{"blob": "http://127.0.0.1:<port>/devstoreaccount1", "admin":
"http://127.0.0.1:<port>"}``. Legal holds and immutability policies are kept in ``STATE_DIR/state.json``; the
versioning and soft-delete modes and each blob's history in ``STATE_DIR/history.json``. SIGTERM or Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import uvicorn

from emulators.blobproxy.app import BlobProxy, sdk_tier_lookup
from emulators.blobproxy.history import History
from emulators.blobproxy.state import Protections
from emulators.localazure import AZURITE_ACCOUNT, AZURITE_KEY

log = logging.getLogger("emulators.blobproxy")


async def serve(state_dir: Path, ready_file: Path, upstream: str) -> None:
    upstream = upstream.rstrip("/")
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={upstream}/{AZURITE_ACCOUNT};"
    )
    proxy = BlobProxy(upstream, Protections(state_dir), sdk_tier_lookup(connection), History(state_dir), connection)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    config = uvicorn.Config(
        proxy,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=120,
        timeout_graceful_shutdown=2,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    task = loop.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the proxy stopped during start-up")
        await asyncio.sleep(0.01)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    port = int(sock.getsockname()[1])
    tmp = ready_file.with_name(ready_file.name + ".tmp")
    ready = {"blob": f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}", "admin": f"http://127.0.0.1:{port}"}
    tmp.write_text(json.dumps(ready))
    os.replace(tmp, ready_file)
    log.warning("blob proxy ready: %s -> %s", port, upstream)
    await task
    await proxy.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.blobproxy", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="state directory (persists across restarts)")
    parser.add_argument("--ready-file", type=Path, required=True, help="written once the proxy listens")
    parser.add_argument("--upstream", required=True, help="Azurite's blob origin, e.g. http://127.0.0.1:10000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.dir, args.ready_file, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
