"""Clients written the way Kalshi's own starter code and SDK are written work unchanged, pointed at the simulator."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
import requests
import websockets
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from kalshi_ws.simulator import Simulator


class StarterClient:
    """Shaped like ``clients.py`` of github.com/Kalshi/kalshi-starter-code-python (requests + websockets)."""

    def __init__(self, key_id: str, private_key_pem: bytes, http_base: str, ws_base: str) -> None:
        self.key_id = key_id
        self.private_key = serialization.load_pem_private_key(private_key_pem, password=None)
        self.host = http_base
        self.ws_url = ws_base + "/trade-api/ws/v2"
        self.markets_url = "/trade-api/v2/markets"

    def sign_pss_text(self, text: str) -> str:
        message = text.encode("utf-8")
        signature = self.private_key.sign(  # type: ignore[union-attr]
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )
        return base64.b64encode(signature).decode("utf-8")

    def request_headers(self, method: str, path: str) -> dict[str, Any]:
        current_time_milliseconds = int(time.time() * 1000)
        timestamp_str = str(current_time_milliseconds)
        path_parts = path.split("?")
        msg_string = timestamp_str + method + path_parts[0]
        return {
            "Content-Type": "application/json",
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-SIGNATURE": self.sign_pss_text(msg_string),
            "KALSHI-ACCESS-TIMESTAMP": timestamp_str,
        }

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = requests.get(self.host + path, headers=self.request_headers("GET", path), params=params or {},
                                timeout=10)
        response.raise_for_status()
        return response.json()

    async def run_ws(self, ticker: str, n: int) -> list[dict[str, Any]]:
        auth_headers = self.request_headers("GET", "/trade-api/ws/v2")
        received: list[dict[str, Any]] = []
        async with websockets.connect(self.ws_url, additional_headers=auth_headers) as websocket:
            await websocket.send(json.dumps({"id": 1, "cmd": "subscribe",
                                             "params": {"channels": ["orderbook_delta"], "market_ticker": ticker}}))
            async for message in websocket:
                received.append(json.loads(message))
                if len(received) >= n:
                    break
        return received


async def test_starter_code_style_client() -> None:
    async with Simulator(markets=3, seed=2, rate=400) as sim:
        await sim.wait_for(lambda: len(sim.trade_tape()) >= 5)
        client = StarterClient(sim.key_id, sim.private_key_path.read_bytes(), sim.base_url,
                               sim.base_url.replace("http://", "ws://"))
        frames = await asyncio.wait_for(client.run_ws(sim.tickers[0], 20), 20)
        assert frames[0] == {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}
        assert frames[1]["type"] == "orderbook_snapshot" and frames[1]["seq"] == 1
        assert all(f["type"] == "orderbook_delta" for f in frames[2:])
        markets = await asyncio.to_thread(client.get, client.markets_url, {"limit": 2})
        assert len(markets["markets"]) == 2
        book = await asyncio.to_thread(client.get, f"/trade-api/v2/markets/{sim.tickers[1]}/orderbook")
        assert set(book["orderbook_fp"]) == {"yes_dollars", "no_dollars"}
        trades = await asyncio.to_thread(client.get, "/trade-api/v2/markets/trades",
                                         {"ticker": sim.tickers[0], "limit": 5})
        assert len(trades["trades"]) == 5


async def test_official_kalshi_sdk() -> None:
    """Kalshi's generated SDK (kalshi-python-sync on PyPI): its signing and URL building against the simulator.

    The only release on the package index here (3.2.0) still parses the pre-2026 integer-cent shapes, so
    market-data endpoints are called without its model parsing; exchange status parses fully.
    """
    k = pytest.importorskip("kalshi_python_sync")
    async with Simulator(markets=2, seed=4, rate=0) as sim:
        sim.step(500)
        cfg = k.Configuration(host=sim.rest_url)
        cfg.api_key_id = sim.key_id
        cfg.private_key_pem = sim.private_key_path.read_text()

        def run() -> tuple[Any, ...]:
            client = k.KalshiClient(cfg)
            status = client.get_exchange_status()
            book = client.get_market_orderbook_without_preload_content(sim.tickers[0])
            trades = client.get_trades_without_preload_content(ticker=sim.tickers[0], limit=3)
            markets = client.get_markets_without_preload_content(limit=1)
            return status, book.status, json.loads(book.data), trades.status, json.loads(trades.data), markets.status

        status, book_status, book, trades_status, trades, markets_status = await asyncio.to_thread(run)
        assert status.exchange_active is True
        assert (book_status, trades_status, markets_status) == (200, 200, 200)
        assert book["orderbook_fp"] == sim.book(sim.tickers[0])
        assert [t["trade_id"] for t in trades["trades"]] == [t["trade_id"] for t in sim.trade_tape(sim.tickers[0])[::-1][:3]]
