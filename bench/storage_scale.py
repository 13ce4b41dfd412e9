"""Hot storage at month scale: the layout of 040 against the compact one (050 and 080 deltas, 060 trades, tickers).

    python -m bench.storage_scale --deltas 1000000            # quick (a few minutes)
    python -m bench.storage_scale --deltas 20000000           # the month-scale figure (docs/storage.md)

One embedded PostgreSQL in a temporary folder (or ``--data-dir``), two databases on it:

1. ``layout_040``: the migrations up to 040, then a month-like volume generated inside the server (one
   ``insert ... select ... from generate_series`` per table and day, no Python loop per row): ``--days`` day
   partitions, one session a day recording ``--markets`` markets (coverage rows, one order book snapshot of 10 levels
   a side per market and day), ``--deltas`` order book deltas spread over the days, markets and both sides (4-dp
   prices, 2-dp sizes, exchange times in whole milliseconds), and a tenth as many trades and tickers;
2. ``layout_060``: a copy of it (``create database ... template``) brought to the current migrations, so 050 moves
   the deltas, 060 the trades and tickers and 080 narrows the delta rows (their durations are reported).

Then, after ``vacuum analyze``: bytes per row (heap, indexes, total) per logical table; ``book_at``, ``trade_bars``
(5-minute bars over 12 hours of one market) and ``spread_bars`` (the same over ticker updates) latency, medians over
several calls of the same markets and instants on both layouts (and the results compared: they must be equal);
ingest throughput through the real writer (``CopyWriter``, batches of ``--batch`` deltas of a new session, then
batches of ``--batch`` trades and as many ticker updates), alternating layouts, medians and their ratio; then every
day partition packed (``kalshi.compact_day_partitions``, 070) and the sizes again: today's partitions (written by
the writer only) and the whole 060 tables. Results are printed and written to
``bench/results/storage-scale-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from kalshi_store.batch import Batch  # noqa: E402
from kalshi_store.embedded import EmbeddedPostgres  # noqa: E402
from kalshi_store.migrations import migrate  # noqa: E402
from kalshi_store.writer import CopyWriter  # noqa: E402

OLD = "layout_040"
NEW = "layout_060"
#: The logical tables and the relations that store them, per layout. The markets and feeds (060) are shared by
#: trades and tickers and counted in full in both (so both figures are upper bounds).
STORED: dict[str, dict[str, tuple[str, ...]]] = {
    OLD: {"orderbook_deltas": ("orderbook_deltas",), "trades": ("trades",), "tickers": ("tickers",),
          "orderbook_snapshots": ("orderbook_snapshots",)},
    NEW: {"orderbook_deltas": ("orderbook_delta_rows", "orderbook_delta_books", "orderbook_delta_extras"),
          "trades": ("trade_rows", "trade_extras", "market_keys", "feeds"),
          "tickers": ("ticker_rows", "ticker_extras", "market_keys", "feeds"),
          "orderbook_snapshots": ("orderbook_snapshots",)},
}


class LegacyWriter(CopyWriter):
    """The writer as it was before 050: every table moved by its ``TableSpec.insert`` (the 040 layout)."""

    moves = {}  # noqa: RUF012 - read-only, replaces the class default


def ticker_of(k: int) -> str:
    return f"KXBENCH-{k:05d}"


# -- generation (server side) -------------------------------------------------------------------------

_SESSIONS = """
    insert into kalshi.sessions (session_id, market_set, environment, markets, channels, started_at, ended_at,
        status, planned_start, planned_end, updated_at)
    select md5('session' || d)::uuid, 'bench', 'demo',
           array(select 'KXBENCH-' || lpad(k::text, 5, '0') from generate_series(0, %(markets)s - 1) k),
           array['orderbook_delta', 'ticker', 'trade'], day, day + interval '1 day', 'completed', day,
           day + interval '1 day', day + interval '1 day'
    from generate_series(0, %(days)s - 1) d, lateral (select %(first)s::timestamptz + d * interval '1 day' as day) x
"""
_COVERAGE = """
    insert into kalshi.coverage (session_id, market_set, market_ticker, recording_from, recording_to, end_reason)
    select md5('session' || d)::uuid, 'bench', 'KXBENCH-' || lpad(k::text, 5, '0'),
           %(first)s::timestamptz + d * interval '1 day',
           %(first)s::timestamptz + (d + 1) * interval '1 day', 'session_end'
    from generate_series(0, %(days)s - 1) d, generate_series(0, %(markets)s - 1) k
