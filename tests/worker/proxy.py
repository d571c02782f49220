"""The worker process: the Functions RPC stream on one side, the real worker library on the other.

For Python 3.13+ apps Azure runs a small *proxy worker* (bundled with the Functions host, published on
no registry) that owns the gRPC stream and hands every request to ``azure_functions_runtime``, the
worker library from PyPI, which indexes the app (v2 model), converts binding data and invokes the
functions. This module is that proxy, written for the tests; everything past the stream is the real
library. It starts the way the host starts a worker::

    python -m tests.worker.proxy --host 127.0.0.1 --port P --workerId W --requestId R \\
        --grpcMaxMessageLength N --functions-uri http://127.0.0.1:P/

Logging as the language worker does it: once the stream is open, the root logger gets one handler
that sends every record as an ``RpcLog`` (level from the record, invocation id from the library's
``invocation_id_cv``); nothing else is written to the console by the worker itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SYSTEM_LOGGERS = ("azure_functions_runtime", "azure.functions", "tests.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The host's command line (both the short and the ``--functions-*`` spellings it uses)."""
    parser = argparse.ArgumentParser(description="Functions RPC proxy worker (test stand-in)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workerId", dest="worker_id")
    parser.add_argument("--requestId", dest="request_id")
    parser.add_argument("--grpcMaxMessageLength", dest="grpc_max_msg_len", type=int)
    parser.add_argument("--functions-uri", dest="functions_uri")
    parser.add_argument("--functions-worker-id", dest="functions_worker_id")
    parser.add_argument("--functions-request-id", dest="functions_request_id")
    parser.add_argument("--functions-grpc-max-message-length", dest="functions_grpc_max_msg_len", type=int)
    args = parser.parse_args(argv)
    if args.functions_uri:
        uri = urlsplit(args.functions_uri)
        args.host, args.port = uri.hostname, uri.port
    args.worker_id = args.functions_worker_id or args.worker_id
    args.request_id = args.functions_request_id or args.request_id
    args.grpc_max_msg_len = args.functions_grpc_max_msg_len or args.grpc_max_msg_len
    if not (args.host and args.port and args.worker_id and args.request_id):
        parser.error("--host/--port (or --functions-uri), --workerId and --requestId are required")
    return args


class _Request:
    """What the library's handlers take: the streaming message and the proxy's properties."""

    def __init__(self, message: Any, properties: dict[str, Any]) -> None:
        self.request = message
        self.properties = properties


class RpcLogHandler(logging.Handler):
    """Every log record of the process, sent to the host as one ``RpcLog``."""

    def __init__(self, send: Any, pb2: Any, request_id: str) -> None:
        super().__init__()
        self._send, self._pb2, self._request_id = send, pb2, request_id

    def emit(self, record: logging.LogRecord) -> None:
        from azure_functions_runtime import invocation_id_cv

        levels = self._pb2.RpcLog
        level = (
            levels.Critical
            if record.levelno >= logging.CRITICAL
            else levels.Error
            if record.levelno >= logging.ERROR
            else levels.Warning
            if record.levelno >= logging.WARNING
            else levels.Information
            if record.levelno >= logging.INFO
            else levels.Debug
        )
        system = record.name.startswith(SYSTEM_LOGGERS)
        log = self._pb2.RpcLog(
            level=level,
            message=self.format(record),
            category=record.name,
            log_category=levels.System if system else levels.User,
            invocation_id=invocation_id_cv.get() or "",
        )
        self._send(self._pb2.StreamingMessage(request_id=self._request_id, rpc_log=log))


class ProxyWorker:
    """One stream to the host; each request runs as a task on the worker's event loop."""

    def __init__(self, args: argparse.Namespace, pb2: Any, pb2_grpc: Any) -> None:
        self.args, self.pb2, self.pb2_grpc = args, pb2, pb2_grpc
        self.outgoing: queue.Queue[Any] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.properties = {"host": args.host, "protos": pb2}
        self.stopped = threading.Event()

    def send(self, message: Any) -> None:
        self.outgoing.put(message)

    def _outgoing(self) -> Any:
        while True:
            message = self.outgoing.get()
            if message is None:
                return
            yield message

    def run(self) -> None:
        import azure_functions_runtime as runtime
        import grpc

        options = []
        if self.args.grpc_max_msg_len:
            options = [
                ("grpc.max_receive_message_length", self.args.grpc_max_msg_len),
                ("grpc.max_send_message_length", self.args.grpc_max_msg_len),
            ]
        channel = grpc.insecure_channel(f"{self.args.host}:{self.args.port}", options)
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = self.pb2_grpc.FunctionRpcStub(channel)
        self.send(
            self.pb2.StreamingMessage(
                request_id=self.args.request_id, start_stream=self.pb2.StartStream(worker_id=self.args.worker_id)
            )
        )
        root = logging.getLogger()
        for handler in list(root.handlers):  # the console is not the worker's channel once the stream is open
            root.removeHandler(handler)
        root.addHandler(RpcLogHandler(self.send, self.pb2, self.args.request_id))
        root.setLevel(logging.INFO)
        runtime.start_threadpool_executor()

        thread = threading.Thread(target=self.loop.run_forever, name="worker-loop", daemon=True)
        thread.start()
        try:
            for message in stub.EventStream(self._outgoing()):
                if message.WhichOneof("content") == "worker_terminate":
                    break
                asyncio.run_coroutine_threadsafe(self._dispatch(message), self.loop)
        except grpc.RpcError:
            pass  # the host closed the stream: the worker exits, as a real one does
        finally:
            self.outgoing.put(None)
            runtime.stop_threadpool_executor()
            channel.close()

    async def _dispatch(self, message: Any) -> None:
        import azure_functions_runtime as runtime

        kind = message.WhichOneof("content")
        handlers = {
            "worker_init_request": (runtime.worker_init_request, "worker_init_response"),
            "functions_metadata_request": (runtime.functions_metadata_request, "function_metadata_response"),
            "function_load_request": (runtime.function_load_request, "function_load_response"),
            "invocation_request": (runtime.invocation_request, "invocation_response"),
            "function_environment_reload_request": (
                runtime.function_environment_reload_request,
                "function_environment_reload_response",
            ),
        }
        if kind not in handlers:
            logging.getLogger("tests.worker.proxy").warning("unhandled request %s", kind)
            return
        handler, response_field = handlers[kind]
        if kind == "invocation_request":
            runtime.invocation_id_cv.set(message.invocation_request.invocation_id)
        response = await handler(_Request(message, self.properties))
        self.send(self.pb2.StreamingMessage(request_id=message.request_id, **{response_field: response}))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tests.worker.protos import OUT_DIR_ENV, load

    pb2, pb2_grpc = load(Path(os.environ[OUT_DIR_ENV]))
    ProxyWorker(args, pb2, pb2_grpc).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
