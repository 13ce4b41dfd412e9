"""SessionProtocol, driven with lists of frames: subscriptions and acks, sequencing, books, every recovery path."""

from __future__ import annotations

import json
import random
from decimal import Decimal as D
from typing import Any, get_args

import pytest

from kalshi_ws import events, messages
from kalshi_ws.protocol import (
    RecoveryStep,
    SessionProtocol,
    Subscription,
    SubscriptionState,
    _Channel,
    _Recovery,
)

A, B, C = "KXCPI-26NOV-T0.3", "KXCPI-26NOV-T0.4", "KXBTCD-25AUG0517-T114999.99"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A SessionProtocol plus what it sent, emitted and delivered."""

    def __init__(self, subscriptions: list[Subscription], **options: Any) -> None:
        self.clock = FakeClock()
        self.proto = SessionProtocol(subscriptions, clock=self.clock, wall_ns=lambda: 42, **options)
        self.delivered: list[messages.AnyMessage] = []
        self.ns = 0

    def open(self) -> list[dict[str, Any]]:
        self.proto.connection_opened("ws://127.0.0.1/trade-api/ws/v2")
        return self.commands()

    def commands(self) -> list[dict[str, Any]]:
        return [json.loads(frame) for frame in self.proto.take_commands()]

    def events(self) -> list[Any]:  # tests read event fields directly
        return self.proto.take_events()

    def feed(self, *frames: bytes | dict[str, Any]) -> list[messages.AnyMessage | None]:
        out = []
        for frame in frames:
            raw = frame if isinstance(frame, bytes) else json.dumps(frame).encode()
            self.ns += 1
            message = self.proto.receive(raw, self.ns)
            if message is not None:
                self.delivered.append(message)
            out.append(message)
        return out

    def book(self, market: str) -> Any:
        return self.proto.books[market]

    def poll_after(self, seconds: float) -> None:
        self.clock.now += seconds
        self.proto.poll()


def subscribed(command_id: int, channel: str, sid: int) -> dict[str, Any]:
    return {"id": command_id, "type": "subscribed", "msg": {"channel": channel, "sid": sid}}


def snapshot(sid: int, seq: int, market: str, yes: list[tuple[str, str]] | None = None,
             no: list[tuple[str, str]] | None = None, command_id: int | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"market_ticker": market, "market_id": "m-" + market}
    if yes:
        msg["yes_dollars_fp"] = [list(level) for level in yes]
    if no:
        msg["no_dollars_fp"] = [list(level) for level in no]
    frame: dict[str, Any] = {"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg}
    if command_id is not None:
        frame["id"] = command_id
    return frame


def delta(sid: int, seq: int, market: str, price: str, change: str, side: str = "yes") -> dict[str, Any]:
    return {"type": "orderbook_delta", "sid": sid, "seq": seq,
            "msg": {"market_ticker": market, "market_id": "m", "price_dollars": price, "delta_fp": change,
                    "side": side, "ts_ms": 1795185001234}}


def trade(sid: int, seq: int, trade_id: str = "t") -> dict[str, Any]:
    return {"type": "trade", "sid": sid, "seq": seq,
            "msg": {"trade_id": trade_id, "market_ticker": A, "yes_price_dollars": "0.4300",
                    "no_price_dollars": "0.5700", "count_fp": "75.25", "taker_outcome_side": "yes",
                    "taker_book_side": "bid", "ts_ms": 1795185002118}}


YES_A = [("0.3800", "1250.00"), ("0.4100", "200.00")]
NO_A = [("0.5400", "900.00"), ("0.5700", "75.25")]
YES_B = [("0.1200", "3000.00")]
NO_B = [("0.8300", "2500.00")]


def kinds(evs: list[events.SessionEvent]) -> list[str]:
    return [type(e).__name__ for e in evs]


def started(markets: tuple[str, ...] = (A, B), *, extra: tuple[Subscription, ...] = (), **options: Any) -> Harness:
    """A session with orderbook_delta on sid 1 (snapshots at seq 1..n) and ``extra`` channels on sids 2, 3 ..."""
    h = Harness([Subscription("orderbook_delta", markets), *extra], **options)
    commands = h.open()
    for i, command in enumerate(commands):
        h.feed(subscribed(command["id"], command["params"]["channels"][0], i + 1))
    levels = {A: (YES_A, NO_A), B: (YES_B, NO_B)}
    for seq, market in enumerate(markets, start=1):
        yes, no = levels.get(market, ([("0.0500", "10.00")], [("0.9000", "10.00")]))
        h.feed(snapshot(1, seq, market, yes, no))
    h.events()
    h.commands()
    h.delivered.clear()
    return h


# ---------------------------------------------------------------------------------------------------------------
# Subscriptions and commands


def test_subscribe_frames_pin_use_yes_price_and_pass_params() -> None:
    for flag in (False, True):
        h = Harness([Subscription("orderbook_delta", (A, B)),
                     Subscription("ticker", (A,), {"send_initial_snapshot": True, "skip_ticker_ack": True}),
                     Subscription("trade"),
                     Subscription("communications", params={"user_filter": "", "shard_factor": 2, "shard_key": 0})],
                    use_yes_price=flag)
        commands = h.open()
        assert commands == [
            {"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": [A, B],
                                                     "use_yes_price": flag}},
            {"id": 2, "cmd": "subscribe", "params": {"channels": ["ticker"], "market_tickers": [A],
                                                     "send_initial_snapshot": True, "skip_ticker_ack": True}},
            {"id": 3, "cmd": "subscribe", "params": {"channels": ["trade"]}},
            {"id": 4, "cmd": "subscribe", "params": {"channels": ["communications"], "user_filter": "",
                                                     "shard_factor": 2, "shard_key": 0}},
        ]
        assert h.proto.generation == 1
        [connected] = h.events()
        assert isinstance(connected, events.Connected) and connected.incident_id is None
        assert not h.proto.has_output


def test_subscriptions_of_one_channel_are_merged() -> None:
    h = Harness([Subscription("orderbook_delta", (A,)), Subscription("orderbook_delta", (B, A)),
                 Subscription("ticker", (A,)), Subscription("ticker")])
    commands = h.open()
    assert [c["params"].get("market_tickers") for c in commands] == [[A, B], None]
    with pytest.raises(ValueError, match="disagree on 'skip_ticker_ack'"):
        SessionProtocol([Subscription("ticker", params={"skip_ticker_ack": True}),
                         Subscription("ticker", params={"skip_ticker_ack": False})])


@pytest.mark.parametrize("args,message", [
    (("ticker_v2",), "removed 2026-02-12.*use ticker"),
    (("multivariate",), "removed 2026-08-06"),
    (("tickers",), "unknown channel 'tickers'"),
    (("orderbook_delta",), "needs market_tickers"),
    (("market_lifecycle_v2", (A,)), "no market filter"),
    (("ticker", A), "not the string"),
    (("orderbook_delta", (A,), {"use_yes_price": True}), "SessionProtocol\\(use_yes_price"),
    (("ticker", (A,), {"market_tickers": [B]}), "market_tickers"),
])
def test_subscription_validation(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Subscription(*args)


def test_happy_path_books_and_delivery() -> None:
    h = Harness([Subscription("orderbook_delta", (A, B)), Subscription("trade")])
    h.open()
    assert h.feed(subscribed(1, "orderbook_delta", 1), subscribed(2, "trade", 2)) == [None, None]
    assert h.proto.sid_channel(1) == "orderbook_delta" and h.proto.sid_channel(2) == "trade"
    assert h.proto.sid_channel(3) is None
    out = h.feed(snapshot(1, 1, A, YES_A, NO_A), snapshot(1, 2, B, YES_B, NO_B),
                 delta(1, 3, A, "0.4100", "-200.00"), trade(2, 1), delta(1, 4, A, "0.5700", "-75.25", "no"),
                 {"type": "ticker", "sid": 9, "msg": {"market_ticker": A, "price_dollars": "0.43"}})
    assert all(m is not None for m in out)
    assert [type(m).__name__ for m in h.delivered] == ["OrderbookSnapshot", "OrderbookSnapshot", "OrderbookDelta",
                                                       "Trade", "OrderbookDelta", "Ticker"]
    book = h.book(A)
    assert book.trusted and h.book(B).trusted
    assert (book.best_yes_bid, book.best_yes_ask) == (D("0.38"), D("0.46"))
    assert kinds(h.events()) == ["Connected"]
    assert not h.proto.has_output


def test_use_yes_price_books_are_in_leg_prices() -> None:
    h = Harness([Subscription("orderbook_delta", (A,))], use_yes_price=True)
    h.open()
    h.feed(subscribed(1, "orderbook_delta", 1), snapshot(1, 1, A, YES_A, [("0.4600", "900.00"), ("0.4300", "75.25")]),
           delta(1, 2, A, "0.4400", "100.00", "no"))
    book = h.book(A)
    assert book.best_no_bid == D("0.57") and book.best_yes_ask == D("0.43")
    assert book.levels().no == [(D("0.57"), D("75.25")), (D("0.56"), D("100.00")), (D("0.54"), D("900.00"))]
    assert book.yes_asks() == [(D("0.43"), D("75.25")), (D("0.44"), D("100.00")), (D("0.46"), D("900.00"))]


def test_duplicates_and_reorders_are_dropped() -> None:
    h = started()
    before = h.book(A).levels()
    out = h.feed(delta(1, 3, A, "0.3800", "10"), delta(1, 3, A, "0.3800", "10"), delta(1, 2, A, "0.3800", "10"),
                 snapshot(1, 1, A, [("0.0100", "1")]), delta(1, 4, A, "0.3800", "-10"))
    assert [m is None for m in out] == [False, True, True, True, False]
    assert h.book(A).levels() == before
    assert h.events() == []


def test_control_replies_with_seq_never_gap_under_both_readings() -> None:
    # The ok consumes a number (seq 3) and the next delta is 4.
    h = started()
    h.proto.update_markets("orderbook_delta", add=[C])
    [add] = h.commands()
    assert add["params"] == {"sid": 1, "action": "add_markets", "market_tickers": [C]}
    h.feed({"id": add["id"], "sid": 1, "seq": 3, "type": "ok", "msg": {"market_tickers": [A, B, C]}},
           snapshot(1, 4, C, [("0.0500", "5")]), delta(1, 5, A, "0.3800", "1"))
    # Or the ok only echoes the position (seq 5 again) and the next delta is 6.
    h.proto.update_markets("orderbook_delta", remove=[C])
    [remove] = h.commands()
    h.feed({"id": remove["id"], "sid": 1, "seq": 5, "type": "ok", "msg": {}}, delta(1, 6, A, "0.3800", "1"))
    assert [e for e in h.events() if not isinstance(e, events.BookInconsistency)] == []
    assert h.book(A).size("yes", D("0.38")) == D("1252.00")
    assert C not in h.proto.books


def test_unknown_frames_are_delivered_and_keep_the_sequence() -> None:
    h = started(extra=(Subscription("trade"),))
    out = h.feed(b'{"type":"brand_new","sid":1,"seq":3,"msg":{}}', delta(1, 4, A, "0.3800", "1"),
                 b'{"type":"trade","sid":2,"seq":1,"msg":{"trade_id":"t"}}', trade(2, 2),
                 b'{"type":"brand_new","sid":1,"seq":3,"msg":{}}')
    assert [type(m).__name__ for m in out] == ["UnknownMessage", "OrderbookDelta", "MalformedFrame", "Trade",
                                               "UnknownMessage"]
    assert h.events() == []
    assert h.book(A).trusted and h.book(A).size("yes", D("0.38")) == D("1251.00")


@pytest.mark.parametrize("frame", [
    b'{"type":"orderbook_delta","sid":1,"seq":3,"msg":{"market_ticker":"X","price":43,"delta":1,"side":"yes"}}',
    b'{"type":"orderbook_delta","sid":1,"seq":3,"msg":{"market_ticker":"X","price_dollars":"x","delta_fp":"1",'
    b'"side":"yes"}}',
    b'{"type":"orderbook_snapshot","sid":1,"seq":3,"msg":{"market_ticker":"X","yes":[[43,100]]}}',
])
def test_a_book_frame_that_cannot_be_used_is_lost_data(frame: bytes) -> None:
    h = started()
    [message] = h.feed(frame)
    assert isinstance(message, (messages.MalformedFrame, messages.LegacyMessage))
    gap, requested = h.events()
    assert isinstance(gap, events.SequenceGap) and (gap.expected, gap.received) == (3, 3)
    assert isinstance(requested, events.SnapshotRequested)
    assert not h.book(A).trusted
    h.feed(delta(1, 4, A, "0.3800", "1"))  # the stream itself continues without another gap
    assert h.events() == []


# ---------------------------------------------------------------------------------------------------------------
# Gap recovery on orderbook_delta


def test_gap_get_snapshot_recovered() -> None:
    h = started()
    h.feed(delta(1, 3, A, "0.3800", "10"))
    size_before = h.book(A).size("yes", D("0.38"))
    out = h.feed(delta(1, 6, A, "0.3800", "5"))
    assert out[0] is not None  # delivered: it is a real exchange event
    gap, requested = h.events()
    assert isinstance(gap, events.SequenceGap)
    assert (gap.sid, gap.channel, gap.markets, gap.expected, gap.received) == (1, "orderbook_delta", (A, B), 4, 6)
    assert isinstance(requested, events.SnapshotRequested)
    assert (requested.incident_id, requested.sid, requested.markets, requested.attempt) == (gap.incident_id, 1, (A, B), 1)
    [command] = h.commands()
    assert command["cmd"] == "update_subscription"
    assert command["params"] == {"sid": 1, "action": "get_snapshot", "market_tickers": [A, B]}
    assert not h.book(A).trusted and not h.book(B).trusted
    # Deltas before the new snapshot: delivered, not applied, no flood of events.
    assert h.feed(delta(1, 7, A, "0.3800", "5"))[0] is not None
    assert h.book(A).size("yes", D("0.38")) == size_before
    assert h.events() == []
    h.feed(snapshot(1, 8, A, [("0.3000", "7.00")], [("0.6000", "1.00")], command_id=command["id"]))
    assert h.book(A).trusted and not h.book(B).trusted
    assert h.book(A).levels().yes == [(D("0.30"), D("7.00"))]
    h.feed(delta(1, 9, A, "0.3000", "1.50"))
    assert h.book(A).size("yes", D("0.30")) == D("8.50")
    assert h.events() == []
    h.feed(snapshot(1, 10, B, YES_B, NO_B, command_id=command["id"]))
    [recovered] = h.events()
    assert isinstance(recovered, events.Recovered)
    assert (recovered.incident_id, recovered.outcome, recovered.sid, recovered.markets) == (
        gap.incident_id, "snapshot", 1, (A, B))
    assert h.book(B).trusted
    h.proto.poll(h.clock.now + 1000)  # nothing left to time out
    assert h.events() == [] and h.commands() == [] and h.proto.reconnect_requested is None


def test_gap_shown_by_a_snapshot_still_applies_it() -> None:
    h = started()
    h.feed(snapshot(1, 9, A, [("0.2000", "1")]))
    gap, _ = h.events()
    assert isinstance(gap, events.SequenceGap) and gap.expected == 3
    assert h.book(A).trusted and not h.book(B).trusted
    [command] = h.commands()
    h.feed(snapshot(1, 10, B, YES_B, NO_B, command_id=command["id"]))
    [recovered] = h.events()
    assert isinstance(recovered, events.Recovered) and recovered.outcome == "snapshot"


def test_snapshot_timeout_retries_then_resubscribes_then_reconnects() -> None:
    h = started(snapshot_timeout=5.0, snapshot_attempts=3, resubscribe_attempts=2, command_timeout=10.0)
    h.feed(delta(1, 5, A, "0.3800", "1"))
    gap = h.events()[0]
    assert isinstance(gap, events.SequenceGap)
    h.commands()
    h.feed(snapshot(1, 6, A, YES_A, NO_A, command_id=1))  # A arrives, B never does
    h.poll_after(4.9)
    assert h.events() == [] and h.commands() == []
    for attempt in (2, 3):
        h.poll_after(0.2)
        [requested] = h.events()
        assert isinstance(requested, events.SnapshotRequested)
        assert (requested.attempt, requested.markets, requested.incident_id) == (attempt, (B,), gap.incident_id)
        [command] = h.commands()
        assert command["params"]["market_tickers"] == [B]
        h.clock.now += 4.9
    h.poll_after(0.2)
    [resubscribed] = h.events()
    assert isinstance(resubscribed, events.Resubscribed)
    assert (resubscribed.channel, resubscribed.old_sid, resubscribed.incident_id) == ("orderbook_delta", 1,
                                                                                      gap.incident_id)
    unsubscribe, subscribe = h.commands()
    assert unsubscribe["cmd"] == "unsubscribe" and unsubscribe["params"] == {"sids": [1]}
    assert subscribe["cmd"] == "subscribe" and subscribe["params"]["market_tickers"] == [A, B]
    assert not h.book(A).trusted  # every market comes back with the new subscription
    # Frames of the old sid still arriving are delivered, not applied.
    assert h.feed(delta(1, 7, A, "0.3800", "1"))[0] is not None
    h.feed({"id": unsubscribe["id"], "sid": 1, "seq": 8, "type": "unsubscribed"}, subscribed(subscribe["id"], "orderbook_delta", 5))
    assert h.proto.sid_channel(5) == "orderbook_delta" and h.proto.sid_channel(1) == "orderbook_delta"
    h.feed(snapshot(5, 1, A, YES_A, NO_A))
    h.poll_after(5.0)  # B is still missing: the second (last) resubscribe
    [second] = h.events()
    assert isinstance(second, events.Resubscribed) and second.old_sid == 5
    unsubscribe, subscribe = h.commands()
    h.feed(subscribed(subscribe["id"], "orderbook_delta", 6), snapshot(6, 1, A, YES_A, NO_A))
    assert h.proto.reconnect_requested is None
    h.poll_after(5.0)
    assert h.proto.reconnect_requested is not None and "orderbook_delta" in h.proto.reconnect_requested
    assert h.events() == [] and h.commands() == []
    # The driver reconnects; snapshots of the new connection close the gap incident and the disconnect.
    h.proto.connection_lost(h.proto.reconnect_requested, will_reconnect=True)
    assert h.proto.reconnect_requested is None
    disconnected = h.events()[0]
    assert isinstance(disconnected, events.Disconnected) and disconnected.will_reconnect
    commands = h.open()
    assert h.proto.generation == 2
    [connected] = h.events()
    assert isinstance(connected, events.Connected) and connected.incident_id == disconnected.incident_id
    assert connected.generation == 2
    assert commands[0]["id"] == 1 and commands[0]["params"]["market_tickers"] == [A, B]
    h.feed(subscribed(1, "orderbook_delta", 1), snapshot(1, 1, A, YES_A, NO_A))
    assert h.events() == []
    h.feed(snapshot(1, 2, B, YES_B, NO_B))
    recovered = h.events()
    assert [(type(e).__name__, e.incident_id, e.outcome) for e in recovered] == [
        ("Recovered", gap.incident_id, "reconnected"), ("Recovered", disconnected.incident_id, "reconnected")]
    assert h.book(A).trusted and h.book(B).trusted


def test_resubscribe_recovers() -> None:
    h = started(snapshot_attempts=1, resubscribe_attempts=1)
    h.feed(delta(1, 5, A, "0.3800", "1"))
    gap = h.events()[0]
    h.commands()
    h.poll_after(5.0)
    assert kinds(h.events()) == ["Resubscribed"]
    _, subscribe = h.commands()
    h.feed(subscribed(subscribe["id"], "orderbook_delta", 7), snapshot(7, 1, A, YES_A, NO_A), snapshot(7, 2, B, YES_B, NO_B))
    [recovered] = h.events()
    assert isinstance(recovered, events.Recovered)
    assert (recovered.incident_id, recovered.outcome, recovered.sid) == (gap.incident_id, "resubscribed", 7)
    # The new sid's sequence starts afresh.
    h.feed(delta(7, 3, A, "0.3800", "1"))
    assert h.events() == [] and h.book(A).size("yes", D("0.38")) == D("1251.00")


def test_recurring_gaps_escalate_and_every_incident_closes() -> None:
    h = started(snapshot_attempts=2, resubscribe_attempts=1)
    h.feed(delta(1, 5, A, "0.3800", "1"))
    first = h.events()[0]
    h.commands()
    h.feed(snapshot(1, 6, A, YES_A, NO_A, command_id=1), delta(1, 9, A, "0.3800", "1"))
    gap2, requested = h.events()
    assert isinstance(gap2, events.SequenceGap) and gap2.incident_id != first.incident_id
    assert isinstance(requested, events.SnapshotRequested) and requested.attempt == 2
    assert requested.markets == (A, B)
    [command] = h.commands()
    h.feed(delta(1, 12, A, "0.3800", "1"))  # third gap: snapshot budget spent -> resubscribe at once
    gap3, resubscribed = h.events()
    assert isinstance(resubscribed, events.Resubscribed) and resubscribed.incident_id == gap3.incident_id
    _, subscribe = h.commands()
    h.feed(subscribed(subscribe["id"], "orderbook_delta", 2), snapshot(2, 1, A, YES_A, NO_A),
           snapshot(2, 2, B, YES_B, NO_B))
    closed = h.events()
    assert [(e.incident_id, e.outcome) for e in closed] == [
        (first.incident_id, "resubscribed"), (gap2.incident_id, "resubscribed"), (gap3.incident_id, "resubscribed")]


def test_delta_before_snapshot_reported_once_per_market() -> None:
    h = Harness([Subscription("orderbook_delta", (A, B))])
    h.open()
    h.feed(subscribed(1, "orderbook_delta", 1), delta(1, 1, A, "0.3800", "1"), delta(1, 2, A, "0.3800", "1"),
           delta(1, 3, C, "0.3800", "1"))
    problems = [e for e in h.events() if isinstance(e, events.BookInconsistency)]
    assert [(p.market, p.kind) for p in problems] == [(A, "delta_before_snapshot"), (C, "delta_before_snapshot")]
    assert len(h.delivered) == 3
    h.feed(snapshot(1, 4, A, YES_A, NO_A), delta(1, 5, A, "0.3800", "1"))
    assert h.events() == [] and h.book(A).size("yes", D("0.38")) == D("1251.00")
    # After a reconnect the market is again without a snapshot on the new connection: reported again.
    h.proto.connection_lost("network", True)
    h.open()
    h.events()
    h.feed(subscribed(1, "orderbook_delta", 1), delta(1, 1, A, "0.3800", "1"), delta(1, 2, A, "0.3800", "1"))
    assert [(e.market, e.kind) for e in h.events()] == [(A, "delta_before_snapshot")]


def test_book_checks_become_events() -> None:
    h = started()
    h.feed(delta(1, 3, A, "0.4600", "5"), delta(1, 4, A, "0.3800", "-2000"))
    crossed, negative = h.events()
    assert isinstance(crossed, events.BookInconsistency) and crossed.kind == "crossed" and crossed.market == A
    assert isinstance(negative, events.BookInconsistency) and negative.kind == "negative_size"
    assert crossed.at_ns == h.ns - 1 and crossed.generation == 1  # stamped with the frame's receive time


# ---------------------------------------------------------------------------------------------------------------
# Other channels, errors, timeouts


def test_gap_on_trade_is_reported_and_abandoned() -> None:
    h = started(extra=(Subscription("trade"),))
    h.feed(trade(2, 1, "t1"), trade(2, 2, "t2"))
    out = h.feed(trade(2, 5, "t5"), trade(2, 4, "t4"), trade(2, 6, "t6"))
    assert [m is not None for m in out] == [True, False, True]
    gap, recovered = h.events()
    assert isinstance(gap, events.SequenceGap)
    assert (gap.channel, gap.sid, gap.expected, gap.received, gap.markets) == ("trade", 2, 3, 5, ())
    assert isinstance(recovered, events.Recovered)
    assert (recovered.incident_id, recovered.outcome) == (gap.incident_id, "abandoned")
    assert h.commands() == [] and h.book(A).trusted


@pytest.mark.parametrize("code", [10, 25, 17])
def test_terminal_error_on_a_channel_resubscribes_it(code: int) -> None:
    h = started(extra=(Subscription("trade"),))
    h.feed({"type": "error", "sid": 2, "seq": 913, "msg": {"code": code, "msg": "dead"}})
    failed, resubscribed = h.events()
    assert isinstance(failed, events.SubscriptionFailed)
    assert (failed.code, failed.terminal, failed.sid, failed.command_id, failed.message) == (code, True, 2, None, "dead")
    assert isinstance(resubscribed, events.Resubscribed)
    assert (resubscribed.channel, resubscribed.old_sid, resubscribed.incident_id) == ("trade", 2, None)
    [command] = h.commands()
    assert command["cmd"] == "subscribe" and command["params"] == {"channels": ["trade"]}
    h.feed(subscribed(command["id"], "trade", 11))
    assert h.feed(trade(11, 1))[0] is not None and h.feed(trade(2, 1))[0] is not None
    assert h.events() == []


def test_terminal_error_on_the_book_channel_resubscribes_and_recovers() -> None:
    h = started()
    h.feed({"type": "error", "sid": 1, "msg": {"code": 25, "msg": "Subscription buffer overflow"}})
    failed, resubscribed = h.events()
    assert isinstance(failed, events.SubscriptionFailed) and failed.terminal
    assert isinstance(resubscribed, events.Resubscribed) and resubscribed.incident_id is not None
    assert not h.book(A).trusted and not h.book(B).trusted
    [command] = h.commands()
    assert command["params"] == {"channels": ["orderbook_delta"], "market_tickers": [A, B], "use_yes_price": False}
    h.feed(subscribed(command["id"], "orderbook_delta", 4), snapshot(4, 1, A, YES_A, NO_A), snapshot(4, 2, B, YES_B, NO_B))
    [recovered] = h.events()
    assert isinstance(recovered, events.Recovered)
    assert (recovered.incident_id, recovered.outcome, recovered.sid) == (resubscribed.incident_id, "resubscribed", 4)


def test_non_terminal_errors() -> None:
    h = started(extra=(Subscription("ticker", (A,)),))
    h.proto.update_markets("ticker", add=[C])
    [add] = h.commands()
    h.feed({"id": add["id"], "type": "error", "sid": 2,
            "msg": {"code": 26, "msg": "Subscription market limit exceeded", "market_tickers": [C]}})
    [failed] = h.events()
    assert isinstance(failed, events.SubscriptionFailed)
    assert (failed.code, failed.terminal, failed.markets, failed.command_id, failed.sid) == (26, False, (C,), add["id"], 2)
    assert "market limit" in failed.meaning
    # The market was not added: it is not re-sent on the next connection.
    h.proto.connection_lost("network", True)
    commands = h.open()
    assert commands[1]["params"]["market_tickers"] == [A]


def test_failed_subscribe_is_not_retried_for_user_errors() -> None:
    h = Harness([Subscription("pyth_value", params={"underlying_tickers": ["Metal.XAU/USD"]})])
    [command] = h.open()
    h.events()
    h.feed({"id": command["id"], "type": "error", "msg": {"code": 9, "msg": "Authentication required"}})
    [failed] = h.events()
    assert isinstance(failed, events.SubscriptionFailed) and not failed.terminal and failed.code == 9
    assert h.commands() == []
    h.poll_after(100)
    assert h.proto.reconnect_requested is None


def test_terminal_error_on_subscribe_retries_within_budget() -> None:
    h = Harness([Subscription("trade")], resubscribe_attempts=1)
    [command] = h.open()
    h.events()
    h.feed({"id": command["id"], "type": "error", "msg": {"code": 10, "msg": "Channel error"}})
    assert kinds(h.events()) == ["SubscriptionFailed", "Resubscribed"]
    [retry] = h.commands()
    h.feed({"id": retry["id"], "type": "error", "msg": {"code": 10, "msg": "Channel error"}})
    assert kinds(h.events()) == ["SubscriptionFailed"]
    assert h.commands() == []


def test_subscription_state_follows_each_transition() -> None:
    unsubscribed, subscribing, live, failed = (SubscriptionState.UNSUBSCRIBED, SubscriptionState.SUBSCRIBING,
                                               SubscriptionState.LIVE, SubscriptionState.FAILED)
    h = Harness([Subscription("trade")], resubscribe_attempts=1)
    assert h.proto.subscription_state("trade") == (unsubscribed, None)
    [command] = h.open()
    assert h.proto.subscription_state("trade") == (subscribing, None)
    h.feed(subscribed(command["id"], "trade", 4))
    assert h.proto.subscription_state("trade") == (live, 4)
    h.feed({"type": "error", "sid": 4, "msg": {"code": 10, "msg": "dead"}})  # terminal on a live sid: re-created
    [again] = h.commands()
    assert again["cmd"] == "subscribe" and h.proto.subscription_state("trade") == (subscribing, None)
    h.feed({"id": again["id"], "type": "error", "msg": {"code": 10, "msg": "Channel error"}})  # refused: retried
    [retry] = h.commands()
    assert h.proto.subscription_state("trade") == (subscribing, None)
    h.feed({"id": retry["id"], "type": "error", "msg": {"code": 10, "msg": "Channel error"}})  # budget spent
    assert h.proto.subscription_state("trade") == (failed, None)
    h.feed(subscribed(retry["id"], "trade", 5))  # an ack for a subscribe given up is not a subscription of ours
    assert h.proto.subscription_state("trade") == (failed, None)
    h.proto.connection_lost("x", True)
    assert h.proto.subscription_state("trade") == (unsubscribed, None)
    h.open()
    assert h.proto.subscription_state("trade") == (subscribing, None)


def test_an_impossible_transition_is_refused() -> None:
    channel = _Channel("trade", (), {})
    with pytest.raises(RuntimeError, match="UNSUBSCRIBED to LIVE"):
        channel.move(SubscriptionState.LIVE, sid=1)  # a sid without a subscribe
    channel.move(SubscriptionState.SUBSCRIBING, command_id=1)
    with pytest.raises(RuntimeError, match="takes a sid"):
        channel.move(SubscriptionState.LIVE)
    channel.move(SubscriptionState.FAILED)
    with pytest.raises(RuntimeError, match="FAILED to SUBSCRIBING"):
        channel.move(SubscriptionState.SUBSCRIBING, command_id=2)



def test_a_recovery_step_is_the_outcome_it_names_and_moves_with_its_deadline() -> None:
    assert {step.outcome for step in RecoveryStep} == set(get_args(events.RecoveryOutcome)) - {"abandoned"}
    recovery = _Recovery(("M",))
    assert (recovery.step, recovery.deadline) == (RecoveryStep.SNAPSHOT, None)
    recovery.move(RecoveryStep.RECONNECTED, None)  # waiting for the driver's reconnect
    for step in (RecoveryStep.SNAPSHOT, RecoveryStep.RESUBSCRIBED):
        with pytest.raises(RuntimeError, match=f"{step.name} needs a deadline"):
            recovery.move(step, None)
    recovery.move(RecoveryStep.RESUBSCRIBED, 12.5)
    assert (recovery.step, recovery.deadline) == (RecoveryStep.RESUBSCRIBED, 12.5)

def test_a_reconnect_is_complete_only_once_no_subscribe_is_in_flight() -> None:
    h = Harness([Subscription("trade"), Subscription("ticker")], resubscribe_attempts=1)
    h.open()
    h.proto.connection_lost("x", True)
    trade_cmd, ticker_cmd = h.open()
    h.events()
    h.feed(subscribed(trade_cmd["id"], "trade", 1))
    h.feed({"type": "error", "sid": 1, "msg": {"code": 10, "msg": "dead"}})  # re-created before the ticker ack
    [again] = h.commands()
    h.feed(subscribed(ticker_cmd["id"], "ticker", 2))
    assert "Recovered" not in kinds(h.events())  # the trade subscription is still being re-created
    h.feed(subscribed(again["id"], "trade", 3))
    [recovered] = h.events()
    assert isinstance(recovered, events.Recovered) and recovered.outcome == "reconnected"


def test_time_not_spent_reading_does_not_count_against_timeouts() -> None:
    h = Harness([Subscription("trade")], command_timeout=10.0)
    h.open()
    h.poll_after(9.0)
    h.clock.now += 600.0  # the driver stopped reading (backpressure) for ten minutes
    h.proto.postpone_timeouts(600.0)
    h.poll_after(0.9)
    assert h.proto.reconnect_requested is None
    h.poll_after(0.1)
    assert h.proto.reconnect_requested is not None
    # A recovery step's deadline moves the same way.
    h = started(snapshot_timeout=5.0)
    h.feed(delta(1, 9, A, "0.3800", "1"))
    assert kinds(h.events()) == ["SequenceGap", "SnapshotRequested"]
    h.clock.now += 60.0
    h.proto.postpone_timeouts(60.0)
    h.poll_after(4.9)
    assert h.events() == []
    h.poll_after(0.1)
    assert kinds(h.events()) == ["SnapshotRequested"]


def test_unacknowledged_subscribe_requests_a_reconnect() -> None:
    h = Harness([Subscription("trade")], command_timeout=10.0)
    h.open()
    h.poll_after(9.9)
    assert h.proto.reconnect_requested is None
    h.poll_after(0.1)
    assert h.proto.reconnect_requested is not None and "not acknowledged" in h.proto.reconnect_requested


def test_unsolicited_unsubscribed_resubscribes() -> None:
    h = started(extra=(Subscription("trade"),))
    h.feed({"sid": 2, "seq": 4, "type": "unsubscribed"})
    [resubscribed] = h.events()
    assert isinstance(resubscribed, events.Resubscribed) and resubscribed.old_sid == 2
    assert [c["cmd"] for c in h.commands()] == ["subscribe"]


# ---------------------------------------------------------------------------------------------------------------
# update_markets and reconnects


def test_reconnect_resubscribes_everything_with_current_market_lists() -> None:
    h = started(extra=(Subscription("ticker", (A,), {"send_initial_snapshot": True}), Subscription("trade")))
    h.proto.update_markets("orderbook_delta", add=[C], remove=[A])
    h.proto.update_markets("ticker", add=[B])
    commands = h.commands()
    assert [c["params"] for c in commands] == [
        {"sid": 1, "action": "add_markets", "market_tickers": [C]},
        {"sid": 1, "action": "delete_markets", "market_tickers": [A]},
        {"sid": 2, "action": "add_markets", "market_tickers": [B], "send_initial_snapshot": True},
    ]
    assert A not in h.proto.books and not h.book(C).trusted
    h.feed({"id": commands[0]["id"], "sid": 1, "type": "ok", "msg": {"market_tickers": [B, C]}},
           snapshot(1, 3, C, [("0.0500", "5.00")]))
    assert h.book(C).trusted
    h.proto.connection_lost("connection reset", will_reconnect=True)
    [disconnected] = h.events()
    assert not h.book(B).trusted and not h.book(C).trusted
    commands = h.open()
    assert [c["params"] for c in commands] == [
        {"channels": ["orderbook_delta"], "market_tickers": [B, C], "use_yes_price": False},
        {"channels": ["ticker"], "market_tickers": [A, B], "send_initial_snapshot": True},
        {"channels": ["trade"]},
    ]
    h.events()
    h.feed(subscribed(1, "orderbook_delta", 1), subscribed(2, "ticker", 2), snapshot(1, 1, B, YES_B, NO_B),
           snapshot(1, 2, C, [("0.0500", "5.00")]))
    assert h.events() == []  # the trade subscription is not acknowledged yet
    h.feed(subscribed(3, "trade", 3))
    [recovered] = h.events()
    assert isinstance(recovered, events.Recovered)
    assert (recovered.incident_id, recovered.outcome) == (disconnected.incident_id, "reconnected")


def test_markets_changed_while_subscribing_are_reconciled_on_the_ack() -> None:
    h = Harness([Subscription("orderbook_delta", (A, B))])
    [command] = h.open()
    h.proto.update_markets("orderbook_delta", add=[C], remove=[B])
    assert h.commands() == []  # no sid yet
    h.feed(subscribed(command["id"], "orderbook_delta", 1))
    assert [c["params"] for c in h.commands()] == [
        {"sid": 1, "action": "add_markets", "market_tickers": [C]},
        {"sid": 1, "action": "delete_markets", "market_tickers": [B]},
    ]


def test_update_markets_validation() -> None:
    h = started(extra=(Subscription("trade"), Subscription("market_lifecycle_v2")))
    with pytest.raises(ValueError, match="not part of this session"):
        h.proto.update_markets("fill", add=[A])
    with pytest.raises(ValueError, match="no market filter"):
        h.proto.update_markets("market_lifecycle_v2", add=[A])
    with pytest.raises(ValueError, match="every market"):
        h.proto.update_markets("trade", add=[A])
    with pytest.raises(ValueError, match="at least one market"):
        h.proto.update_markets("orderbook_delta", remove=[A, B])
    with pytest.raises(ValueError, match="not a single string"):
        h.proto.update_markets("orderbook_delta", add=C)
    h.proto.update_markets("orderbook_delta", add=[A], remove=["unknown"])  # nothing to do
    assert h.commands() == []


def test_removing_the_missing_market_completes_a_recovery() -> None:
    h = started()
    h.feed(delta(1, 5, A, "0.3800", "1"))
    gap = h.events()[0]
    [command] = h.commands()
    h.feed(snapshot(1, 6, A, YES_A, NO_A, command_id=command["id"]))
    h.proto.update_markets("orderbook_delta", remove=[B])
    recovered = h.events()[-1]
    assert isinstance(recovered, events.Recovered) and recovered.incident_id == gap.incident_id
    assert recovered.markets == (A,)


def test_shutdown_abandons_open_recoveries() -> None:
    h = started()
    h.feed(delta(1, 5, A, "0.3800", "1"))
    gap = h.events()[0]
    h.proto.connection_lost("deadline", will_reconnect=False)
    disconnected, abandoned = h.events()
    assert isinstance(disconnected, events.Disconnected) and not disconnected.will_reconnect
    assert isinstance(abandoned, events.Recovered)
    assert (abandoned.incident_id, abandoned.outcome) == (gap.incident_id, "abandoned")


def test_has_output_tracks_pending_output() -> None:
    h = Harness([Subscription("trade")])
    assert not h.proto.has_output
    h.proto.connection_opened("u")
    assert h.proto.has_output
    h.proto.take_commands()
    assert h.proto.has_output  # the Connected event
    h.proto.take_events()
    assert not h.proto.has_output


# ---------------------------------------------------------------------------------------------------------------
# Property-style: random book histories through receive(), with duplicates and reorders injected


@pytest.mark.parametrize("seed", range(3))
def test_random_stream_through_the_session_matches_a_model(seed: int) -> None:
    rng = random.Random(seed)
    use_yes_price = bool(seed % 2)
    markets = (A, B, C)
    h = Harness([Subscription("orderbook_delta", markets)], use_yes_price=use_yes_price)
    h.open()
    h.feed(subscribed(1, "orderbook_delta", 1))
    model: dict[str, dict[str, dict[D, D]]] = {m: {"yes": {}, "no": {}} for m in markets}
    grid = [D(i) / 1000 for i in range(1, 1000, 7)]
    sent: list[bytes] = []
    seq = 0

    def wire(side: str, price: D) -> D:
        return 1 - price if side == "no" and use_yes_price else price

    for market in markets:
        seq += 1
        sent.append(json.dumps(snapshot(1, seq, market)).encode())
    for _ in range(6000):
        market = rng.choice(markets)
        side = rng.choice(("yes", "no"))
        ladder = model[market][side]
        if ladder and rng.random() < 0.5:
            price = rng.choice(list(ladder))
            change = -ladder[price] if rng.random() < 0.3 else D(rng.randrange(-3000, 3000)) / 100
        else:
            price = rng.choice(grid)
            change = D(rng.randrange(1, 100000)) / 100
        new = ladder.get(price, D(0)) + change
        if new > 0:
            ladder[price] = new
        else:
            ladder.pop(price, None)
        seq += 1
        sent.append(json.dumps(delta(1, seq, market, str(wire(side, price)), str(change), side)).encode())
    # Duplicates and one-step reorders (the late frame is stale and dropped; the in-order one arrived first).
    stream: list[bytes] = []
    for frame in sent:
        stream.append(frame)
        if rng.random() < 0.05:
            stream.append(frame)
        if len(stream) > 3 and rng.random() < 0.03:
            stream.append(stream[-3])
    h.feed(*stream)
    assert [e for e in h.events() if isinstance(e, (events.SequenceGap, events.Recovered))] == []
    assert len(h.delivered) == len(sent)
    for market in markets:
        book = h.book(market)
        assert book.trusted
        expected_yes = sorted(model[market]["yes"].items(), reverse=True)
        expected_no = sorted(model[market]["no"].items(), reverse=True)
        assert book.levels() == (expected_yes, expected_no), market


# ---------------------------------------------------------------------------------------------------------------
# Spec 12.4: seq per sid (the spec) or per connection (one write-up): a setting, never inferred; evidence against
# the setting is an event.

PER_CONNECTION = (snapshot(1, 1, A, YES_A, NO_A), snapshot(1, 2, B, YES_B, NO_B), trade(2, 3),
                  delta(1, 4, A, "0.3800", "1"), trade(2, 5), trade(2, 6), delta(1, 7, A, "0.3800", "1"))


def _book_and_trades(**options: Any) -> Harness:
    h = Harness([Subscription("orderbook_delta", (A, B)), Subscription("trade")], **options)
    h.open()
    h.feed(subscribed(1, "orderbook_delta", 1), subscribed(2, "trade", 2))
    h.events()
    return h


def test_seq_scope_connection_checks_one_stream_for_the_whole_connection() -> None:
    h = _book_and_trades(seq_scope="connection")
    h.feed(*PER_CONNECTION)
    assert h.events() == []
    assert h.book(A).trusted and h.book(A).size("yes", D("0.38")) == D("1252.00")
    h.feed(trade(2, 6))  # a duplicate is dropped
    assert len(h.delivered) == len(PER_CONNECTION)
    # A lost number may have been any sid's: every sequenced sid reports the gap; the books recover.
    h.feed(trade(2, 9))
    evs = h.events()
    assert kinds(evs) == ["SequenceGap", "SnapshotRequested", "SequenceGap", "Recovered"]
    assert [(e.sid, e.expected, e.received) for e in evs if isinstance(e, events.SequenceGap)] == [(1, 8, 9), (2, 8, 9)]
    assert evs[3].outcome == "abandoned" and not h.book(A).trusted
    [get_snapshot] = h.commands()
    assert get_snapshot["params"] == {"sid": 1, "action": "get_snapshot", "market_tickers": [A, B]}


def test_seq_scope_connection_counts_the_frames_of_a_sid_that_ended() -> None:
    h = _book_and_trades(seq_scope="connection")
    h.feed(*PER_CONNECTION)
    h.feed({"type": "error", "sid": 1, "seq": 7, "msg": {"code": 25, "msg": "Subscription buffer overflow"}})
    [subscribe] = h.commands()
    h.events()
    # Still in flight on the dead sid: it took number 8 of the connection's stream, so 9 is no gap.
    h.feed(delta(1, 8, A, "0.3800", "1"), trade(2, 9), delta(1, 8, A, "0.3800", "1"))
    assert [type(m).__name__ for m in h.delivered[len(PER_CONNECTION):]] == ["OrderbookDelta", "Trade"]  # copy dropped
    h.feed(subscribed(subscribe["id"], "orderbook_delta", 3), snapshot(3, 10, A, YES_A, NO_A),
           snapshot(3, 11, B, YES_B, NO_B), trade(2, 12))
    evs = h.events()
    assert "SequenceGap" not in kinds(evs) and kinds(evs)[-1] == "Recovered" and evs[-1].outcome == "resubscribed"
    assert h.book(A).trusted and h.book(B).trusted


def test_per_connection_numbering_contradicts_the_default_per_sid_setting() -> None:
    h = _book_and_trades()
    assert h.proto.seq_scope == "sid"
    h.feed(*PER_CONNECTION)
    evs = h.events()
    contradicted = [e for e in evs if isinstance(e, events.SeqScopeContradicted)]
    assert len(contradicted) == 1 and contradicted[0].seq_scope == "sid" and contradicted[0].sid == 1
    assert "not every sid started at 1" in contradicted[0].evidence
    assert kinds(evs)[0] == "SeqScopeContradicted"
    assert "SequenceGap" in kinds(evs)  # the setting rules: the skipped numbers are gaps to it
    # A new connection may say it again.
    h.proto.connection_lost("x", True)
    for sid, command in enumerate(h.open(), start=1):
        h.feed(subscribed(command["id"], command["params"]["channels"][0], sid))
    h.events()
    h.feed(*PER_CONNECTION)
    assert kinds(h.events()).count("SeqScopeContradicted") == 1


def test_per_sid_numbering_contradicts_seq_scope_connection() -> None:
    h = _book_and_trades(seq_scope="connection")
    h.feed(snapshot(1, 1, A, YES_A, NO_A), snapshot(1, 2, B, YES_B, NO_B), trade(2, 1), trade(2, 2))
    [event] = h.events()
    assert isinstance(event, events.SeqScopeContradicted) and event.seq_scope == "connection"
    assert event.sid == 2 and event.channel == "trade" and "never carried it" in event.evidence
    assert [type(m).__name__ for m in h.delivered] == ["OrderbookSnapshot", "OrderbookSnapshot"]  # the setting rules


def test_seq_scope_is_one_of_two_settings() -> None:
    with pytest.raises(ValueError, match="seq_scope"):
        SessionProtocol([Subscription("trade")], seq_scope="market")  # type: ignore[arg-type]


def test_per_sid_numbering_is_not_mistaken_for_per_connection() -> None:
    h = started(extra=(Subscription("trade"),))
    h.feed(*(trade(2, seq) for seq in range(1, 8)), delta(1, 3, A, "0.3800", "1"), delta(1, 4, A, "0.3800", "1"))
    # sid 1 jumps from 4 to 8 while sid 2 last saw 7: a coincidence, not evidence (every sid started at 1).
    h.feed(delta(1, 8, A, "0.3800", "1"))
    assert kinds(h.events()) == ["SequenceGap", "SnapshotRequested"]


def test_unknown_sid_error_on_a_live_sid_recreates_the_subscription() -> None:
    h = started()
    h.feed(delta(1, 5, A, "0.3800", "1"))
    h.events()
    [command] = h.commands()
    h.feed({"id": command["id"], "type": "error", "msg": {"code": 7, "msg": "Unknown subscription ID"}})
    failed, resubscribed = h.events()
    assert isinstance(failed, events.SubscriptionFailed) and failed.sid == 1 and not failed.terminal
    assert isinstance(resubscribed, events.Resubscribed) and resubscribed.old_sid == 1
    [subscribe] = h.commands()
    h.feed(subscribed(subscribe["id"], "orderbook_delta", 2), snapshot(2, 1, A, YES_A, NO_A), snapshot(2, 2, B, YES_B, NO_B))
    outcomes = [(e.incident_id, e.outcome) for e in h.events()]
    assert [o for _, o in outcomes] == ["resubscribed", "resubscribed"]
    assert h.book(A).trusted and h.book(B).trusted


def test_snapshot_of_a_trusted_market_replaces_its_book() -> None:
    h = started()
    h.feed(delta(1, 3, A, "0.3800", "1"), snapshot(1, 4, A, [("0.2000", "3.00")], [("0.7000", "4.00")]))
    assert h.events() == []
    book = h.book(A)
    assert book.trusted and book.levels() == ([(D("0.20"), D("3.00"))], [(D("0.70"), D("4.00"))])
    assert (book.best_yes_bid, book.best_yes_ask) == (D("0.20"), D("0.30"))


def test_resubscribe_fallback_uses_the_current_market_list() -> None:
    h = started(snapshot_attempts=1)
    h.proto.update_markets("orderbook_delta", add=[C])
    [add] = h.commands()
    h.feed({"id": add["id"], "sid": 1, "type": "ok", "msg": {"market_tickers": [A, B, C]}},
           snapshot(1, 3, C, [("0.0500", "5.00")]), delta(1, 9, A, "0.3800", "1"))
    gap, requested = h.events()
    assert gap.markets == (A, B, C) and requested.markets == (A, B, C)
    h.commands()
    h.poll_after(5.0)
    _, subscribe = h.commands()
    assert subscribe["params"]["market_tickers"] == [A, B, C]


def test_frames_in_flight_for_a_removed_market_are_delivered_quietly() -> None:
    h = started()
    h.proto.update_markets("orderbook_delta", remove=[B])
    h.commands()
    out = h.feed(delta(1, 3, B, "0.1200", "1"), snapshot(1, 4, B, YES_B, NO_B))
    assert all(m is not None for m in out)
    assert h.events() == [] and B not in h.proto.books


def test_missing_snapshot_after_a_reconnect_is_requested() -> None:
    h = started(snapshot_timeout=5.0)
    h.proto.connection_lost("network", True)
    disconnected = h.events()[0]
    [subscribe] = h.open()
    h.events()
    h.feed(subscribed(subscribe["id"], "orderbook_delta", 3), snapshot(3, 1, A, YES_A, NO_A))
    h.poll_after(5.0)
    [requested] = h.events()
    assert isinstance(requested, events.SnapshotRequested)
    assert (requested.incident_id, requested.markets, requested.attempt, requested.sid) == (
        disconnected.incident_id, (B,), 1, 3)
    [command] = h.commands()
    h.feed(snapshot(3, 2, B, YES_B, NO_B, command_id=command["id"]))
    [recovered] = h.events()
    assert (recovered.incident_id, recovered.outcome) == (disconnected.incident_id, "reconnected")
    assert h.book(B).trusted


def test_channel_without_add_markets_is_recreated_with_the_new_list() -> None:
    h = started(extra=(Subscription("trade", (A,)),))
    h.proto.update_markets("trade", add=[C])
    [add] = h.commands()
    assert add["params"] == {"sid": 2, "action": "add_markets", "market_tickers": [C]}
    h.feed({"id": add["id"], "type": "error", "msg": {"code": 13, "msg": "Unsupported action"}})
    failed, resubscribed = h.events()
    assert isinstance(failed, events.SubscriptionFailed) and failed.code == 13 and failed.markets == (C,)
    assert isinstance(resubscribed, events.Resubscribed) and resubscribed.old_sid == 2
    unsubscribe, subscribe = h.commands()
    assert unsubscribe["params"] == {"sids": [2]}
    assert subscribe["params"] == {"channels": ["trade"], "market_tickers": [A, C]}


def test_an_explicit_empty_list_subscribes_with_its_first_market_and_grows_from_there() -> None:
    """A followed market set with no open market: no server subscription until a market is added (never "every
    market"), then add_markets as usual; reconnects subscribe the current list."""
    h = Harness([Subscription("orderbook_delta", (), explicit=True), Subscription("trade", (), explicit=True),
                 Subscription("market_lifecycle_v2")])
    first = h.open()
    assert [c["params"]["channels"] for c in first] == [["market_lifecycle_v2"]]
    h.feed(subscribed(first[0]["id"], "market_lifecycle_v2", 1))
    h.events()
    h.proto.update_markets("orderbook_delta", add=[A])
    h.proto.update_markets("trade", add=[A])
    subscribes = h.commands()
    assert [(c["cmd"], c["params"]["channels"], c["params"]["market_tickers"]) for c in subscribes] == [
        ("subscribe", ["orderbook_delta"], [A]), ("subscribe", ["trade"], [A])]
    h.feed(subscribed(subscribes[0]["id"], "orderbook_delta", 2), subscribed(subscribes[1]["id"], "trade", 3))
    h.feed(snapshot(2, 1, A, YES_A, NO_A))
    assert h.book(A).trusted
    h.proto.update_markets("orderbook_delta", add=[B])
    [add] = h.commands()
    assert add["cmd"] == "update_subscription" and add["params"]["action"] == "add_markets"
    with pytest.raises(ValueError, match="at least one market"):
        h.proto.update_markets("trade", remove=[A])
    h.proto.connection_lost("closed", will_reconnect=True)
    again = h.open()
    assert sorted((c["params"]["channels"][0], tuple(c["params"].get("market_tickers", ()))) for c in again) == [
        ("market_lifecycle_v2", ()), ("orderbook_delta", (A, B)), ("trade", (A,))]


def test_an_explicit_list_is_only_for_channels_with_a_market_filter() -> None:
    with pytest.raises(ValueError, match="explicit market list"):
        Subscription("market_lifecycle_v2", explicit=True)
