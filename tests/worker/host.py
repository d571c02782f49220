"""A stand-in for the Azure Functions host: the gRPC ``EventStream`` server, a worker subprocess, and
the host's side of the conversation.

What it does, in the host's order (``GrpcWorkerChannel``): listen on a loopback port, start the worker
the way the host does (``python -m <worker> --host --port --workerId --requestId
--grpcMaxMessageLength --functions-uri``, the app folder as the working directory and on
``PYTHONPATH``, the app settings as the environment), wait for ``StartStream``, send
``WorkerInitRequest`` and ``FunctionsMetadataRequest`` (worker indexing), run the host's own checks
on the returned metadata (:mod:`tests.worker.metadata`), send one ``FunctionLoadRequest`` per
function, then ``InvocationRequest``\\ s with trigger data shaped as the host's extensions send it
(:mod:`tests.worker.triggers`). Every ``RpcLog`` the worker sends is kept, with its invocation id;
the worker's stdout and stderr are kept apart (the host would forward them as console logs).

What it is not: the host's own listeners (Event Grid webhook, storage queue polling, timer schedule
monitor), the scale controller and function keys. :mod:`tests.worker.queues` adds a queue listener
with the host's dequeue/poison rules for tests that want real queue delivery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tests.worker import metadata as host_checks
from tests.worker.protos import OUT_DIR_ENV, compile_protos, load

REPO = Path(__file__).resolve().parents[2]
WORKER_VENV = REPO / ".venv-worker"
WORKER_MODULE = "tests.worker.proxy"
GRPC_MAX_MESSAGE_LENGTH = 2147483647  # what the host passes (int.MaxValue)
TIMEOUT_S = 120.0


class WorkerError(RuntimeError):
    """The worker refused a request, died, or did not answer in time."""


@dataclass
class LoadedFunction:
    """One function as the host knows it after indexing."""

    name: str
    function_id: str
    bindings: list[dict[str, Any]]  # the raw bindings, %settings% resolved
    metadata: Any  # RpcFunctionMetadata

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.bindings if b["type"].endswith("Trigger"))


@dataclass
class Invocation:
    """An invocation's response and the log lines the worker sent for it."""

    response: Any  # InvocationResponse
    logs: list[Any] = field(default_factory=list)  # RpcLog with this invocation id

    @property
    def succeeded(self) -> bool:
        return bool(self.response.result.status == self.response.result.Success)

    @property
    def error(self) -> str:
        return str(self.response.result.exception.message)

    def messages(self, level: str | None = None) -> list[str]:
        """The log messages, optionally only those at ``level`` (``Information``, ``Warning``, ...)."""
        levels = self.response.DESCRIPTOR.file.message_types_by_name["RpcLog"].enum_types_by_name["Level"]
        wanted = None if level is None else levels.values_by_name[level].number
        return [log.message for log in self.logs if wanted is None or log.level == wanted]


class _Stream:
    """The one EventStream a worker opens: requests go out from a queue, responses are collected."""

    def __init__(self) -> None:
        self.outgoing: list[Any] = []
        self.received: list[Any] = []
        self.cond = threading.Condition()
        self.closed = False

    def send(self, message: Any) -> None:
        with self.cond:
            self.outgoing.append(message)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def requests(self) -> Iterator[Any]:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.outgoing or self.closed)
                if not self.outgoing:
                    return
                message = self.outgoing.pop(0)
            yield message

    def receive(self, iterator: Iterator[Any]) -> None:
        try:
            for message in iterator:
                with self.cond:
                    self.received.append(message)
                    self.cond.notify_all()
        except grpc.RpcError:
            pass
        finally:
            self.close()

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float, alive: Callable[[], bool]) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for message in self.received:
                    if predicate(message):
                        return message
                if not alive():
                    raise WorkerError("the worker process exited")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerError("the worker did not answer in time")
                self.cond.wait(timeout=min(remaining, 0.5))


