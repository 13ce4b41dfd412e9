"""Order book deltas of a past day written the way a live recording writes them (helper of the packing tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg

BOOKS = 60
SEQS = 200


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
            "on ic.oid = i.indexrelid where i.indrelid = %s::regclass and i.indisprimary",
            (f"kalshi.orderbook_delta_rows_p{day:%Y%m%d}",)).fetchone()
    assert row is not None
    return int(row[0]), row[1]
