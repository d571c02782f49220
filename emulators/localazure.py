"""Start local Azure on free loopback ports: one piece of code for tests, the demo, benchmarks and CI.

Services:
- ``storage``: Azurite (npm package, pinned in package-lock.json) for blobs, queues and tables, plus the
  blob proxy in front of it (``python -m emulators.blobproxy``: immutability policies, legal holds and the
  archive tier's refusal of metadata writes, which Azurite 3.35 lacks).
- ``keyvault``: the Key Vault emulator (``python -m emulators.keyvault``).
- ``arm``: the ARM emulator (``python -m emulators.arm``), which consults the Key Vault emulator.

Each HTTPS emulator is started with the shared TLS files and ``--ready-file``; it writes that
file (JSON describing its URLs) once it is listening. When every service answers,
``DIR/endpoints.json`` is written::

    {"storage": {"connection_string", "blob", "queue", "table", "account",
                 "blob_proxy", "proxy_connection_string",    # the same account, blobs through the proxy
                 "blob_proxy_admin"},                        # its admin API: versioning, soft delete, clock
     "keyvault": {"vaults": {name: url}, "admin": url},
     "arm": {"url": url, "admin": url},
     "ca_bundle": path}

State persists in DIR across restarts.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from emulators.tls import ensure_tls

REPO = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ALL_SERVICES = ("storage", "keyvault", "arm")
START_TIMEOUT_S = 60.0


class LocalAzureError(RuntimeError):
    """A local service failed to start; the message says which and includes its last output."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def azurite_connection_string(blob: str, queue: str, table: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={blob};QueueEndpoint={queue};TableEndpoint={table};"
    )


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalAzure:
    """Starts the requested services; use as a context manager or call start()/stop()."""

    directory: Path
    services: Sequence[str] = ALL_SERVICES
    vaults: Sequence[str] = ()
    endpoints: dict[str, Any] = field(default_factory=dict)
    _processes: list[_Process] = field(default_factory=list)

    def __enter__(self) -> LocalAzure:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def endpoints_file(self) -> Path:
        return self.directory / "endpoints.json"

    def start(self) -> dict[str, Any]:
        unknown = set(self.services) - set(ALL_SERVICES)
        if unknown:
            raise LocalAzureError(f"unknown services {sorted(unknown)}; known: {ALL_SERVICES}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.endpoints_file.unlink(missing_ok=True)
        tls = ensure_tls(self.directory / "tls")
        self.endpoints = {"ca_bundle": str(tls.ca_bundle)}
        try:
            if "storage" in self.services:
                self.endpoints["storage"] = self._start_azurite()
                self.endpoints["storage"].update(self._start_blob_proxy(self.endpoints["storage"]))
            if "keyvault" in self.services:
                args = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
                for vault in self.vaults:
                    args += ["--vault", vault]
                self.endpoints["keyvault"] = self._start_python("keyvault", args)
            if "arm" in self.services:
                args = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--ca-bundle", str(tls.ca_bundle)]
                if "keyvault" in self.endpoints:
                    args += ["--keyvault-admin", self.endpoints["keyvault"]["admin"]]
                self.endpoints["arm"] = self._start_python("arm", args)
        except BaseException:
            self.stop()
            raise
        self.endpoints_file.write_text(json.dumps(self.endpoints, indent=2))
        return self.endpoints

    def stop(self) -> None:
        for proc in reversed(self._processes):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in reversed(self._processes):
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self._processes.clear()

    # -- services ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        log = self.directory / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(  # noqa: S603 - argv is built here, not from input
            argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
        )
        handle.close()
        proc = _Process(name, popen, log)
        self._processes.append(proc)
        return proc

    def _start_azurite(self) -> dict[str, str]:
        entry = REPO / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
        if not entry.exists():
            raise LocalAzureError("Azurite is not installed: run `npm ci` (make deps does it)")
        ports = {svc: free_port() for svc in ("blob", "queue", "table")}
        location = self.directory / "azurite"
        location.mkdir(exist_ok=True)
        argv = [
            "node", str(entry), "--silent", "--location", str(location),
            "--skipApiVersionCheck", "--disableTelemetry", "--loose",
            "--blobHost", "127.0.0.1", "--blobPort", str(ports["blob"]),
            "--queueHost", "127.0.0.1", "--queuePort", str(ports["queue"]),
            "--tableHost", "127.0.0.1", "--tablePort", str(ports["table"]),
        ]  # fmt: skip
        proc = self._spawn("azurite", argv)
        urls = {svc: f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}" for svc, port in ports.items()}
        deadline = time.monotonic() + START_TIMEOUT_S
        for port in ports.values():
            self._wait_for_port(proc, port, deadline)
        return {
            **urls,
            "account": AZURITE_ACCOUNT,
            "connection_string": azurite_connection_string(urls["blob"], urls["queue"], urls["table"]),
        }

    def _start_blob_proxy(self, storage: dict[str, str]) -> dict[str, str]:
        origin = storage["blob"].rsplit("/", 1)[0]
        ready = self._start_python("blobproxy", ["--upstream", origin])
        url = str(ready["blob"])
        return {
            "blob_proxy": url,
            "blob_proxy_admin": str(ready["admin"]),
            "proxy_connection_string": azurite_connection_string(url, storage["queue"], storage["table"]),
        }

    def _start_python(self, name: str, extra: list[str]) -> dict[str, Any]:
        state = self.directory / name
        state.mkdir(exist_ok=True)
        ready = self.directory / f"{name}.ready.json"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", f"emulators.{name}", "--dir", str(state), "--ready-file", str(ready), *extra]
        proc = self._spawn(name, argv)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise LocalAzureError(f"{name} exited with {proc.popen.returncode}: {_tail(proc.log)}")
            if ready.exists():
                try:
                    return dict(json.loads(ready.read_text()))
                except json.JSONDecodeError:
                    pass  # being written; read again
            time.sleep(0.05)
        raise LocalAzureError(f"{name} did not become ready in {START_TIMEOUT_S:.0f}s: {_tail(proc.log)}")

    @staticmethod
    def _wait_for_port(proc: _Process, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise LocalAzureError(f"{proc.name} exited with {proc.popen.returncode}: {_tail(proc.log)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise LocalAzureError(f"{proc.name} did not listen on {port}: {_tail(proc.log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_ready(url: str, ca_bundle: str | None = None, timeout: float = 2.0) -> bool:
    """True when ``url`` answers anything over HTTP(S)."""
    import ssl

    context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None
    try:
        urllib.request.urlopen(url, timeout=timeout, context=context)  # noqa: S310 - loopback only
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def run_until_signalled(directory: Path, services: Sequence[str], vaults: Sequence[str]) -> int:
    """``python -m emulators up``: start everything, print the endpoints, stop on SIGTERM/Ctrl-C."""
    stop = False

    def _stop(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with LocalAzure(directory, services=services, vaults=vaults) as local:
        print(json.dumps({"endpoints_file": str(local.endpoints_file), **local.endpoints}, indent=2), flush=True)
        while not stop:
            for proc in local._processes:
                if proc.popen.poll() is not None:
                    print(f"{proc.name} exited with {proc.popen.returncode}", file=sys.stderr)
                    return 1
            time.sleep(0.2)
    return 0
