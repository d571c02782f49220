"""Azurite with its blob metadata in a private MariaDB, for blob counts its LokiJS store cannot hold.

Azurite's default LokiJS store finds a blob by scanning every blob of the account, so each blob operation
costs O(blobs) and creating 100,000 blobs never finishes. With ``AZURITE_DB`` set, Azurite's blob service
keeps its metadata in MySQL/MariaDB (sequelize, with a unique index on account, container, blob and
snapshot), and a blob operation costs the same at any count::

    with sql_azurite(Path(tmp)) as conn:
        BlobServiceClient.from_connection_string(conn)

``sql_azurite`` initialises a MariaDB data directory under the given directory (``mariadb/``), starts
``mariadbd`` as the current user on its own unix socket and a free loopback port, creates the database
``azurite_blob`` and a user for it, then starts Azurite against it (``azurite-sql/``); logs are
``mariadb/mariadbd.log`` and ``azurite-sql.log``. Both processes are stopped on exit.

Caveats (Azurite 3.35.0): only the blob service uses the database; queues and tables stay on LokiJS (under
``azurite-sql/``). Azurite's SQL store does not support ``--inMemoryPersistence``, blob copy or page blobs,
and keeps a blob's metadata in a ``VARCHAR(2047)`` column (its JSON), so a blob whose metadata is longer
than that is rejected. MariaDB runs without durability (no flush per commit): it is scratch state.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from emulators.localazure import AZURITE_ACCOUNT, REPO, azurite_connection_string, free_port

DATABASE = "azurite_blob"
DB_USER = "azurite"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_SEARCH = (Path("/usr/sbin"), Path("/usr/bin"))
_INSTALL = "install it with `apt-get install mariadb-server`"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes


class SqlAzuriteError(RuntimeError):
    """MariaDB or Azurite failed to start; the message says which and quotes its log."""


def _find(*names: str) -> str | None:
    """The first of ``names`` on PATH or in /usr/sbin, /usr/bin (often not on a non-root PATH)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in _SEARCH:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def _programs() -> dict[str, str | None]:
    return {
        "mariadbd": _find("mariadbd", "mysqld"),
        "mariadb-install-db": _find("mariadb-install-db", "mysql_install_db"),
        "mariadb": _find("mariadb", "mysql"),
    }


def sql_available() -> str | None:
    """None when MariaDB's server, installer and client are installed; else why not, in one line."""
    missing = [name for name, path in _programs().items() if path is None]
    if missing:
        return f"MariaDB is not installed ({', '.join(missing)} not found): {_INSTALL}"
    return None


def _last_line(path: Path, offset: int = 0) -> str:
    """The last non-empty line written to ``path`` after byte ``offset``."""
    lines = _lines(path, offset)
    return lines[-1] if lines else "(empty log)"


def _first_error(path: Path, offset: int = 0) -> str:
    """MariaDB's first ``[ERROR]`` line after ``offset`` (the cause; the last one is "Aborting"), else the last line."""
    errors = [line for line in _lines(path, offset) if "[ERROR]" in line]
    return errors[0] if errors else _last_line(path, offset)


