"""The Event Grid function, called as the host calls it: real func.EventGridEvent / func.CloudEvent objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from rotation import bootstrap
from rotation.domain.model import RotationStatus
from rotation.errors import TransientError
from tests.fakes.estate import KEY, Estate, hosted_standard_estate, standard_estate
from tests.functions_host import functions, invoke
from tests.unit.eventgrid_payloads import key_event, sample

VAULT_NAME = "kv-main"


def _decode(payload: Any) -> Any:
    """What the Functions worker hands the function: the binding's own decoder over the delivered JSON."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(payload), "json"), trigger_metadata={})


def _event(event_type: str = "KeyNearExpiry", *, version: str, schema: str = "eventgrid", **kw: Any) -> Any:
    payload = key_event(event_type, schema=schema, vault=VAULT_NAME, name=KEY.name, version=version, **kw)
    payload["data"]["Id"] = KEY.version_uri(version)
    return payload


@pytest.fixture
def estate() -> Iterator[tuple[Estate, str]]:
    yield from hosted_standard_estate()


def _deliver(payload: Any) -> list[dict[str, Any]]:
    with capture_logs() as logs:
        invoke("on_key_vault_event", _decode(payload))
    return logs


class TestBinding:
    """The function is indexed as an Event Grid trigger named on_key_vault_event."""

    def test_trigger_type(self) -> None:
        function = functions()["on_key_vault_event"]

        binding = json.loads(function.get_function_json())["bindings"][0]

        assert binding["type"] == "eventGridTrigger"
        assert binding["direction"] == "IN"


class TestActingOnKeyEvents:
    """Near-expiry and expired events start a rotation; new versions made outside are adopted; repeats are harmless."""

    @pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
    @pytest.mark.parametrize(("nbf", "exp"), [("1559081980", "1790000000"), (1559081980, 1790000000)])
    def test_near_expiry_starts_a_rotation(self, estate: tuple[Estate, str], schema: str, nbf: Any, exp: Any) -> None:
        fakes, old = estate
        payload = _event(version=old, schema=schema, nbf=nbf, exp=exp)

        logs = _deliver(payload)

        rotations = fakes.journal.list(KEY.uri)
        assert len(rotations) == 1
        assert rotations[0].trigger.event_id == payload["id"]
        assert rotations[0].status in (RotationStatus.AWAITING_RETIREMENT, RotationStatus.WAITING)
        handled = [entry for entry in logs if entry["event"] == "key_event_handled"]
        assert handled[0]["outcome"] == "started"

    def test_duplicate_delivery_is_harmless(self, estate: tuple[Estate, str]) -> None:
        fakes, old = estate
        payload = _event("KeyExpired", version=old)
        _deliver(payload)
        versions_after_first = len(fakes.keys.all_versions(KEY))

        logs = _deliver(payload)

        assert len(fakes.journal.list(KEY.uri)) == 1
        assert len(fakes.keys.all_versions(KEY)) == versions_after_first
        outcome = next(entry for entry in logs if entry["event"] == "key_event_handled")["outcome"]
        assert outcome in ("ignored", "duplicate", "resumed")

    def test_new_version_from_auto_rotation_is_adopted(self, estate: tuple[Estate, str]) -> None:
        fakes, _old = estate
        created = fakes.keys.auto_rotate(KEY)
        payload = _event("KeyNewVersionCreated", version=created.version)

        logs = _deliver(payload)

        handled = next(entry for entry in logs if entry["event"] == "key_event_handled")
        assert handled["outcome"] == "adopted"
        rotation = fakes.journal.list(KEY.uri)[0]
        assert rotation.new_version == created.version
        assert fakes.keys.latest(KEY).version == created.version  # nothing new was created

    def test_transient_failure_is_raised_for_redelivery(self, estate: tuple[Estate, str]) -> None:
        fakes, old = estate

        bootstrap.override_dependencies(fakes.deps_with_lock_check_failing(TransientError("table storage unavailable")))

        with pytest.raises(TransientError):
            invoke("on_key_vault_event", _decode(_event(version=old)))

        assert fakes.journal.list(KEY.uri) == []


