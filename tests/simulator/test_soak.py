"""Long randomized fault schedule against reconnecting raw clients (run by hand: pytest -m soak)."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kalshi_ws.simulator import Simulator

from .conftest import Raw, connect

pytestmark = pytest.mark.soak


async def _client(sim: Simulator, stop: asyncio.Event, sessions: list[int]) -> None:
    while not stop.is_set():
        try:
            raw = Raw(await connect(sim))
        except (InvalidStatus, OSError):
            await asyncio.sleep(0.05)
            continue
        sessions.append(1)
        try:
            await raw.send("subscribe", {"channels": ["orderbook_delta", "trade"], "market_tickers": sim.tickers})
            await raw.send("subscribe", {"channels": ["ticker", "market_lifecycle_v2", "fill"]})
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await raw.drain_until(lambda: False, timeout=0.5)
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await raw.close()


async def test_random_fault_soak() -> None:
    seconds = float(os.environ.get("SIM_SOAK_SECONDS", "20"))
    async with Simulator(markets=6, seed=99, rate=1000, heartbeat_interval=0.5) as sim:
        stop = asyncio.Event()
        sessions: list[int] = []
        clients = [asyncio.create_task(_client(sim, stop, sessions)) for _ in range(3)]
        sim.start_random_faults(5.0, seed=3, kinds=["drop", "duplicate", "reorder", "numbers", "malformed",
                                                   "unknown_type", "legacy", "stall", "close", "sub_error",
                                                   "zero_delta", "extra_key"])
        await asyncio.sleep(seconds)  # a soak runs for a fixed wall time by design
        sim.stop_random_faults()
        stop.set()
        await asyncio.gather(*clients)
        assert sim.errors == []
        assert len(sim.faults_injected) > seconds
        assert len(sessions) > 3  # the close faults forced reconnects
