"""Every fault kind is observable on the wire, and recorded in sim.faults_injected."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from kalshi_ws import messages
from kalshi_ws.simulator import Simulator

from .conftest import Raw, connect, signer


async def subscribed(sim: Simulator, raw: Raw, channels: list[str] | None = None) -> None:
    await raw.send("subscribe", {"channels": channels or ["orderbook_delta", "trade"], "market_tickers": sim.tickers})
    want = "orderbook_delta" if channels is None else channels[0]
    await raw.drain_until(lambda: sum(1 for f in raw.frames if f.get("type") == want) >= 5)


async def fired(sim: Simulator, kind: str) -> dict[str, Any]:
    await sim.wait_for(lambda: any(f["kind"] == kind for f in sim.faults_injected))
    return next(f for f in sim.faults_injected if f["kind"] == kind)


def seqs(raw: Raw, sid: int) -> list[int]:
    return [f["seq"] for f in raw.frames if f.get("sid") == sid and "seq" in f and f["type"] != "error"]


async def test_drop_makes_a_gap(sim: Simulator, raw: Raw) -> None:
    await subscribed(sim, raw)
    sim.inject("drop", channel="orderbook_delta")
    rec = await fired(sim, "drop")
    assert rec["conn"] == 1 and rec["sid"] == 1 and rec["channel"] == "orderbook_delta"
    await raw.drain_until(lambda: max(seqs(raw, 1)) > rec["seq"] + 1)
    got = seqs(raw, 1)
    assert rec["seq"] not in got and rec["seq"] - 1 in got and rec["seq"] + 1 in got


async def test_duplicate(sim: Simulator, raw: Raw) -> None:
    await subscribed(sim, raw)
    sim.inject("duplicate", sid=2)
    rec = await fired(sim, "duplicate")
    await raw.drain_until(lambda: seqs(raw, 2).count(rec["seq"]) == 2, timeout=15)
    frames = [f for f in raw.frames if f.get("sid") == 2 and f.get("seq") == rec["seq"]]
    assert frames[0] == frames[1] and frames[0]["type"] == "trade"


async def test_reorder(sim: Simulator, raw: Raw) -> None:
    await subscribed(sim, raw)
    sim.inject("reorder", channel="orderbook_delta")
    rec = await fired(sim, "reorder")
    await raw.drain_until(lambda: rec["seq"] in seqs(raw, 1))
    got = seqs(raw, 1)
    i = got.index(rec["seq"])
    assert got[i - 1] == rec["seq"] + 1
    assert sorted(got) == list(range(1, len(got) + 1))


async def test_numbers_instead_of_strings(sim: Simulator, raw: Raw) -> None:
    await subscribed(sim, raw)
    sim.inject("numbers", channel="orderbook_delta")
    rec = await fired(sim, "numbers")
    await raw.drain_until(lambda: rec["seq"] in seqs(raw, 1))
    f = next(f for f in raw.frames if f.get("sid") == 1 and f.get("seq") == rec["seq"])
    num_key = "price_dollars" if f["type"] == "orderbook_delta" else "yes_dollars_fp"
    assert not isinstance(f["msg"][num_key], str)
    assert isinstance(messages.decode(json.dumps(f)), messages.OrderbookDelta | messages.OrderbookSnapshot)


async def test_close_mid_snapshot_at_start(sim: Simulator) -> None:
    sim.inject("close_mid_snapshot", conn="next")
    raw = Raw(await connect(sim))
    await raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers})
    with pytest.raises(ConnectionClosedError):
        await raw.drain_until(lambda: False, timeout=5)
    assert [f["type"] for f in raw.frames] == ["subscribed", "orderbook_snapshot"]
    assert len(sim.tickers) > 1
    assert (await fired(sim, "close_mid_snapshot"))["seq"] == 1


async def test_close_abort_and_clean(sim: Simulator) -> None:
    raw = Raw(await connect(sim))
    await subscribed(sim, raw)
    sim.inject("close")
    with pytest.raises(ConnectionClosedError) as info:
        await raw.drain_until(lambda: False, timeout=5)
    assert info.value.rcvd is None  # no close frame: the TCP connection was cut
    raw2 = Raw(await connect(sim))
    await subscribed(sim, raw2)
    sim.inject("close", mode="close")
    with pytest.raises(ConnectionClosed) as info2:
        await raw2.drain_until(lambda: False, timeout=5)
    assert info2.value.rcvd is not None and info2.value.rcvd.code == 1011


async def test_stall_keeps_pings_and_stall_all_stops_them(sim: Simulator, raw: Raw) -> None:
    await subscribed(sim, raw)
    conn = sim.connections[1]
    pings = conn.pings_sent
    n = len(raw.frames)
    sim.inject("stall", duration=1.0)
    start = time.monotonic()
    await sim.wait_for(lambda: conn.pings_sent >= pings + 2)  # heartbeat_interval=0.3
    assert time.monotonic() - start < 1.0
    assert len(raw.frames) - n <= 5  # only what was already in flight
    await raw.drain_until(lambda: len(raw.frames) > n + 20)  # data resumes
    # stall_all: no pings either
    sim.inject("stall_all", duration=0.8)
    pings = conn.pings_sent
    t0 = time.monotonic()
    await sim.wait_for(lambda: time.monotonic() - t0 > 0.7 or conn.pings_sent > pings)
    assert conn.pings_sent == pings
    await sim.wait_for(lambda: conn.pings_sent > pings, timeout=3)
    assert [f["kind"] for f in sim.faults_injected] == ["stall", "stall_all"]


async def test_malformed_unknown_legacy_extra_key(sim: Simulator, raw: Raw) -> None:
    await subscribed(sim, raw, ["ticker"])
    for kind, params in [("malformed", {}), ("unknown_type", {}), ("legacy", {}), ("legacy", {"mode": "ticker_v2"}),
                         ("extra_key", {})]:
        sim.inject(kind, **params)
    await raw.drain_until(lambda: any(f.get("msg", {}).get("Clock") for f in raw.frames if f["type"] == "ticker"))
    decoded = [messages.decode(r) for r in raw.raw]
    assert any(isinstance(d, messages.MalformedFrame) for d in decoded)
    assert any(isinstance(d, messages.UnknownMessage) and d.type == "sim_unknown_event" for d in decoded)
    legacy = [d for d in decoded if isinstance(d, messages.LegacyMessage)]
    assert {d.type for d in legacy} == {"ticker", "ticker_v2"}
    assert [f["kind"] for f in sim.faults_injected] == ["malformed", "unknown_type", "legacy", "legacy", "extra_key"]


async def test_oversized(sim: Simulator) -> None:
    # default max_size=1 MiB
    small = Raw(await websockets.connect(sim.ws_url, additional_headers=signer(sim).websocket_headers()))
    big = Raw(await connect(sim))  # max_size=None
    await sim.wait_for(lambda: len(sim.connections) == 2)
    sim.inject("oversized")
    with pytest.raises(ConnectionClosed) as info:
        await small.drain_until(lambda: False, timeout=5)
    assert info.value.sent is not None and info.value.sent.code == 1009
    await big.drain_until(lambda: any(f["type"] == "sim_padding" for f in big.frames))
    assert len(big.raw[-1]) == 2 * 1024 * 1024
    await big.close()


@pytest.mark.parametrize("code", [10, 25])
async def test_subscription_error_drops_subscription(sim: Simulator, raw: Raw, code: int) -> None:
    await subscribed(sim, raw)
    sim.inject("sub_error", channel="orderbook_delta", code=code)
    err = await raw.wait(lambda f: f["type"] == "error")
    rec = await fired(sim, "sub_error")
    assert err["sid"] == 1 and err["msg"]["code"] == code and err["seq"] == rec["seq"]
    assert isinstance(messages.decode(json.dumps(err)), messages.Error)
    i = await raw.send("list_subscriptions")
    assert (await raw.reply(i))["msg"] == [{"channel": "trade", "sid": 2}]
    pos = raw.frames.index(err)
    await raw.drain_until(lambda: len(raw.frames) > pos + 30)
    assert not [f for f in raw.frames[pos + 1:] if f.get("sid") == 1]


async def test_random_schedule_records_faults(sim: Simulator, raw: Raw) -> None:
    await subscribed(sim, raw)
    sim.start_random_faults(50.0, seed=1, kinds=["drop", "duplicate", "unknown_type"])
    await sim.wait_for(lambda: len(sim.faults_injected) >= 5)
    sim.stop_random_faults()
    assert {f["kind"] for f in sim.faults_injected} <= {"drop", "duplicate", "unknown_type"}
    for f in sim.faults_injected:
        assert set(f) >= {"kind", "time_ms", "conn", "sid", "seq"}


async def test_control_endpoint(sim: Simulator, raw: Raw) -> None:
    await subscribed(sim, raw)
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        r = await client.get("/_sim/inject", params={"fault": "drop", "conn": "1", "channel": "trade"})
        assert r.json() == {"ok": True}
        r = await client.get("/_sim/faults", params={"duplicate": "1", "conn": "all", "channel": "orderbook_delta"})
        assert r.status_code == 200
        await sim.wait_for(lambda: len(sim.faults_injected) == 2, timeout=15)
        log = (await client.get("/_sim/faults")).json()["faults"]
        assert {f["kind"] for f in log} == {"drop", "duplicate"}
        state = (await client.get("/_sim/state")).json()
        assert state["connections"]["1"]["subscriptions"] == {"1": "orderbook_delta", "2": "trade"}
        assert state["connections"]["1"]["sent"]["orderbook_delta"] > 0
        assert (await client.get("/_sim/pause")).json() == {"ok": True}
        produced = sim.produced
        await asyncio.sleep(0)  # let the generator see the pause
        assert (await client.get("/_sim/resume")).json() == {"ok": True}
        await sim.wait_for(lambda: sim.produced > produced)
        trades = (await client.get("/_sim/trades", params={"ticker": sim.tickers[0]})).json()["trades"]
        assert trades == sim.trade_tape(sim.tickers[0])
        book = (await client.get("/_sim/book", params={"ticker": sim.tickers[0]})).json()["orderbook_fp"]
        assert set(book) == {"yes_dollars", "no_dollars"}
        r = await client.get("/_sim/inject", params={"fault": "nonsense"})
        assert r.status_code == 400
    assert sim.sent_frames[1]["orderbook_delta"] > 0


async def test_missed_pongs_close_the_connection() -> None:
    import base64
    import os

    async with Simulator(markets=1, rate=0, heartbeat_interval=0.1, max_missed_pongs=2) as sim:
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        headers = signer(sim).websocket_headers()
        lines = ["GET /trade-api/ws/v2 HTTP/1.1", f"Host: {sim.host}:{sim.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
                 "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert (await reader.readline()).startswith(b"HTTP/1.1 101")
        # never answer the pings
        await sim.wait_for(lambda: any(f["kind"] == "pong_timeout" for f in sim.faults_injected), timeout=5)
        writer.close()


async def test_buffer_limit_gives_error_25() -> None:
    async with Simulator(markets=4, rate=0, buffer_limit=50) as sim:
        raw = Raw(await connect(sim))
        await raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers})
        await raw.wait(lambda f: f["type"] == "subscribed")
        sim.inject("stall", duration=30)
        sim.step(500)
        rec = await fired(sim, "sub_error")
        assert rec["code"] == 25 and rec["reason"] == "buffer_limit"
        sim.inject("stall", duration=0)  # un-stall
        err = await raw.wait(lambda f: f["type"] == "error")
        assert err["msg"]["code"] == 25 and err["sid"] == 1
        await raw.close()


async def test_zero_delta_takes_a_seq(idle_sim: Simulator, idle_raw: Raw) -> None:
    t = idle_sim.tickers[0]
    await idle_raw.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": t})
    await idle_raw.wait(lambda f: f["type"] == "orderbook_snapshot")
    before = idle_sim.book(t)
    idle_sim.inject("zero_delta")
    f = await idle_raw.wait(lambda f: f["type"] == "orderbook_delta")
    assert f["seq"] == 2 and f["msg"]["delta_fp"] == "0.00"
    assert idle_sim.book(t) == before
    assert idle_sim.faults_injected[-1]["kind"] == "zero_delta" and idle_sim.faults_injected[-1]["seq"] == 2
