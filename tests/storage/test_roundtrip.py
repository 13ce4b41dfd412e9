"""Every message type through the Recorder into PostgreSQL and back, exactly; idempotency; dead letters."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import storage_frames as f

from kalshi_store.continuity import SessionLink
from kalshi_store.recorder import Recorder
from kalshi_ws import events as ev
from kalshi_ws import messages as m

pytestmark = pytest.mark.asyncio


def rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute("set time zone 'UTC'")
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"select count(*) from kalshi.{table}").fetchone()  # noqa: S608 - test constant
    assert row is not None
    return int(row[0])


async def record(url: str, spill: Path, messages: list[m.AnyMessage], *, generation: int = 1) -> str:
    async with Recorder(url, spill_dir=spill) as recorder:
        session_id = await recorder.open_session("test", "simulator", ["M-1"], ["trade"])
        for message in messages:
            recorder.on_message(message, generation, time.time_ns())
        await recorder.close_session("completed")
    return session_id


async def test_every_message_type_round_trips_exactly(db_url: str, tmp_path: Path) -> None:
    messages = f.one_of_each()
    assert {type(x) for x in messages} == set(m.DataMessage.__args__)  # type: ignore[attr-defined]
    session_id = await record(db_url, tmp_path, messages)
    first = messages[0]
    assert isinstance(first, m.Trade)

    assert rows(db_url, "select trade_id, market_ticker, yes_price::text, no_price::text, count::text, "
                "taker_outcome_side, taker_book_side, taker_side, is_block_trade, exchange_ts, source, generation, "
                "sid, seq, session_id::text from kalshi.trades") == [
        ("t-1", "KXBTCD-25AUG0517-T114999.99", "0.0050", "0.9950", "75.25", "yes", "bid", "yes", False,
         datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC), "ws", 1, 1, first.seq, session_id)]
    (price, delta), = rows(db_url, "select price, delta from kalshi.orderbook_deltas")
    assert (price, delta) == (Decimal("0.9990"), Decimal("-75.25"))
    assert (str(price), str(delta)) == ("0.9990", "-75.25")  # same scale, not just equal
    assert rows(db_url, "select side, seq, sid, exchange_ts, market_id from kalshi.orderbook_deltas") == [
        ("no", 2, 2, datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC), "0b8f9c3e-1111-4a4a-9c9c-123456789abc")]
    assert rows(db_url, "select yes_prices::text, yes_sizes::text, no_prices::text, no_sizes::text, use_yes_price,"
                " command_id from kalshi.orderbook_snapshots") == [
        ("{0.0050,0.4100}", "{0.01,75.25}", "{0.5800}", "{1000.00}", False, None)]
    assert rows(db_url, "select p, s from kalshi.orderbook_snapshots, unnest(yes_prices, yes_sizes) as l(p, s) "
                "order by p") == [(Decimal("0.0050"), Decimal("0.01")), (Decimal("0.4100"), Decimal("75.25"))]
    assert rows(db_url, "select price::text, yes_bid::text, yes_ask::text, volume::text, open_interest::text, "
                "dollar_volume, dollar_open_interest, yes_bid_size::text, yes_ask_size::text, last_trade_size::text,"
                " exchange_ts from kalshi.tickers") == [
        ("0.4150", "0.4100", "0.9990", "1234.56", "0.01", 5000, -3, "75.25", "0.50", "1.00",
         datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC))]
    assert rows(db_url, "select trade_id, order_id, yes_price::text, count::text, fee_cost::text, "
                "post_position::text, is_taker, outcome_side, subaccount from kalshi.fills") == [
        ("f-trade-1", "order-1", "0.4300", "0.01", "0.330000", "-75.25", True, "no", 3)]
    assert rows(db_url, "select market_ticker, status, yes_price::text, fill_count::text, maker_fill_cost::text, "
                "taker_fees::text, last_updated_ts from kalshi.user_orders") == [
        ("M-1", "resting", "0.0050", "0.00", "0.330000", "0.000001",
         datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC))]
    assert rows(db_url, "select position::text, position_cost::text, realized_pnl::text, volume::text "
                "from kalshi.market_positions") == [("-75.25", "30.1000", "-0.0050", "150.50")]
    assert rows(db_url, "select message_type, event_type, settlement_value::text, floor_strike::text, "
                "price_ranges, open_ts from kalshi.market_lifecycle order by message_type") == [
        ("market_lifecycle_v2", "created", "0.9990", "114999.99",
         [{"start": "0.0000", "end": "0.1000", "step": "0.0010"}], datetime(2026, 11, 25, 9, 46, 40, tzinfo=UTC)),
        ("multivariate_market_lifecycle", "created", "0.9990", "114999.99",
         [{"start": "0.0000", "end": "0.1000", "step": "0.0010"}], datetime(2026, 11, 25, 9, 46, 40, tzinfo=UTC)),
    ]
    assert rows(db_url, "select event_ticker, subtitle, collateral_return_type from kalshi.event_lifecycle") == [
        ("EV-1", "Sub", "MECNET")]
    assert rows(db_url, "select fee_type_override, fee_multiplier_override::text from kalshi.event_fee_updates") == [
        ("flat", "0.0050")]
    assert rows(db_url, "select event_type, contracts_limit::text from kalshi.order_group_updates") == [
        ("limit_updated", "75.25")]
    assert rows(db_url, "select message_type, rfq_id, quote_id, contracts::text, yes_bid::text, no_bid::text, "
                "contracts_accepted::text from kalshi.communications order by seq") == [
        ("rfq_created", "rfq-1", None, "75.25", None, None, None),
        ("rfq_deleted", "rfq-1", None, None, None, None, None),
        ("quote_created", "rfq-1", "q-1", None, "0.0050", "0.9990", "75.25"),
        ("quote_accepted", "rfq-1", "q-1", None, "0.0050", "0.9990", "75.25"),
        ("quote_executed", "rfq-1", "q-1", None, "0.0050", "0.9990", "75.25"),
    ]
    legs, = rows(db_url, "select mve_selected_legs from kalshi.communications where message_type = 'rfq_created'")
    assert legs[0][0]["yes_settlement_value_dollars"] == "0.9990"
    assert sorted(rows(db_url, "select message_type, value_usd::text from kalshi.reference_values")) == sorted([
        ("cfbenchmarks_value", "98765.12345678"), ("pyth_value", "98765.00000001"),
        ("pyth_value_underlying_list", None), ("cfbenchmarks_value_5hz", "98765.10000000"),
        ("cfbenchmarks_value_indexlist", None), ("cfbenchmarks_value_5hz_indexlist", None)])

    (status, received, written, duplicates), = rows(
        db_url, "select status, received, written, duplicates from kalshi.sessions")
    assert status == "completed"
    assert received == written
    assert sum(received.values()) == len(messages)
    assert set(duplicates.values()) <= {0}


async def test_redelivery_adds_no_rows_and_distinct_events_are_all_kept(db_url: str, tmp_path: Path) -> None:
    # Distinct events that look alike: same price, count and time, different ids / seqs / values.
    distinct = [
        f.trade("a", seq=1), f.trade("b", seq=2),
        f.delta(10), f.delta(11),
        f.ticker(yes_bid="0.4100"), f.ticker(yes_bid="0.4200"), f.ticker(ts_ms=f.TS_MS + 1),
        f.user_order("resting"), f.user_order("executed", fill_count="75.25", updated_ms=f.TS_MS + 1),
        f.position("-75.25", "150.50"), f.position("-75.25", "150.51"),
        f.fill("x", "o1"), f.fill("x", "o2"),
        f.lifecycle(20), f.lifecycle(21),
    ]
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        await recorder.open_session("test", "simulator", ["M-1"], ["trade"])
        for message in distinct:
            recorder.on_message(message, 1, time.time_ns())
        await recorder.flush()
        # The same events again (a replayed batch, an overlapping subscription): received later, same keys.
        for message in distinct:
            recorder.on_message(message, 1, time.time_ns())
        await recorder.flush()
        stats = recorder.stats()
        await recorder.close_session()
    expected = {"trades": 2, "orderbook_deltas": 2, "tickers": 3, "user_orders": 2, "market_positions": 2,
                "fills": 2, "market_lifecycle": 2}
    for table, n in expected.items():
        assert count(db_url, table) == n, table
    assert stats.written == expected
    assert stats.duplicates == expected
    (status,), = rows(db_url, "select status from kalshi.sessions")
    assert status == "completed"


async def test_a_malformed_frame_is_dead_lettered_and_its_neighbours_stored(db_url: str, tmp_path: Path) -> None:
    bad = m.decode(b'{"type":"trade","sid":1,"seq":2,"msg":{"trade_id":"x","yes_price_dollars":"abc"}}')
    legacy = m.decode(b'{"type":"trade","sid":1,"seq":3,"msg":{"trade_id":"y","market_ticker":"M","yes_price":41,'
                      b'"no_price":59,"count":3}}')
    unknown = m.decode(b'{"type":"brand_new","sid":1,"msg":{}}')
    garbage = m.decode(b"{not json")
    assert isinstance(bad, m.MalformedFrame) and isinstance(legacy, m.LegacyMessage)
    assert isinstance(unknown, m.UnknownMessage) and isinstance(garbage, m.MalformedFrame)
    session_id = await record(db_url, tmp_path, [f.trade("before", seq=1), bad, legacy, unknown, garbage,
                                                 f.trade("after", seq=4)])
    assert {r[0] for r in rows(db_url, "select trade_id from kalshi.trades")} == {"before", "after"}
    dead = rows(db_url, "select reason, type, sid, seq, raw, session_id::text from kalshi.dead_letter order by seq, "
                "reason")
    assert sorted(((r[0], r[1]) for r in dead), key=str) == sorted([
        ("malformed", "trade"), ("legacy", "trade"), ("unknown", "brand_new"), ("malformed", None)], key=str)
    raws = {bytes(r[4]) for r in dead}
    assert garbage.raw in raws and bad.raw in raws
    assert {r[5] for r in dead} == {session_id}


async def test_a_row_the_database_rejects_goes_to_dead_letter_alone(db_url: str, tmp_path: Path) -> None:
    poisoned = f.trade("nul", seq=5, market="BAD\x00TICKER")  # text cannot hold NUL: the database rejects it
    good = [f.trade(f"ok-{i}", seq=10 + i) for i in range(50)]
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        await recorder.open_session("test", "simulator", ["M-1"], ["trade"])
        for message in [*good[:25], poisoned, *good[25:]]:
            recorder.on_message(message, 1, time.time_ns())
        await recorder.close_session()
    assert count(db_url, "trades") == 50
    (reason, table, error), = rows(db_url, "select reason, type, error from kalshi.dead_letter")
    assert (reason, table) == ("unstorable", "trades")
    assert error
    (status, message), = rows(db_url, "select status, status_message from kalshi.sessions")
    assert status == "degraded" and "could not be stored" in message


async def test_missing_seq_on_a_book_message_is_dead_lettered(db_url: str, tmp_path: Path) -> None:
    no_seq = f.decode({"type": "orderbook_delta", "sid": 2, "msg": {
        "market_ticker": "M", "price_dollars": "0.5000", "delta_fp": "1.00", "side": "yes"}})
    await record(db_url, tmp_path, [no_seq, f.delta(1)])
    assert count(db_url, "orderbook_deltas") == 1
    assert rows(db_url, "select reason, type from kalshi.dead_letter") == [("missing_seq", "orderbook_delta")]


async def test_session_events_open_and_close_incidents_in_the_gap_ledger(db_url: str, tmp_path: Path) -> None:
    t0 = time.time_ns()
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        session_id = await recorder.open_session("test", "simulator", ["M-1", "M-2"], ["orderbook_delta"])
        recorder.on_event(ev.Connected(generation=1, at_ns=t0, url="ws://x"))
        recorder.on_event(ev.SequenceGap(generation=1, at_ns=t0 + 1000, incident_id=1, sid=2,
                                         channel="orderbook_delta", markets=("M-1", "M-2"), expected=5, received=9))
        recorder.on_event(ev.SnapshotRequested(generation=1, at_ns=t0 + 2000, incident_id=1, sid=2,
                                               markets=("M-1", "M-2"), attempt=1))
        await recorder.flush()  # the recovery arrives in a later batch than its gap
        recorder.on_event(ev.Recovered(generation=1, at_ns=t0 + 3_000_000, incident_id=1, outcome="snapshot",
                                       sid=2, markets=("M-1", "M-2")))
        recorder.on_event(ev.Disconnected(generation=1, at_ns=t0 + 4_000_000, incident_id=2, reason="1006",
                                          will_reconnect=True))
        recorder.on_event(ev.ConnectFailed(generation=1, at_ns=t0 + 5_000_000, attempt=1, reason="refused",
                                           retry_in=0.5))
        recorder.on_event(ev.Connected(generation=2, at_ns=t0 + 6_000_000, url="ws://x", incident_id=2))
        recorder.on_event(ev.BookInconsistency(generation=2, at_ns=t0 + 7_000_000, market="M-2", kind="crossed",
                                               detail="bid 0.51 >= ask 0.50"))
        recorder.on_event(ev.Stopped(generation=2, at_ns=t0 + 8_000_000, reason="deadline"))
        await recorder.close_session()
    ledger = rows(db_url, "select kind, incident_id, sid, markets, expected_seq, received_seq, "
                  "ended_at is not null, outcome, detail from kalshi.gap_ledger order by started_at, kind")
    kinds = [(r[0], r[1], r[6], r[7]) for r in ledger]
    assert kinds == [
        ("gap", 1, True, "snapshot"),
        ("recovery", 1, True, "snapshot_requested"),
        ("recovery", 1, True, "snapshot"),
        ("disconnect", 2, False, None),
        ("connect_failed", None, True, None),
        ("book_inconsistency", None, True, None),
    ]
    gap = ledger[0]
    assert (gap[2], gap[3], gap[4], gap[5]) == (2, ["M-1", "M-2"], 5, 9)
    assert ledger[3][8]["new_generation"] == 2  # the reconnect is noted on the open disconnect
    (reconnects, gaps, status, message), = rows(
        db_url, "select reconnects, gaps, status, status_message from kalshi.sessions where session_id = %s",
        (session_id,))
    assert (reconnects, gaps, status) == (1, 1, "completed")
    assert "deadline" in message


def rest_trade(trade_id: str, ts_ms: int) -> m.TradePayload:
    """A trade as ``KalshiRestClient.get_trades`` returns it: the WebSocket payload, without a connection."""
    return m.TradePayload(trade_id=trade_id, market_ticker="KXBTCD-25AUG0517-T114999.99",
                          yes_price_dollars=Decimal("0.0050"), no_price_dollars=Decimal("0.9950"),
                          count_fp=Decimal("75.25"), taker_outcome_side="yes", taker_book_side="bid",
                          taker_side="yes", is_block_trade=True, ts_ms=ts_ms)


async def test_rest_backfill_deduplicates_with_websocket_trades(db_url: str, tmp_path: Path) -> None:
    link = SessionLink(db_url, str(uuid.uuid4()), "test")  # the session reads where its backfill starts there
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        await recorder.open_session("test", "simulator", ["M-1"], ["trade"])
        assert await link.last_trade_time(["KXBTCD-25AUG0517-T114999.99"]) is None
        recorder.on_message(f.trade("same", seq=1), 1, time.time_ns())
        await recorder.flush()
        added = recorder.add_rest_trades([
            rest_trade("same", 1795600000123),
            rest_trade("older", 1795599600500),
        ])
        assert added == 2
        await recorder.flush()
        last = await link.last_trade_time(["KXBTCD-25AUG0517-T114999.99", "OTHER"])
        await link.close()
        await recorder.close_session()
    assert last == datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC)
    assert rows(db_url, "select trade_id, source, exchange_ts, count::text from kalshi.trades order by trade_id") == [
        ("older", "rest", datetime(2026, 11, 25, 9, 40, 0, 500000, tzinfo=UTC), "75.25"),
        ("same", "ws", datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC), "75.25"),
    ]


async def test_the_last_trade_time_is_none_while_the_database_is_away() -> None:
    link = SessionLink("postgresql://kalshi@127.0.0.1:1/kalshi", str(uuid.uuid4()), "test")  # nothing listens
    assert await link.last_trade_time(["M-1"]) is None
    await link.close()


async def test_rest_backfill_is_not_counted_as_message_age(db_url: str, tmp_path: Path) -> None:
    """The session's message age is receive time - exchange time of live messages; a backfilled trade is old by
    design (it carries its exchange time, ``ts_ms``, like a live one, but no connection generation)."""
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        session_id = await recorder.open_session("test", "simulator", ["M-1"], ["trade"])
        received_ns = f.TS_MS * 1_000_000 + 2_000_000_000
        recorder.on_message(f.trade("live", seq=1), 1, received_ns)
        recorder.add_rest_trades([rest_trade("backfilled", f.TS_MS - 3_600_000)])
        await recorder.close_session()
    assert rows(db_url, "select max_message_age_ms from kalshi.sessions where session_id = %s",
                (session_id,)) == [(2000,)]


async def test_data_before_open_session_is_a_clear_error(db_url: str, tmp_path: Path) -> None:
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        with pytest.raises(RuntimeError, match="open_session"):
            recorder.on_message(f.trade("x", seq=1), 1, time.time_ns())
