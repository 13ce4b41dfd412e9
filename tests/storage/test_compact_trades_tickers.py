"""060: trades and ticker updates move from the old tables to the compact layout exactly, stay idempotent, and the
reports over them answer the same."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from kalshi_store.batch import Batch
from kalshi_store.migrations import migrate
from kalshi_store.rows import TRADES
from kalshi_store.writer import CopyWriter

TRADE_COLUMNS = ("trade_id, trade_date, market_ticker, yes_price, no_price, count, taker_outcome_side, "
                 "taker_book_side, taker_side, is_block_trade, exchange_ts, received_at, source, session_id, "
                 "generation, sid, seq")
TICKER_COLUMNS = ("market_ticker, exchange_ts, content_hash, market_id, price, yes_bid, yes_ask, volume, "
                  "open_interest, dollar_volume, dollar_open_interest, yes_bid_size, yes_ask_size, last_trade_size, "
                  "received_at, session_id, generation, sid")
AT = datetime(2026, 11, 25, 9, 46, 40, 123456, tzinfo=UTC)
DAY = AT.date()
SESSION = str(uuid.uuid4())
TRADE_ID = "0b8f9c3e-1111-4a4a-9c9c-123456789abc"

#: Trades in the old layout, with what the compact layout must keep exactly: prices and counts of several scales, a
#: no_price that is 1 - yes_price only in value (another scale), a trade id that is not a uuid and one that is an
#: upper-case uuid, side values other than the usual two, a REST trade without connection columns or exchange time,
#: a block trade.
OLD_TRADES: list[tuple[Any, ...]] = [
    (TRADE_ID, DAY, "M-1", Decimal("0.5600"), Decimal("0.4400"), Decimal("10.00"), "yes", "bid", "yes", False,
     AT.replace(microsecond=120000), AT, "ws", SESSION, 1, 2, 77),
    ("not-a-uuid", DAY, "M-1", Decimal("0.56"), Decimal("0.4400"), Decimal("1"), "no", "ask", None, True,
     AT, AT + timedelta(seconds=1), "rest", SESSION, None, None, None),
    (TRADE_ID.upper(), DAY - timedelta(days=1), "M-2", Decimal("0.0001"), Decimal("0.9999"), Decimal("0.01"),
     "maybe", "mid", "sideways", False, None, AT - timedelta(days=1), "ws", None, 1, 2, 78),
    (str(uuid.UUID(int=5)), DAY, "M-2", Decimal("0.123456789"), Decimal("0.876543211"), Decimal("1234567.89"),
     None, None, "no", False, AT + timedelta(minutes=3), AT + timedelta(minutes=3), "ws", SESSION, 2, 5, 1),
]
#: Ticker updates in the old layout: every value null, a market_id and none, a content hash that is not the md5 of
#: the values (inserted by hand), two updates of one market and instant that differ.
_VALUES = (Decimal("0.55"), Decimal("0.5400"), Decimal("0.56"), Decimal("100.00"), Decimal("50"), 12, 7,
           Decimal("3"), Decimal("4.5"), Decimal("1.00"))
OLD_TICKERS: list[tuple[Any, ...]] = [
    ("M-1", AT, None, TRADE_ID, *_VALUES, AT + timedelta(milliseconds=3), SESSION, 1, 3),
    ("M-1", AT, None, TRADE_ID, *_VALUES[:-1], Decimal("2.00"), AT + timedelta(milliseconds=4), SESSION, 1, 3),
    ("M-1", AT + timedelta(minutes=2), None, None, *([None] * 10), AT + timedelta(minutes=2), SESSION, 2, 3),
    ("M-2", AT - timedelta(days=1), uuid.UUID(int=7), None, Decimal("0.01"), Decimal("0"), Decimal("1"),
     Decimal("0"), Decimal("0"), 0, 0, None, None, None, AT, None, None, None),
]
HASHED = ("md5(row(%s::numeric, %s::numeric, %s::numeric, %s::numeric, %s::numeric, %s::bigint, %s::bigint, "
          "%s::numeric, %s::numeric, %s::numeric)::text)::uuid")
REPORTS = [
    "select * from kalshi.trade_bars('1 minute') order by market_ticker, bar_start",
    "select * from kalshi.trade_bars('5 minutes', %(lo)s, %(hi)s, 'M-1') order by bar_start",
    "select * from kalshi.top_of_book order by market_ticker, exchange_ts, received_at",
    "select * from kalshi.spread_bars('1 minute') order by market_ticker, bar_start",
    "select * from kalshi.spread_bars('1 hour', %(lo)s, %(hi)s, 'M-1') order by bar_start",
]


def exact(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with Decimals (and uuids) as their text: equal only when the scale is equal too (0.5600 is not 0.56)."""
    return [tuple(str(v) if isinstance(v, Decimal | uuid.UUID) else v for v in row) for row in rows]


