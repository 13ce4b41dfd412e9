"""The read side (kalshi_ingest.data) against real recordings, across the hot/archive boundary.

One session is recorded from the simulator (with a sequence gap and a dropped connection), read through the read
side and through the SQL report functions, then archived (its day partitions dropped); a second session of the same
markets is recorded into the hot tables after that. The read side must give, in one call, the rows of both, the
same books as ``kalshi.book_at`` gave before the archive, and the simulator's books whenever trusted.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from reporting_recording import Recording, record

from kalshi_ingest.data import MarketData
from kalshi_store import archive

SAMPLES = 15  # instants per market and session for the books
TOLERANCE = Decimal("1e-12")


def _at(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _truth(recording: Recording, ticker: str, at: datetime) -> dict[tuple[str, Decimal], Decimal]:
    ms = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    book = recording.model.book_at(ticker, ms)
    return {(side, Decimal(p)): Decimal(q) for side, key in (("yes", "yes_dollars"), ("no", "no_dollars"))
            for p, q in book[key]}


def _instants(recording: Recording, ticker: str) -> list[datetime]:
    rows = recording.query(
        "select distinct coalesce(exchange_ts, received_at) as at from kalshi.orderbook_deltas "
        "where market_ticker = %s and session_id = %s order by 1", (ticker, recording.session_id))
    every = [r["at"] for r in rows]
    step = max(1, len(every) // SAMPLES)
    return every[::step] + [every[-1] + timedelta(seconds=5)]


def _sql_book(recording: Recording, ticker: str, at: datetime) -> list[dict[str, Any]]:
    return recording.query("select * from kalshi.book_at(%s, %s)", (ticker, at))


def _frame_book(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = frame.to_dict("records")
    for row in rows:
        for key in ("generation", "sid", "snapshot_seq", "last_seq"):
            row[key] = int(row[key])
        for key in ("snapshot_received_at", "as_of"):
            row[key] = row[key].to_pydatetime() if isinstance(row[key], pd.Timestamp) else row[key]
        row["trusted"] = bool(row["trusted"])
    return rows


def _span(recording: Recording) -> tuple[datetime, datetime]:
    row = recording.query("select min(received_at) as lo, max(received_at) as hi from kalshi.orderbook_deltas "
                          "where session_id = %s", (recording.session_id,))[0]
    return row["lo"] - timedelta(seconds=1), row["hi"] + timedelta(seconds=1)


def _sql_bars(recording: Recording, ticker: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    return recording.query("select * from kalshi.trade_bars('1 second', %s, %s, %s) order by bar_start",
                           (lo, hi, ticker))


def _same_bars(got: pd.DataFrame, expected: list[dict[str, Any]], *, trusted: bool = True) -> None:
    rows = got.to_dict("records")
    assert len(rows) == len(expected)
    for g, e in zip(rows, expected, strict=True):
        assert g["bar_start"].to_pydatetime() == e["bar_start"] and g["bar_end"].to_pydatetime() == e["bar_end"]
        for key in ("open", "high", "low", "close", "volume", "notional", "trades", "yes_taker_volume",
                    "no_taker_volume", "block_trades"):
            assert g[key] == e[key], (key, g, e)
        assert abs(g["vwap"] - e["vwap"]) < TOLERANCE
        if trusted:
            assert bool(g["trusted"]) == e["trusted"], (g, e)
        elif not e["trusted"]:
            assert not g["trusted"]


@pytest.mark.slow
def test_one_call_spans_the_hot_tables_and_the_archive(recorded: Recording, tmp_path: Path) -> None:
    folder = str(tmp_path / "archive")
    data = MarketData(recorded.url, archive_url=folder)
    first_lo, first_hi = _span(recorded)

    # 1. Hot only: the read side equals the SQL report functions, and the simulator where trusted.
    expected_books: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
    for ticker in recorded.tickers:
        for at in _instants(recorded, ticker):
            sql_book = _sql_book(recorded, ticker, at)
            expected_books[(ticker, at)] = sql_book
            assert _frame_book(data.book_at(ticker, at)) == sql_book, (ticker, at)
    expected_bars = {t: _sql_bars(recorded, t, first_lo, first_hi) for t in recorded.tickers}
    for ticker in recorded.tickers:
        _same_bars(data.bars(ticker, "1s", first_lo, first_hi), expected_bars[ticker])
    hot_trades = {t: data.trades(t, first_lo, first_hi) for t in recorded.tickers}
    hot_top = {t: data.top_of_book(t, first_lo, first_hi) for t in recorded.tickers}
    for ticker in recorded.tickers:
        top = recorded.query(
            "select *, kalshi.is_trusted_at(market_ticker, exchange_ts) as trusted from kalshi.top_of_book "
            "where market_ticker = %s order by exchange_ts, received_at", (ticker,))
        got = hot_top[ticker].to_dict("records")
        assert len(got) == len(top)
        for g, e in zip(got, top, strict=True):
            for key in ("yes_bid", "yes_ask", "spread", "mid", "yes_bid_size", "yes_ask_size", "last_price",
                        "volume", "open_interest", "trusted"):
                assert g[key] == e[key], (key, g, e)

    # 2. Archive the whole day (today: the recording's), then record a second session into the hot tables.
    day = datetime.now(UTC).date()
    for table in archive.ARCHIVED_TABLES:
        assert archive.archive_day(recorded.url, folder, table, day) is not None
    assert recorded.query("select count(*) as n from kalshi.orderbook_deltas")[0]["n"] == 0
    second = asyncio.run(record(recorded.url, tmp_path / "second", seed=12, faults=False))
    assert second.tickers == recorded.tickers
    second_lo, second_hi = _span(second)

    # 3. One call over both sessions: every trade of both simulators' tapes, once, in order.
    for ticker in recorded.tickers:
        trades = data.trades(ticker, first_lo, second_hi)
        tape = [t for t in recorded.tape + second.tape if t["ticker"] == ticker]
        assert sorted(trades["trade_id"]) == sorted(t["trade_id"] for t in tape)
        assert [str(p) for p in trades["yes_price"]] == [str(p) for p in hot_trades[ticker]["yes_price"]] + [
            str(p) for p in trades.loc[trades["session_id"].astype(str) == second.session_id, "yes_price"]]
        archived = trades[trades["exchange_ts"] < pd.Timestamp(first_hi)]
        assert list(archived["trusted"]) == list(hot_trades[ticker]["trusted"])

    # 4. The books of the archived session are those kalshi.book_at gave before the archive, and the simulator's
    #    whenever trusted; the second session's books are kalshi.book_at's (hot) and its simulator's.
    checked = 0
    second_start = second.query("select started_at from kalshi.sessions where session_id = %s",
                                (second.session_id,))[0]["started_at"]
    for (ticker, at), sql_book in expected_books.items():
        if at >= second_start:  # (the instant after the last delta may fall in the second session: its book then)
            continue
        got = _frame_book(data.book_at(ticker, at))
        assert got == sql_book, (ticker, at)
        if got and got[0]["trusted"]:
            assert {(r["side"], r["price"]): r["size"] for r in got} == _truth(recorded, ticker, at)
            checked += 1
    assert checked > len(recorded.tickers) * SAMPLES // 2
    for ticker in second.tickers:
        # Before the second session's snapshot of the market was received (a delta's exchange time can precede it
        # when receiving lags), the book is still the first session's: from the archive for the read side, absent
        # for kalshi.book_at (hot tables only). From the snapshot on, both read the second session.
        snapshot_at = second.query("select min(received_at) as at from kalshi.orderbook_snapshots "
                                   "where market_ticker = %s and session_id = %s",
                                   (ticker, second.session_id))[0]["at"]
        instants = [a for a in _instants(second, ticker)[:-1] if a >= snapshot_at]
        assert len(instants) >= SAMPLES // 2
        for at in instants:
            got = _frame_book(data.book_at(ticker, at))
            assert got == _sql_book(second, ticker, at), (ticker, at)
            assert got[0]["trusted"]
            assert {(r["side"], r["price"]): r["size"] for r in got} == _truth(second, ticker, at)

    # 5. Bars over both tiers: the archived session's are those of before (trust can only drop: the time
    #    between the sessions is now an uncovered window), the second's are kalshi.trade_bars'.
    for ticker in recorded.tickers:
        bars = data.bars(ticker, "1s", first_lo, second_hi)
        first = bars[bars["bar_start"] < pd.Timestamp(first_hi)]
        _same_bars(first, expected_bars[ticker], trusted=False)
        _same_bars(bars[bars["bar_start"] >= pd.Timestamp(second_lo)],
                   _sql_bars(second, ticker, second_lo, second_hi))

    # 6. The replay: its best bid and ask at every sampled instant are the book's at that instant.
    for ticker in recorded.tickers[:1]:
        replay = data.book_replay(ticker, first_lo, second_hi)
        assert set(replay["kind"]) >= {"delta", "snapshot"}
        for (t, at), sql_book in expected_books.items():
            if t != ticker or not sql_book or at > first_hi:  # (trust between changes is the book_at's to say)
                continue
            last = replay[replay["at"] <= pd.Timestamp(at)].iloc[-1]
            bids = [r["yes_price"] for r in sql_book if r["side"] == "yes"]
            asks = [r["yes_price"] for r in sql_book if r["side"] == "no"]
            assert last["best_yes_bid"] == (max(bids) if bids else None), at
            assert last["best_yes_ask"] == (min(asks) if asks else None), at
            # A row's trust is that of its own instant: the instant's when the row is a change at it (a delta of a
            # stream the replay does not follow, e.g. before a reconnection's snapshot arrived, has no row).
            if last["at"] == pd.Timestamp(at):
                assert bool(last["trusted"]) == sql_book[0]["trusted"], at


def test_read_side_latency(recorded: Recording, tmp_path: Path) -> None:
    """Not a limit: prints how long each call takes on the recording (hot tables), for the report."""
    data = MarketData(recorded.url, archive_url=str(tmp_path))
    ticker = recorded.tickers[0]
    lo, hi = _span(recorded)
    timings = {}
    for name, call in (("trades", lambda: data.trades(ticker, lo, hi)),
                       ("bars", lambda: data.bars(ticker, "1min", lo, hi)),
                       ("top_of_book", lambda: data.top_of_book(ticker, lo, hi)),
                       ("book_at", lambda: data.book_at(ticker, hi)),
                       ("book_replay", lambda: data.book_replay(ticker, lo, hi))):
        started = time.perf_counter()
        call()
        timings[name] = time.perf_counter() - started
    print({k: f"{v * 1000:.0f} ms" for k, v in timings.items()})
    assert all(v < 30 for v in timings.values())


@pytest.fixture(autouse=True)
def _no_archive_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KALSHI_ARCHIVE_URL", raising=False)
