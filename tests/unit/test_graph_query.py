"""The ARM emulator's Resource Graph query subset: what parses, what is refused, what matches."""

from __future__ import annotations

import pytest

from emulators.arm.graph import COLUMNS, QueryError, parse


class TestSubset:
    """Queries inside the documented subset parse; the rest raise QueryError naming a token."""

    def test_or_inside_a_literal_is_not_a_separator(self) -> None:
        query = parse("Resources | where tostring(properties) contains \"a or b\" or type =~ 'x/y' | order by id desc")

        assert (query.contains, query.types, query.descending, query.columns) == (("a or b",), ("x/y",), True, COLUMNS)

    def test_pipe_inside_a_literal_is_not_a_stage(self) -> None:
        query = parse('resources | where properties contains "a|b" | project id, properties')

        assert (query.contains, query.columns) == (("a|b",), ("id", "properties"))

    @pytest.mark.parametrize(
        ("query", "token"),
        [
            ("Resources | where name == 'x'", "name == 'x'"),
            ("Resources | where properties contains 'x' | project nope", "nope"),
            ("Resources | where properties contains 'x' | where type =~ 'a/b'", "where"),
            ("Resources | where properties contains 'x' | order by name", "order by name"),
            ('Resources | where properties contains "open', '"'),
        ],
    )
    def test_outside_the_subset_is_refused(self, query: str, token: str) -> None:
        with pytest.raises(QueryError) as caught:
            parse(query)

        assert caught.value.token == token


class TestMatching:
    """``contains`` ignores case over the JSON text of properties; ``type =~`` compares case-insensitively."""

    def test_contains_ignores_case(self) -> None:
        query = parse('Resources | where properties contains "HTTPS://KV.VAULT.AZURE.NET/KEYS/CMK"')

        assert query.matches({"type": "a/b", "properties": {"k": "https://kv.vault.azure.net/keys/cmk/v1"}})
        assert not query.matches({"type": "a/b", "properties": {"k": "https://kv.vault.azure.net/keys/other"}})

    def test_type_equality(self) -> None:
        query = parse("Resources | where type =~ 'Microsoft.DocumentDB/databaseAccounts'")

        assert query.matches({"type": "microsoft.documentdb/databaseaccounts", "properties": {}})
