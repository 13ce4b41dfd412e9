"""KalshiWebSocketClient against a scripted local WebSocket server (real sockets, real signatures)."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from kalshi_testing import wait_until

from kalshi_ws import events, messages
from kalshi_ws.auth import Signer, generate_key_pair
from kalshi_ws.client import ClientOptions, ConnectionGaveUp, KalshiWebSocketClient
from kalshi_ws.errors import AuthenticationError
from kalshi_ws.protocol import SessionProtocol, Subscription

TICKER = "KXTEST-1"
FAST = ClientOptions(backoff_initial=0.01, backoff_cap=0.05, poll_interval=0.05, close_timeout=1.0,
                     open_timeout=2.0)


def _client(exchange: Any, sink: Any, keys: Any, options: ClientOptions = FAST, **kw: Any) -> KalshiWebSocketClient:
    return KalshiWebSocketClient(exchange.ws_url, sink, [Subscription("trade", (TICKER,))], signer=keys.signer,
                                 options=options, rng=random.Random(7), **kw)


def _trade(sid: int, seq: int, n: int) -> dict[str, Any]:
    return {"type": "trade", "sid": sid, "seq": seq,
            "msg": {"trade_id": f"t-{n}", "market_ticker": TICKER, "yes_price_dollars": "0.4200",
                    "no_price_dollars": "0.5800", "count_fp": "3.00", "taker_outcome_side": "yes",
                    "taker_book_side": "bid", "ts_ms": 1795184999874 + n}}


def _trade_ids(sink: Any, generation: int | None = None) -> list[str]:
    return [m.msg.trade_id for m, g in sink.messages
            if isinstance(m, messages.Trade) and (generation is None or g == generation)]


async def test_streams_resubscribes_and_resigns_on_every_reconnect(exchange: Any, sink: Any, keys: Any) -> None:
    async def script(peer: Any) -> None:
        (sid,) = await peer.answer_subscribes(1)
        for i in range(5):
            await peer.send(_trade(sid, i + 1, peer.number * 100 + i))
        await peer.ws.close(1011, "going away")  # every connection is dropped mid-stream

    exchange.script = script
    client = _client(exchange, sink, keys)
    task = asyncio.create_task(client.run())
    await sink.wait_for(lambda: len(_trade_ids(sink)) >= 15)
    client.stop()
    await task

    assert len(exchange.upgrades) >= 3
    assert all(u.signature_ok for u in exchange.upgrades)
    stamps = [u.headers["kalshi-access-timestamp"] for u in exchange.upgrades]
    signatures = [u.headers["kalshi-access-signature"] for u in exchange.upgrades]
    assert len(set(signatures)) == len(signatures) and stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # Every connection re-sent the subscription with the current market list.
    assert all(p.commands and p.commands[0]["params"]["market_tickers"] == [TICKER] for p in exchange.peers)
    for gen in (1, 2, 3):
        assert _trade_ids(sink, gen) == [f"t-{gen * 100 + i}" for i in range(5)]
    disconnects = sink.of(events.Disconnected)
    assert disconnects[0].will_reconnect and "1011" in disconnects[0].reason
    assert isinstance(sink.events[-1], events.Stopped) and sink.events[-1].reason == "requested"


async def test_frames_of_a_generation_never_follow_the_next_connection(exchange: Any, sink: Any,
                                                                        keys: Any) -> None:
    async def script(peer: Any) -> None:
        (sid,) = await peer.answer_subscribes(1)
        for i in range(300):
            await peer.send(_trade(sid, i + 1, peer.number * 1000 + i))
        if peer.number == 1:
            peer.ws.transport.abort()  # vanish without a close frame, frames still in flight
        await peer.ws.wait_closed()

    exchange.script = script
    client = _client(exchange, sink, keys)
    task = asyncio.create_task(client.run())
    await sink.wait_for(lambda: len(_trade_ids(sink, 2)) == 300)
    client.stop()
    await task

    connected_2 = next(i for i, (kind, item, _) in enumerate(sink.items)
                       if kind == "event" and isinstance(item, events.Connected) and item.generation == 2)
    generations = [g for kind, _, g in sink.items if kind == "msg"]
    assert generations == sorted(generations)
    assert all(g == 1 for kind, _, g in sink.items[:connected_2] if kind == "msg")
    assert all(g == 2 for kind, _, g in sink.items[connected_2:] if kind == "msg")
    assert _trade_ids(sink, 2) == [f"t-{2000 + i}" for i in range(300)]
    # Generation 1 delivered a prefix of what was sent, in order and without holes.
    first = _trade_ids(sink, 1)
    assert first == [f"t-{1000 + i}" for i in range(len(first))]


async def test_watchdog_reconnects_a_silent_stream_but_not_one_with_heartbeats(exchange: Any, sink: Any,
                                                                              keys: Any) -> None:
    async def script(peer: Any) -> None:
        await peer.answer_subscribes(1)
        if peer.number == 1:
            await peer.ws.wait_closed()  # silent: no data, no ping
        else:
            while True:  # heartbeats only, like Kalshi's 10-s pings (sped up)
                await peer.ws.ping(b"heartbeat")
                await asyncio.sleep(0.05)

    exchange.script = script
    options = ClientOptions(backoff_initial=0.01, backoff_cap=0.05, poll_interval=0.05, stale_after=0.3,
                            keepalive_interval=None, close_timeout=1.0)
    client = _client(exchange, sink, keys, options)
    started = time.monotonic()
    task = asyncio.create_task(client.run())
    await sink.wait_for(lambda: any(isinstance(e, events.Connected) and e.generation == 2 for e in sink.events))
    await asyncio.sleep(0.8)  # a negative check: heartbeats alone must keep generation 2 alive
    client.stop()
    await task

    stale = sink.of(events.StaleStream)
    assert len(stale) == 1 and stale[0].generation == 1 and stale[0].silent_for >= 0.3
    assert time.monotonic() - started < 5
    assert len(exchange.upgrades) == 2  # generation 2 stays up on heartbeats alone
    order = [type(e).__name__ for e in sink.events if isinstance(e, events.StaleStream | events.Disconnected)]
    assert order[:2] == ["StaleStream", "Disconnected"]


async def test_watchdog_fires_at_stale_after_on_the_client_clock(exchange: Any, sink: Any, keys: Any,
                                                                   clock: Any) -> None:
    """The production default (30 s without hearing anything), on a fake clock: not a moment before."""
    exchange.script = lambda peer: _answer_then_silence(peer)
    options = ClientOptions(backoff_initial=0.01, backoff_cap=0.05, poll_interval=0.01, keepalive_interval=None,
                            close_timeout=1.0)
    assert options.stale_after == 30.0
    client = _client(exchange, sink, keys, options, clock=clock, wall_clock=clock.wall)
    task = asyncio.create_task(client.run())
    await wait_until(lambda: client.protocol.sid_channel(1) == "trade")  # subscribed: the stream is silent now
    await clock.ticks()
    clock.advance(29.9)
    await clock.ticks()
    assert sink.of(events.StaleStream) == [] and client.connections == 1
    clock.advance(0.1)
    await sink.wait_for(lambda: any(isinstance(e, events.Connected) and e.generation == 2 for e in sink.events))
    client.stop()
    await task
    [stale] = sink.of(events.StaleStream)
    assert stale.generation == 1 and stale.silent_for == 30.0


async def _answer_then_silence(peer: Any) -> None:
    await peer.answer_subscribes(1)
    await peer.ws.wait_closed()


async def test_deadline_is_a_client_clock_target_that_wall_clock_steps_do_not_move(exchange: Any, sink: Any,
                                                                                     keys: Any, clock: Any) -> None:
    async def script(peer: Any) -> None:
        (sid,) = await peer.answer_subscribes(1)
        seq = 0
        while True:
            seq += 1
            await peer.send(_trade(sid, seq, seq))
            await asyncio.sleep(0.002)

    exchange.script = script
    client = _client(exchange, sink, keys, ClientOptions(poll_interval=0.01, keepalive_interval=None),
                     clock=clock, wall_clock=clock.wall)
    task = asyncio.create_task(client.run(deadline=clock.wall() + 3600))  # an hour of session
    await sink.wait_for(lambda: len(_trade_ids(sink)) >= 5)
    clock.wall_offset -= 7200  # an NTP step back by two hours after the deadline was set: must not stretch it
    clock.advance(3599.5)
    await clock.ticks()
    assert not task.done() and sink.of(events.Stopped) == []
    clock.advance(0.5)
    await asyncio.wait_for(task, 5)
    assert isinstance(sink.events[-1], events.Stopped) and sink.events[-1].reason == "deadline"
    [lost] = sink.of(events.Disconnected)
    assert lost.will_reconnect is False and len(exchange.upgrades) == 1


async def test_deadline_stops_reading_and_closes_cleanly(exchange: Any, sink: Any, keys: Any) -> None:
    close_codes: list[int | None] = []

    async def script(peer: Any) -> None:
        (sid,) = await peer.answer_subscribes(1)
        seq = 0
        try:
            while True:
                seq += 1
                await peer.send(_trade(sid, seq, seq))
                await asyncio.sleep(0.002)
        finally:
            await peer.ws.wait_closed()
            close_codes.append(peer.ws.close_code)

    exchange.script = script
    client = _client(exchange, sink, keys)
    deadline = time.time() + 0.5
    await client.run(deadline=deadline)
    returned = time.time()

    assert deadline <= returned < deadline + 1.0
    assert isinstance(sink.events[-1], events.Stopped) and sink.events[-1].reason == "deadline"
    lost = sink.of(events.Disconnected)
    assert len(lost) == 1 and lost[0].will_reconnect is False
    assert len(exchange.upgrades) == 1
    assert len(exchange.peers[0].commands) == 1  # nothing but the subscribe was ever sent
    await wait_until(lambda: bool(close_codes))
    assert close_codes == [1000]
    assert _trade_ids(sink) == [f"t-{i}" for i in range(1, len(_trade_ids(sink)) + 1)]


async def test_auth_rejections_give_up_with_a_clear_error_and_no_storm(exchange: Any, sink: Any, keys: Any,
                                                                      tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, wrong_key_path, _ = generate_key_pair(tmp_path)
    wrong = Signer.from_file(keys.signer.key_id, wrong_key_path)  # right id, wrong key: signature fails
    options = ClientOptions(backoff_initial=0.05, backoff_cap=0.2, max_auth_rejections=3)
    client = KalshiWebSocketClient(exchange.ws_url, sink, [Subscription("trade", (TICKER,))], signer=wrong,
                                   options=options, rng=random.Random(1))
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        await client.run()

    assert len(exchange.upgrades) == 3 and exchange.peers == []
    assert keys.signer.key_id in str(info.value) and "clock" in str(info.value)
    rejected = sink.of(events.AuthRejected)
    assert [r.status for r in rejected] == [401, 401, 401] and "bad signature" in rejected[0].detail
    failed = sink.of(events.ConnectFailed)
    assert [f.retry_in is None for f in failed] == [False, False, True]
    assert time.monotonic() - started >= sum(f.retry_in or 0 for f in failed)
    assert isinstance(sink.events[-1], events.Stopped) and sink.events[-1].reason == "auth_rejected"
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server"))
    assert "KALSHI-ACCESS-SIGNATURE: <redacted>" in ours  # the handshake was logged at DEBUG, redacted
    for upgrade in exchange.upgrades:
        assert upgrade.headers["kalshi-access-signature"] not in ours + str(info.value)


async def test_a_403_is_retried_and_success_resets_the_count(exchange: Any, sink: Any, keys: Any) -> None:
    exchange.reject = lambda n: (403, "Forbidden\n") if n in (0, 1) else None

    async def script(peer: Any) -> None:
        (sid,) = await peer.answer_subscribes(1)
        await peer.send(_trade(sid, 1, 1))
        await peer.ws.wait_closed()

    exchange.script = script
    client = _client(exchange, sink, keys, ClientOptions(backoff_initial=0.01, backoff_cap=0.02,
                                                         max_auth_rejections=3, poll_interval=0.05))
    task = asyncio.create_task(client.run())
    await sink.wait_for(lambda: _trade_ids(sink) == ["t-1"])
    client.stop()
    await task
    assert [r.status for r in sink.of(events.AuthRejected)] == [403, 403]
    assert [u.signature_ok for u in exchange.upgrades] == [True, True, True]


async def test_backoff_is_jittered_and_capped(sink: Any, keys: Any) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = ClientOptions(backoff_initial=0.002, backoff_factor=2.0, backoff_cap=0.02, max_connect_failures=10)
    client = KalshiWebSocketClient(f"ws://127.0.0.1:{port}/trade-api/ws/v2", sink, [Subscription("trade")],
                                   signer=keys.signer, options=options, rng=random.Random(3))
    with pytest.raises(ConnectionGaveUp):
        await client.run()
    delays = [f.retry_in for f in sink.of(events.ConnectFailed)]
    assert len(delays) == 10 and delays[-1] is None
    waits = [d for d in delays if d is not None]
    bounds = [options.backoff_bound(n) for n in range(9)]
    assert bounds[:5] == [0.002, 0.004, 0.008, 0.016, 0.02] and bounds[-1] == 0.02
    assert all(0 <= w <= b for w, b in zip(waits, bounds, strict=True))
    assert len(set(waits)) == len(waits)  # jittered, not a fixed schedule
    assert sink.events[-1].reason == "fatal"


async def test_backpressure_stops_reading_without_tripping_the_watchdog(exchange: Any, sink: Any, keys: Any,
                                                                         clock: Any) -> None:
    sent = asyncio.Event()

    async def script(peer: Any) -> None:
        (sid,) = await peer.answer_subscribes(1)
        for i in range(20):
            await peer.send(_trade(sid, i + 1, i))
        sent.set()
        await peer.ws.wait_closed()

    exchange.script = script
    options = ClientOptions(poll_interval=0.01, stale_after=2.0, keepalive_interval=None)
    client = _client(exchange, sink, keys, options, clock=clock, wall_clock=clock.wall)
    sink.pause()
    task = asyncio.create_task(client.run())
    await asyncio.wait_for(sent.wait(), 5)
    await clock.ticks()
    # Paused far longer than the watchdog and the protocol's 10-s command timeout allow: the subscribe's reply is
    # among the unread frames, so neither may fire.
    clock.advance(100.0)
    await clock.ticks()
    assert _trade_ids(sink) == [] and sink.of(events.StaleStream) == []  # nothing read, no watchdog
    sink.resume()
    await sink.wait_for(lambda: len(_trade_ids(sink)) == 20)
    client.stop()
    await task
    assert len(exchange.upgrades) == 1


async def test_update_markets_is_sent_live_and_kept_for_reconnects(exchange: Any, sink: Any, keys: Any) -> None:
    got_update = asyncio.Event()

    async def script(peer: Any) -> None:
        await peer.answer_subscribes(1)
        if peer.number == 1:
            cmd = await peer.command()
            assert cmd["cmd"] == "update_subscription"
            await peer.send({"type": "ok", "id": cmd["id"], "sid": cmd["params"].get("sid", 1),
                             "msg": {"market_tickers": [TICKER, "KXTEST-2"]}})
            got_update.set()
            await peer.ws.close()
        await peer.ws.wait_closed()

    exchange.script = script
    client = _client(exchange, sink, keys)
    async with client:
        await sink.wait_for(lambda: bool(sink.of(events.Connected)))
        client.update_markets("trade", add=["KXTEST-2"])
        await asyncio.wait_for(got_update.wait(), 5)
        await wait_until(lambda: len(exchange.peers) == 2 and bool(exchange.peers[1].commands))
    update = exchange.peers[0].commands[1]
    assert update["params"]["action"] == "add_markets" and update["params"]["market_tickers"] == ["KXTEST-2"]
    assert sorted(exchange.peers[1].commands[0]["params"]["market_tickers"]) == [TICKER, "KXTEST-2"]
    assert sink.events[-1].reason == "requested"


@pytest.mark.parametrize(("healthy_after", "attempt"), [(0.0, 1), (60.0, 2)])
async def test_a_healthy_connection_resets_the_backoff(exchange: Any, sink: Any, keys: Any,
                                                       healthy_after: float, attempt: int) -> None:
    """The attempt number after a drop says whether the failure count restarted (0: it did)."""
    exchange.reject = lambda n: (403, "Forbidden\n") if n == 1 else None

    async def script(peer: Any) -> None:
        await peer.answer_subscribes(1)
        await peer.ws.close()

    exchange.script = script
    options = ClientOptions(backoff_initial=0.01, backoff_cap=0.02, healthy_after=healthy_after)
    client = _client(exchange, sink, keys, options)
    task = asyncio.create_task(client.run())
    await sink.wait_for(lambda: bool(sink.of(events.ConnectFailed)))
    client.stop()
    await task
    assert sink.of(events.ConnectFailed)[0].attempt == attempt


async def test_cancelling_run_closes_the_connection_and_reports_stopped(exchange: Any, sink: Any,
                                                                         keys: Any) -> None:
    close_codes: list[int | None] = []

    async def script(peer: Any) -> None:
        await peer.answer_subscribes(1)
        await peer.ws.wait_closed()
        close_codes.append(peer.ws.close_code)

    exchange.script = script
    client = _client(exchange, sink, keys)
    task = asyncio.create_task(client.run())
    await sink.wait_for(lambda: bool(sink.of(events.Connected)))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: bool(close_codes))
    assert close_codes == [1000]
    assert sink.of(events.Disconnected)[0].will_reconnect is False
    assert sink.events[-1].reason == "requested" and sink.events[-1].detail == "cancelled"
    with pytest.raises(RuntimeError):
        await client.run()


async def test_a_server_that_hangs_up_at_once_is_retried_not_fatal(exchange: Any, sink: Any, keys: Any) -> None:
    async def script(peer: Any) -> None:
        if peer.number <= 3:
            peer.ws.transport.abort()  # gone before the subscribe could be read (or even sent)
            return
        (sid,) = await peer.answer_subscribes(1)
        await peer.send(_trade(sid, 1, 1))
        await peer.ws.wait_closed()

    exchange.script = script
    client = _client(exchange, sink, keys)
    task = asyncio.create_task(client.run())
    await sink.wait_for(lambda: _trade_ids(sink) == ["t-1"])
    client.stop()
    await task
    assert client.generation == 4 and len(sink.of(events.Disconnected)) == 4
    assert sink.events[-1].reason == "requested"


async def test_a_sink_that_fails_inside_the_read_ends_the_session_with_its_error(exchange: Any, sink: Any,
                                                                                 keys: Any) -> None:
    """Frames are handled inside the socket read; an error there still reaches run() and is never retried."""

    class Boom(RuntimeError):
        pass

    async def script(peer: Any) -> None:
        (sid,) = await peer.answer_subscribes(1)
        for i in range(5):
            await peer.send(_trade(sid, i + 1, i))
        await peer.ws.wait_closed()

    exchange.script = script
    delivered: list[str] = []
    original = sink.on_message

    def failing(message: Any, generation: int, received_ns: int) -> None:
        if isinstance(message, messages.Trade) and message.msg.trade_id == "t-2":
            raise Boom("sink failed")
        delivered.append(message.msg.trade_id)
        original(message, generation, received_ns)

    sink.on_message = failing
    client = _client(exchange, sink, keys)
    with pytest.raises(Boom):
        await asyncio.wait_for(client.run(), 5)
    assert delivered == ["t-0", "t-1"]  # nothing after the failing frame, even from the same read
    assert len(exchange.upgrades) == 1
    assert sink.of(events.Stopped)[-1].reason == "fatal"


async def test_backpressure_raised_in_the_middle_of_a_read_loses_and_repeats_nothing(exchange: Any, sink: Any,
                                                                                    keys: Any) -> None:
    async def script(peer: Any) -> None:
        (sid,) = await peer.answer_subscribes(1)
        for i in range(200):
            await peer.send(_trade(sid, i + 1, i))
        await peer.ws.wait_closed()

    exchange.script = script
    original = sink.on_message
    pauses = 0

    def pausing(message: Any, generation: int, received_ns: int) -> None:
        nonlocal pauses
        original(message, generation, received_ns)
        if len(_trade_ids(sink)) % 50 == 0:  # every 50 trades the "database" falls behind for a moment
            pauses += 1
            sink.pause()
            asyncio.get_running_loop().call_soon(sink.resume)

    sink.on_message = pausing
    client = _client(exchange, sink, keys)
    task = asyncio.create_task(client.run())
    await sink.wait_for(lambda: len(_trade_ids(sink)) == 200)
    client.stop()
    await task
    assert _trade_ids(sink) == [f"t-{i}" for i in range(200)]
    assert pauses == 4 and len(exchange.upgrades) == 1


def test_seq_scope_is_passed_to_the_default_protocol_and_never_contradicts_a_given_one(sink: Any) -> None:
    client = KalshiWebSocketClient("ws://127.0.0.1:1/trade-api/ws/v2", sink, [Subscription("trade")],
                                   seq_scope="connection")
    assert client.protocol.seq_scope == "connection"
    assert KalshiWebSocketClient("ws://127.0.0.1:1", sink, [Subscription("trade")]).protocol.seq_scope == "sid"
    protocol = SessionProtocol([Subscription("trade")], seq_scope="connection")
    assert KalshiWebSocketClient("ws://127.0.0.1:1", sink, protocol=protocol, seq_scope="connection").protocol is protocol
    with pytest.raises(ValueError, match="contradicts"):
        KalshiWebSocketClient("ws://127.0.0.1:1", sink, protocol=protocol, seq_scope="sid")
