"""The sweep's stored records decode exactly what was encoded and refuse everything else (they are input)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rotation.domain.sweep_cost import VaultSize, VersionsSeen
from rotation.domain.sweep_record import UnusableRecord, decode_seen, decode_size, encode_seen, encode_size

NOW = datetime(2026, 12, 6, 1, tzinfo=UTC)


def test_records_round_trip() -> None:
    size = VaultSize(keys=5000, pages=200, complete=True)
    seen = VersionsSeen(NOW - timedelta(days=40), NOW + timedelta(days=90), NOW - timedelta(hours=1))

    assert decode_size(encode_size(size)) == size
    assert decode_seen(encode_seen(seen), NOW) == seen
    assert decode_seen(encode_seen(VersionsSeen(NOW, None, NOW)), NOW) == VersionsSeen(NOW, None, NOW)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        json.dumps({"keys": 1, "pages": 1}),
        json.dumps({"keys": 1, "pages": 1, "complete": True, "extra": 1}),
        json.dumps({"keys": "1", "pages": 1, "complete": True}),
        json.dumps({"keys": True, "pages": 1, "complete": True}),
        json.dumps({"keys": -1, "pages": 1, "complete": True}),
        json.dumps({"keys": 1, "pages": 1, "complete": "yes"}),
    ],
)
def test_a_malformed_size_is_refused(text: str) -> None:
    with pytest.raises(UnusableRecord):
        decode_size(text)


@pytest.mark.parametrize(
    ("current", "others", "seen_at"),
    [
        (1, None, NOW.isoformat()),
        (NOW.isoformat(), 5, NOW.isoformat()),
        (NOW.isoformat(), None, "yesterday"),
        (NOW.replace(tzinfo=None).isoformat(), None, NOW.isoformat()),  # no time zone
        (NOW.isoformat(), None, (NOW - timedelta(hours=24)).isoformat()),  # older than the sweep trusts
        (NOW.isoformat(), None, (NOW + timedelta(hours=1)).isoformat()),  # in the future
    ],
)
def test_a_malformed_or_untrusted_version_listing_is_refused(current: object, others: object, seen_at: str) -> None:
    text = json.dumps({"current_created": current, "others_expire": others, "seen_at": seen_at})

    with pytest.raises(UnusableRecord):
        decode_seen(text, NOW)
