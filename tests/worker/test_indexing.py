"""The app as the Functions host sees it after worker indexing: functions, bindings, settings resolved."""

from __future__ import annotations

from typing import Any

import pytest

from tests.worker.conftest import REQUIRED_SETTINGS, local_settings, sample_settings
from tests.worker.host import WorkerHost
from tests.worker.metadata import MetadataError, validate


class TestIndexedFunctions:
    """Every function indexes under the real worker library with the bindings the host will act on."""

    def test_every_function_and_its_trigger(self, worker: WorkerHost) -> None:
        triggers = {name: f.trigger for name, f in worker.functions.items()}

        assert sorted(triggers) == ["http_app_func", "on_key_vault_event", "reconcile", "rewrap_worker", "run_rotation"]
        assert {name: t["type"] for name, t in triggers.items()} == {
            "http_app_func": "httpTrigger",
            "on_key_vault_event": "eventGridTrigger",
            "reconcile": "timerTrigger",
            "rewrap_worker": "queueTrigger",
            "run_rotation": "queueTrigger",
        }

    def test_queue_and_timer_bindings_resolved_from_the_settings(self, worker: WorkerHost) -> None:
        rewrap, run = worker.functions["rewrap_worker"].trigger, worker.functions["run_rotation"].trigger
        reconcile = worker.functions["reconcile"].trigger

        assert (rewrap["queueName"], rewrap["connection"]) == ("rotation-rewrap", "AzureWebJobsStorage")
        assert (run["queueName"], run["connection"]) == ("rotation-run", "AzureWebJobsStorage")
        assert reconcile["schedule"] == "0 */15 * * * *"
        assert reconcile["useMonitor"] is True
        assert reconcile["runOnStartup"] is False

    def test_http_function_needs_a_function_key_and_returns_through_return(self, worker: WorkerHost) -> None:
        bindings = {b["name"]: b for b in worker.functions["http_app_func"].bindings}

        assert bindings["req"]["authLevel"] == "FUNCTION"
        assert bindings["$return"] == {"direction": "OUT", "type": "http", "name": "$return"}

    def test_worker_reports_the_library_and_python(self, worker: WorkerHost) -> None:
        metadata = worker.init_response.worker_metadata

        assert (metadata.runtime_name, metadata.runtime_version) == ("python", "3.13")
        assert metadata.worker_version == "1.3.0"  # azure-functions-runtime, pinned in requirements-worker.txt


class TestDocumentedSettings:
    """Every binding resolves from the documented settings alone; the host refuses what does not."""

    @pytest.mark.parametrize("which", ["sample", "required_only"])
    def test_bindings_resolve_from_documented_settings(self, local_azure: dict[str, Any], which: str) -> None:
        documented = sample_settings() if which == "sample" else {k: sample_settings()[k] for k in REQUIRED_SETTINGS}
        documented["AzureWebJobsStorage"] = local_settings(local_azure)["AzureWebJobsStorage"]

        with WorkerHost(documented) as host:
            queues = {name: f.trigger.get("queueName") for name, f in host.functions.items()}

        assert queues["rewrap_worker"] == "rotation-rewrap"  # the documented default
        assert queues["run_rotation"] == "rotation-run"

    def test_a_setting_named_in_the_environment_is_bound_by_reference(self, local_azure: dict[str, Any]) -> None:
        settings = local_settings(
            local_azure, ROTATION_REWRAP_QUEUE="rewrap-custom", ROTATION_RECONCILE_SCHEDULE="0 0 * * * *"
        )

        with WorkerHost(settings) as host:
            rewrap, reconcile = host.functions["rewrap_worker"].trigger, host.functions["reconcile"].trigger

        assert rewrap["queueName"] == "rewrap-custom"
        assert reconcile["schedule"] == "0 0 * * * *"


class _Meta:
    """The fields of an ``RpcFunctionMetadata`` the host checks read."""

    def __init__(self, name: str, *raw: str) -> None:
        self.name, self.function_id, self.raw_bindings = name, name, list(raw)


class TestHostChecks:
    """The stand-in's metadata checks refuse what the host refuses (so the tests above can fail)."""

    def test_unresolvable_setting_is_refused(self) -> None:
        meta = _Meta(
            "f", '{"type": "queueTrigger", "name": "msg", "direction": "IN", "queueName": "%NOPE%", "connection": "S"}'
        )

        with pytest.raises(MetadataError, match="'%NOPE%' does not resolve to a value"):
            validate([meta], {"S": "x"})

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            ('{"type": "queue", "name": "out", "direction": "OUT"}', "0 trigger bindings"),
            (
                '{"type": "timerTrigger", "name": "t-1", "direction": "IN", "schedule": "0 * * * * *"}',
                "invalid binding name",
            ),
            ('{"type": "timerTrigger", "name": "t", "direction": "IN", "schedule": "*/5 * * * *"}', "6-field"),
            (
                '{"type": "queueTrigger", "name": "m", "direction": "IN", "queueName": "Bad_Q", "connection": "S"}',
                "valid queue",
            ),
            (
                '{"type": "queueTrigger", "name": "m", "direction": "IN", "queueName": "q-ok", "connection": "Other"}',
                "'Other' does not exist",
            ),
        ],
    )
    def test_other_refusals(self, raw: str, problem: str) -> None:
        with pytest.raises(MetadataError, match=problem):
            validate([_Meta("f", raw)], {"S": "x"})

    def test_duplicate_and_invalid_function_names(self) -> None:
        ok = '{"type": "timerTrigger", "name": "t", "direction": "IN", "schedule": "0 * * * * *"}'

        with pytest.raises(MetadataError, match="duplicate function name") as refused:
            validate([_Meta("Same", ok), _Meta("same", ok), _Meta("host", ok)], {})

        assert "host: invalid function name" in str(refused.value)
