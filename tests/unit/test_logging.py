"""Log lines are JSON with the invocation's bound context, and secret-named fields are redacted."""

from __future__ import annotations

import io
import json
import logging
import sys
import types

import pytest

from rotation.logs import REDACTED, bound, configure_logging, get_logger


class TestJsonLogLines:
    """Every event renders as one JSON object carrying the context bound for the invocation."""

    def test_bound_context_on_every_line(self) -> None:
        stream = io.StringIO()
        configure_logging("json", "INFO", stream=stream)
        log = get_logger("rotation.test")

        with bound(rotation_id="rot-1", key="https://kv.vault.azure.net/keys/a", trigger="timer"):
            log.info("step_started", step="plan")
            log.info("step_finished", step="plan")
        log.info("outside")

        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["step_started", "step_finished", "outside"]
        for line in lines[:2]:
            assert line["rotation_id"] == "rot-1"
            assert line["trigger"] == "timer"
            assert line["level"] == "info"
            assert "timestamp" in line
        assert "rotation_id" not in lines[2]

    def test_stdlib_records_render_as_json_too(self) -> None:
        stream = io.StringIO()
        configure_logging("json", "INFO", stream=stream)

        logging.getLogger("some.library").warning("plain %s", "message")

        line = json.loads(stream.getvalue().splitlines()[-1])
        assert line["event"] == "plain message"
        assert line["logger"] == "some.library"

    def test_secret_named_fields_are_redacted(self) -> None:
        stream = io.StringIO()
        configure_logging("json", "INFO", stream=stream)

        get_logger().info("oops", access_token="eyJ.secret.value", encrypted_key="c2VjcmV0", kid="https://kv/keys/a/1")

        line = json.loads(stream.getvalue())
        assert line["access_token"] == REDACTED
        assert line["encrypted_key"] == REDACTED
        assert line["kid"] == "https://kv/keys/a/1"
        assert "c2VjcmV0" not in stream.getvalue()


class TestInsideTheFunctionsWorker:
    """In a worker process the worker's root handler carries each record once; this module adds none.

    ``tests/worker`` proves it with the real worker library over gRPC; this is the quick check.
    """

    def test_no_stderr_handler_and_the_record_reaches_the_worker_handler_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        received: list[logging.LogRecord] = []

        class WorkerHandler(logging.Handler):  # what the worker puts on the root logger
            def emit(self, record: logging.LogRecord) -> None:
                received.append(record)

        root = logging.getLogger()
        monkeypatch.setattr(root, "handlers", [WorkerHandler()])
        monkeypatch.setitem(sys.modules, "azure_functions_runtime", types.ModuleType("azure_functions_runtime"))

        configure_logging("json", "INFO")
        get_logger("rotation.test").info("reconcile_key_failed_but_only_a_name", attempt=1)

        assert [h.get_name() for h in root.handlers] == [None]  # only the worker's
        assert len(received) == 1
        assert received[0].levelno == logging.INFO
        assert json.loads(received[0].getMessage())["event"] == "reconcile_key_failed_but_only_a_name"
