"""Run the emulator: one HTTPS listener per vault plus the admin listener, all on one event loop.

Each listener is a uvicorn server (httptools, keep-alive) on a loopback socket this process binds itself
(port 0, or the vault's previous port when it is free), so there is no port race. When every listener is
up, the ready file is written atomically: ``{"vaults": {name: url}, "admin": url}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from emulators.keyvault.admin import AdminApp
from emulators.keyvault.dataplane import VaultApp
from emulators.keyvault.service import KeyVaultService
from emulators.keyvault.store import Vault

log = logging.getLogger("emulators.keyvault")
TICK_SECONDS = 1.0


class _Server(uvicorn.Server):
    """Several servers share one loop; the emulator handles signals itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        # uvicorn polls every 0.1 s per server; with a listener per vault, 0.5 s keeps idle vaults cheap.
        while not self.should_exit:
            await self.on_tick(0)  # refreshes the Date header
            await asyncio.sleep(0.5)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Idle keep-alive TLS connections would otherwise hold the shutdown until the client goes away.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await super().shutdown(sockets)


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: uvicorn writes headers and body separately, and Nagle + delayed ACK
    # would add ~40 ms per response on the plain asyncio loop (uvloop sets it itself).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Emulator:
    def __init__(
        self,
        state_dir: Path,
        ready_file: Path,
        tls_cert: Path,
        tls_key: Path,
        *,
        vaults: Sequence[str] = (),
        ca_bundle: Path | None = None,
    ) -> None:
        self.service = KeyVaultService(state_dir)
        self.ready_file = ready_file
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.initial_vaults = list(vaults)
        self.ca_bundle = ca_bundle
        self.admin_url = ""
        self._servers: list[tuple[_Server, asyncio.Task[None]]] = []

    def _config(self, app: Any) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            ssl_certfile=str(self.tls_cert),
            ssl_keyfile=str(self.tls_key),
            timeout_keep_alive=120,
            timeout_graceful_shutdown=2,
            server_header=False,
        )

    async def _serve(self, app: Any, port: int) -> int:
        sock = _bind(port)
        bound = int(sock.getsockname()[1])
        server = _Server(self._config(app))
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("listener stopped during start-up")
            await asyncio.sleep(0.01)
        self._servers.append((server, task))
        return bound

    async def start_vault(self, vault: Vault) -> None:
        vault.port = await self._serve(VaultApp(self.service, vault.name), vault.port)
        if self.admin_url:
            self.write_ready_file()

    def write_ready_file(self) -> None:
        ready: dict[str, Any] = {
            "vaults": {name: v.url for name, v in self.service.vaults.items()},
            "admin": self.admin_url,
        }
        if self.ca_bundle is not None:
            ready["ca_bundle"] = str(self.ca_bundle)
        tmp = self.ready_file.with_name(self.ready_file.name + ".tmp")
        tmp.write_text(json.dumps(ready, indent=2))
        os.replace(tmp, self.ready_file)

    async def run(self) -> None:
        service = self.service
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        for name in self.initial_vaults:
            if name not in service.vaults:
                service.vaults[name] = service.new_vault({"name": name})
        for vault in service.vaults.values():
            await self.start_vault(vault)
        admin_port = await self._serve(AdminApp(service, self.start_vault), 0)
        self.admin_url = f"https://127.0.0.1:{admin_port}"
        service.events.start()
        service.flush()
        self.write_ready_file()
        log.warning("key vault emulator ready: %s", self.ready_file)
        ticker = loop.create_task(self._tick(stop))
        await stop.wait()
        ticker.cancel()
        for server, _ in self._servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in self._servers), return_exceptions=True)
        await service.events.stop()
        service.flush()

    async def _tick(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.service.evaluate_lifecycle()
            except Exception:
                log.exception("lifecycle evaluation failed")
