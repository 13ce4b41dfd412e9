"""REST ``GET /portfolio/fills``: the same fills the WS ``fill`` channel sent, newest first, paginated, filtered,
signed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from kalshi_ws.simulator import Simulator

from .conftest import Raw, signer


async def _get(sim: Simulator, client: httpx.AsyncClient, params: dict[str, Any] | None = None,
               status: int = 200, signed: bool = True) -> Any:
    path = "/trade-api/v2/portfolio/fills"
    headers = signer(sim).headers("GET", path) if signed else {}
    r = await client.get(path, params=params, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


async def _all(sim: Simulator, client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await _get(sim, client, {**params, **({"cursor": cursor} if cursor else {})})
        out += page["fills"]
        cursor = page["cursor"]
        if not cursor:
            return out


async def test_rest_fills_equal_ws_fills(idle_sim: Simulator, idle_raw: Raw) -> None:
    await idle_raw.send("subscribe", {"channels": ["fill"]})
    await idle_raw.wait(lambda f: f["type"] == "subscribed")
    idle_sim.step(6000)
    conn = idle_sim.connections[1]
    await idle_raw.drain_until(lambda: not conn.queue and sum(conn.sent.values()) - conn.sent["ping"]
                               == len(idle_raw.frames), timeout=30)
    ws = [f["msg"] for f in idle_raw.frames if f["type"] == "fill"]
    assert len(ws) >= 10, "the account was hardly filled: the check proves little"
    async with httpx.AsyncClient(base_url=idle_sim.base_url) as client:
        await _get(idle_sim, client, status=401, signed=False)
        rest = await _all(idle_sim, client, limit=7)
        # newest first, no repeats across pages, same records as the WS frames
        assert [f["created_time"] for f in rest] == sorted((f["created_time"] for f in rest), reverse=True)
        assert len({(f["trade_id"], f["order_id"]) for f in rest}) == len(rest) == len(ws)
        by_key = {(f["trade_id"], f["order_id"]): f for f in rest}
        for w in ws:
            r = by_key[(w["trade_id"], w["order_id"])]
            assert r["ticker"] == w["market_ticker"]
            assert r["client_order_id"] == w["client_order_id"]
            assert Decimal(r["count_fp"]) == Decimal(w["count_fp"])
            assert Decimal(r["yes_price_dollars"]) == Decimal(w["yes_price_dollars"])
            assert Decimal(r["no_price_dollars"]) == 1 - Decimal(w["yes_price_dollars"])
            assert Decimal(r["fee_cost"]) == Decimal(w["fee_cost"])
            assert (r["side"], r["action"], r["is_taker"], r["outcome_side"], r["book_side"]) == (
                w["side"], w["action"], w["is_taker"], w["outcome_side"], w["book_side"])
            assert r["fill_id"]
        assert rest == [{k: v for k, v in f.items() if k != "ts_ms"} for f in reversed(idle_sim.account_fills())]
        # filters: ticker, order_id, min_ts/max_ts inclusive whole seconds
        t = rest[0]["ticker"]
        assert await _all(idle_sim, client, ticker=t, limit=3) == [f for f in rest if f["ticker"] == t]
        oid = rest[-1]["order_id"]
        assert await _all(idle_sim, client, order_id=oid) == [f for f in rest if f["order_id"] == oid]
        secs = sorted({f["ts"] for f in rest})
        lo, hi = secs[0], secs[-1]
        assert await _all(idle_sim, client, min_ts=lo, max_ts=lo) == [f for f in rest if f["ts"] == lo]
        assert await _all(idle_sim, client, min_ts=hi + 1) == []
        await _get(idle_sim, client, {"limit": 0}, status=400)
        await _get(idle_sim, client, {"limit": 1001}, status=400)