class WorkerHost:
    """Start the worker for an app folder with ``settings`` as its app settings, index and load it.

    Use as a context manager; ``functions`` holds what was loaded, ``invoke`` runs one invocation.
    """

    def __init__(
        self,
        settings: Mapping[str, str],
        *,
        app_dir: Path = REPO,
        python: Path | None = None,
        host_json: Mapping[str, Any] | None = None,
    ) -> None:
        self.app_dir = app_dir
        self.settings = {k: v for k, v in settings.items() if v is not None}
        self.python = python or worker_python()
        self.host_json = dict(host_json) if host_json is not None else json.loads((app_dir / "host.json").read_text())
        self.pb2, self.pb2_grpc = load()
        self.functions: dict[str, LoadedFunction] = {}
        self.worker_id = str(uuid.uuid4())
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self.init_response: Any = None
        self._stream = _Stream()
        self._server: grpc.Server | None = None
        self._process: subprocess.Popen[str] | None = None
        self._connected = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> WorkerHost:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        port = self._serve()
        request_id = str(uuid.uuid4())
        self._spawn(port, request_id)
        if not self._connected.wait(TIMEOUT_S):
            raise WorkerError(f"the worker opened no stream; stderr: {self.stderr_text()[-2000:]}")
        self._wait(lambda m: m.WhichOneof("content") == "start_stream" and m.start_stream.worker_id == self.worker_id)
        self._initialise()
        self._index_and_load()

    def stop(self) -> None:
        self._stream.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    def _serve(self) -> int:
        stream = self._stream
        connected = self._connected

        class Servicer(self.pb2_grpc.FunctionRpcServicer):  # type: ignore[misc,name-defined]
            def EventStream(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
                connected.set()
                threading.Thread(target=stream.receive, args=(request_iterator,), daemon=True).start()
                yield from stream.requests()

        options = [
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_LENGTH),
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_LENGTH),
        ]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
        self.pb2_grpc.add_FunctionRpcServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return port

    def _spawn(self, port: int, request_id: str) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", ""),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            **self.settings,
            "PYTHONPATH": str(self.app_dir),
            "PYTHONUNBUFFERED": "1",
            OUT_DIR_ENV: str(compile_protos()),
        }
        command = [
            str(self.python),
            "-m",
            WORKER_MODULE,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workerId",
            self.worker_id,
            "--requestId",
            request_id,
            "--grpcMaxMessageLength",
            str(GRPC_MAX_MESSAGE_LENGTH),
            "--functions-uri",
            f"http://127.0.0.1:{port}/",
        ]
        self._process = subprocess.Popen(
            command,
            cwd=self.app_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pipe, sink in ((self._process.stdout, self.stdout), (self._process.stderr, self.stderr)):
            threading.Thread(target=_drain_lines, args=(pipe, sink), daemon=True).start()

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _wait(self, predicate: Callable[[Any], bool], timeout: float = TIMEOUT_S) -> Any:
        try:
            return self._stream.wait_for(predicate, timeout, self._alive)
        except WorkerError as exc:
            raise WorkerError(f"{exc}; stderr: {self.stderr_text()[-2000:]}") from None

    def _request(self, response_field: str, match: Callable[[Any], bool] = lambda _r: True, **content: Any) -> Any:
        request_id = str(uuid.uuid4())
        self._stream.send(self.pb2.StreamingMessage(request_id=request_id, **content))
        message = self._wait(lambda m: m.WhichOneof("content") == response_field and match(getattr(m, response_field)))
        return getattr(message, response_field)

    # -- the host's start-up conversation --------------------------------------------------------

    def _initialise(self) -> None:
        request = self.pb2.WorkerInitRequest(
            host_version="4.1000.0",
            function_app_directory=str(self.app_dir),
            worker_directory=str(self.app_dir),
            capabilities={},
        )
        response = self._request("worker_init_response", worker_init_request=request)
        if response.result.status != response.result.Success:
            raise WorkerError(f"WorkerInitRequest failed: {response.result.exception.message}")
        self.init_response = response

    def _index_and_load(self) -> None:
        request = self.pb2.FunctionsMetadataRequest(function_app_directory=str(self.app_dir))
        response = self._request("function_metadata_response", functions_metadata_request=request)
        if response.result.status != response.result.Success:
            raise WorkerError(f"indexing failed: {response.result.exception.message}")
        indexed = host_checks.validate(response.function_metadata_results, self.settings)
        for entry in indexed:
            load = self.pb2.FunctionLoadRequest(function_id=entry.function_id, metadata=entry.metadata)
            loaded = self._request(
                "function_load_response",
                match=lambda r, fid=entry.function_id: r.function_id == fid,
                function_load_request=load,
            )
            if loaded.result.status != loaded.result.Success:
                raise WorkerError(f"loading {entry.name} failed: {loaded.result.exception.message}")
            self.functions[entry.name] = LoadedFunction(entry.name, entry.function_id, entry.bindings, entry.metadata)

    # -- invocations -----------------------------------------------------------------------------

    def invoke(
        self,
        name: str,
        input_data: Mapping[str, Any],
        trigger_metadata: Mapping[str, Any] | None = None,
        *,
        retry_count: int = 0,
    ) -> Invocation:
        """One ``InvocationRequest`` for ``name`` with ``input_data`` (binding name -> TypedData)."""
        function = self.functions[name]
        invocation_id = str(uuid.uuid4())
        metadata = dict(trigger_metadata or {})
        metadata["sys"] = self.pb2.TypedData(
            json=json.dumps({"MethodName": name, "UtcNow": _utc_now(), "RandGuid": str(uuid.uuid4())})
        )
        request = self.pb2.InvocationRequest(
            invocation_id=invocation_id,
            function_id=function.function_id,
            input_data=[self.pb2.ParameterBinding(name=k, data=v) for k, v in input_data.items()],
            trigger_metadata=metadata,
            retry_context=self.pb2.RetryContext(retry_count=retry_count, max_retry_count=0),
        )
        response = self._request(
            "invocation_response",
            match=lambda r: r.invocation_id == invocation_id,
            invocation_request=request,
        )
        return Invocation(response, self.logs(invocation_id))

    def logs(self, invocation_id: str | None = None) -> list[Any]:
        """``RpcLog`` messages received so far (of one invocation, when given)."""
        with self._stream.cond:
            return [
                m.rpc_log
                for m in self._stream.received
                if m.WhichOneof("content") == "rpc_log"
                and (invocation_id is None or m.rpc_log.invocation_id == invocation_id)
            ]

    def stderr_text(self) -> str:
        return "\n".join(self.stderr)


def _drain_lines(pipe: Any, sink: list[str]) -> None:
    for line in pipe:
        sink.append(line.rstrip("\n"))


def _utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


def worker_python() -> Path:
    """The worker lane's interpreter (``make worker-deps`` creates it); a clear error when it is missing."""
    python = WORKER_VENV / "bin" / "python"
    if not python.exists():
        raise WorkerError(f"no worker venv at {WORKER_VENV}: run `make worker-deps` (needs python3.13)")
    return python


if __name__ == "__main__":  # pragma: no cover - a quick look: python -m tests.worker.host
    with WorkerHost(dict(os.environ)) as host:
        print(json.dumps({name: f.bindings for name, f in host.functions.items()}, indent=2))
    sys.exit(0)
