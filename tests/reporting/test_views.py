"""Every report view and function (sql/030-035) against a real recording, checked against the simulator's truth.

The expected numbers are computed here, in Python, from the simulator's own record: the trade tape for bars,
``MarketModel.book_at`` (the book it held after every change up to a millisecond) for books and tops of book,
and its simulated account for positions and P&L. Nothing is computed from the views themselves.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from reporting_recording import Recording

ONE = Decimal(1)
TOLERANCE = Decimal("1e-12")


def _at(ts_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts_ms)


def _ms(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _truth_book(recording: Recording, ticker: str, ts_ms: int) -> dict[tuple[str, Decimal], Decimal]:
    book = recording.model.book_at(ticker, ts_ms)
    return {(side, Decimal(p)): Decimal(q) for side, key in (("yes", "yes_dollars"), ("no", "no_dollars"))
            for p, q in book[key]}


def _truth_bars(recording: Recording, bar_ms: int) -> dict[tuple[str, int], dict[str, Any]]:
    bars: dict[tuple[str, int], dict[str, Any]] = {}
    for trade in recording.tape:  # oldest first: the exchange's matching order
        price, count = Decimal(trade["yes_price_dollars"]), Decimal(trade["count_fp"])
        key = (trade["ticker"], trade["ts_ms"] // bar_ms * bar_ms)
        bar = bars.setdefault(key, {"open": price, "high": price, "low": price, "volume": Decimal(0),
                                    "notional": Decimal(0), "trades": 0, "yes": Decimal(0)})
        bar["high"], bar["low"], bar["close"] = max(bar["high"], price), min(bar["low"], price), price
        bar["volume"] += count
        bar["notional"] += price * count
        bar["trades"] += 1
        bar["yes"] += count if trade["taker_outcome_side"] == "yes" else 0
    return bars


def _windows(recording: Recording) -> dict[str, list[tuple[datetime, datetime]]]:
    by_market: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for w in recording.query("select market_ticker, started_at, ended_at from kalshi.untrusted_windows"):
        by_market[w["market_ticker"]].append((w["started_at"], w["ended_at"]))
    return by_market


def test_the_recording_is_complete_and_damaged_where_expected(recording: Recording) -> None:
    stored = {r["trade_id"] for r in recording.query("select trade_id from kalshi.trades")}
    assert stored == {t["trade_id"] for t in recording.tape} and len(stored) > 100
    kinds = sorted(r["kind"] for r in recording.query(
        "select distinct kind, incident_id from kalshi.untrusted_windows"))
    assert kinds == ["disconnect", "gap"]


@pytest.mark.parametrize("bar_ms", [50, 100, 60_000])
def test_trade_bars_equal_bars_from_the_trade_tape(recording: Recording, bar_ms: int) -> None:
    rows = recording.query("select * from kalshi.trade_bars(make_interval(secs => %s / 1000.0))", (bar_ms,))
    truth = _truth_bars(recording, bar_ms)
    got = {(r["market_ticker"], _ms(r["bar_start"])): r for r in rows}
    assert got.keys() == truth.keys()
    for key, bar in truth.items():
        row = got[key]
        assert _ms(row["bar_end"]) - key[1] == bar_ms
        assert (row["open"], row["high"], row["low"], row["close"]) == (bar["open"], bar["high"], bar["low"],
                                                                        bar["close"]), key
        assert (row["volume"], row["notional"], row["trades"]) == (bar["volume"], bar["notional"], bar["trades"])
        assert row["yes_taker_volume"] == bar["yes"] and row["no_taker_volume"] == bar["volume"] - bar["yes"]
        assert abs(row["vwap"] - bar["notional"] / bar["volume"]) < TOLERANCE


def test_trade_bars_filter_by_market_and_time_and_flag_untrusted_bars(recording: Recording) -> None:
    market = recording.tickers[0]
    everything = recording.query("select * from kalshi.trade_bars('50 milliseconds') where market_ticker = %s "
                                 "order by bar_start", (market,))
    middle = everything[len(everything) // 2]["bar_start"]
    later = recording.query("select * from kalshi.trade_bars('50 milliseconds', %s, 'infinity', %s) "
                            "order by bar_start", (middle, market))
    assert later == [r for r in everything if r["bar_start"] >= middle]
    windows = _windows(recording)[market]
    for row in everything:
        overlaps = any(start < row["bar_end"] and row["bar_start"] <= end for start, end in windows)
        assert row["trusted"] is not overlaps, row["bar_start"]
    assert any(not r["trusted"] for r in everything) and any(r["trusted"] for r in everything)

    minute = recording.query("select * from kalshi.trade_bars_1m order by market_ticker, bar_start")
    assert minute == recording.query("select * from kalshi.trade_bars('1 minute') order by market_ticker, bar_start")


def test_book_at_equals_the_simulators_book_whenever_trusted(recording: Recording) -> None:
    checked = untrusted = 0
    for ticker in recording.tickers:
        times = [r["ms"] for r in recording.query(
            "select distinct (extract(epoch from exchange_ts) * 1000)::bigint as ms from kalshi.orderbook_deltas "
            "where market_ticker = %s and exchange_ts >= (select min(received_at) from kalshi.orderbook_snapshots "
            "where market_ticker = %s) order by 1", (ticker, ticker))]
        for ms in times:
            rows = recording.query("select * from kalshi.book_at(%s, %s)", (ticker, _at(ms)))
            assert rows, (ticker, ms)
            assert len({r["trusted"] for r in rows}) == 1
            if not rows[0]["trusted"]:
                untrusted += 1
                continue
            got = {(r["side"], r["price"]): r["size"] for r in rows}
            assert got == _truth_book(recording, ticker, ms), (ticker, ms)
            for r in rows:
                assert r["yes_price"] == (r["price"] if r["side"] == "yes" else ONE - r["price"])
            checked += 1
    assert checked > 100 and untrusted > 0


def test_book_at_before_any_snapshot_is_empty_and_after_the_session_is_untrusted(recording: Recording) -> None:
    ticker = recording.tickers[1]
    assert recording.query("select * from kalshi.book_at(%s, '2000-01-01')", (ticker,)) == []
    end = recording.query("select ended_at from kalshi.sessions")[0]["ended_at"]
    after = recording.query("select * from kalshi.book_at(%s, %s)", (ticker, end + timedelta(hours=1)))
    assert after and not any(r["trusted"] for r in after)
    got = {(r["side"], r["price"]): r["size"] for r in after}
    assert got == _truth_book(recording, ticker, _ms(end) + 3_600_000)  # frozen at the final, complete book


def test_the_lost_delta_lies_inside_an_untrusted_window(recording: Recording) -> None:
    stored = {(r["market_ticker"], _ms(r["exchange_ts"]), r["side"], r["price"], r["delta"])
              for r in recording.query("select market_ticker, exchange_ts, side, price, delta "
                                       "from kalshi.orderbook_deltas")}
    lost = [(ticker, ts, side, price, delta) for ticker in recording.tickers
            for ts, side, price, delta in recording.model.markets[ticker].log
            if (ticker, ts, side, price, delta) not in stored]
    assert len(lost) == 1
    ticker, ts, *_ = lost[0]
    windows = _windows(recording)[ticker]
    assert any(start <= _at(ts) <= end for start, end in windows)
    assert recording.query("select kalshi.is_trusted_at(%s, %s) as ok", (ticker, _at(ts)))[0]["ok"] is False
    assert recording.query("select * from kalshi.book_at(%s, %s)", (ticker, _at(ts)))[0]["trusted"] is False


def test_top_of_book_equals_the_simulators_top(recording: Recording) -> None:
    rows = recording.query("select * from kalshi.top_of_book order by market_ticker, exchange_ts, received_at")
    in_ms: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        in_ms[(row["market_ticker"], _ms(row["exchange_ts"]))].append(row)
    assert len(in_ms) > 100
    collapsed = 0
    for (ticker, ms), updates in in_ms.items():
        book = _truth_book(recording, ticker, ms)
        yes = [p for side, p in book if side == "yes"]
        no = [p for side, p in book if side == "no"]
        bid = max(yes) if yes else None
        ask = ONE - max(no) if no else None
        last = updates[-1]
        if (last["yes_bid"], last["yes_ask"]) != (bid, ask):
            # Ticker rows are keyed by (market, exchange ms, content): an update identical to an earlier one of the
            # same millisecond (the top moved away and back) is stored once, so the last row is the other state.
            assert (bid, ask) in {(u["yes_bid"], u["yes_ask"]) for u in updates[:-1]}, (ticker, ms)
            collapsed += 1
        for u in updates:
            if u["yes_bid"] is not None and u["yes_ask"] is not None:
                assert u["spread"] == u["yes_ask"] - u["yes_bid"] and u["mid"] == (u["yes_ask"] + u["yes_bid"]) / 2
    assert collapsed < len(in_ms) / 20


def test_spread_bars_summarise_the_ticker_updates(recording: Recording) -> None:
    updates = recording.query("select * from kalshi.top_of_book order by exchange_ts, received_at")
    expected: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for u in updates:
        expected[(u["market_ticker"], _ms(u["exchange_ts"]) // 100 * 100)].append(u)
    bars = recording.query("select * from kalshi.spread_bars('100 milliseconds')")
    assert {(b["market_ticker"], _ms(b["bar_start"])) for b in bars} == expected.keys()
    for bar in bars:
        group = expected[(bar["market_ticker"], _ms(bar["bar_start"]))]
        spreads = [u["spread"] for u in group if u["spread"] is not None]
        assert bar["updates"] == len(group)
        assert (bar["yes_bid"], bar["yes_ask"]) == (group[-1]["yes_bid"], group[-1]["yes_ask"])
        assert (bar["spread_min"], bar["spread_max"]) == (min(spreads), max(spreads))
        assert abs(bar["spread_mean"] - sum(spreads) / len(spreads)) < TOLERANCE
    assert recording.query("select count(*) as n from kalshi.spread_by_market_1m")[0]["n"] == len(
        {(b["market_ticker"], _ms(b["bar_start"]) // 60_000) for b in bars})


def test_depth_over_time_ends_at_the_simulators_final_book(recording: Recording) -> None:
    rows = recording.query("select * from kalshi.depth_over_time order by market_ticker, bucket_start, distance")
    assert len(rows) == recording.query("select count(*) as n from kalshi.depth_summaries")[0]["n"] > 0
    for row in rows:
        assert row["bucket_end"] - row["bucket_start"] == timedelta(seconds=0.5)
        assert row["total_depth"] == row["bid_depth"] + row["ask_depth"]
    for ticker in recording.tickers:
        final = [r for r in rows if r["market_ticker"] == ticker][-1]
        book = recording.model.book(ticker)
        bid = Decimal(book["yes_dollars"][-1][0])
        ask = ONE - Decimal(book["no_dollars"][-1][0])
        assert (final["best_bid"], final["best_ask"]) == (bid, ask)
        touch = [r for r in rows if r["market_ticker"] == ticker and r["distance"] == 0][-1]
        # The last sample of a bucket is its end: the final book, so the bucket's minimum is at most its size.
        assert touch["bid_depth_min"] <= Decimal(book["yes_dollars"][-1][1])
        assert touch["ask_depth_min"] <= Decimal(book["no_dollars"][-1][1])


def test_positions_and_realised_pnl_equal_the_simulated_account(recording: Recording) -> None:
    positions = {r["market_ticker"]: r for r in recording.query("select * from kalshi.positions_by_market")}
    account = {t: p for t, p in recording.model.positions.items() if p.volume > 0}
    assert positions.keys() == account.keys() and account
    for ticker, truth in account.items():
        row = positions[ticker]
        assert row["position"] == truth.position
        assert abs(row["realized_pnl"] - truth.realized) < TOLERANCE
        assert abs(row["cost_basis"] - truth.cost) < TOLERANCE
        assert row["fees"] == truth.fees
        assert abs(row["realized_pnl_after_fees"] - (row["realized_pnl"] - row["fees"])) < TOLERANCE
        assert row["yes_bought"] + row["no_bought"] == truth.volume
        assert row["position_matches_exchange"] and row["reported_position"] == truth.position
        assert abs(row["reported_realized_pnl"] - truth.realized) <= Decimal("0.00005")
    fills = recording.query("select * from kalshi.fills_with_pnl order by market_ticker, fill_number")
    assert all(f["position_after"] == f["reported_position_after"] for f in fills)
    by_market: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        by_market[f["market_ticker"]] += f["realized_pnl"]
    assert all(abs(by_market[t] - positions[t]["realized_pnl"]) < TOLERANCE for t in account)


def test_session_health_and_daily_completeness(recording: Recording) -> None:
    (health,) = recording.query("select * from kalshi.session_health")
    session = recording.query("select * from kalshi.sessions")[0]
    assert (health["status"], health["gaps"], health["reconnects"], health["incidents"]) == ("completed", 1, 1, 2)
    assert health["healthy"] and health["incidents_never_closed"] == 0 and health["dead_letters"] == 0
    recorded = (session["ended_at"] - session["started_at"]).total_seconds()
    assert health["recorded_seconds"] == pytest.approx(recorded)
    # The gap and the disconnect do not overlap: their lengths add up.
    windows = recording.query("select distinct incident_id, seconds from kalshi.untrusted_windows")
    assert health["untrusted_seconds"] == pytest.approx(sum(w["seconds"] for w in windows))

    daily = recording.query("select * from kalshi.data_completeness_daily order by market_ticker")
    assert [d["market_ticker"] for d in daily] == sorted(recording.tickers)
    for day in daily:
        assert day["day"] == session["started_at"].date() and day["sessions"] == 1
        assert day["recorded_seconds"] == pytest.approx(recorded)
        assert day["untrusted_seconds"] == pytest.approx(health["untrusted_seconds"])
        assert day["trusted_seconds"] + day["untrusted_seconds"] == pytest.approx(recorded)
        assert 0 < day["trusted_fraction"] < 1
    market = recording.tickers[0]
    start, end = session["started_at"], session["ended_at"]
    assert recording.query("select kalshi.is_trusted(%s, %s, %s) as ok", (market, start, end))[0]["ok"] is False
    before_gap = min(s for s, _ in _windows(recording)[market])
    assert recording.query("select kalshi.is_trusted(%s, %s, %s) as ok", (market, start, before_gap))[0]["ok"]


REPORT_QUERIES = [
    "select * from kalshi.untrusted_windows",
    "select * from kalshi.session_health",
    "select * from kalshi.data_completeness_daily",
    "select kalshi.is_trusted('M', now() - interval '1 day', now())",
    "select kalshi.is_trusted_at('M', now())",
    "select kalshi.multirange_seconds('{}'::tstzmultirange)",
    "select * from kalshi.trade_bars('5 minutes', now() - interval '1 day', now(), null)",
    "select * from kalshi.trade_bars_1m",
    "select * from kalshi.top_of_book",
    "select * from kalshi.spread_bars('1 hour')",
    "select * from kalshi.spread_by_market_1m",
    "select * from kalshi.depth_over_time",
    "select * from kalshi.book_at('M', now())",
    "select kalshi.level_size(x) from (values (1::numeric), (-2), (3)) v(x)",
    "select * from kalshi.fills_with_pnl",
    "select * from kalshi.positions_by_market",
]


def test_the_read_only_role_can_query_every_view_and_function(recording: Recording) -> None:
    with psycopg.connect(recording.url) as conn:
        conn.execute("set role kalshi_reader")
        for statement in REPORT_QUERIES:
            conn.execute(statement).fetchall()  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("delete from kalshi.trades")


def test_level_size_removes_a_level_at_zero_and_reopens_it(recording: Recording) -> None:
    rows = recording.query("select kalshi.level_size(x order by i) as size from (values (1, 10::numeric), (2, -15), "
                           "(3, 4)) v(i, x)")
    assert rows[0]["size"] == 4  # 10 - 15 removes the level; + 4 reopens it at 4 (not at -1)


def test_every_report_object_is_documented(recording: Recording) -> None:
    undocumented = recording.query("""
        select c.relname, a.attname
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'kalshi'
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where c.relkind = 'v' and col_description(c.oid, a.attnum) is null
""")
    views_without = recording.query("select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                                    "where n.nspname = 'kalshi' and c.relkind = 'v' "
                                    "and obj_description(c.oid, 'pg_class') is null")
    functions_without = recording.query("select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                                        "where n.nspname = 'kalshi' and obj_description(p.oid, 'pg_proc') is null")
    assert undocumented == [] and views_without == [] and functions_without == []
