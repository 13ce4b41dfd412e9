"""Wire fidelity: frames in the shapes Kalshi removed on 2026-03-12 (integer cents and integer counts, spec
section 4 "Legacy" notes and section 9 pitfall 19) are never decoded as the current type with a value missing.

Every spec example (tests/wire/spec_examples.jsonl) of a type with fixed-point fields is turned into its legacy
shape, whole and one field at a time: each must decode as a ``LegacyMessage``. Frames of the transition period
(September 2025 - March 2026), which carry both the old and the new keys, are current and decode in full.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kalshi_ws import messages

EXAMPLES = [json.loads(line) for line in (Path(__file__).parent / "spec_examples.jsonl").read_bytes().splitlines()
            if line]

#: The legacy keys section 4 names per message type (the general rule of section 4.14 covers every other
#: ``_fp``/``_dollars`` field as well; the example-driven cases below exercise it).
SPEC_LEGACY_KEYS = {
    "orderbook_snapshot": {"yes", "no", "yes_dollars", "no_dollars"},
    "orderbook_delta": {"price", "delta"},
    "ticker": {"price", "yes_bid", "yes_ask", "volume", "open_interest"},
    "trade": {"yes_price", "no_price", "count"},
    "fill": {"yes_price", "count", "post_position"},
    "market_position": {"position", "volume", "position_cost", "realized_pnl", "fees_paid", "position_fee_cost"},
    "rfq_created": {"contracts", "target_cost"},
    "rfq_deleted": {"contracts", "target_cost"},
    "quote_created": {"yes_bid", "no_bid"},
    "quote_accepted": {"yes_bid", "no_bid"},
}


def _legacy_key(key: str, *, cents_levels: bool = True) -> str | None:
    if key.endswith("_dollars_fp"):
        return key[:-11] if cents_levels else key[:-3]
    if key.endswith("_fp"):
        return key[:-3]
    if key.endswith("_dollars"):
        return key[:-8]
    return None


def _legacy_value(key: str, value: Any, *, cents_levels: bool = True) -> Any:
    """What the pre-2026-03-12 API sent: integer cents for prices, integer counts (money fields: centi-cents)."""
    if key.endswith("_dollars_fp"):  # book levels: [[cents, count]] or, for *_dollars, [[price_dollars, count]]
        return [[int(Decimal(p) * 100) if cents_levels else p, int(Decimal(c))] for p, c in value]
    if value is None or value == "":
        return value
    number = Decimal(str(value))
    if key.endswith("_dollars"):
        return int(number * 100)
    return int(number)


def _frame(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj)


def _cases() -> list[Any]:
    cases = []
    for i, example in enumerate(EXAMPLES):
        kind = example["type"]
        payload = example.get("msg")
        if kind not in messages.MESSAGE_TYPES or not isinstance(payload, dict):
            continue
        fixed = [k for k in payload if _legacy_key(k) is not None and payload[k] not in (None, "")]
        if not fixed:
            continue
        variants: list[tuple[str, dict[str, Any]]] = []
        whole = dict(payload)
        for key in fixed:
            whole[_legacy_key(key)] = _legacy_value(key, whole.pop(key))  # type: ignore[index]
        variants.append(("all", whole))
        for key in fixed:
            for cents in (True, False) if key.endswith("_dollars_fp") else (True,):
                one = dict(payload)
                one[_legacy_key(key, cents_levels=cents)] = _legacy_value(  # type: ignore[index]
                    key, one.pop(key), cents_levels=cents)
                variants.append((str(_legacy_key(key, cents_levels=cents)), one))
        for label, legacy_payload in variants:
            cases.append(pytest.param(kind, {**example, "msg": legacy_payload}, id=f"{kind}-{i}-{label}"))
    return cases


CASES = _cases()


def test_every_type_with_fixed_point_fields_has_legacy_cases() -> None:
    covered = {case.values[0] for case in CASES}
    assert covered >= set(SPEC_LEGACY_KEYS)
    assert covered == set(messages._LEGACY_TWINS) - {"quote_executed"}  # no price or count in that example


def test_the_spec_legacy_keys_are_all_known() -> None:
    for kind, keys in SPEC_LEGACY_KEYS.items():
        assert keys <= set(messages._LEGACY_TWINS[kind]), kind


@pytest.mark.parametrize(("kind", "obj"), CASES)
def test_legacy_shape_is_never_decoded_as_current(kind: str, obj: dict[str, Any]) -> None:
    frame = _frame(obj)
    message = messages.decode(frame)
    assert isinstance(message, messages.LegacyMessage), f"decoded as {type(message).__name__}: {message}"
    assert message.type == kind and message.raw == frame
    assert (message.sid, message.seq) == (obj.get("sid"), obj.get("seq"))
    assert "integer" in message.reason


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e["type"] in messages._LEGACY_TWINS],
                         ids=lambda e: e["type"])
def test_transition_frames_with_both_keys_are_current(example: dict[str, Any]) -> None:
    """Between 2025-09 and 2026-03 both keys were sent: such a frame is current, every value read."""
    payload = dict(example["msg"])
    for key in list(payload):
        old = _legacy_key(key)
        if old is not None and payload[key] not in (None, ""):
            payload[old] = _legacy_value(key, payload[key])
    obj = {**example, "msg": payload}
    message = messages.decode(_frame(obj))
    assert type(message) is messages.MESSAGE_TYPES[example["type"]], message
    assert message == messages.decode(_frame(example))


def test_current_frames_without_optional_fields_stay_current() -> None:
    """Fixed-point fields the spec lets be absent (an empty book side, a ticker of a market that never traded)
    are not mistaken for a legacy shape."""
    snapshot = messages.decode(b'{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"X",'
                               b'"market_id":"m","no_dollars_fp":[["0.5700","10.00"]]}}')
    assert isinstance(snapshot, messages.OrderbookSnapshot) and snapshot.msg.yes_dollars_fp == []
    ticker = messages.decode(b'{"type":"ticker","sid":2,"msg":{"market_ticker":"X","market_id":"m",'
                             b'"yes_bid_dollars":"0.0100","volume_fp":"0.00","ts_ms":1}}')
    assert isinstance(ticker, messages.Ticker) and ticker.msg.price_dollars is None
    rfq = messages.decode(b'{"type":"rfq_created","sid":10,"seq":1,"msg":{"id":"r","market_ticker":"X",'
                          b'"target_cost_dollars":"5.0000","created_ts":"2026-11-20T15:00:00Z"}}')
    assert isinstance(rfq, messages.RfqCreated) and rfq.msg.contracts_fp is None


@pytest.mark.parametrize("frame", [
    b'{"id":3,"type":"ok","msg":[{"channel":"trade","sid":3},{"channel":"ticker","sid":4}]}',
    b'{"id":3,"type":"ok","subscriptions":[{"channel":"trade","sid":3},{"channel":"ticker","sid":4}]}',
    b'{"id":3,"type":"ok","msg":{"subscriptions":[{"channel":"trade","sid":3},{"channel":"ticker","sid":4}]}}',
], ids=["msg-array", "top-level", "msg-object"])
def test_list_subscriptions_reply_wherever_the_list_is(frame: bytes) -> None:
    reply = messages.decode(frame)
    assert isinstance(reply, messages.Ok)
    assert reply.subscriptions == [messages.SubscriptionInfo(channel="trade", sid=3),
                                   messages.SubscriptionInfo(channel="ticker", sid=4)]
    assert reply.tickers is None


def test_update_subscription_reply_is_not_a_listing() -> None:
    reply = messages.decode(b'{"id":20,"sid":1,"seq":5,"type":"ok","msg":{"market_tickers":["A","B"]}}')
    assert isinstance(reply, messages.Ok) and reply.subscriptions is None and reply.tickers == ["A", "B"]
