"""Row layout: rows are read by column name (``TableSpec.index``), never by a literal position."""

from __future__ import annotations

import pytest

from kalshi_store.rows import TABLES, TRADES


def test_index_gives_each_staging_column_its_place_in_the_row() -> None:
    assert TRADES.index("trade_id") == 0
    assert TRADES.index("ts_ms") == [name for name, _, _ in TRADES.columns].index("ts_ms")
    for spec in TABLES.values():
        assert [spec.index(name) for name, _, _ in spec.columns] == list(range(len(spec.columns)))


def test_index_of_a_column_the_table_lacks_names_the_table() -> None:
    with pytest.raises(KeyError, match="'orderbook_deltas' has no staging column 'source'"):
        TABLES["orderbook_deltas"].index("source")
