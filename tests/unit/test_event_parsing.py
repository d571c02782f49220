"""Key Vault events (Event Grid schema and CloudEvents 1.0) parse into KeyVaultEvent, IgnoredEvent or MalformedEvent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotation.domain.events import EventScope, IgnoredEvent, MalformedEvent, parse_event, parse_fields
from rotation.domain.model import KeyRef, KeyVaultEvent
from tests.unit.eventgrid_payloads import KEY, KEY_URI, VAULT_URL, VERSION, key_event, sample

SCOPE = EventScope.from_settings([KEY_URI], [])


class TestKeyEvents:
    """The three key event types in both schemas become KeyVaultEvents with NBF/EXP as strings or integers."""

    @pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
    @pytest.mark.parametrize("event_type", ["KeyNearExpiry", "KeyExpired", "KeyNewVersionCreated"])
    def test_key_event_parses(self, schema: str, event_type: str) -> None:
        payload = key_event(event_type, schema=schema, event_id="e-1")

        event = parse_event(payload, SCOPE)

        assert isinstance(event, KeyVaultEvent)
        assert event.event_id == "e-1"
        assert event.event_type == event_type
        assert event.key == KeyRef(VAULT_URL, KEY)
        assert event.version == VERSION
        assert event.vault_name == "cmk-vault"
        assert event.not_before == datetime(2019, 5, 28, 22, 19, 40, tzinfo=UTC)
        assert event.expires == datetime.fromtimestamp(1790000000, UTC)
        assert event.event_time == datetime(2026, 11, 27, 10, 8, 33, 103673, tzinfo=UTC)

    @pytest.mark.parametrize(("nbf", "exp"), [(1700753990, 1701185990), ("1700753990", "1701185990"), (None, None)])
    def test_times_as_integers_strings_or_absent(self, nbf: object, exp: object) -> None:
        payload = key_event(nbf=nbf, exp=exp)

        event = parse_event(payload, SCOPE)

        assert isinstance(event, KeyVaultEvent)
        if exp is None:
            assert event.expires is None
            assert event.not_before is None
        else:
            assert event.expires == datetime.fromtimestamp(1701185990, UTC)
            assert event.not_before == datetime.fromtimestamp(1700753990, UTC)

    def test_functions_binding_fields_parse_the_same(self) -> None:
        payload = key_event("KeyExpired", schema="cloudevents")
        decoded = EventGridEventInConverter.decode(meta.Datum(json.dumps(payload), "json"), trigger_metadata={})

        event = parse_fields(
            event_id=decoded.id,
            event_type=decoded.type,
            subject=decoded.subject,
            source=decoded.source,
            event_time=decoded.time,
            data=decoded.get_json(),
            scope=SCOPE,
        )

        assert event == parse_event(payload, SCOPE)

    def test_vault_url_with_default_port_matches(self) -> None:
        scope = EventScope.from_settings([KEY_URI], ["https://CMK-VAULT.vault.azure.net:443/"])
        payload = key_event()

        event = parse_event(payload, scope)

        assert isinstance(event, KeyVaultEvent)


class TestIgnoredEvents:
    """Events that are well-formed but not this service's are ignored with a reason, never an error."""

    @pytest.mark.parametrize(
        "name",
        [
            "keyvault.SecretNewVersionCreated.eventgrid-schema.json",
            "keyvault.SecretNewVersionCreated.cloudevents-schema.json",
            "keyvault.CertificateNearExpiry.eventgrid-schema.captured.json",
            "storage.BlobCreated.deadletter.eventgrid-schema.json",
            "SubscriptionValidationEvent.request.json",
        ],
    )
    def test_microsoft_samples_are_ignored(self, name: str) -> None:
        loaded = sample(name)
        payload = loaded[0] if isinstance(loaded, list) else loaded

        outcome = parse_event(payload, SCOPE)

        assert isinstance(outcome, IgnoredEvent)
        assert outcome.event_id == payload["id"]

    def test_secret_event_reason_names_the_kind(self) -> None:
        payload = sample("keyvault.SecretNewVersionCreated.eventgrid-schema.json")

        outcome = parse_event(payload, SCOPE)

        assert isinstance(outcome, IgnoredEvent)
        assert "not a key event" in outcome.reason

    def test_vault_outside_allow_list(self) -> None:
        payload = key_event(vault="other-vault")

        outcome = parse_event(payload, SCOPE)

        assert isinstance(outcome, IgnoredEvent)
        assert outcome.reason == "vault not in the allow-list"
        assert outcome.vault == "https://other-vault.vault.azure.net"

    def test_unmanaged_key_in_allowed_vault(self) -> None:
        payload = key_event(name="someone-elses-key")

        outcome = parse_event(payload, SCOPE)

        assert isinstance(outcome, IgnoredEvent)
        assert outcome.reason == "key is not managed by this service"

    def test_explicit_allow_list_replaces_the_default(self) -> None:
        scope = EventScope.from_settings([KEY_URI], ["https://elsewhere.vault.azure.net"])

        outcome = parse_event(key_event(), scope)

        assert isinstance(outcome, IgnoredEvent)
        assert outcome.reason == "vault not in the allow-list"

    def test_unknown_key_vault_event_type(self) -> None:
        payload = key_event("KeyDeleted")

        outcome = parse_event(payload, SCOPE)

        assert isinstance(outcome, IgnoredEvent)
        assert outcome.reason == "unknown Key Vault event type"


