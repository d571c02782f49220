"""The sweep's stored records decode exactly what was encoded and refuse everything else (they are input)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rotation.domain.sweep_cost import VaultSize, VersionsSeen
from rotation.domain.sweep_record import UnusableRecord, decode_seen, decode_size, encode_seen, encode_size

NOW = datetime(2026, 12, 6, 1, tzinfo=UTC)
ISO = NOW.isoformat()


def test_records_round_trip() -> None:
    sizes = [
        VaultSize(keys=5000, pages=200, complete=True, listed_at=NOW),
        VaultSize(100, 4, True, NOW - timedelta(days=3), ("https://kv/keys/a", "https://kv/keys/b"), catch_up=True),
    ]
    seen = VersionsSeen(
        NOW - timedelta(days=40),
        NOW - timedelta(days=39),
        NOW + timedelta(days=300),
        NOW + timedelta(days=90),
        NOW - timedelta(hours=1),
    )
    bare = VersionsSeen(NOW, None, None, None, NOW, vouched=False)

    assert [decode_size(encode_size(size), NOW) for size in sizes] == sizes
    assert decode_seen(encode_seen(seen), NOW) == seen
    assert decode_seen(encode_seen(bare), NOW) == bare


def test_a_long_queue_is_stored_up_to_what_a_table_property_holds() -> None:
    queue = tuple(f"https://kv-{'x' * 20}.vault.azure.net/keys/{'k' * 127}-{i}" for i in range(500))
    size = VaultSize(12_500, 500, True, NOW, queue, catch_up=True)

    text = encode_size(size)

    assert len(text) < 32_000
    assert decode_size(text, NOW).pending == queue[:100]


def _seen(**fields: object) -> str:
    record: dict[str, object] = {
        "current_created": ISO,
        "current_updated": None,
        "current_expires": None,
        "others_expire": None,
        "seen_at": ISO,
        "vouched": True,
    }
    return json.dumps({**record, **fields})


def _size(**fields: object) -> str:
    record: dict[str, object] = {
        "keys": 1,
        "pages": 1,
        "complete": True,
        "listed_at": ISO,
        "pending": [],
        "catch_up": False,
    }
    return json.dumps({**record, **fields})


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        json.dumps({"keys": 1, "pages": 1, "complete": True}),  # the earlier formats
        json.dumps({"keys": 1, "pages": 1, "complete": True, "catch_up": False}),
        _size(extra=1),
        _size(keys="1"),
        _size(keys=True),
        _size(keys=-1),
        _size(complete="yes"),
        _size(catch_up=1),
        _size(pages=0),  # a listing takes at least one call
        _size(keys=26),  # more keys than one page holds
        _size(listed_at="yesterday"),
        _size(listed_at=(NOW + timedelta(hours=1)).isoformat()),  # in the future
        _size(pending="https://kv/keys/a"),
        _size(pending=[1]),
        _size(pending=["k"] * 101),
    ],
)
def test_a_malformed_size_is_refused(text: str) -> None:
    with pytest.raises(UnusableRecord):
        decode_size(text, NOW)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"current_created": ISO, "others_expire": None, "seen_at": ISO}),  # the earlier format
        _seen(current_created=1),
        _seen(others_expire=5),
        _seen(current_updated="yesterday"),
        _seen(current_expires=[]),
        _seen(seen_at="yesterday"),
        _seen(current_created=NOW.replace(tzinfo=None).isoformat()),  # no time zone
        _seen(seen_at=(NOW - timedelta(hours=24)).isoformat()),  # older than the sweep trusts
        _seen(seen_at=(NOW + timedelta(hours=1)).isoformat()),  # in the future
        _seen(vouched="yes"),
        _seen(extra=1),
    ],
)
def test_a_malformed_or_untrusted_version_listing_is_refused(text: str) -> None:
    with pytest.raises(UnusableRecord):
        decode_seen(text, NOW)


def test_the_accepted_records_are_valid() -> None:  # the cases above each break exactly one field of these
    assert decode_seen(_seen(), NOW) == VersionsSeen(NOW, None, None, None, NOW)
    assert decode_size(_size(), NOW) == VaultSize(1, 1, True, NOW)