"""
_SNAPSHOTS = """
    insert into kalshi.orderbook_snapshots (session_id, session_date, generation, sid, seq, market_ticker, market_id,
        yes_prices, yes_sizes, no_prices, no_sizes, received_at)
    select md5('session' || %(d)s)::uuid, %(day)s::date, 1, 1, k + 1, 'KXBENCH-' || lpad(k::text, 5, '0'),
           md5('market' || k)::uuid::text,
           array(select round((40 - l)::numeric / 100, 4) from generate_series(0, 9) l),
           array(select round((100 + l * 10)::numeric, 2) from generate_series(0, 9) l),
           array(select round((50 - l)::numeric / 100, 4) from generate_series(0, 9) l),
           array(select round((100 + l * 10)::numeric, 2) from generate_series(0, 9) l),
           %(day)s::timestamptz + k * interval '1 millisecond'
    from generate_series(0, %(markets)s - 1) k
"""
# j runs over the day's deltas; h is a cheap deterministic hash of (day, j) choosing market, side, price and size.
_DELTAS = """
    insert into kalshi.orderbook_deltas (session_id, session_date, generation, sid, seq, market_ticker, market_id,
        side, price, delta, exchange_ts, received_at)
    select md5('session' || %(d)s)::uuid, %(day)s::date, 1, 1, %(markets)s + j, 'KXBENCH-' || lpad(m::text, 5, '0'),
           md5('market' || m)::uuid::text, case when h %% 2 = 0 then 'yes' else 'no' end,
           round(((h / 2) %% 60 + 1)::numeric / 100, 4), round(((h / 128) %% 200 - 99)::numeric, 2),
           date_trunc('milliseconds', at) - (h %% 40) * interval '1 millisecond', at
    from generate_series(1, %(n)s::bigint) j,
         lateral (select (j * 2654435761 + %(d)s * 97) %% 4294967291 as h) hash,
         lateral (select (hash.h / 7) %% %(markets)s as m,
                         %(day)s::timestamptz + interval '10 seconds'
                         + (j * (86390000000 / %(n)s)) * interval '1 microsecond' + (hash.h %% 997) * interval '1 microsecond' as at) x
"""
_TRADES = """
    insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, taker_outcome_side,
        taker_book_side, taker_side, exchange_ts, received_at, source, session_id, generation, sid, seq)
    select md5('trade' || %(d)s || '-' || j)::uuid::text, %(day)s::date, 'KXBENCH-' || lpad(m::text, 5, '0'),
           round((h %% 98 + 1)::numeric / 100, 4), 1 - round((h %% 98 + 1)::numeric / 100, 4),
           round((h / 100 %% 500 + 1)::numeric, 2), case when h %% 2 = 0 then 'yes' else 'no' end,
           case when h %% 2 = 0 then 'bid' else 'ask' end, case when h %% 2 = 0 then 'yes' else 'no' end,
           date_trunc('milliseconds', at), at, 'ws', md5('session' || %(d)s)::uuid, 1, 3, j
    from generate_series(1, %(n)s::bigint) j,
         lateral (select (j * 2654435761 + %(d)s * 89) %% 4294967291 as h) hash,
         lateral (select (hash.h / 7) %% %(markets)s as m,
                         %(day)s::timestamptz + (j * (86390000000 / %(n)s)) * interval '1 microsecond' as at) x