def _mutate(path: str, value: object, **kwargs: Any) -> dict[str, Any]:
    payload = key_event(**kwargs)
    if path.startswith("data."):
        payload["data"][path[5:]] = value
    else:
        payload[path] = value
    return payload


class TestMalformedEvents:
    """Payloads without the documented shape raise MalformedEvent naming the field; nothing else escapes."""

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            (["not", "an", "object"], "JSON object"),
            (_mutate("id", None), "id"),
            (_mutate("id", 12), "id"),
            (_mutate("eventType", ["Microsoft.KeyVault.KeyExpired"]), "event type"),
            (_mutate("data", "a string"), "'data'"),
            (_mutate("data", None), "'data'"),
            (_mutate("data.Id", "https://cmk-vault.vault.azure.net/secrets/aml-cmk/abc"), "data.Id"),
            (_mutate("data.Id", "http://cmk-vault.vault.azure.net/keys/aml-cmk/abc"), "data.Id"),
            (_mutate("data.ObjectType", "Secret"), "ObjectType"),
            (_mutate("data.ObjectName", "other"), "ObjectName"),
            (_mutate("data.VaultName", "bad vault/../"), "VaultName"),
            (_mutate("data.Version", "not-a-version!"), "data.Version"),
            (_mutate("data.Version", "abcdef"), "does not match"),
            (_mutate("data.NBF", "yesterday"), "data.NBF"),
            (_mutate("data.EXP", -5), "data.EXP"),
            (_mutate("data.EXP", True), "data.EXP"),
            (_mutate("data.EXP", 10**30), "data.EXP"),
            (_mutate("data.EXP", 1.5), "data.EXP"),
            (_mutate("subject", "someone-else"), "subject"),
            (_mutate("topic", "/subscriptions/x/providers/Microsoft.KeyVault/vaults/evil"), "topic"),
            (_mutate("eventTime", "not a time"), "event time"),
            (_mutate("eventTime", 12345), "event time"),
            (_mutate("id", "x" * 100_000), "longer than"),
            (_mutate("id", "line\nbreak"), "control characters"),
            ({**key_event(schema="cloudevents"), "specversion": "0.3"}, "specversion"),
        ],
    )
    def test_malformed_payload_is_named(self, payload: object, field: str) -> None:
        with pytest.raises(MalformedEvent) as caught:
            parse_event(payload, SCOPE)

        assert field in caught.value.message
        assert len(caught.value.message) < 400

    def test_new_version_event_needs_a_version(self) -> None:
        payload = key_event("KeyNewVersionCreated")
        payload["data"]["Version"] = ""
        payload["data"]["Id"] = KEY_URI

        with pytest.raises(MalformedEvent, match="without a version"):
            parse_event(payload, SCOPE)

    def test_huge_body_is_rejected_without_echoing_it(self) -> None:
        payload = _mutate("data.ObjectName", "A" * 5_000_000)

        with pytest.raises(MalformedEvent) as caught:
            parse_event(payload, SCOPE)

        assert "AAAAAAAAAA" * 10 not in caught.value.message


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
_field_values = st.one_of(
    _json,
    st.sampled_from(
        [
            KEY,
            VERSION,
            "cmk-vault",
            "Key",
            KEY_URI,
            f"{KEY_URI}/{VERSION}",
            "1559081980",
            1559081980,
            "Microsoft.KeyVault.KeyNearExpiry",
            "Microsoft.KeyVault.KeyNewVersionCreated",
            "2026-11-27T10:08:33Z",
            "1.0",
        ]
    ),
)


@st.composite
def _mutated_events(draw: st.DrawFn) -> object:
    schema = draw(st.sampled_from(["eventgrid", "cloudevents"]))
    event_type = draw(st.sampled_from(["KeyNearExpiry", "KeyExpired", "KeyNewVersionCreated"]))
    payload: dict[str, Any] = key_event(event_type, schema=schema)
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from([payload, payload.get("data")]))
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from([*target.keys(), "extra"]))
        if draw(st.booleans()):
            target[key] = draw(_field_values)
        else:
            target.pop(key, None)
    return payload


def _assert_parsed_or_refused_with_message(payload: object) -> None:
    outcome: object
    try:
        outcome = parse_event(payload, SCOPE)
    except MalformedEvent as exc:
        outcome = exc

    assert isinstance(outcome, KeyVaultEvent | IgnoredEvent | MalformedEvent)
    assert not isinstance(outcome, MalformedEvent) or outcome.message


class TestFuzzing:
    """No payload, however hostile, makes the parser raise anything but MalformedEvent."""

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_mutated_events())
    def test_mutated_key_events(self, payload: object) -> None:
        _assert_parsed_or_refused_with_message(payload)

    @settings(max_examples=200, deadline=None)
    @given(_json)
    def test_arbitrary_json(self, payload: object) -> None:
        _assert_parsed_or_refused_with_message(payload)


class TestAzureTimestamps:
    """ARM and Event Grid timestamps parse with 7 fractional digits and an offset (one parser for both)."""

    def test_seven_fractional_digits_with_an_offset(self) -> None:
        from datetime import UTC, datetime

        from rotation.domain.timestamps import parse_timestamp

        parsed = parse_timestamp("2024-05-06T07:08:19.4556811Z")

        assert parsed == datetime(2024, 5, 6, 7, 8, 19, 455681, tzinfo=UTC)
        assert parse_timestamp("not a time") is None
