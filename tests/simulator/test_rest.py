"""REST mirror: markets, orderbooks, trades (pagination, min_ts/max_ts), events, status, rate limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from kalshi_ws.simulator import Simulator

from .conftest import signer


class Rest:
    def __init__(self, sim: Simulator, client: httpx.AsyncClient) -> None:
        self.sim = sim
        self.client = client

    async def get(self, path: str, params: Any = None, status: int = 200) -> Any:
        full = "/trade-api/v2" + path
        r = await self.client.get(full, params=params, headers=signer(self.sim).headers("GET", full))
        assert r.status_code == status, r.text
        return r.json()


@pytest.fixture
async def busy() -> AsyncIterator[Simulator]:
    async with Simulator(markets=7, seed=11, rate=0) as sim:
        sim.step(3000)
        yield sim


@pytest.fixture
async def rest(busy: Simulator) -> AsyncIterator[Rest]:
    async with httpx.AsyncClient(base_url=busy.base_url) as client:
        yield Rest(busy, client)


async def test_markets_pagination_and_filters(busy: Simulator, rest: Rest) -> None:
    seen: list[str] = []
    cursor = ""
    while True:
        page = await rest.get("/markets", {"limit": 3, "cursor": cursor} if cursor else {"limit": 3})
        assert len(page["markets"]) <= 3
        seen += [mk["ticker"] for mk in page["markets"]]
        cursor = page["cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == len(busy.model.markets)
    assert set(busy.tickers) <= set(seen)
    ev = busy.events[0]
    by_event = await rest.get("/markets", {"event_ticker": ev})
    assert by_event["markets"] and all(mk["event_ticker"] == ev for mk in by_event["markets"])
    series = busy.series[1]
    by_series = await rest.get("/markets", {"series_ticker": series})
    assert {mk["ticker"] for mk in by_series["markets"]} >= {t for t in busy.tickers if t.startswith(series + "-")}
    two = await rest.get("/markets", {"tickers": ",".join(busy.tickers[:2])})
    assert [mk["ticker"] for mk in two["markets"]] == busy.tickers[:2]
    opened = await rest.get("/markets", {"status": "open", "mve_filter": "exclude"})
    assert all(mk["status"] == "active" for mk in opened["markets"])
    await rest.get("/markets", {"status": "active"}, status=400)
    await rest.get("/markets", {"limit": 5000}, status=400)


async def test_market_and_orderbook(busy: Simulator, rest: Rest) -> None:
    t = busy.tickers[2]
    mk = (await rest.get(f"/markets/{t}"))["market"]
    assert mk["ticker"] == t and mk["price_ranges"] and Decimal(mk["volume_fp"]) > 0
    book = (await rest.get(f"/markets/{t}/orderbook"))["orderbook_fp"]
    assert book == busy.book(t)
    for side in ("yes_dollars", "no_dollars"):
        prices = [Decimal(p) for p, _ in book[side]]
        assert prices == sorted(prices)
        for p, q in book[side]:
            assert len(p.split(".")[1]) == 4 and len(q.split(".")[1]) == 2
    top = (await rest.get(f"/markets/{t}/orderbook", {"depth": 2}))["orderbook_fp"]
    assert top == {k: v[-2:] for k, v in book.items()}
    assert Decimal(mk["yes_bid_dollars"]) == Decimal(book["yes_dollars"][-1][0])
    await rest.get("/markets/NOPE-1", status=404)
    await rest.get("/markets/NOPE-1/orderbook", status=404)
    many = await rest.get("/markets/orderbooks", [("tickers", busy.tickers[0]), ("tickers", busy.tickers[1])])
    assert [(o["ticker"], o["orderbook_fp"]) for o in many["orderbooks"]] == [
        (x, busy.book(x)) for x in busy.tickers[:2]]


async def test_trades_pagination_newest_first(busy: Simulator, rest: Rest) -> None:
    tape = busy.trade_tape()
    assert len(tape) > 300
    got: list[dict[str, Any]] = []
    cursor = ""
    while True:
        params: dict[str, Any] = {"limit": 97}
        if cursor:
            params["cursor"] = cursor
        page = await rest.get("/markets/trades", params)
        got += page["trades"]
        cursor = page["cursor"]
        if not cursor:
            break
    assert [t["trade_id"] for t in got] == [t["trade_id"] for t in reversed(tape)]
    first = got[0]
    assert set(first) == {"trade_id", "ticker", "count_fp", "yes_price_dollars", "no_price_dollars",
                          "taker_outcome_side", "taker_book_side", "taker_side", "created_time", "is_block_trade"}
    t = busy.tickers[0]
    mine = (await rest.get("/markets/trades", {"ticker": t, "limit": 1000}))["trades"]
    assert [x["trade_id"] for x in mine] == [x["trade_id"] for x in reversed(busy.trade_tape(t))]
    await rest.get("/markets/trades", {"limit": 1001}, status=400)
    blocks = (await rest.get("/markets/trades", {"is_block_trade": "true", "limit": 1000}))["trades"]
    assert blocks and all(x["is_block_trade"] for x in blocks)
    assert [x["trade_id"] for x in blocks] == [x["trade_id"] for x in reversed(tape) if x["is_block_trade"]]


async def test_trades_min_max_ts() -> None:
    async with Simulator(markets=2, seed=5, rate=0) as sim:
        sim.step(400)
        # force a later second for part of the tape
        last_ms = sim.trade_tape()[-1]["ts_ms"]
        sim.model._last_ms = last_ms + 2000 - 1
        sim.step(400)
        tape = sim.trade_tape()
        split = last_ms // 1000 + 1
        early = [x["trade_id"] for x in tape if x["ts_ms"] // 1000 < split]
        late = [x["trade_id"] for x in tape if x["ts_ms"] // 1000 >= split]
        assert early and late
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            rest = Rest(sim, client)
            got = (await rest.get("/markets/trades", {"min_ts": split, "limit": 1000}))["trades"]
            assert [x["trade_id"] for x in got] == list(reversed(late))
            got = (await rest.get("/markets/trades", {"max_ts": split - 1, "limit": 1000}))["trades"]
            assert [x["trade_id"] for x in got] == list(reversed(early))
            got = (await rest.get("/markets/trades", {"min_ts": split + 100, "limit": 1000}))["trades"]
            assert got == []
            t = sim.tickers[1]
            mine = [x["trade_id"] for x in tape if x["ticker"] == t and x["ts_ms"] // 1000 < split]
            got = (await rest.get("/markets/trades", {"ticker": t, "max_ts": split - 1, "limit": 1000}))["trades"]
            assert [x["trade_id"] for x in got] == list(reversed(mine)) and mine
            page = await rest.get("/markets/trades", {"ticker": t, "max_ts": split - 1, "limit": 5})
            page2 = await rest.get("/markets/trades", {"ticker": t, "max_ts": split - 1, "limit": 5,
                                                       "cursor": page["cursor"]})
            assert [x["trade_id"] for x in page["trades"] + page2["trades"]] == list(reversed(mine))[:10]


async def test_events_status_cutoff(busy: Simulator, rest: Rest) -> None:
    events = await rest.get("/events", {"with_nested_markets": "true", "limit": 2})
    assert len(events["events"]) == 2 and events["cursor"]
    assert all("markets" in e for e in events["events"])
    allev = await rest.get("/events")
    assert set(busy.events) <= {e["event_ticker"] for e in allev["events"]}
    assert not any(e["event_ticker"].startswith("KXMVE") for e in allev["events"])
    status = await rest.get("/exchange/status")
    assert status["exchange_active"] is True and status["exchange_index_statuses"]
    cutoff = await rest.get("/historical/cutoff")
    assert set(cutoff) == {"market_settled_ts", "trades_created_ts", "orders_updated_ts",
                           "market_positions_last_updated_ts"}


async def test_rate_limit_429() -> None:
    async with Simulator(markets=1, rate=0, rest_rate_limit=3, rest_auth="off") as sim, \
            httpx.AsyncClient(base_url=sim.rest_url) as client:
        codes = [(await client.get("/exchange/status")).status_code for _ in range(10)]
        assert codes[:3] == [200, 200, 200] and 429 in codes
        r = await client.get("/exchange/status")
        if r.status_code == 429:
            assert r.json() == {"error": "too many requests"}