"""
_TICKERS = """
    insert into kalshi.tickers (market_ticker, exchange_ts, content_hash, market_id, price, yes_bid, yes_ask, volume,
        open_interest, dollar_volume, dollar_open_interest, yes_bid_size, yes_ask_size, last_trade_size, received_at,
        session_id, generation, sid)
    select 'KXBENCH-' || lpad(m::text, 5, '0'), date_trunc('milliseconds', at),
           -- the content hash as the writer computes it: md5 of the values
           md5(row(v.price, v.yes_bid, v.yes_ask, v.volume, v.open_interest, v.dollar_volume, v.dollar_open_interest,
                   v.yes_bid_size, v.yes_ask_size, v.last_trade_size)::text)::uuid,
           md5('market' || m)::uuid::text, v.price, v.yes_bid, v.yes_ask, v.volume, v.open_interest, v.dollar_volume,
           v.dollar_open_interest, v.yes_bid_size, v.yes_ask_size, v.last_trade_size, at,
           md5('session' || %(d)s)::uuid, 1, 2
    from generate_series(1, %(n)s::bigint) j,
         lateral (select (j * 2654435761 + %(d)s * 83) %% 4294967291 as h) hash,
         lateral (select (hash.h / 7) %% %(markets)s as m,
                         %(day)s::timestamptz + (j * (86390000000 / %(n)s)) * interval '1 microsecond' as at) x,
         lateral (select round((h %% 98 + 1)::numeric / 100, 4) as price, round((h %% 97 + 1)::numeric / 100, 4) as yes_bid,
                         round((h %% 97 + 2)::numeric / 100, 4) as yes_ask, round((h %% 100000)::numeric, 2) as volume,
                         round((h %% 50000)::numeric, 2) as open_interest, h %% 100000 as dollar_volume,
                         h %% 50000 as dollar_open_interest, round((h %% 900)::numeric, 2) as yes_bid_size,
                         round((h %% 800)::numeric, 2) as yes_ask_size, round((h %% 70)::numeric, 2) as last_trade_size) v
"""


def generate(url: str, *, deltas: int, markets: int, days: int, first: date) -> dict[str, float]:
    """Fill the 040 layout; seconds per table."""
    seconds: dict[str, float] = {}
    first_ts = datetime(first.year, first.month, first.day, tzinfo=UTC)
    per_day = max(1, deltas // days)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set time zone 'UTC'")
        conn.execute("select kalshi.ensure_partitions(%s, %s)",
                     (7, max(1, (datetime.now(UTC).date() - first).days)))
        params = {"markets": markets, "days": days, "first": first_ts}
        started = time.perf_counter()
        conn.execute(sql.SQL(_SESSIONS), params)
        conn.execute(sql.SQL(_COVERAGE), params)
        seconds["sessions+coverage"] = time.perf_counter() - started
        for name, statement, n in (("orderbook_snapshots", _SNAPSHOTS, markets), ("orderbook_deltas", _DELTAS, per_day),
                                   ("trades", _TRADES, max(1, per_day // 10)),
                                   ("tickers", _TICKERS, max(1, per_day // 10))):
            started = time.perf_counter()
            for d in range(days):
                day = first_ts + timedelta(days=d)
                conn.execute(sql.SQL(statement), {**params, "d": d, "day": day, "n": n})
            seconds[name] = time.perf_counter() - started
            print(f"  generated {name} in {seconds[name]:.1f} s", flush=True)
    return seconds


# -- measurements ---------------------------------------------------------------------------------------

def sizes(url: str, layout: str) -> dict[str, dict[str, Any]]:
    """Rows and bytes per row (heap incl. TOAST/FSM/VM, indexes) per logical table."""
    out: dict[str, dict[str, Any]] = {}
    with psycopg.connect(url) as conn:
        for table, relations in STORED[layout].items():
            rows = conn.execute(sql.SQL("select count(*) from kalshi.{}").format(sql.Identifier(table))).fetchone()
            heap = index = 0
            n = int(rows[0]) if rows else 0
            per_relation: dict[str, float] = {}
            for relation in relations:
                # pg_partition_tree lists nothing for a plain table (the books, markets and feeds): add it itself.
                got = conn.execute("""
                    select coalesce(sum(pg_table_size(t.relid)), 0), coalesce(sum(pg_indexes_size(t.relid)), 0)
                    from (select relid from pg_partition_tree(%s::regclass) union select %s::regclass) t""",
                    (f"kalshi.{relation}", f"kalshi.{relation}")).fetchone()
                assert got is not None
                heap += int(got[0])
                index += int(got[1])
                per_relation[relation] = (int(got[0]) + int(got[1])) / max(n, 1)
            out[table] = {"rows": n, "heap_bytes": heap, "index_bytes": index,
                          "heap_per_row": heap / max(n, 1), "index_per_row": index / max(n, 1),
                          "total_per_row": (heap + index) / max(n, 1), "per_relation_per_row": per_relation}
    return out


def _today_per_row(conn: psycopg.Connection[Any], relation: str) -> dict[str, float]:
    """Rows and bytes per row (heap, indexes, total) of today's day partition of ``kalshi.<relation>``."""
    part = sql.Identifier("kalshi", f"{relation}_p{datetime.now(UTC):%Y%m%d}")
    got = conn.execute(sql.SQL("select count(*), pg_table_size({name}::regclass), "
                               "pg_indexes_size({name}::regclass) from {part}").format(
        name=sql.Literal(part.as_string(conn)), part=part)).fetchone()
    assert got is not None
    n = max(int(got[0]), 1)
    return {"rows": int(got[0]), "heap_per_row": got[1] / n, "index_per_row": got[2] / n,
            "total_per_row": (got[1] + got[2]) / n}


