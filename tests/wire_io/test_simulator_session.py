"""The client against the exchange simulator over real sockets, with injected gaps, drops and stalls.

At the end every local book equals the exchange's REST book, and every fault that damaged the stream is
visible as a session event whose incident was closed.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from kalshi_ws import events, messages
from kalshi_ws.auth import Signer
from kalshi_ws.client import ClientOptions, KalshiWebSocketClient
from kalshi_ws.protocol import Subscription
from kalshi_ws.rest import KalshiRestClient
from kalshi_ws.simulator import Simulator


def _levels(rows: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(s)) for p, s in rows]


def _book_matches(client: KalshiWebSocketClient, sim: Simulator, ticker: str) -> bool:
    book = client.books.get(ticker)
    if book is None or not book.trusted:
        return False
    truth = sim.book(ticker)
    yes, no = _ascending(client, ticker)
    return yes == _levels(truth["yes_dollars"]) and no == _levels(truth["no_dollars"])


def _ascending(client: KalshiWebSocketClient, ticker: str) -> tuple[list[tuple[Decimal, Decimal]], ...]:
    """The local book in the REST layout: bids ascending by price, NO in no-leg prices."""
    ladders = client.books[ticker].levels()
    return ladders.yes[::-1], ladders.no[::-1]


async def test_books_equal_rest_after_gaps_disconnects_stalls_and_auth_rejection(sink: Any) -> None:
    async with Simulator(markets=4, seed=5, rate=400) as sim:
        signer = Signer.from_file(sim.key_id, sim.private_key_path)
        subscriptions = [Subscription("orderbook_delta", tuple(sim.tickers)), Subscription("trade"),
                         Subscription("ticker")]
        options = ClientOptions(backoff_initial=0.02, backoff_cap=0.1, poll_interval=0.05, stale_after=0.6,
                                close_timeout=1.0)
        client = KalshiWebSocketClient(sim.ws_url, sink, subscriptions, signer=signer, options=options,
                                       rng=random.Random(2))

        def recovered(kind: str) -> bool:
            return any(isinstance(e, events.Recovered) and e.outcome == kind for e in sink.events)

        def count(kind: type) -> int:
            return len(sink.of(kind))

        def all_trusted() -> bool:
            return all(client.books.is_trusted(t) for t in sim.tickers)

        async with client:
            await sink.wait_for(all_trusted)

            sim.inject("drop", channel="orderbook_delta")  # a gap: repaired with get_snapshot
            await sink.wait_for(lambda: count(events.SequenceGap) == 1 and recovered("snapshot"))
            sim.inject("duplicate", channel="orderbook_delta")  # dropped silently, no gap
            sim.inject("reorder", channel="orderbook_delta")  # a gap, then a stale frame
            await sink.wait_for(lambda: count(events.SequenceGap) == 2 and all_trusted()
                                and sum(isinstance(e, events.Recovered) and e.outcome == "snapshot"
                                        for e in sink.events) == 2)

            sim.inject("close", mode="abort")  # the TCP connection vanishes
            await sink.wait_for(lambda: client.generation == 2 and recovered("reconnected"))

            sim.inject("stall_all", duration=3.0)  # no data, no heartbeat: the watchdog must notice
            await sink.wait_for(lambda: count(events.StaleStream) == 1 and client.generation == 3
                                and all_trusted())

            sim.inject("auth_reject", count=1)  # the next handshake is refused once
            sim.inject("close", mode="close")
            await sink.wait_for(lambda: count(events.AuthRejected) == 1 and client.generation == 4
                                and all_trusted())

            await sim.pause_market_activity()
            await sink.wait_for(lambda: all(_book_matches(client, sim, t) for t in sim.tickers))

            async with KalshiRestClient(sim.rest_url, signer) as rest:
                for ticker in sim.tickers:
                    rest_book = await rest.get_orderbook(ticker)
                    assert _ascending(client, ticker) == (rest_book.yes_dollars, rest_book.no_dollars), ticker

    kinds = [f["kind"] for f in sim.faults_injected]
    assert kinds.count("drop") == 1 and kinds.count("reorder") == 1
    assert count(events.SequenceGap) == 2  # drop + reorder; the duplicate is not a gap
    disconnects = sink.of(events.Disconnected)
    assert len(disconnects) == 4 and [d.will_reconnect for d in disconnects] == [True, True, True, False]
    assert "stale stream" in disconnects[1].reason
    # Every incident that was opened (gap or disconnect) was closed, except the final shutdown.
    opened = {e.incident_id for e in sink.events if isinstance(e, events.SequenceGap | events.Disconnected)}
    closed = {e.incident_id for e in sink.events if isinstance(e, events.Recovered)}
    assert opened - closed == {disconnects[-1].incident_id}
    assert isinstance(sink.events[-1], events.Stopped) and sink.events[-1].reason == "requested"
    # Data of one generation never follows the next connection.
    generations = [g for kind, _, g in sink.items if kind == "msg"]
    assert generations == sorted(generations) and set(generations) == {1, 2, 3, 4}
    assert [u["status"] for u in sim.handshakes].count(401) == 1


async def test_rest_client_reads_the_simulator_across_pages() -> None:
    async with Simulator(markets=6, seed=3, rate=0) as sim:
        sim.step(400)
        signer = Signer.from_file(sim.key_id, sim.private_key_path)
        async with KalshiRestClient(sim.rest_url, signer, page_limit=25) as rest:
            trades = await rest.get_trades()
            one = await rest.get_trades(sim.tickers[0])
            markets = await rest.get_markets(status="open")
            by_series = await rest.resolve_markets(series=sim.series, status=None)
            events_ = await rest.get_events()
            status = await rest.get_exchange_status()
            market = await rest.get_market(sim.tickers[1])

    tape = sim.trade_tape()
    assert len(tape) > 50 and [t.trade_id for t in trades] == [
        t["trade_id"] for t in sorted(tape, key=lambda t: (t["created_time"], t["trade_id"]))]
    assert {t.trade_id for t in one} == {t["trade_id"] for t in sim.trade_tape(sim.tickers[0])}
    assert set(sim.tickers) <= set(by_series) <= set(sim.model.markets) and len(set(by_series)) == len(by_series)
    assert {m.ticker for m in markets} <= set(sim.model.markets)
    nested = [m.ticker for e in events_ for m in e.markets]
    assert set(nested) <= set(sim.model.markets) and len(set(nested)) == len(nested) > 0
    assert status.exchange_active in (True, False) and market.ticker == sim.tickers[1]
    assert all(isinstance(t.count_fp, Decimal) and isinstance(t.ts_ms, int) for t in trades)


@pytest.mark.parametrize("seq_scope", ["sid", "connection"])
async def test_a_dropped_book_frame_is_repaired_by_snapshot_under_either_seq_scope(sink: Any, seq_scope: Any) -> None:
    """Spec 12.4, both readings, each against a simulator that numbers that way: the gap is found and the books are
    repaired by a targeted get_snapshot. Per connection a lost number may have been any sid's, so the trade sid
    reports it too (abandoned: trades are backfilled over REST)."""
    async with Simulator(markets=3, seed=11, rate=400, seq_scope=seq_scope) as sim:
        signer = Signer.from_file(sim.key_id, sim.private_key_path)
        client = KalshiWebSocketClient(sim.ws_url, sink, [Subscription("orderbook_delta", tuple(sim.tickers)),
                                                          Subscription("trade"), Subscription("ticker")],
                                       signer=signer, options=ClientOptions(poll_interval=0.05, close_timeout=1.0),
                                       rng=random.Random(4), seq_scope=seq_scope)

        def all_trusted() -> bool:
            return all(client.books.is_trusted(t) for t in sim.tickers)

        async with client:
            await sink.wait_for(lambda: all_trusted() and any(isinstance(m, messages.Trade) for m, _ in sink.messages))
            sim.inject("drop", channel="orderbook_delta")
            await sink.wait_for(lambda: bool(sink.of(events.SequenceGap)) and all_trusted()
                                and any(isinstance(e, events.Recovered) and e.outcome == "snapshot"
                                        for e in sink.events))
            await sim.pause_market_activity()
            await sink.wait_for(lambda: all(_book_matches(client, sim, t) for t in sim.tickers))

    gaps = sink.of(events.SequenceGap)
    channels = sorted(g.channel for g in gaps)
    assert channels == (["orderbook_delta"] if seq_scope == "sid" else ["orderbook_delta", "trade"])
    assert client.generation == 1 and sink.of(events.Resubscribed) == []  # repaired in place, no fallback
    assert sink.of(events.SeqScopeContradicted) == []
    outcomes = {e.incident_id: e.outcome for e in sink.of(events.Recovered)}
    assert sorted(outcomes[g.incident_id] for g in gaps) == (
        ["snapshot"] if seq_scope == "sid" else ["abandoned", "snapshot"])


@pytest.mark.parametrize(("exchange_numbers", "setting"), [("connection", "sid"), ("sid", "connection")])
async def test_numbering_that_contradicts_seq_scope_is_reported(sink: Any, exchange_numbers: Any,
                                                                setting: Any) -> None:
    async with Simulator(markets=2, seed=2, rate=400, seq_scope=exchange_numbers) as sim:
        signer = Signer.from_file(sim.key_id, sim.private_key_path)
        client = KalshiWebSocketClient(sim.ws_url, sink, [Subscription("orderbook_delta", tuple(sim.tickers)),
                                                          Subscription("trade")],
                                       signer=signer, options=ClientOptions(poll_interval=0.05, close_timeout=1.0),
                                       rng=random.Random(4), seq_scope=setting)
        async with client:
            await sink.wait_for(lambda: bool(sink.of(events.SeqScopeContradicted)))
    contradicted = sink.of(events.SeqScopeContradicted)
    assert contradicted[0].seq_scope == setting and contradicted[0].generation == 1
    assert len([e for e in contradicted if e.generation == 1]) == 1  # once per connection
