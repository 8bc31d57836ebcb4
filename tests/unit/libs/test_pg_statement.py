"""PgStatement: `:name` parameters become asyncpg's positional ones (pure logic)."""

from __future__ import annotations

from libs.db import PgStatement


def test_named_parameters_become_positional_in_order_of_first_use() -> None:
    statement = PgStatement("UPDATE t SET a = :a, b = CAST(:b AS int[]) WHERE id = :id AND a <> :a")

    assert statement.sql == "UPDATE t SET a = $1, b = CAST($2 AS int[]) WHERE id = $3 AND a <> $1"
    assert statement.names == ("a", "b", "id")


def test_casts_and_literals_are_left_alone() -> None:
    statement = PgStatement("SELECT d.metadata::jsonb, '12:30'::time, :when::date FROM d")

    assert statement.sql == "SELECT d.metadata::jsonb, '12:30'::time, $1::date FROM d"
    assert statement.names == ("when",)