def live_sizes(url: str, layout: str) -> dict[str, float]:
    """Bytes per delta of today's partition: written by the CopyWriter only (the ingest runs), not by a bulk move.
    For the compact layout, ``books_per_row`` is the share of the books (050) of today's sessions: the books table's
    bytes times their fraction of its rows, per delta of today."""
    with psycopg.connect(url) as conn:
        if layout == OLD:
            return _today_per_row(conn, "orderbook_deltas")
        out = _today_per_row(conn, "orderbook_delta_rows")
        got = conn.execute("select count(*) filter (where session_date = %s), count(*), "
                           "pg_total_relation_size('kalshi.orderbook_delta_books') from kalshi.orderbook_delta_books",
                           (datetime.now(UTC).date(),)).fetchone()
        assert got is not None
        out["books_per_row"] = got[2] * got[0] / max(got[1], 1) / max(out["rows"], 1)
        return out


#: The relations holding today's trades and ticker updates, per layout (the rows only: not the markets and feeds).
LIVE_TRADES_TICKERS: dict[str, dict[str, str]] = {OLD: {"trades": "trades", "tickers": "tickers"},
                                                  NEW: {"trades": "trade_rows", "tickers": "ticker_rows"}}


def live_trades_tickers(url: str, layout: str) -> dict[str, dict[str, float]]:
    """Bytes per row of today's partitions of the trades and ticker updates (written by the CopyWriter only: the
    ingest runs); the rows' relation only, not the markets and feeds."""
    with psycopg.connect(url) as conn:
        return {table: _today_per_row(conn, relation) for table, relation in LIVE_TRADES_TICKERS[layout].items()}


def probes(markets: int, days: int, first: date, count: int) -> list[tuple[str, datetime]]:
    """The same (market, instant) pairs for both layouts: spread over markets and days, at 18:00 UTC."""
    start = datetime(first.year, first.month, first.day, 18, tzinfo=UTC)
    return [(ticker_of((i * 7919) % markets), start + timedelta(days=(i * 7) % days, minutes=i)) for i in range(count)]


def timed(conn: psycopg.Connection, query: str, params: tuple[Any, ...]) -> tuple[float, list[tuple[Any, ...]]]:
    started = time.perf_counter()
    rows = conn.execute(query, params).fetchall()
    return (time.perf_counter() - started) * 1000, rows


def latencies(urls: dict[str, str], pairs: list[tuple[str, datetime]], rounds: int) -> dict[str, Any]:
    """Median ms of book_at, trade_bars and spread_bars per layout (first call of each pair excluded: cache
    warm-up), and whether both layouts answered the same."""
    book = "select side, price, size, yes_price, trusted, last_seq from kalshi.book_at(%s, %s)"
    bars = "select * from kalshi.trade_bars('5 minutes', %s, %s, %s)"
    spreads = "select * from kalshi.spread_bars('5 minutes', %s, %s, %s)"
    times: dict[str, dict[str, list[float]]] = {layout: {"book_at": [], "trade_bars": [], "spread_bars": []}
                                                for layout in urls}
    books: dict[str, list[Any]] = {layout: [] for layout in urls}
    answers: dict[str, list[Any]] = {layout: [] for layout in urls}
    conns = {layout: psycopg.connect(url) for layout, url in urls.items()}
    try:
        for layout, conn in conns.items():
            conn.execute("set time zone 'UTC'")
            for market, at in pairs:  # warm-up, and the books to compare
                books[layout].append(conn.execute(book, (market, at)).fetchall())
                window = (at - timedelta(hours=18), at - timedelta(hours=6), market)
                answers[layout].append((conn.execute(bars, window).fetchall(), conn.execute(spreads, window).fetchall()))
        for _ in range(rounds):
            for market, at in pairs:
                for layout, conn in conns.items():
                    ms, _rows = timed(conn, book, (market, at))
                    times[layout]["book_at"].append(ms)
                    ms, _rows = timed(conn, bars, (at - timedelta(hours=18), at - timedelta(hours=6), market))
                    times[layout]["trade_bars"].append(ms)
                    ms, _rows = timed(conn, spreads, (at - timedelta(hours=18), at - timedelta(hours=6), market))
                    times[layout]["spread_bars"].append(ms)
    finally:
        for conn in conns.values():
            conn.close()
    layouts = list(urls)
    return {
        "median_ms": {layout: {name: statistics.median(values) for name, values in t.items()}
                      for layout, t in times.items()},
        "books_equal": all(books[layouts[0]][i] == books[layouts[1]][i] for i in range(len(pairs))),
        "levels_compared": sum(len(b) for b in books[layouts[0]]),
        "bars_equal": answers[layouts[0]] == answers[layouts[1]],
        "bars_compared": sum(len(t) + len(s) for t, s in answers[layouts[0]]),
    }