class TestIgnoringAndRejecting:
    """Foreign, unmanaged and malformed events are logged and return normally, with no side effect."""

    @pytest.mark.parametrize(
        "payload",
        [
            sample("keyvault.SecretNewVersionCreated.eventgrid-schema.json"),
            sample("keyvault.SecretNewVersionCreated.cloudevents-schema.json"),
            sample("keyvault.CertificateNearExpiry.eventgrid-schema.captured.json")[0],
            key_event(vault="elsewhere"),
            key_event(vault=VAULT_NAME, name="not-managed"),
        ],
        ids=["secret-eg", "secret-ce", "certificate", "other-vault", "unmanaged-key"],
    )
    def test_ignored_with_a_log_line(self, estate: tuple[Estate, str], payload: Any) -> None:
        fakes, _ = estate

        logs = _deliver(payload)

        assert [entry["event"] for entry in logs] == ["key_event_ignored"]
        assert logs[0]["reason"]
        assert fakes.journal.list() == []
        assert list(fakes.audit.records()) == []

    @pytest.mark.parametrize(
        "mutation",
        [
            {"data": "not an object"},
            {"data": None},
            {"id": None},
            {"subject": "someone-else"},
            {"eventType": 42},
        ],
    )
    def test_malformed_is_rejected_without_side_effect(self, estate: tuple[Estate, str], mutation: Any) -> None:
        fakes, old = estate
        payload = {**_event(version=old), **mutation}

        logs = _deliver(payload)

        assert [entry["event"] for entry in logs] == ["key_event_malformed"]
        assert logs[0]["problem"]
        assert fakes.journal.list() == []

    def test_huge_hostile_field_is_not_logged_whole(self, estate: tuple[Estate, str]) -> None:
        _, old = estate
        payload = _event(version=old)
        payload["data"]["ObjectName"] = "Z" * 1_000_000

        logs = _deliver(payload)

        assert logs[0]["event"] == "key_event_malformed"
        assert len(json.dumps(logs)) < 2_000


_hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


class TestFuzzedDeliveries:
    """Whatever a delivery holds, the function returns normally or raises only for a retryable failure."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        field=st.sampled_from(["Id", "VaultName", "ObjectType", "ObjectName", "Version", "NBF", "EXP"]),
        value=_hostile_values,
        schema=st.sampled_from(["eventgrid", "cloudevents"]),
    )
    def test_fuzzed_data_field(self, field: str, value: Any, schema: str) -> None:
        fakes, old = standard_estate()
        bootstrap.override_dependencies(fakes.deps())
        payload = _event(version=old, schema=schema)
        payload["data"][field] = value

        try:
            logs = _deliver(payload)
        finally:
            bootstrap.override_dependencies(None)

        assert logs[-1]["event"] in ("key_event_handled", "key_event_ignored", "key_event_malformed")


def test_cloud_event_type_is_what_the_binding_produces() -> None:
    decoded = _decode(key_event(schema="cloudevents"))

    assert isinstance(decoded, func.CloudEvent)


class TestSchemaByPayload:
    """The schema is read from the delivery (``specversion``), never from azure-functions' classes.

    A worker may load an azure-functions older than 1.25 (Core Tools puts its own first on the path),
    which has no ``func.CloudEvent``; Event Grid deliveries must still be handled there.
    """

    def test_event_grid_delivery_without_the_cloud_event_class(
        self, estate: tuple[Estate, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        decoded = _decode(key_event(vault="elsewhere"))
        monkeypatch.delattr(func, "CloudEvent")  # the module as azure-functions < 1.25 ships it

        with capture_logs() as logs:
            invoke("on_key_vault_event", decoded)

        assert [(e["event"], e["event_type"]) for e in logs] == [
            ("key_event_ignored", "Microsoft.KeyVault.KeyNearExpiry")
        ]

    def test_cloud_event_of_another_class_is_read_as_a_cloud_event(self, estate: tuple[Estate, str]) -> None:
        payload = key_event(vault="elsewhere", schema="cloudevents")

        class OtherCloudEvent:  # a CloudEvents 1.0 delivery from a binding type other than func.CloudEvent
            specversion = payload["specversion"]
            id, type, source = payload["id"], payload["type"], payload["source"]
            subject, time = payload["subject"], None

            def get_json(self) -> Any:
                return payload["data"]

        with capture_logs() as logs:
            invoke("on_key_vault_event", OtherCloudEvent())

        assert [(e["event"], e["event_type"]) for e in logs] == [
            ("key_event_ignored", "Microsoft.KeyVault.KeyNearExpiry")
        ]
