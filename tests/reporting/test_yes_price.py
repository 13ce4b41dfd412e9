"""A session that pinned ``use_yes_price``: NO-side book levels are stored as YES prices, and book_at says so."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from reporting_recording import Recording, fresh_database, record

ONE = Decimal(1)


@pytest.fixture(scope="module")
def yes_priced(db_url_module: str, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return asyncio.run(record(db_url_module, tmp_path_factory.mktemp("yes-price"), use_yes_price=True, chunks=12,
                              faults=False, seed=5))


@pytest.fixture(scope="module")
def db_url_module(pg_url: str, _template_db: str) -> Iterator[str]:
    yield from fresh_database(pg_url, _template_db)


def test_book_at_of_a_yes_priced_session_equals_the_simulators_book(yes_priced: Recording) -> None:
    checked = 0
    for ticker in yes_priced.tickers:
        first = yes_priced.query("select min(received_at) as at from kalshi.orderbook_snapshots "
                                 "where market_ticker = %s", (ticker,))[0]["at"]
        times = [r["exchange_ts"] for r in yes_priced.query(
            "select distinct exchange_ts from kalshi.orderbook_deltas where market_ticker = %s and exchange_ts >= %s "
            "order by 1", (ticker, first))]
        for at in times[:: max(1, len(times) // 15)]:
            rows = yes_priced.query("select * from kalshi.book_at(%s, %s)", (ticker, at))
            assert rows and all(r["trusted"] for r in rows)
            ms = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
            truth = yes_priced.model.book_at(ticker, ms)
            # The simulator keeps no-leg prices; a yes-priced session stores a NO bid at q as 1 - q.
            assert {(r["side"], r["price"]): r["size"] for r in rows} == {
                **{("yes", Decimal(p)): Decimal(q) for p, q in truth["yes_dollars"]},
                **{("no", ONE - Decimal(p)): Decimal(q) for p, q in truth["no_dollars"]}}
            assert all(r["yes_price"] == r["price"] for r in rows)
            checked += 1
    assert checked > 20


def test_top_of_book_from_the_yes_priced_book(yes_priced: Recording, tmp_path: Path) -> None:
    last = yes_priced.query("select max(exchange_ts) as at from kalshi.orderbook_deltas")[0]["at"]
    for ticker in yes_priced.tickers:
        rows = yes_priced.query("select max(yes_price) filter (where side = 'yes') as bid, "
                                "min(yes_price) filter (where side = 'no') as ask from kalshi.book_at(%s, %s)",
                                (ticker, last))
        book = yes_priced.model.book(ticker)
        assert rows[0]["bid"] == Decimal(book["yes_dollars"][-1][0])
        assert rows[0]["ask"] == ONE - Decimal(book["no_dollars"][-1][0])
