"""A loopback HTTPS "attacker" server that records every request it receives, and a token-recording credential.

Forged state points the service at the trap; a test then asserts the trap saw nothing. The trap answers
404 to everything so that a client which does reach it fails fast.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken

from emulators.tls import ensure_tls


@dataclass
class Trap:
    url: str  # https://127.0.0.1:PORT
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # (method, path, carried a token)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


@contextlib.contextmanager
def trap_server(tls_directory: Path) -> Iterator[Trap]:
    """An HTTPS server on 127.0.0.1 (certificate from the local CA) that records requests."""
    files = ensure_tls(tls_directory)
    trap = Trap("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            trap.requests.append((self.command, self.path, "authorization" in {k.lower() for k in self.headers}))
            body = b'{"error": {"code": "NotFound", "message": "trap"}}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _record  # noqa: N815 - http.server's names

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files.cert), str(files.key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    trap.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield trap
    finally:
        server.shutdown()
        server.server_close()


class RecordingCredential:
    """A TokenCredential that hands out a recognisable token and records each scope asked for."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("trap-test-token", int(time.time()) + 3600)

    def close(self) -> None:
        return