def read_all(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    params = {"lo": AT - timedelta(hours=2), "hi": AT + timedelta(hours=2)}
    found = {
        "trades": conn.execute(f"select {TRADE_COLUMNS} from kalshi.trades order by trade_id").fetchall(),  # noqa: S608
        "tickers": conn.execute(f"select {TICKER_COLUMNS} from kalshi.tickers "  # noqa: S608
                                "order by market_ticker, exchange_ts, received_at").fetchall(),
    }
    for query in REPORTS:
        found[query] = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
    return {name: exact(rows) for name, rows in found.items()}


def test_060_moves_every_trade_and_ticker_exactly(empty_db_url: str) -> None:
    migrate(empty_db_url, before=60)  # every migration released before 060
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("set time zone 'UTC'")
        for row in OLD_TRADES:
            conn.execute(f"insert into kalshi.trades ({TRADE_COLUMNS}) values "  # noqa: S608 - constants
                         f"({', '.join(['%s'] * 17)})", row)
        for row in OLD_TICKERS:
            values = row[4:14]
            conn.execute(f"insert into kalshi.tickers ({TICKER_COLUMNS}) values "  # noqa: S608 - constants
                         f"(%s, %s, coalesce(%s, {HASHED}), {', '.join(['%s'] * 15)})",
                         (*row[:3], *values, *row[3:]))
        conn.commit()
        before = read_all(conn)
    assert migrate(empty_db_url, before=70) == ["060_compact_trades_tickers.sql"]
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("set time zone 'UTC'")
        after = read_all(conn)
        stored = conn.execute("select (select count(*) from kalshi.trade_rows), (select count(*) from kalshi.ticker_rows),"
                              " (select array_agg(coalesce(trade_id, '-') || ' ' || coalesce(no_price::text, '-') || ' '"
                              "   || coalesce(taker_outcome_side, '-') || ' ' || coalesce(taker_book_side, '-') || ' '"
                              "   || coalesce(taker_side, '-') order by trade_date, trade_id)"
                              "  from kalshi.trade_extras),"
                              " (select count(*) from kalshi.ticker_extras)").fetchone()
        gone = conn.execute("select to_regclass('kalshi.trades_050'), to_regclass('kalshi.tickers_050')").fetchone()
    assert len(before["trades"]) == len(OLD_TRADES) and len(before["tickers"]) == len(OLD_TICKERS)
    assert all(before[query] for query in REPORTS)
    assert after == before  # every column of every row, and every report, Decimal for Decimal
    # Only the rows that need them have extras: the upper-case id and its odd sides; the non-uuid id and its
    # no_price of another scale; the ticker whose hash is not the md5 of its values.
    assert stored == (len(OLD_TRADES), len(OLD_TICKERS),
                      [f"{TRADE_ID.upper()} - maybe mid sideways", "not-a-uuid 0.4400 - - -"], 1)
    assert gone == (None, None)


def trade_row(trade_id: str, seq: int, *, ts_ms: int | None, received_ns: int, yes: str = "0.4200",
              no: str = "0.5800", source: str = "ws", session_id: str | None = SESSION) -> tuple[Any, ...]:
    """A staged trade, in the order of kalshi_store.rows.TRADES."""
    ws = source == "ws"
    return (trade_id, "M-1", Decimal(yes), Decimal(no), Decimal("3.50"), "yes", "bid", None, seq % 2 == 0, ts_ms,
            None, None, received_ns, source, session_id, 1 if ws else None, 2 if ws else None, seq if ws else None)


def ticker_row(market_id: str, *, ts_ms: int | None, received_ns: int, price: str | None) -> tuple[Any, ...]:
    """A staged ticker update, in the order of kalshi_store.rows.TICKERS."""
    return ("M-1", market_id, None if price is None else Decimal(price), Decimal("0.4100"), Decimal("0.43"),
            Decimal("1000.00"), Decimal("12"), 420, None, Decimal("5"), None, Decimal("0.01"), ts_ms, None, None,
            received_ns, SESSION, 1, 4)


@pytest.mark.asyncio
async def test_the_same_trades_and_tickers_written_twice_are_stored_once(db_url: str) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    received_ns = time.time_ns()
    now_ms = received_ns // 1_000_000
    trades = [trade_row(str(uuid.uuid4()), 1, ts_ms=now_ms - 7, received_ns=received_ns),
              trade_row(str(uuid.uuid4()), 2, ts_ms=None, received_ns=received_ns + 1000, source="rest",
                        session_id=None),
              trade_row("Trade-Not-A-UUID", 3, ts_ms=now_ms, received_ns=received_ns + 2000, yes="0.42",
                        no="0.5800"),  # a trade id and a no_price kept in the extras
              trade_row(str(uuid.uuid4()), 4, ts_ms=now_ms, received_ns=received_ns + 3000, yes="0.9990",
                        no="0.0010")]
    tickers = [ticker_row("", ts_ms=now_ms, received_ns=received_ns, price="0.4200"),
               ticker_row(TRADE_ID, ts_ms=now_ms, received_ns=received_ns + 1000, price="0.42"),
               ticker_row(TRADE_ID, ts_ms=None, received_ns=received_ns + 2000, price=None)]
    batch = Batch(batch_id=1, tables={"trades": trades, "tickers": tickers})
    writer = await CopyWriter.connect(db_url)
    try:
        first = await writer.write(batch)
        second = await writer.write(batch)
        # The writer remembers the markets and feeds it stored; if they are gone (a restored database), it stores
        # them again rather than skip the rows.
        with psycopg.connect(db_url) as conn:
            for table in ("trade_rows", "trade_extras", "ticker_rows", "ticker_extras", "market_keys", "feeds"):
                conn.execute(f"delete from kalshi.{table}")  # noqa: S608 - constants
        third = await writer.write(batch)
    finally:
        await writer.close()
    for table, count in (("trades", len(trades)), ("tickers", len(tickers))):
        assert (first.inserted[table], first.duplicates[table]) == (count, 0)
        assert (second.inserted[table], second.duplicates[table]) == (0, count)
        assert (third.inserted[table], third.duplicates[table]) == (count, 0)
    with psycopg.connect(db_url) as conn:
        conn.execute("set time zone 'UTC'")
        stored_trades = conn.execute(f"select {TRADE_COLUMNS} from kalshi.trades order by received_at").fetchall()  # noqa: S608
        stored_tickers = conn.execute(f"select {TICKER_COLUMNS} from kalshi.tickers "  # noqa: S608
                                      "order by received_at").fetchall()
        hashes = [conn.execute(f"select content_hash = {HASHED} from kalshi.tickers "  # noqa: S608 - constants
                               "where received_at = %s", (*row[2:12], epoch + timedelta(microseconds=row[15] // 1000))
                               ).fetchone() for row in tickers]
        counts = conn.execute("select (select count(*) from kalshi.trade_rows), "
                              "(select count(*) from kalshi.trade_extras), (select count(*) from kalshi.ticker_rows), "
                              "(select count(*) from kalshi.ticker_extras), (select count(*) from kalshi.feeds)"
                              ).fetchone()
    expected_trades = []
    for (trade_id, ticker, yes, no, count, outcome, book, taker, block, ts_ms, _, _, received, source, session,
         generation, sid, seq) in trades:
        received_at = epoch + timedelta(microseconds=received // 1000)
        exchange_ts = None if ts_ms is None else epoch + timedelta(milliseconds=ts_ms)
        expected_trades.append((trade_id, (exchange_ts or received_at).date(), ticker, yes, no, count, outcome, book,
                                taker, block, exchange_ts, received_at, source, session and uuid.UUID(session),
                                generation, sid, seq))
    assert exact(stored_trades) == exact(expected_trades)  # Decimal for Decimal: 0.42 stays 0.42, 0.5800 0.5800
    expected_tickers = [
        (ticker, epoch + timedelta(milliseconds=ts_ms) if ts_ms is not None else
         epoch + timedelta(microseconds=received // 1000), market_id or None, price, yes_bid, yes_ask, volume, oi,
         dollar_volume, dollar_oi, bid_size, ask_size, last_size, epoch + timedelta(microseconds=received // 1000),
         uuid.UUID(session), generation, sid)
        for (ticker, market_id, price, yes_bid, yes_ask, volume, oi, dollar_volume, dollar_oi, bid_size, ask_size,
             last_size, ts_ms, _, _, received, session, generation, sid) in tickers]
    assert exact([row[:2] + row[3:] for row in stored_tickers]) == exact(expected_tickers)
    assert hashes == [(True,)] * len(tickers)  # content_hash as the writer always computed it
    # Extras only for the trade that needs them; feeds: the WebSocket connection, the REST trade (no session), and
    # the tickers' connection with and without a market_id.
    assert counts == (len(trades), 1, len(tickers), 0, 4)


def test_inserting_into_the_views_twice_stores_once(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("set time zone 'UTC'")
        for _ in range(2):
            for row in OLD_TRADES:
                conn.execute(f"insert into kalshi.trades ({TRADE_COLUMNS}) values "  # noqa: S608 - constants
                             f"({', '.join(['%s'] * 17)})", row)
            for row in OLD_TICKERS:
                conn.execute(f"insert into kalshi.tickers ({TICKER_COLUMNS}) values "  # noqa: S608 - constants
                             f"(%s, %s, coalesce(%s, {HASHED}), {', '.join(['%s'] * 15)})",
                             (*row[:3], *row[4:14], *row[3:]))
        trades = conn.execute(f"select {TRADE_COLUMNS} from kalshi.trades "  # noqa: S608
                              "order by trade_id collate \"C\"").fetchall()
        count = conn.execute("select count(*) from kalshi.tickers").fetchone()
        stored = conn.execute("select (select count(*) from kalshi.trade_rows), (select count(*) from kalshi.trade_extras),"
                              " (select count(*) from kalshi.ticker_rows), (select count(*) from kalshi.ticker_extras)"
                              ).fetchone()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, "
                         "received_at, source) values ('x', current_date, 'M', 0.5, 0.5, 1, now(), 'fax')")
    assert exact(trades) == exact(sorted(OLD_TRADES))
    assert count == (len(OLD_TICKERS),)
    assert stored == (len(OLD_TRADES), 2, len(OLD_TICKERS), 1)  # stored compactly, extras as the migration keeps them


#: Trades whose flags the writer computes itself (or leaves to the SQL: ``None``): prices of many digits (more than
#: Python's default 28), scales, side values, sources, ids.
_LONG_YES = "0." + "1" * 30
FLAG_CASES: list[tuple[Any, ...]] = [
    trade_row(TRADE_ID, 1, ts_ms=1, received_ns=1),
    trade_row(TRADE_ID, 2, ts_ms=1, received_ns=1, source="rest", session_id=None),
    trade_row(TRADE_ID, 3, ts_ms=1, received_ns=1, yes="0.56", no="0.4400"),
    trade_row(TRADE_ID, 4, ts_ms=1, received_ns=1, yes="0.56", no="0.44"),
    trade_row(TRADE_ID, 5, ts_ms=1, received_ns=1, yes="1", no="0"),
    trade_row(TRADE_ID, 6, ts_ms=1, received_ns=1, yes="1E+1", no="-9"),
    trade_row(TRADE_ID, 7, ts_ms=1, received_ns=1, yes=_LONG_YES, no="0." + "8" * 29 + "9"),
    # 1 - yes_price rounded to 28 digits, at yes_price's scale: equal in value only after rounding
    trade_row(TRADE_ID, 8, ts_ms=1, received_ns=1, yes=_LONG_YES, no="0." + "8" * 27 + "900"),
    trade_row(TRADE_ID, 9, ts_ms=1, received_ns=1, yes="0." + "1" * 70, no="0." + "8" * 69 + "9"),
    trade_row(TRADE_ID.upper(), 10, ts_ms=1, received_ns=1),
    trade_row("not-a-uuid", 11, ts_ms=1, received_ns=1),
    trade_row(TRADE_ID, 12, ts_ms=1, received_ns=1, source="fix"),
    (TRADE_ID, "M-1", Decimal("0.5"), Decimal("0.5"), Decimal("1"), None, "ask", "no", True, 1, None, None, 1, "ws",
     SESSION, 1, 2, 13),
    (TRADE_ID, "M-1", Decimal("0.5"), Decimal("0.5"), Decimal("1"), "maybe", "bid", "yes", False, 1, None, None, 1,
     "ws", SESSION, 1, 2, 14),
    (TRADE_ID, "M-1", Decimal("0.5"), Decimal("NaN"), Decimal("1"), "yes", "bid", "yes", False, 1, None, None, 1,
     "ws", SESSION, 1, 2, 15),
]


def test_the_writer_computes_a_trade_s_flags_as_the_sql_does(db_url: str) -> None:
    from kalshi_store.writer import _plain_trade

    names = [name for name, _, _ in TRADES.columns]
    computed = [_plain_trade(row) for row in FLAG_CASES]
    with psycopg.connect(db_url) as conn:
        expected = [conn.execute(
            "select kalshi.trade_flags(kalshi.trade_uuid(%(trade_id)s), %(trade_id)s, %(yes_price)s::numeric, "
            "%(no_price)s::numeric, %(taker_outcome_side)s, %(taker_book_side)s, %(taker_side)s, %(is_block_trade)s, "
            "%(source)s)", dict(zip(names, row, strict=True))).fetchone() for row in FLAG_CASES]
    # The writer's flags are the SQL's wherever it computes them, and it computes them for the usual trades: only
    # those with something kept in the extras, a price it cannot subtract exactly or another source are left to SQL.
    assert [None if c is None else (c,) for c in computed] == [
        None if c is None else e for c, e in zip(computed, expected, strict=True)]
    plain = [True, True, False, True, True, True, True, False, False, False, False, False, True, False, False]
    assert [c is not None for c in computed] == plain


@pytest.mark.asyncio
async def test_a_no_price_equal_to_1_minus_yes_price_only_when_rounded_is_kept_exactly(db_url: str) -> None:
    # 1 - yes_price has 30 digits; Python's default context (28) rounds it to this no_price's value.
    received_ns = time.time_ns()
    yes, no = _LONG_YES, "0." + "8" * 27 + "900"
    trades = [trade_row(str(uuid.uuid4()), 1, ts_ms=received_ns // 1_000_000, received_ns=received_ns, yes=yes, no=no)]
    writer = await CopyWriter.connect(db_url)
    try:
        result = await writer.write(Batch(batch_id=1, tables={"trades": trades}))
    finally:
        await writer.close()
    assert result.inserted["trades"] == 1
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("select yes_price::text, no_price::text from kalshi.trades").fetchall()
    assert stored == [(yes, no)]


@pytest.mark.asyncio
async def test_markets_and_feeds_stored_by_a_concurrent_writer_are_found(db_url: str) -> None:
    # Writer a stores a market and a feed in a transaction still open when writer b needs them: b's statement waits
    # for a's commit, skips them (a stored them), and b reads their keys again instead of missing them.
    import asyncio

    received_ns = time.time_ns()
    trade = trade_row(str(uuid.uuid4()), 1, ts_ms=received_ns // 1_000_000, received_ns=received_ns)
    other = trade_row(str(uuid.uuid4()), 2, ts_ms=received_ns // 1_000_000, received_ns=received_ns + 1000)
    a, b = await CopyWriter.connect(db_url), await CopyWriter.connect(db_url)
    try:
        async with a.conn.transaction():
            await a._copy_insert(TRADES, [trade])
            waiting = asyncio.create_task(b.write(Batch(batch_id=2, tables={"trades": [other]})))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # b waits for a's market and feed
        a._committed()
        result = await asyncio.wait_for(waiting, 10)
    finally:
        await a.close()
        await b.close()
    assert result.inserted["trades"] == 1
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("select trade_id, market_ticker, session_id::text, generation, sid from kalshi.trades "
                              "order by seq").fetchall()
        counts = conn.execute("select (select count(*) from kalshi.market_keys), (select count(*) from kalshi.feeds)"
                              ).fetchone()
    assert stored == [(trade[0], "M-1", SESSION, 1, 2), (other[0], "M-1", SESSION, 1, 2)]
    assert counts == (1, 1)
