"""KalshiRestClient.get_fills: signed, paginated, de-duplicated, sorted; against a local server and the simulator."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kalshi_ws import messages as m
from kalshi_ws.auth import Signer
from kalshi_ws.rest import KalshiRestClient
from kalshi_ws.simulator import Simulator


def _fill(trade: str, order: str, ts: str, ticker: str = "KXCPI-26NOV-T0.3") -> dict[str, Any]:
    return {"fill_id": f"f-{trade}-{order}", "trade_id": trade, "order_id": order, "client_order_id": "c-1",
            "ticker": ticker, "market_ticker": ticker, "side": "yes", "action": "buy", "count_fp": "12.50",
            "yes_price_dollars": "0.4300", "no_price_dollars": "0.5700", "is_taker": False,
            "outcome_side": "yes", "book_side": "bid", "fee_cost": "0.070000", "created_time": ts, "ts": 0,
            "subaccount_number": 3, "some_future_field": {"x": 1}}


async def test_fills_are_sorted_and_deduplicated_across_pages(exchange: Any, keys: Any) -> None:
    pages = {
        None: {"fills": [_fill("t3", "o1", "2026-11-20T14:30:02Z"), _fill("t2", "o1", "2026-11-20T14:30:01Z")],
               "cursor": "p2"},
        "p2": {"fills": [_fill("t1", "o2", "2026-11-20T14:30:01Z"), _fill("t2", "o1", "2026-11-20T14:30:01Z"),
                         _fill("t2", "o2", "2026-11-20T14:30:01Z")], "cursor": "p3"},
        "p3": {"fills": [], "cursor": None},
    }

    def handler(req: Any) -> tuple[int, Any]:
        assert req.query["min_ts"] == ["1795184000"] and req.query["max_ts"] == ["1795185000"]
        assert req.query["ticker"] == ["KXCPI-26NOV-T0.3"] and req.query["limit"] == ["1000"]
        return 200, pages[req.query.get("cursor", [None])[0]]

    exchange.routes["/trade-api/v2/portfolio/fills"] = handler
    async with KalshiRestClient(exchange.rest_url, keys.signer) as rest:
        fills = await rest.get_fills("KXCPI-26NOV-T0.3", min_ts=1795184000, max_ts=1795185000)
    assert [(f.trade_id, f.order_id) for f in fills] == [("t1", "o2"), ("t2", "o1"), ("t2", "o2"), ("t3", "o1")]
    assert all(r.signature_ok for r in exchange.rest_requests) and len(exchange.rest_requests) == 3
    # the WebSocket ``fill`` payload: REST's ``ticker``, ``created_time`` and ``subaccount_number`` mapped
    assert fills[0] == m.FillPayload(
        trade_id="t1", order_id="o2", market_ticker="KXCPI-26NOV-T0.3", client_order_id="c-1", is_taker=False,
        outcome_side="yes", book_side="bid", yes_price_dollars=Decimal("0.4300"), count_fp=Decimal("12.50"),
        fee_cost=Decimal("0.070000"), ts_ms=1795185001000, ts=0, side="yes", action="buy", subaccount=3)


async def test_fills_from_the_simulator_match_its_account() -> None:
    async with Simulator(markets=4, seed=3, rate=0) as sim:
        sim.step(6000)
        truth = sim.account_fills()
        assert len(truth) > 5
        async with KalshiRestClient(sim.rest_url, Signer.from_file(sim.key_id, sim.private_key_path),
                                    page_limit=4) as rest:
            fills = await rest.get_fills()
            one = await rest.get_fills(ticker=truth[0]["ticker"])
            early = await rest.get_fills(max_ts=truth[0]["ts_ms"] // 1000 - 1)
    assert sorted((f.trade_id, f.order_id) for f in fills) == sorted((t["trade_id"], t["order_id"]) for t in truth)
    assert [f.ts_ms for f in fills] == sorted(t["ts_ms"] for t in truth)
    assert {f.market_ticker for f in one} == {truth[0]["ticker"]}
    assert len(one) == sum(1 for t in truth if t["ticker"] == truth[0]["ticker"])
    assert early == []
    by_key = {(t["trade_id"], t["order_id"]): t for t in truth}
    for f in fills:
        t = by_key[(f.trade_id, f.order_id)]
        assert (f.count_fp, f.yes_price_dollars, f.fee_cost) == (
            Decimal(t["count_fp"]), Decimal(t["yes_price_dollars"]), Decimal(t["fee_cost"]))
