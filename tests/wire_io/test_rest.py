"""KalshiRestClient against a real local HTTP server: signing, pagination, retries, error shapes."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from kalshi_ws import messages as m
from kalshi_ws.rest import KalshiRestClient, RestError


def _market(ticker: str, event: str = "KXCPI-26NOV", **extra: Any) -> dict[str, Any]:
    return {"ticker": ticker, "event_ticker": event, "status": "active", "yes_sub_title": ticker,
            "open_time": "2026-11-01T14:00:00Z", "close_time": "2026-12-01T14:00:00Z",
            "last_price_dollars": "0.4150", "yes_bid_dollars": "0.4100", "yes_ask_dollars": "0.4300",
            "volume_fp": "1250.00", "open_interest_fp": "900.50", "price_level_structure": "linear_cent",
            "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
            "some_future_field": {"x": 1}, **extra}


def _trade(n: int, ts: str, ticker: str = "KXCPI-26NOV-T0.3") -> dict[str, Any]:
    return {"trade_id": f"tr-{n:03d}", "ticker": ticker, "count_fp": "75.25", "yes_price_dollars": "0.4300",
            "no_price_dollars": "0.5700", "taker_outcome_side": "yes", "taker_book_side": "bid",
            "taker_side": "yes", "created_time": ts, "is_block_trade": False}


async def test_every_request_is_signed_over_the_path_without_query(exchange: Any, keys: Any) -> None:
    exchange.routes["/trade-api/v2/markets/KXCPI-26NOV-T0.3"] = lambda req: (200, {"market": _market(
        "KXCPI-26NOV-T0.3", last_price_dollars="")})
    async with KalshiRestClient(exchange.rest_url, keys.signer) as rest:
        market = await rest.get_market("KXCPI-26NOV-T0.3")
        await rest.get_market("KXCPI-26NOV-T0.3")
    assert [r.signature_ok for r in exchange.rest_requests] == [True, True]
    assert exchange.rest_requests[0].headers["kalshi-access-key"] == keys.signer.key_id
    assert market.last_price_dollars is None  # "" means never traded
    assert market.yes_bid_dollars == Decimal("0.4100")
    assert market.price_ranges is not None and market.price_ranges[0].step == Decimal("0.0100")
    assert market.open_time == datetime(2026, 11, 1, 14, tzinfo=UTC)


async def test_markets_paginate_until_empty_cursor_and_dedupe(exchange: Any, keys: Any) -> None:
    pages = {
        None: ({"markets": [_market("A"), _market("B")], "cursor": "c1"}),
        "c1": ({"markets": [_market("B"), _market("C")], "cursor": "c2"}),  # B repeats across pages
        "c2": ({"markets": [_market("D")], "cursor": ""}),
    }

    def handler(req: Any) -> tuple[int, Any]:
        assert req.query["series_ticker"] == ["KXCPI"] and req.query["status"] == ["open"]
        return 200, pages[req.query.get("cursor", [None])[0]]

    exchange.routes["/trade-api/v2/markets"] = handler
    async with KalshiRestClient(exchange.rest_url, keys.signer) as rest:
        markets = await rest.get_markets(series_ticker="KXCPI", status="open")
    assert [m.ticker for m in markets] == ["A", "B", "C", "D"]
    assert len(exchange.rest_requests) == 3 and all(r.signature_ok for r in exchange.rest_requests)


@pytest.mark.parametrize("last_page", [{"trades": []}, {"trades": [], "cursor": None}])
async def test_trades_are_sorted_by_time_then_id_across_pages(exchange: Any, keys: Any,
                                                             last_page: dict[str, Any]) -> None:
    pages = {
        None: {"trades": [_trade(3, "2026-11-20T14:30:02Z"), _trade(2, "2026-11-20T14:30:01.250999Z")],
               "cursor": "p2"},
        "p2": {"trades": [_trade(1, "2026-11-20T14:30:01.250Z"), _trade(2, "2026-11-20T14:30:01.250999Z")],
               "cursor": "p3"},
        "p3": last_page,
    }

    def handler(req: Any) -> tuple[int, Any]:
        assert req.query["min_ts"] == ["1795184000"] and req.query["ticker"] == ["KXCPI-26NOV-T0.3"]
        return 200, pages[req.query.get("cursor", [None])[0]]

    exchange.routes["/trade-api/v2/markets/trades"] = handler
    async with KalshiRestClient(exchange.rest_url, keys.signer) as rest:
        trades = await rest.get_trades("KXCPI-26NOV-T0.3", min_ts=1795184000)
    assert [t.trade_id for t in trades] == ["tr-001", "tr-002", "tr-003"]
    # the WebSocket ``trade`` payload: REST's ``ticker`` and ``created_time`` mapped, the time exact to the
    # millisecond as the WS ``ts_ms`` is (a sub-millisecond part dropped, never rounded up)
    assert trades[1] == m.TradePayload(
        trade_id="tr-002", market_ticker="KXCPI-26NOV-T0.3", yes_price_dollars=Decimal("0.4300"),
        no_price_dollars=Decimal("0.5700"), count_fp=Decimal("75.25"), taker_outcome_side="yes",
        taker_book_side="bid", taker_side="yes", is_block_trade=False, ts_ms=1795185001250)
    assert [t.ts_ms for t in trades] == [1795185001250, 1795185001250, 1795185002000]


async def test_429_honours_retry_after_and_5xx_is_retried(exchange: Any, keys: Any) -> None:
    answers = iter([
        (429, {"error": "too many requests"}, {"Retry-After": "1"}),
        (503, {"code": "unavailable", "message": "try later"}),
        (200, {"orderbook_fp": {"yes_dollars": [["0.4100", "200.00"], ["0.3800", "1250.00"]],
                                "no_dollars": [["0.5700", "75.25"]]}}),
    ])
    exchange.routes["/trade-api/v2/markets/KX/orderbook"] = lambda req: next(answers)
    started = time.monotonic()
    async with KalshiRestClient(exchange.rest_url, keys.signer, backoff_initial=0.01) as rest:
        book = await rest.get_orderbook("KX")
    assert time.monotonic() - started >= 0.95  # waited as told by Retry-After
    assert len(exchange.rest_requests) == 3
    timestamps = [r.headers["kalshi-access-timestamp"] for r in exchange.rest_requests]
    assert timestamps[0] != timestamps[1]  # a retry is signed afresh
    assert book.yes_dollars == [(Decimal("0.3800"), Decimal("1250.00")), (Decimal("0.4100"), Decimal("200.00"))]
    assert book.no_dollars == [(Decimal("0.5700"), Decimal("75.25"))]


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"code": "not_found", "message": "market not found", "details": "KX"}, "not_found", "market not found"),
    ({"error": {"code": "authentication_error", "message": "authentication_error",
                "details": "rpc error: code = Unauthenticated desc = INCORRECT_API_KEY_SIGNATURE"}},
     "authentication_error", "authentication_error"),
    ("Forbidden\n", "", "Forbidden"),
])
async def test_error_bodies_of_both_shapes_become_rest_error(exchange: Any, keys: Any, body: Any, code: str,
                                                             message: str) -> None:
    exchange.routes["/trade-api/v2/markets/KX"] = lambda req: (404, body)
    async with KalshiRestClient(exchange.rest_url, keys.signer) as rest:
        with pytest.raises(RestError) as info:
            await rest.get_market("KX")
    assert (info.value.status, info.value.code, info.value.message) == (404, code, message)
    assert len(exchange.rest_requests) == 1  # 4xx other than 429 is not retried


async def test_retries_give_up_with_the_last_error(exchange: Any, keys: Any) -> None:
    exchange.routes["/trade-api/v2/exchange/status"] = lambda req: (500, {"code": "internal", "message": "boom"})
    async with KalshiRestClient(exchange.rest_url, keys.signer, max_retries=2, backoff_initial=0.01) as rest:
        with pytest.raises(RestError) as info:
            await rest.get_exchange_status()
    assert info.value.status == 500 and info.value.code == "internal"
    assert len(exchange.rest_requests) == 3


async def test_transport_errors_are_retried(keys: Any) -> None:
    async with KalshiRestClient("http://127.0.0.1:9/trade-api/v2", keys.signer, max_retries=1,
                                backoff_initial=0.01, timeout=2.0) as rest:
        with pytest.raises(RestError) as info:
            await rest.get_exchange_status()
    assert info.value.code == "transport_error" and rest.requests_sent == 2


async def test_events_status_and_resolve_markets(exchange: Any, keys: Any) -> None:
    exchange.routes["/trade-api/v2/exchange/status"] = lambda req: (200, {
        "exchange_active": True, "trading_active": False, "exchange_estimated_resume_time": None,
        "exchange_index_statuses": [{"exchange_index": 0, "description": "main", "exchange_active": True,
                                     "trading_active": False}]})
    exchange.routes["/trade-api/v2/events"] = lambda req: (200, {"events": [
        {"event_ticker": "KXCPI-26NOV", "series_ticker": "KXCPI", "title": "CPI",
         "markets": [_market("KXCPI-26NOV-T0.3"), _market("KXCPI-26NOV-T0.4")]}], "cursor": None})

    def markets(req: Any) -> tuple[int, Any]:
        if "event_ticker" in req.query:
            return 200, {"markets": [_market("KXCPI-26NOV-T0.3"), _market("KXCPI-26NOV-T0.4")]}
        return 200, {"markets": [_market("KXCPI-26DEC-T0.3", "KXCPI-26DEC"), _market("KXCPI-26NOV-T0.4")]}

    exchange.routes["/trade-api/v2/markets"] = markets
    async with KalshiRestClient(exchange.rest_url, keys.signer) as rest:
        status = await rest.get_exchange_status()
        events = await rest.get_events(series_ticker="KXCPI", status="open")
        tickers = await rest.resolve_markets(series=["KXCPI"], events=["KXCPI-26NOV"], tickers=["KXFED-X"])
    assert status.exchange_active and not status.trading_active
    assert status.exchange_index_statuses[0].description == "main"
    assert [m.ticker for m in events[0].markets] == ["KXCPI-26NOV-T0.3", "KXCPI-26NOV-T0.4"]
    assert exchange.rest_requests[1].query["with_nested_markets"] == ["true"]
    assert tickers == ["KXFED-X", "KXCPI-26NOV-T0.3", "KXCPI-26NOV-T0.4", "KXCPI-26DEC-T0.3"]


async def test_kalshi_response_shapes_with_mock_transport() -> None:
    """Shape-only check (no network): JSON numbers instead of strings and null lists are accepted."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/trade-api/v2/markets/KX/orderbook"
        assert request.url.params["depth"] == "5"
        return httpx.Response(200, json={"orderbook_fp": {"yes_dollars": [[0.41, 200]], "no_dollars": None}})

    async with KalshiRestClient("https://example.invalid", transport=httpx.MockTransport(handler)) as rest:
        book = await rest.get_orderbook("KX", depth=5)
    assert book.yes_dollars == [(Decimal("0.41"), Decimal("200"))] and book.no_dollars == []
