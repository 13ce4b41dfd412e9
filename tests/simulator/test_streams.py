"""Every channel delivers its message types, in causal order, and everything decodes with kalshi_ws.messages."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time

from kalshi_ws import messages
from kalshi_ws.environments import Environment
from kalshi_ws.simulator import Simulator

from .conftest import Raw, connect

ALL = ["ticker", "trade", "fill", "market_positions", "market_lifecycle_v2", "multivariate_market_lifecycle",
       "communications", "order_group_updates", "user_orders"]


async def test_every_message_type_and_causal_order(idle_sim: Simulator, idle_raw: Raw) -> None:
    assert Environment.at(idle_sim.base_url).ws_url == idle_sim.ws_url
    await idle_raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": idle_sim.tickers})
    await idle_raw.send("subscribe", {"channels": ALL})
    await idle_raw.drain_until(lambda: sum(1 for f in idle_raw.frames if f["type"] == "subscribed") == 10)
    idle_sim.step(15000)
    conn = idle_sim.connections[1]
    await idle_raw.drain_until(lambda: not conn.queue and sum(conn.sent.values()) - conn.sent["ping"]
                               == len(idle_raw.frames), timeout=30)
    types: dict[str, int] = {}
    lifecycle: set[str] = set()
    mve: set[str] = set()
    for f in idle_raw.frames:
        d = messages.decode(json.dumps(f))
        assert not isinstance(d, messages.MalformedFrame | messages.UnknownMessage | messages.LegacyMessage), f
        types[f["type"]] = types.get(f["type"], 0) + 1
        if f["type"] == "market_lifecycle_v2":
            lifecycle.add(f["msg"]["event_type"])
        if f["type"] == "multivariate_market_lifecycle":
            mve.add(f["msg"]["event_type"])
            assert f["msg"]["market_ticker"].startswith("KXMVE")
    expected = {"subscribed", "orderbook_snapshot", "orderbook_delta", "ticker", "trade", "fill", "market_position",
                "user_order", "market_lifecycle_v2", "event_lifecycle", "event_fee_update",
                "multivariate_market_lifecycle", "rfq_created", "rfq_deleted", "quote_created", "quote_accepted",
                "quote_executed", "order_group_updates"}
    assert expected <= set(types), expected - set(types)
    assert lifecycle >= {"created", "activated", "deactivated", "close_date_updated", "determined", "settled",
                         "price_level_structure_updated", "metadata_updated"}
    assert mve >= {"created", "activated", "deactivated"}
    for f in idle_raw.frames:
        if isinstance(f.get("msg"), dict):
            check_formats(f["msg"], f["type"])
    # causal order: every fill comes after its public trade and the delta that consumed the maker order
    seen_trades: dict[str, int] = {}
    for i, f in enumerate(idle_raw.frames):
        if f["type"] == "trade":
            seen_trades[f["msg"]["trade_id"]] = i
        elif f["type"] == "fill":
            j = seen_trades[f["msg"]["trade_id"]]
            between = idle_raw.frames[j:i]
            assert any(x["type"] == "orderbook_delta" and x["msg"]["market_ticker"] == f["msg"]["market_ticker"]
                       for x in between)
            assert any(x["type"] == "ticker" for x in between)
    # the trade tape is the ground truth of the trade channel
    assert [f["msg"]["trade_id"] for f in idle_raw.frames if f["type"] == "trade"] == [
        t["trade_id"] for t in idle_sim.trade_tape()]


SIX_DP = {"taker_fill_cost_dollars", "maker_fill_cost_dollars", "taker_fees_dollars", "maker_fees_dollars",
          "fee_cost"}


def _dp(value: object, places: int, where: str) -> None:
    assert isinstance(value, str), where
    whole, _, frac = value.lstrip("-").partition(".")
    assert whole.isdigit() and len(frac) == places and frac.isdigit(), (where, value)


def check_formats(msg: dict, kind: str) -> None:
    """Prices 4 dp, counts 2 dp, order money 6 dp, all as strings (spec 4.0)."""
    for key, value in msg.items():
        where = f"{kind}.{key}"
        if value is None:
            continue
        if key in ("yes_dollars_fp", "no_dollars_fp"):
            for price, count in value:
                _dp(price, 4, where)
                _dp(count, 2, where)
        elif key in SIX_DP:
            _dp(value, 6, where)
        elif key.endswith("_dollars") or key == "settlement_value":
            _dp(value, 4, where)
        elif key.endswith("_fp"):
            _dp(value, 2, where)
        elif key == "price_ranges":
            for r in value:
                for part in ("start", "end", "step"):
                    _dp(r[part], 4, where)


async def test_throughput_as_fast_as_possible() -> None:
    async with Simulator(markets=8, seed=1, rate=math.inf, compression=None) as sim:
        raw = Raw(await connect(sim, compression=None))
        await raw.send("subscribe", {"channels": ["orderbook_delta", "trade", "ticker"], "market_tickers": sim.tickers})
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < 1.0:
            await raw.ws.recv()
            n += 1
        rate = n / (time.perf_counter() - start)
        assert rate > 2000, rate
        await raw.close()


async def test_cli_prints_key_and_serves(tmp_path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "kalshi_ws.simulator", "--port", "0", "--markets", "2",
                             "--rate", "5", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        lines = [await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20) for _ in range(4)]  # type: ignore[union-attr]
        assert lines[0].startswith("simulator listening on http://127.0.0.1:")
        key_id = lines[1].split(": ", 1)[1].strip()
        key_path = lines[2].split(": ", 1)[1].strip()
        assert key_path == str(tmp_path / "keys" / f"{key_id}.key")
        base = lines[0].split()[3]
        import websockets

        from kalshi_ws.auth import Signer

        signer = Signer.from_file(key_id, key_path)
        async with websockets.connect(Environment.at(base).ws_url, additional_headers=signer.websocket_headers()) as ws:
            await ws.send(json.dumps({"id": 1, "cmd": "list_subscriptions"}))
            assert json.loads(await ws.recv()) == {"id": 1, "type": "ok", "msg": []}
    finally:
        proc.terminate()
        proc.wait(10)