def delta_batches(markets: int, count: int, size: int) -> tuple[str, date, list[list[tuple[Any, ...]]],
                                                                 list[list[tuple[Any, ...]]]]:
    """Delta rows (the writer's staging tuples) of one new session: warm-up batches with one delta per market and
    side (its first seconds: the books are stored), then ``count`` batches of ``size`` deltas."""
    session_id = str(uuid.uuid4())
    today = datetime.now(UTC).date()
    now_ns = time.time_ns()

    def row(seq: int, m: int, side: str, h: int) -> tuple[Any, ...]:
        return (1, 1, seq, ticker_of(m), f"{uuid.UUID(int=m + 1)}", side,
                Decimal((h // 2) % 60 + 1).scaleb(-2).quantize(Decimal("0.0001")),
                Decimal((h // 128) % 200 - 99).quantize(Decimal("0.01")), None, None,
                now_ns // 1_000_000 - h % 40, now_ns + seq * 1000)

    first = [row(i + 1, i // 2, ("yes", "no")[i % 2], i) for i in range(2 * markets)]
    warm_up = [first[i:i + size] for i in range(0, len(first), size)]
    batches = []
    seq = len(first)
    for _ in range(count):
        rows = []
        for _ in range(size):
            seq += 1
            h = (seq * 2654435761) % 4294967291
            rows.append(row(seq, (h // 7) % markets, "yes" if h % 2 else "no", h))
        batches.append(rows)
    return session_id, today, warm_up, batches


async def ingest_rate(url: str, layout: str, markets: int, count: int, size: int) -> float:
    """Deltas per second written by the real writer (one transaction per batch), after the warm-up batches."""
    session_id, today, warm_up, batches = delta_batches(markets, count, size)
    conn = await psycopg.AsyncConnection.connect(url)
    writer = (LegacyWriter if layout == OLD else CopyWriter)(conn)
    try:
        await conn.execute("set time zone 'UTC'")
        await conn.commit()
        for i, rows in enumerate(warm_up):
            await writer.write(Batch(batch_id=-1 - i, session_id=session_id, session_date=today,
                                     tables={"orderbook_deltas": rows}))
        started = time.perf_counter()
        for i, rows in enumerate(batches):
            result = await writer.write(Batch(batch_id=i, session_id=session_id, session_date=today,
                                              tables={"orderbook_deltas": rows}))
            assert result.inserted.get("orderbook_deltas") == len(rows), result
        return count * size / (time.perf_counter() - started)
    finally:
        await writer.close()


def trade_ticker_batches(markets: int, count: int, size: int) -> tuple[list[tuple[list[Any], list[Any]]],
                                                                         list[tuple[list[Any], list[Any]]]]:
    """Trades and ticker updates (the writer's staging tuples) of one new session, over ``markets`` markets:
    warm-up batches with one trade and one update per market (its first seconds: the markets and feeds are stored),
    then ``count`` batches of ``size`` trades and ``size`` updates, as for the deltas (:func:`delta_batches`)."""
    session_id = str(uuid.uuid4())
    now_ns = time.time_ns()

    def rows(seq: int, m: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        h = (seq * 2654435761) % 4294967291
        ns = now_ns + seq * 1000
        yes = Decimal(h % 98 + 1).scaleb(-2).quantize(Decimal("0.0001"))
        side = "yes" if h % 2 else "no"
        trade = (str(uuid.uuid4()), ticker_of(m), yes, 1 - yes, Decimal(h // 100 % 500 + 1).quantize(
            Decimal("0.01")), side, "bid" if h % 2 else "ask", side, False, ns // 1_000_000, None, None, ns,
            "ws", session_id, 1, 3, seq)
        ticker = (ticker_of(m), f"{uuid.UUID(int=m + 1)}", yes, yes - Decimal("0.0100"), yes, Decimal(
            h % 100000).quantize(Decimal("0.01")), Decimal(h % 50000).quantize(Decimal("0.01")), h % 100000,
            h % 50000, Decimal(h % 900).quantize(Decimal("0.01")), Decimal(h % 800).quantize(Decimal("0.01")),
            Decimal(h % 70).quantize(Decimal("0.01")), ns // 1_000_000, None, None, ns, session_id, 1, 2)
        return trade, ticker

    def batch(pairs: list[tuple[tuple[Any, ...], tuple[Any, ...]]]) -> tuple[list[Any], list[Any]]:
        return [t for t, _ in pairs], [u for _, u in pairs]

    first = [rows(m + 1, m) for m in range(markets)]
    warm_up = [batch(first[i:i + size]) for i in range(0, len(first), size)]
    seq = len(first)
    batches = []
    for _ in range(count):
        pairs = []
        for _ in range(size):
            seq += 1
            pairs.append(rows(seq, ((seq * 2654435761) % 4294967291 // 7) % markets))
        batches.append(batch(pairs))
    return warm_up, batches


async def trade_ticker_rate(url: str, layout: str, markets: int, count: int, size: int) -> tuple[float, float]:
    """Trades and ticker updates per second written by the real writer (one transaction per batch of both) after
    the warm-up batches, and the seconds the warm-up took (every market seen for the first time)."""
    warm_up, batches = trade_ticker_batches(markets, count, size)
    conn = await psycopg.AsyncConnection.connect(url)
    writer = (LegacyWriter if layout == OLD else CopyWriter)(conn)
    try:
        await conn.execute("set time zone 'UTC'")
        await conn.commit()
        started = time.perf_counter()
        for i, (trades, tickers) in enumerate(warm_up):
            await writer.write(Batch(batch_id=-1 - i, tables={"trades": trades, "tickers": tickers}))
        warm_up_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for i, (trades, tickers) in enumerate(batches):
            result = await writer.write(Batch(batch_id=i, tables={"trades": trades, "tickers": tickers}))
            assert result.inserted.get("trades") == len(trades), result
            assert result.inserted.get("tickers") == len(tickers), result
        return count * 2 * size / (time.perf_counter() - started), warm_up_seconds
    finally:
        await writer.close()


def vacuum(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deltas", type=int, default=1_000_000)
    parser.add_argument("--markets", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--probes", type=int, default=20, help="(market, instant) pairs for the latency medians")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per pair and layout")
    parser.add_argument("--ingest-runs", type=int, default=5)
    parser.add_argument("--ingest-batches", type=int, default=50)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--data-dir", type=Path, help="embedded server folder (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="storage-scale-"))
    server = EmbeddedPostgres(folder / "postgres")
    server.start()
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()},
                              "started": datetime.now(UTC).isoformat()}
    try:
        old_url = server.create_database(OLD)
        migrate(old_url, before=50)  # the layout before 050
        first = datetime.now(UTC).date() - timedelta(days=args.days)
        print(f"generating {args.deltas:,} deltas over {args.markets:,} markets and {args.days} days", flush=True)
        report["generate_seconds"] = generate(old_url, deltas=args.deltas, markets=args.markets, days=args.days,
                                              first=first)
        started = time.perf_counter()
        new_url = server.create_database(NEW, template=OLD)
        report["copy_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        migrate(new_url, before=60)
        report["migrate_050_seconds"] = time.perf_counter() - started
        print(f"050 moved the deltas in {report['migrate_050_seconds']:.1f} s", flush=True)
        started = time.perf_counter()
        migrate(new_url, before=80)
        report["migrate_060_seconds"] = time.perf_counter() - started
        print(f"060 moved the trades and tickers in {report['migrate_060_seconds']:.1f} s", flush=True)
        started = time.perf_counter()
        migrate(new_url)
        report["migrate_080_seconds"] = time.perf_counter() - started
        print(f"080 narrowed the delta rows in {report['migrate_080_seconds']:.1f} s", flush=True)
        urls = {OLD: old_url, NEW: new_url}
        for url in urls.values():
            vacuum(url)
        report["sizes"] = {layout: sizes(url, layout) for layout, url in urls.items()}
        report["latency"] = latencies(urls, probes(args.markets, args.days, first, args.probes), args.rounds)
        rates: dict[str, list[float]] = {OLD: [], NEW: []}
        for run in range(args.ingest_runs):
            for layout in (OLD, NEW) if run % 2 == 0 else (NEW, OLD):
                rates[layout].append(asyncio.run(ingest_rate(urls[layout], layout, args.markets,
                                                             args.ingest_batches, args.batch)))
        report["ingest_deltas_per_s"] = {layout: {"runs": r, "median": statistics.median(r)}
                                         for layout, r in rates.items()}
        rates = {OLD: [], NEW: []}
        warm_ups: dict[str, list[float]] = {OLD: [], NEW: []}
        for run in range(args.ingest_runs):
            for layout in (OLD, NEW) if run % 2 == 0 else (NEW, OLD):
                rate, warm_up = asyncio.run(trade_ticker_rate(urls[layout], layout, args.markets,
                                                              args.ingest_batches, args.batch // 2))
                rates[layout].append(rate)
                warm_ups[layout].append(warm_up)
        report["ingest_trades_tickers_per_s"] = {layout: {"runs": r, "median": statistics.median(r)}
                                                 for layout, r in rates.items()}
        report["ingest_trades_tickers_warm_up_s"] = {layout: {"runs": r, "median": statistics.median(r)}
                                                     for layout, r in warm_ups.items()}
        report["ingest_trades_tickers_ratio_new_over_old"] = (
            report["ingest_trades_tickers_per_s"][NEW]["median"] / report["ingest_trades_tickers_per_s"][OLD]["median"])
        for url in urls.values():
            vacuum(url)
        report["live_sizes"] = {layout: live_sizes(url, layout) for layout, url in urls.items()}
        report["live_trades_tickers"] = {layout: live_trades_tickers(url, layout) for layout, url in urls.items()}
        report["sizes_before_packing"] = {NEW: sizes(new_url, NEW)}
        # Every day partition once no session writes to it: packed (070: kalshi.compact_day_partitions, every
        # index of the deltas', trades' and tickers' day partitions, today's included; the 040 layout has no such
        # step, today's partitions are rebuilt the same way for the comparison).
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        with psycopg.connect(new_url, autocommit=True) as conn:
            conn.execute("select * from kalshi.compact_day_partitions(%s)", (tomorrow,))
        with psycopg.connect(old_url, autocommit=True) as conn:
            for relation in ("orderbook_deltas", "trades", "tickers"):
                conn.execute(sql.SQL("reindex table {}").format(
                    sql.Identifier("kalshi", f"{relation}_p{datetime.now(UTC):%Y%m%d}")))
        report["live_sizes_packed"] = {layout: live_sizes(url, layout) for layout, url in urls.items()}
        report["live_trades_tickers_packed"] = {layout: live_trades_tickers(url, layout)
                                                for layout, url in urls.items()}
        report["sizes_packed"] = {NEW: sizes(new_url, NEW)}
        report["ingest_ratio_new_over_old"] = (report["ingest_deltas_per_s"][NEW]["median"]
                                               / report["ingest_deltas_per_s"][OLD]["median"])
    finally:
        server.stop()
        if args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print_report(report)
    out = args.out or ROOT / "bench" / "results" / f"storage-scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"written to {out}")


def print_report(report: dict[str, Any]) -> None:
    print("\n| table | layout | rows | heap B/row | index B/row | total B/row |\n|---|---|---:|---:|---:|---:|")
    for table in STORED[OLD]:
        for layout in (OLD, NEW):
            s = report["sizes"][layout][table]
            print(f"| {table} | {layout} | {s['rows']:,} | {s['heap_per_row']:.1f} | {s['index_per_row']:.1f} | "
                  f"{s['total_per_row']:.1f} |")
    print("\nper relation, B/row of the logical table (heap + indexes):")
    for table in STORED[NEW]:
        parts = report["sizes"][NEW][table]["per_relation_per_row"]
        if len(parts) > 1:
            print(f"  {table}: " + ", ".join(f"{name} {value:.1f}" for name, value in parts.items()))
    for key, what in (("live_sizes", "written by CopyWriter"), ("live_sizes_packed", "the same, index packed")):
        for layout in (OLD, NEW):
            s = report[key][layout]
            print(f"| orderbook_deltas, today's partition ({what}) | {layout} | {s['rows']:,} | "
                  f"{s['heap_per_row']:.1f} | {s['index_per_row']:.1f} | {s['total_per_row']:.1f} |")
        books = report[key][NEW]["books_per_row"]
        print(f"|   with today's books ({books:.1f} B/delta) | {NEW} | | | | "
              f"{report[key][NEW]['total_per_row'] + books:.1f} |")
    for key, what in (("live_trades_tickers", "written by CopyWriter"),
                      ("live_trades_tickers_packed", "the same, indexes packed")):
        for table in ("trades", "tickers"):
            for layout in (OLD, NEW):
                s = report[key][layout][table]
                print(f"| {table}, today's partition, rows only ({what}) | {layout} | {s['rows']:,} | "
                      f"{s['heap_per_row']:.1f} | {s['index_per_row']:.1f} | {s['total_per_row']:.1f} |")
    print("\n060 whole tables after the ingest runs, before and after packing every day partition "
          "(kalshi.compact_day_partitions):")
    print("| table | rows | index B/row before | total B/row before | index B/row packed | total B/row packed |\n"
          "|---|---:|---:|---:|---:|---:|")
    for table in STORED[NEW]:
        b, a = report["sizes_before_packing"][NEW][table], report["sizes_packed"][NEW][table]
        print(f"| {table} | {a['rows']:,} | {b['index_per_row']:.1f} | {b['total_per_row']:.1f} | "
              f"{a['index_per_row']:.1f} | {a['total_per_row']:.1f} |")
    for table in ("trades", "tickers"):
        b, a = (report[key][NEW][table]["per_relation_per_row"] for key in ("sizes_before_packing", "sizes_packed"))
        print(f"  {table}: " + ", ".join(f"{name} {b[name]:.1f} -> {a[name]:.1f}" for name in a))
    lat = report["latency"]
    print("\n| query | 040 median ms | 060 median ms |\n|---|---:|---:|")
    for name in ("book_at", "trade_bars", "spread_bars"):
        print(f"| {name} | {lat['median_ms'][OLD][name]:.2f} | {lat['median_ms'][NEW][name]:.2f} |")
    print(f"books equal on both layouts: {lat['books_equal']} ({lat['levels_compared']} levels)")
    print(f"trade and spread bars equal on both layouts: {lat['bars_equal']} ({lat['bars_compared']} bars)")
    ingest = report["ingest_deltas_per_s"]
    print(f"\ningest (CopyWriter, deltas/s, median): 040 {ingest[OLD]['median']:,.0f}, "
          f"060 {ingest[NEW]['median']:,.0f}, ratio {report['ingest_ratio_new_over_old']:.3f}")
    ingest = report["ingest_trades_tickers_per_s"]
    print(f"ingest (CopyWriter, trades + tickers/s, median): 040 {ingest[OLD]['median']:,.0f}, "
          f"060 {ingest[NEW]['median']:,.0f}, ratio {report['ingest_trades_tickers_ratio_new_over_old']:.3f}")
    warm_up = report["ingest_trades_tickers_warm_up_s"]
    print(f"  warm-up (one trade and one update per market, every market new to the session; not in the rates), "
          f"median s: 040 {warm_up[OLD]['median']:.3f}, 060 {warm_up[NEW]['median']:.3f}")
    print(f"050 migration moved the deltas in {report['migrate_050_seconds']:.1f} s, "
          f"060 the trades and tickers in {report['migrate_060_seconds']:.1f} s, "
          f"080 narrowed the delta rows in {report['migrate_080_seconds']:.1f} s")


if __name__ == "__main__":
    main()
