"""Order book deltas, trades and ticker updates of a past day written the way a live recording writes them (helper
of the packing tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

BOOKS = 60
SEQS = 200
#: Markets and updates per market of :func:`write_live_trades_tickers` (as many trades: random ids).
MARKETS = 40
UPDATES = 100


def write_live_deltas(url: str, day: date, *, status: str = "completed") -> uuid.UUID:
    """A session of ``day`` (with ``status``) whose books all grow at once, as a live recording writes them: the
    deltas are inserted seq by seq across every book, so the primary-key pages split as they do live."""
    session = uuid.uuid4()
    started = datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select kalshi.ensure_partitions(0, %s)", ((datetime.now(UTC).date() - day).days + 1,))
        conn.execute("insert into kalshi.sessions (session_id, market_set, environment, started_at, status) "
                     "values (%s, 'test', 'demo', %s, %s)",
                     (session, started, status))
        conn.execute(
            "insert into kalshi.orderbook_delta_books (session_id, session_date, generation, sid, market_ticker, side) "
            "select %s, %s, 1, 1, 'M-' || (b / 2), case when b %% 2 = 0 then 'yes' else 'no' end "
            "from generate_series(0, %s - 1) b", (session, day, BOOKS))
        conn.execute(
            "insert into kalshi.orderbook_delta_rows (received_at, seq, book_key, session_date, exchange_lag_ms, "
            "price, delta) "
            "select %s::timestamptz + s * interval '1 millisecond', s, b.book_key, %s, s %% 7, "
            "       round(0.0001 * (1 + (s * 37 + b.book_key) %% 9999), 4), (s %% 11 - 5)::numeric / 4 "
            "from generate_series(1, %s) s cross join kalshi.orderbook_delta_books b "
            "where b.session_id = %s order by s, b.book_key", (started, day, SEQS, session))
    return session


def exact_rows(url: str, day: date) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select * from kalshi.orderbook_deltas where session_date = %s "
                            "order by session_id, generation, sid, seq, market_ticker, side", (day,)).fetchall()
    return [tuple(str(v) if isinstance(v, Decimal) else v for v in row) for row in rows]


def key_state(url: str, day: date) -> tuple[int, list[str] | None]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select pg_relation_size(i.indexrelid), ic.reloptions from pg_index i join pg_class ic "
            "on ic.oid = i.indexrelid where i.indrelid = %s::regclass and i.indisunique",
            (f"kalshi.orderbook_delta_rows_p{day:%Y%m%d}",)).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def write_live_trades_tickers(url: str, day: date, session: uuid.UUID | None = None) -> None:
    """Trades and ticker updates of ``day`` inserted through the views as a live recording stores them: trades with
    random ids (the key pages split anywhere), updates instant by instant across every market (each market's key
    range grows at once)."""
    start = datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select kalshi.ensure_partitions(0, %s)", ((datetime.now(UTC).date() - day).days + 1,))
        conn.execute(
            "insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, "
            "taker_outcome_side, taker_book_side, taker_side, exchange_ts, received_at, source, session_id, "
            "generation, sid, seq) "
            "select gen_random_uuid()::text, %(day)s, 'M-' || (s %% %(markets)s), "
            "       round(0.0001 * (1 + s * 37 %% 9999), 4), 1 - round(0.0001 * (1 + s * 37 %% 9999), 4), "
            "       (1 + s %% 13)::numeric / 4, 'yes', 'bid', 'yes', "
            "       %(start)s::timestamptz + s * interval '7 milliseconds', "
            "       %(start)s::timestamptz + s * interval '7 milliseconds' + interval '5 milliseconds', 'ws', "
            "       %(session)s, 1, 2, s "
            "from generate_series(1, %(n)s) s order by s",
            {"day": day, "markets": MARKETS, "start": start, "session": session, "n": MARKETS * UPDATES})
        conn.execute(
            "insert into kalshi.tickers (market_ticker, exchange_ts, content_hash, market_id, price, yes_bid, "
            "yes_ask, volume, open_interest, dollar_volume, dollar_open_interest, yes_bid_size, yes_ask_size, "
            "last_trade_size, received_at, session_id, generation, sid) "
            "select 'M-' || m, ts, kalshi.ticker_hash(p, p - 0.01, p + 0.01, v, 50, 7, 3, 2.5, 1.5, 1), null, "
            "       p, p - 0.01, p + 0.01, v, 50, 7, 3, 2.5, 1.5, 1, ts + interval '3 milliseconds', %(session)s, 1, 3 "
            "from generate_series(1, %(updates)s) u cross join generate_series(0, %(markets)s - 1) m, "
            "     lateral (select %(start)s::timestamptz + u * interval '1 second' as ts, "
            "                     round(0.01 * (1 + (u * 7 + m) %% 98), 2) as p, (u * 10 + m)::numeric as v) x "
            "order by u, m",
            {"markets": MARKETS, "updates": UPDATES, "start": start, "session": session})


def exact_trades_tickers(url: str, day: date) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The day's trades and ticker updates as the views show them, Decimals as their text."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    with psycopg.connect(url) as conn:
        trades = conn.execute("select * from kalshi.trades where trade_date = %s order by trade_id",
                              (day,)).fetchall()
        tickers = conn.execute("select * from kalshi.tickers where exchange_ts >= %s and exchange_ts < %s "
                               "order by market_ticker, exchange_ts, content_hash",
                               (start, start + timedelta(days=1))).fetchall()
    return ([tuple(str(v) if isinstance(v, Decimal) else v for v in row) for row in trades],
            [tuple(str(v) if isinstance(v, Decimal) else v for v in row) for row in tickers])


def index_state(url: str, table: str, day: date) -> tuple[int, list[list[str] | None]]:
    """The total size of every index of ``table``'s partition of ``day``, and each index's options."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select pg_relation_size(i.indexrelid), ic.reloptions from pg_index i join pg_class ic "
            "on ic.oid = i.indexrelid where i.indrelid = %s::regclass order by ic.relname",
            (f"kalshi.{table}_p{day:%Y%m%d}",)).fetchall()
    assert rows
    return sum(int(size) for size, _ in rows), [options for _, options in rows]
