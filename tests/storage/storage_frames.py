"""Wire frames for every data message type, with the awkward values storage must keep exactly.

Sub-penny prices (0.0050, 0.9990), fractional and negative counts (0.01, 75.25, -75.25), 6-decimal fees, and
trailing zeros that must survive (0.4100 stays 0.4100, not 0.41).
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from kalshi_ws import messages as m

TS_MS = 1_795_600_000_123  # 2026-11-25T09:46:40.123Z
_seq = itertools.count(1)


def frame(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj)


def decode(obj: dict[str, Any]) -> m.AnyMessage:
    message = m.decode(frame(obj))
    assert not isinstance(message, m.MalformedFrame | m.UnknownMessage | m.LegacyMessage), message
    return message


def trade(trade_id: str, *, price: str = "0.0050", count: str = "75.25", sid: int = 1, seq: int | None = None,
          ts_ms: int = TS_MS, market: str = "KXBTCD-25AUG0517-T114999.99") -> m.AnyMessage:
    return decode({"type": "trade", "sid": sid, "seq": seq or next(_seq), "msg": {
        "trade_id": trade_id, "market_ticker": market, "yes_price_dollars": price,
        "no_price_dollars": str(1 - __import__("decimal").Decimal(price)), "count_fp": count,
        "taker_outcome_side": "yes", "taker_book_side": "bid", "taker_side": "yes", "is_block_trade": False,
        "ts_ms": ts_ms, "ts": ts_ms // 1000}})


def delta(seq: int, *, price: str = "0.9990", delta_fp: str = "-75.25", side: str = "no", sid: int = 2,
          market: str = "HIGHNY-22DEC23-B53.5", ts_ms: int | None = TS_MS) -> m.AnyMessage:
    msg: dict[str, Any] = {"market_ticker": market, "market_id": "0b8f9c3e-1111-4a4a-9c9c-123456789abc",
                           "price_dollars": price, "delta_fp": delta_fp, "side": side}
    if ts_ms is not None:
        msg["ts_ms"] = ts_ms
    return decode({"type": "orderbook_delta", "sid": sid, "seq": seq, "msg": msg})


def snapshot(seq: int, *, sid: int = 2, market: str = "HIGHNY-22DEC23-B53.5", command_id: int | None = None
             ) -> m.AnyMessage:
    obj: dict[str, Any] = {"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": {
        "market_ticker": market, "market_id": "0b8f9c3e-1111-4a4a-9c9c-123456789abc",
        "yes_dollars_fp": [["0.0050", "0.01"], ["0.4100", "75.25"]],
        "no_dollars_fp": [["0.5800", "1000.00"]]}}
    if command_id is not None:
        obj["id"] = command_id
    return decode(obj)


def ticker(*, ts_ms: int = TS_MS, yes_bid: str = "0.4100", volume: str = "1234.56", sid: int = 3) -> m.AnyMessage:
    return decode({"type": "ticker", "sid": sid, "msg": {
        "market_ticker": "KXBTCD-25AUG0517-T114999.99", "market_id": "7c1b", "price_dollars": "0.4150",
        "yes_bid_dollars": yes_bid, "yes_ask_dollars": "0.9990", "volume_fp": volume, "open_interest_fp": "0.01",
        "dollar_volume": 5000, "dollar_open_interest": -3, "yes_bid_size_fp": "75.25", "yes_ask_size_fp": "0.50",
        "last_trade_size_fp": "1.00", "ts_ms": ts_ms, "ts": ts_ms // 1000, "time": "2026-11-25T09:46:40.123456Z"}})


def fill(trade_id: str = "f-trade-1", order_id: str = "order-1") -> m.AnyMessage:
    return decode({"type": "fill", "sid": 4, "msg": {
        "trade_id": trade_id, "order_id": order_id, "market_ticker": "M-1", "client_order_id": "c-1",
        "exchange_index": 2, "is_taker": True, "outcome_side": "no", "book_side": "ask", "yes_price_dollars": "0.4300",
        "count_fp": "0.01", "fee_cost": "0.330000", "post_position_fp": "-75.25", "ts_ms": TS_MS, "ts": TS_MS // 1000,
        "side": "no", "action": "buy", "purchased_side": "no", "subaccount": 3}})


def user_order(status: str = "resting", fill_count: str = "0.00", updated_ms: int = TS_MS) -> m.AnyMessage:
    return decode({"type": "user_order", "sid": 5, "msg": {
        "order_id": "order-1", "user_id": "u-1", "ticker": "M-1", "exchange_index": 1, "status": status,
        "outcome_side": "yes", "book_side": "bid", "side": "yes", "is_yes": True, "yes_price_dollars": "0.0050",
        "fill_count_fp": fill_count, "remaining_count_fp": "75.25", "initial_count_fp": "75.25",
        "taker_fill_cost_dollars": "0.000000", "maker_fill_cost_dollars": "0.330000",
        "taker_fees_dollars": "0.000001", "maker_fees_dollars": "0.000000", "client_order_id": "c-1",
        "order_group_id": "g-1", "self_trade_prevention_type": "maker", "created_ts_ms": TS_MS - 5000,
        "last_updated_ts_ms": updated_ms, "expiration_ts_ms": TS_MS + 60_000, "last_update_reason": "Trade",
        "subaccount_number": 0}})


def position(position_fp: str = "-75.25", volume: str = "150.50") -> m.AnyMessage:
    return decode({"type": "market_position", "sid": 6, "msg": {
        "user_id": "u-1", "market_ticker": "M-1", "position_fp": position_fp, "position_cost_dollars": "30.1000",
        "realized_pnl_dollars": "-0.0050", "fees_paid_dollars": "0.3300", "position_fee_cost_dollars": "0.0100",
        "volume_fp": volume, "subaccount": 1}})


def lifecycle(seq: int, *, multivariate: bool = False) -> m.AnyMessage:
    return decode({"type": "multivariate_market_lifecycle" if multivariate else "market_lifecycle_v2", "sid": 7,
                   "seq": seq, "msg": {
                       "market_ticker": "M-1", "event_type": "created", "exchange_index": 1, "open_ts": 1795600000,
                       "close_ts": 1795686400, "additional_metadata": {"name": "n", "title": "t",
                                                                       "can_close_early": True},
                       "price_level_structure": "deci_cent",
                       "price_ranges": [{"start": "0.0000", "end": "0.1000", "step": "0.0010"}],
                       "floor_strike": "114999.99", "settlement_value": "0.9990"}})


def event_lifecycle(seq: int) -> m.AnyMessage:
    return decode({"type": "event_lifecycle", "sid": 7, "seq": seq, "msg": {
        "event_ticker": "EV-1", "exchange_index": 1, "title": "Title", "sub_title": "Sub",
        "collateral_return_type": "MECNET", "series_ticker": "SER", "strike_date": 1795686400,
        "strike_period": "day"}})


def fee_update(seq: int) -> m.AnyMessage:
    return decode({"type": "event_fee_update", "sid": 7, "seq": seq, "msg": {
        "event_ticker": "EV-1", "fee_type_override": "flat", "fee_multiplier_override": "0.0050"}})


def order_group(seq: int) -> m.AnyMessage:
    return decode({"type": "order_group_updates", "sid": 8, "seq": seq, "msg": {
        "event_type": "limit_updated", "order_group_id": "g-1", "contracts_limit_fp": "75.25", "ts_ms": TS_MS}})


def rfq_created(seq: int) -> m.AnyMessage:
    return decode({"type": "rfq_created", "sid": 9, "seq": seq, "msg": {
        "id": "rfq-1", "creator_id": "0", "market_ticker": "M-1", "contracts_fp": "75.25",
        "target_cost_dollars": "0.0050", "created_ts": "2026-11-25T09:46:40.123Z",
        "mve_selected_legs": [{"event_ticker": "E", "market_ticker": "M", "side": "yes",
                               "yes_settlement_value_dollars": "0.9990"}]}})


def rfq_deleted(seq: int) -> m.AnyMessage:
    return decode({"type": "rfq_deleted", "sid": 9, "seq": seq, "msg": {
        "id": "rfq-1", "creator_id": "0", "market_ticker": "M-1", "deleted_ts": "2026-11-25T09:47:40Z"}})


def quote(kind: str, seq: int) -> m.AnyMessage:
    return decode({"type": kind, "sid": 9, "seq": seq, "msg": {
        "quote_id": "q-1", "rfq_id": "rfq-1", "quote_creator_id": "qc", "rfq_creator_id": "rc",
        "market_ticker": "M-1", "yes_bid_dollars": "0.0050", "no_bid_dollars": "0.9990",
        "yes_contracts_offered_fp": "0.01", "accepted_side": "yes", "contracts_accepted_fp": "75.25",
        "order_id": "order-9", "client_order_id": "c-9", "created_ts": "2026-11-25T09:46:40Z",
        "executed_ts": "2026-11-25T09:46:41Z"}})


def reference(seq: int) -> list[m.AnyMessage]:
    return [
        decode({"type": "cfbenchmarks_value", "sid": 10, "seq": seq, "msg": {
            "index_id": "BRTI", "received_at": TS_MS, "data": "{\"v\": 1}",
            "avg_60s_data": {"value": "98765.12345678", "window_size": 60}}}),
        decode({"type": "pyth_value", "sid": 11, "seq": seq, "msg": {
            "underlying_ticker": "BTC", "value_usd": "98765.00000001", "source_ts_ms": TS_MS}}),
        decode({"type": "pyth_value_underlying_list", "sid": 11, "seq": seq + 1, "msg": {
            "underlying_tickers": ["BTC", "ETH"]}}),
    ]


def one_of_each() -> list[m.AnyMessage]:
    """One message of every data type (23 types)."""
    return [
        trade("t-1"), delta(2), snapshot(1), ticker(), fill(), user_order(), position(), lifecycle(1),
        lifecycle(1, multivariate=True), event_lifecycle(2), fee_update(3), order_group(1), rfq_created(1),
        rfq_deleted(2), quote("quote_created", 3), quote("quote_accepted", 4), quote("quote_executed", 5),
        *reference(1),
        decode({"type": "cfbenchmarks_value_5hz", "sid": 12, "seq": 1, "msg": {
            "index_id": "BTC", "value_usd": "98765.10000000", "source_ts_ms": TS_MS}}),
        decode({"type": "cfbenchmarks_value_indexlist", "sid": 10, "seq": 3, "id": 4, "msg": {"index_ids": ["BRTI"]}}),
        decode({"type": "cfbenchmarks_value_5hz_indexlist", "sid": 12, "seq": 2, "id": 5, "msg": {
            "index_ids": ["BTC"]}}),
    ]
