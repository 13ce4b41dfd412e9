"""Command frames (spec section 3) and CommandTracker's reply matching."""

from __future__ import annotations

import json

from kalshi_ws import messages
from kalshi_ws.commands import (
    CommandTracker,
    list_subscriptions_frame,
    subscribe_frame,
    unsubscribe_frame,
    update_subscription_frame,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_frames_match_the_spec_examples() -> None:
    assert json.loads(subscribe_frame(1, ["orderbook_delta"], ["KXCPI-26NOV-T0.3", "KXCPI-26NOV-T0.4"],
                                      use_yes_price=False)) == {
        "id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"],
                                                "market_tickers": ["KXCPI-26NOV-T0.3", "KXCPI-26NOV-T0.4"],
                                                "use_yes_price": False}}
    assert json.loads(subscribe_frame(2, ["ticker"], ["A"], params={"send_initial_snapshot": True,
                                                                    "skip_ticker_ack": True})) == {
        "id": 2, "cmd": "subscribe", "params": {"channels": ["ticker"], "market_tickers": ["A"],
                                                "send_initial_snapshot": True, "skip_ticker_ack": True}}
    assert json.loads(subscribe_frame(3, ["trade"])) == {"id": 3, "cmd": "subscribe",
                                                         "params": {"channels": ["trade"]}}
    assert json.loads(unsubscribe_frame(12, [1, 2])) == {"id": 12, "cmd": "unsubscribe", "params": {"sids": [1, 2]}}
    assert json.loads(update_subscription_frame(21, 1, "get_snapshot", ["KXCPI-26NOV-T0.3"])) == {
        "id": 21, "cmd": "update_subscription",
        "params": {"sid": 1, "action": "get_snapshot", "market_tickers": ["KXCPI-26NOV-T0.3"]}}
    assert json.loads(list_subscriptions_frame(23)) == {"id": 23, "cmd": "list_subscriptions"}


def test_ids_increase_from_one() -> None:
    tracker = CommandTracker(FakeClock())
    ids = [tracker.subscribe("trade").id, tracker.unsubscribe([4]).id,
           tracker.update_subscription(1, "add_markets", ["A"]).id, tracker.list_subscriptions().id]
    assert ids == [1, 2, 3, 4]
    assert sorted(tracker.pending) == ids


def test_subscribed_matches_by_id() -> None:
    tracker = CommandTracker(FakeClock())
    command = tracker.subscribe("orderbook_delta", ["A"], use_yes_price=True)
    assert json.loads(command.frame)["params"]["use_yes_price"] is True
    reply = tracker.match(messages.decode(b'{"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 9}}'))
    assert reply is not None and reply.done and reply.command is command
    assert command.markets == ("A",) and command.channel == "orderbook_delta"
    assert not tracker.pending
    # Unknown id / no id: not ours.
    assert tracker.match(messages.decode(b'{"id": 77, "type": "subscribed", "msg": {"channel": "x", "sid": 1}}')) is None
    assert tracker.match(messages.decode(b'{"type": "error", "msg": {"code": 25, "msg": "x"}}')) is None


def test_unsubscribe_waits_for_every_sid() -> None:
    tracker = CommandTracker(FakeClock())
    tracker.unsubscribe([1, 2])
    first = tracker.match(messages.decode(b'{"id": 1, "sid": 1, "seq": 5, "type": "unsubscribed"}'))
    assert first is not None and not first.done and 1 in tracker.pending
    second = tracker.match(messages.decode(b'{"id": 1, "sid": 2, "seq": 9, "type": "unsubscribed"}'))
    assert second is not None and second.done and not tracker.pending


def test_get_snapshot_completes_with_one_snapshot_per_market() -> None:
    tracker = CommandTracker(FakeClock())
    tracker.update_subscription(1, "get_snapshot", ["A", "B"])
    snap = b'{"type": "orderbook_snapshot", "id": 1, "sid": 1, "seq": %d, "msg": {"market_ticker": "%s"}}'
    first = tracker.match(messages.decode(snap % (7, b"A")))
    assert first is not None and not first.done
    second = tracker.match(messages.decode(snap % (8, b"B")))
    assert second is not None and second.done and not tracker.pending


def test_error_matches_and_ok_for_updates() -> None:
    tracker = CommandTracker(FakeClock())
    tracker.update_subscription(1, "add_markets", ["C"])
    tracker.update_subscription(1, "delete_markets", ["A"])
    error = tracker.match(messages.decode(
        b'{"id": 1, "type": "error", "sid": 1, "msg": {"code": 26, "msg": "limit", "market_tickers": ["C"]}}'))
    assert error is not None and error.done and error.command.action == "add_markets"
    ok = tracker.match(messages.decode(b'{"id": 2, "sid": 1, "seq": 5, "type": "ok", "msg": {"market_tickers": ["B"]}}'))
    assert ok is not None and ok.done and ok.command.action == "delete_markets"


def test_expired_reports_unanswered_commands_once() -> None:
    clock = FakeClock()
    tracker = CommandTracker(clock)
    tracker.subscribe("trade")
    clock.now += 5
    tracker.subscribe("ticker")
    assert tracker.expired(clock.now, 10.0) == []
    clock.now += 5
    late = tracker.expired(clock.now, 10.0)
    assert [c.channel for c in late] == ["trade"]
    assert tracker.expired(clock.now, 10.0) == []
    # A command that got a partial answer is not "unanswered".
    tracker.update_subscription(1, "get_snapshot", ["A", "B"])
    tracker.match(messages.decode(b'{"type": "orderbook_snapshot", "id": 3, "sid": 1, "seq": 2, "msg": {"market_ticker": "A"}}'))
    clock.now += 100
    assert [c.channel for c in tracker.expired(clock.now, 10.0)] == ["ticker"]