def _lines(path: Path, offset: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ["(no log)"]
    return [line for line in text.splitlines() if line.strip()]


def _stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO, env=env
        )


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@contextlib.contextmanager
def _socket_dir(root: Path) -> Iterator[Path]:
    """``root``, or a short scratch directory when a socket under ``root`` would exceed the path limit."""
    if len(str(root / "mariadbd.sock")) <= _SOCKET_PATH_MAX:
        yield root
        return
    short = Path(tempfile.mkdtemp(prefix="azsql-"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@contextlib.contextmanager
def _mariadb(directory: Path) -> Iterator[str]:
    """A private ``mariadbd``; yields the ``AZURITE_DB`` URL of database ``azurite_blob`` on it."""
    programs = _programs()
    server, installer, client = programs["mariadbd"], programs["mariadb-install-db"], programs["mariadb"]
    if server is None or installer is None or client is None:
        raise SqlAzuriteError(sql_available() or "MariaDB is not installed")
    root = directory / "mariadb"
    data, tmp = root / "data", root / "tmp"
    for path in (data, tmp):
        path.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwuid(os.geteuid()).pw_name
    if not (data / "mysql").is_dir():
        install_log = root / "install-db.log"
        install_offset = install_log.stat().st_size if install_log.exists() else 0
        with install_log.open("ab") as handle:
            done = subprocess.run(
                [installer, "--no-defaults", f"--datadir={data}", f"--user={user}", "--skip-test-db",
                 "--auth-root-authentication-method=socket", f"--tmpdir={tmp}"],
                stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False, timeout=START_TIMEOUT_S,
            )  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(data / "mysql", ignore_errors=True)  # a half-initialised data dir is not reused
            raise SqlAzuriteError(
                f"mariadb-install-db failed ({done.returncode}): {_first_error(install_log, install_offset)}"
            )
    log = root / "mariadbd.log"
    offset = log.stat().st_size if log.exists() else 0  # the log is appended to across runs
    (port,) = _free_ports(1)
    with _socket_dir(root) as sockets:
        sock = sockets / "mariadbd.sock"
        argv = [
            server, "--no-defaults", f"--datadir={data}", f"--tmpdir={tmp}", f"--socket={sock}",
            f"--pid-file={root / 'mariadbd.pid'}", f"--log-error={log}", f"--port={port}", "--bind-address=127.0.0.1",
            "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
            "--innodb-buffer-pool-dump-at-shutdown=0", "--innodb-buffer-pool-load-at-startup=0",
            "--max-connections=200",
        ]  # fmt: skip
        if os.geteuid() == 0:
            argv.append(f"--user={user}")  # mariadbd refuses to run as root without it
        proc = _spawn(argv, root / "mariadbd.out")
        try:
            password = secrets.token_hex(16)
            setup = (
                f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4; "
                f"CREATE OR REPLACE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
                f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{DB_USER}'@'127.0.0.1';"
            )
            _wait_for_mariadb(proc, client, sock, log, offset)
            done = subprocess.run(
                [client, "--no-defaults", f"--socket={sock}", "--user=root", "--batch", "-e", setup],
                capture_output=True, check=False, timeout=START_TIMEOUT_S,
            )  # fmt: skip
            if done.returncode != 0:
                reason = done.stderr.decode(errors="replace").strip() or _first_error(log, offset)
                raise SqlAzuriteError(f"could not create database {DATABASE} in mariadbd: {reason}")
            yield f"mysql://{DB_USER}:{password}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _stop(proc)


def _wait_for_mariadb(proc: subprocess.Popen[bytes], client: str, sock: Path, log: Path, offset: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise SqlAzuriteError(f"mariadbd did not start (exit {proc.returncode}): {_first_error(log, offset)}")
        if sock.exists():
            with contextlib.suppress(subprocess.TimeoutExpired):
                ping = subprocess.run(
                    [client, "--no-defaults", f"--socket={sock}", "--user=root", "--batch", "-e", "SELECT 1"],
                    capture_output=True, check=False, timeout=10,
                )  # fmt: skip
                if ping.returncode == 0:
                    return
        if time.monotonic() > deadline:
            raise SqlAzuriteError(
                f"mariadbd did not accept connections in {START_TIMEOUT_S:.0f}s: {_first_error(log, offset)}"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def _azurite(directory: Path, database_url: str) -> Iterator[str]:
    """Azurite with ``AZURITE_DB=database_url``; yields its connection string."""
    entry = REPO / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
    if not entry.exists():
        raise SqlAzuriteError("Azurite is not installed: run `npm ci` (make deps does it)")
    location = directory / "azurite-sql"
    location.mkdir(parents=True, exist_ok=True)
    blob, queue, table = _free_ports(3)
    argv = [
        "node", str(entry), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--loose",
        "--location", str(location), "--blobHost", "127.0.0.1", "--blobPort", str(blob),
        "--queueHost", "127.0.0.1", "--queuePort", str(queue), "--tableHost", "127.0.0.1", "--tablePort", str(table),
    ]  # fmt: skip
    log = directory / "azurite-sql.log"
    offset = log.stat().st_size if log.exists() else 0
    proc = _spawn(argv, log, env={**os.environ, "AZURITE_DB": database_url})
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        for port in (blob, queue, table):
            while True:
                if proc.poll() is not None:
                    raise SqlAzuriteError(f"Azurite (SQL) exited with {proc.returncode}: {_last_line(log, offset)}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SqlAzuriteError(
                            f"Azurite (SQL) did not listen on {port}: {_last_line(log, offset)}"
                        ) from None
                    time.sleep(0.1)
        urls = [f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}" for port in (blob, queue, table)]
        yield azurite_connection_string(*urls)
    finally:
        _stop(proc)


@contextlib.contextmanager
def sql_azurite(directory: Path) -> Iterator[str]:
    """Azurite whose blob metadata lives in a private MariaDB under ``directory``; yields its connection string.

    Raises ``SqlAzuriteError`` naming what failed (MariaDB missing, ``mariadbd`` or Azurite not starting).
    On exit Azurite, then MariaDB, is stopped (SIGTERM, then SIGKILL after 30 s); the data stays in ``directory``.
    """
    reason = sql_available()
    if reason:
        raise SqlAzuriteError(reason)
    directory.mkdir(parents=True, exist_ok=True)
    with _mariadb(directory) as database_url, _azurite(directory, database_url) as connection_string:
        yield connection_string
