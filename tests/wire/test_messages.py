"""messages.decode: every message type of the spec's section 10 examples, field by field, and the edge cases
of spec sections 4.0, 9 and 12 (sub-penny prices, fractional counts, numbers as strings or JSON numbers,
unknown keys, dotted tickers, empty prices, legacy shapes, unknown types, malformed frames)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kalshi_ws import messages

EXAMPLES = [line for line in (Path(__file__).parent / "spec_examples.jsonl").read_bytes().splitlines() if line]


def _assert_matches(original: Any, decoded: Any, path: str) -> None:
    """Every key of the wire object is on the struct with exactly the wire value (decimals compared exactly)."""
    if isinstance(original, dict):
        assert decoded is not None, path
        for key, value in original.items():
            if isinstance(decoded, dict):
                assert key in decoded, f"{path}.{key} missing"
                _assert_matches(value, decoded[key], f"{path}.{key}")
            else:
                assert hasattr(decoded, key), f"{path}.{key} missing on {type(decoded).__name__}"
                _assert_matches(value, getattr(decoded, key), f"{path}.{key}")
    elif isinstance(original, list):
        assert len(original) == len(decoded), path
        for i, (a, b) in enumerate(zip(original, decoded, strict=True)):
            _assert_matches(a, b, f"{path}[{i}]")
    elif isinstance(decoded, Decimal):
        assert isinstance(original, (str, int, float)), path
        assert decoded == Decimal(str(original)), f"{path}: {decoded!r} != {original!r}"
        if isinstance(original, str):
            assert str(decoded) == original, f"{path}: text changed {original!r} -> {decoded!r}"
    else:
        assert decoded == original, f"{path}: {decoded!r} != {original!r}"


@pytest.mark.parametrize("frame", EXAMPLES, ids=[json.loads(f)["type"] + f"-{i}" for i, f in enumerate(EXAMPLES)])
def test_spec_examples_decode_exactly(frame: bytes) -> None:
    original = json.loads(frame)
    message = messages.decode(frame)
    kind = original["type"]
    if kind in messages.REMOVED_TYPES:
        assert isinstance(message, messages.LegacyMessage)
        assert message.type == kind and message.raw == frame and message.sid == original["sid"]
        return
    cls = messages.MESSAGE_TYPES[kind]
    assert type(message) is cls
    for key, value in original.items():
        if key == "type":
            continue
        _assert_matches(value, getattr(message, key), key)
    # Round trip (what the simulator relies on): encoding and decoding again gives the same message.
    assert messages.decode(messages.encode(message)) == message


def test_every_known_type_is_covered_by_the_examples() -> None:
    seen = {json.loads(frame)["type"] for frame in EXAMPLES}
    missing = set(messages.MESSAGE_TYPES) - seen
    # Types of section 4 that section 10 has no literal example of are tested below.
    assert missing <= {"cfbenchmarks_value_5hz_indexlist"}


def test_indexlist_5hz() -> None:
    frame = b'{"type": "cfbenchmarks_value_5hz_indexlist", "id": 3, "sid": 12, "seq": 8, "msg": {"index_ids": ["BRTI"]}}'
    message = messages.decode(frame)
    assert isinstance(message, messages.CfbenchmarksIndexList5hz)
    assert (message.id, message.sid, message.seq, message.msg.index_ids) == (3, 12, 8, ["BRTI"])


def _delta(**msg: Any) -> bytes:
    body = {"market_ticker": "KXCPI-26NOV-T0.3", "market_id": "m", "price_dollars": "0.4300", "delta_fp": "1.00",
            "side": "yes"} | msg
    return json.dumps({"type": "orderbook_delta", "sid": 1, "seq": 3, "msg": body}).encode()


def test_sub_penny_price_and_fractional_count_are_exact() -> None:
    message = messages.decode(_delta(price_dollars="0.0001", delta_fp="-75.25"))
    assert isinstance(message, messages.OrderbookDelta)
    assert message.msg.price_dollars == Decimal("0.0001")
    assert message.msg.delta_fp == Decimal("-75.25")
    message = messages.decode(_delta(price_dollars="0.9995", delta_fp="0.01"))
    assert isinstance(message, messages.OrderbookDelta)
    assert message.msg.price_dollars == Decimal("0.9995") and message.msg.delta_fp == Decimal("0.01")


def test_numbers_instead_of_strings_are_accepted_exactly() -> None:
    frame = (b'{"type":"orderbook_delta","sid":1,"seq":3,"msg":{"market_ticker":"X","market_id":"m",'
             b'"price_dollars":0.4315,"delta_fp":-12.5,"side":"no"}}')
    message = messages.decode(frame)
    assert isinstance(message, messages.OrderbookDelta)
    assert message.msg.price_dollars == Decimal("0.4315")
    assert message.msg.delta_fp == Decimal("-12.5")
    trade = messages.decode(b'{"type":"trade","sid":3,"seq":1,"msg":{"trade_id":"t","market_ticker":"X",'
                            b'"yes_price_dollars":0.43,"no_price_dollars":0.57,"count_fp":3}}')
    assert isinstance(trade, messages.Trade)
    assert (trade.msg.yes_price_dollars, trade.msg.no_price_dollars, trade.msg.count_fp) == (
        Decimal("0.43"), Decimal("0.57"), Decimal(3))


def test_unknown_keys_are_ignored() -> None:
    frame = (b'{"type":"ticker","sid":2,"extra_top":1,"msg":{"market_ticker":"X","market_id":"m",'
             b'"price_dollars":"0.4200","Clock":123456,"future_field":{"a":[1,2]}}}')
    message = messages.decode(frame)
    assert isinstance(message, messages.Ticker)
    assert message.msg.price_dollars == Decimal("0.4200")


@pytest.mark.parametrize("ticker", ["KXBTCD-25AUG0517-T114999.99", "HIGHNY-22DEC23-B53.5", "KXCPI-26NOV-T0.3"])
def test_dotted_tickers(ticker: str) -> None:
    message = messages.decode(_delta(market_ticker=ticker))
    assert isinstance(message, messages.OrderbookDelta)
    assert message.msg.market_ticker == ticker


def test_empty_price_is_none() -> None:
    frame = (b'{"type":"ticker","sid":2,"msg":{"market_ticker":"X","market_id":"m","price_dollars":"",'
             b'"yes_bid_dollars":"0.0100","volume_fp":"0.00"}}')
    message = messages.decode(frame)
    assert isinstance(message, messages.Ticker)
    assert message.msg.price_dollars is None
    assert message.msg.yes_bid_dollars == Decimal("0.0100")
    assert message.msg.volume_fp == Decimal("0.00")


def test_snapshot_without_sides() -> None:
    message = messages.decode(b'{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"X","market_id":"m"}}')
    assert isinstance(message, messages.OrderbookSnapshot)
    assert message.msg.yes_dollars_fp == [] and message.msg.no_dollars_fp == []


@pytest.mark.parametrize("frame,kind", [
    (b'{"type":"orderbook_delta","sid":1,"seq":3,"msg":{"market_ticker":"X","price":43,"delta":-5,"side":"yes"}}',
     "orderbook_delta"),
    (b'{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"X","yes":[[43,100]],"no":[[57,5]]}}',
     "orderbook_snapshot"),
    (b'{"type":"trade","sid":3,"seq":1,"msg":{"trade_id":"t","market_ticker":"X","yes_price":43,"no_price":57,'
     b'"count":5,"taker_side":"yes"}}', "trade"),
    (b'{"type":"ticker","sid":2,"msg":{"market_ticker":"X","price":43,"yes_bid":42,"yes_ask":44,"volume":10}}',
     "ticker"),
    (b'{"type":"fill","sid":6,"msg":{"trade_id":"t","order_id":"o","market_ticker":"X","is_taker":true,'
     b'"yes_price":43,"count":5}}', "fill"),
    (b'{"type":"market_position","sid":8,"msg":{"market_ticker":"X","position":5}}', "market_position"),
])
def test_legacy_integer_shapes_are_reported(frame: bytes, kind: str) -> None:
    message = messages.decode(frame)
    assert isinstance(message, messages.LegacyMessage), message
    assert message.type == kind
    assert message.raw == frame
    assert "integer" in message.reason


def test_unknown_type() -> None:
    frame = b'{"type":"brand_new_thing","sid":4,"seq":17,"msg":{"x":1}}'
    message = messages.decode(frame)
    assert isinstance(message, messages.UnknownMessage)
    assert (message.type, message.sid, message.seq, message.raw) == ("brand_new_thing", 4, 17, frame)


@pytest.mark.parametrize("frame,needle", [
    (b'{"type":"orderbook_delta","sid":1,', "invalid JSON"),
    (b'not json at all', "invalid JSON"),
    (b'[1,2,3]', "not an object"),
    (b'{"sid":1,"msg":{}}', "no string 'type'"),
    (b'{"type":"orderbook_delta","sid":1,"seq":3,"msg":{"market_ticker":"X","price_dollars":"abc",'
     b'"delta_fp":"1","side":"yes"}}', ""),
    (b'{"type":"orderbook_delta","sid":"one","seq":3,"msg":{}}', ""),
    (b'{"type":"orderbook_delta","sid":1,"seq":3,"msg":{"market_ticker":"X","price_dollars":"0.4","delta_fp":"1",'
     b'"side":"maybe"}}', ""),
])
def test_malformed_frames(frame: bytes, needle: str) -> None:
    message = messages.decode(frame)
    assert isinstance(message, messages.MalformedFrame), message
    assert needle in message.error
    assert message.raw == frame


def test_malformed_frame_keeps_sid_and_seq_when_readable() -> None:
    message = messages.decode(b'{"type":"trade","sid":3,"seq":9,"msg":{"trade_id":"t"}}')
    assert isinstance(message, messages.MalformedFrame)
    assert (message.type, message.sid, message.seq) == ("trade", 3, 9)


def test_ok_variants() -> None:
    top = messages.decode(b'{"id":5,"type":"ok","sid":1,"seq":4,"market_tickers":["A","B"]}')
    assert isinstance(top, messages.Ok) and top.tickers == ["A", "B"] and top.subscriptions is None
    inner = messages.decode(b'{"id":5,"type":"ok","sid":1,"msg":{"market_tickers":["A"]}}')
    assert isinstance(inner, messages.Ok) and inner.tickers == ["A"]
    empty = messages.decode(b'{"id":22,"sid":2,"type":"ok","msg":{}}')
    assert isinstance(empty, messages.Ok) and empty.tickers is None
    listing = messages.decode(b'{"id":3,"type":"ok","msg":[{"channel":"trade","sid":3}]}')
    assert isinstance(listing, messages.Ok)
    assert listing.subscriptions == [messages.SubscriptionInfo(channel="trade", sid=3)]


def test_str_frames_and_size_limit() -> None:
    assert isinstance(messages.decode(_delta().decode()), messages.OrderbookDelta)
    huge = b" " * (messages.MAX_FRAME_BYTES + 1)
    message = messages.decode(huge)
    assert isinstance(message, messages.MalformedFrame) and "exceeds" in message.error


def test_deep_nesting_is_rejected() -> None:
    nested: Any = 1
    for _ in range(40):
        nested = {"a": nested}
    frame = msgspec.json.encode({"type": "market_lifecycle_v2", "sid": 4, "seq": 1, "msg": {"x": nested}})
    message = messages.decode(frame)
    assert isinstance(message, messages.MalformedFrame)
