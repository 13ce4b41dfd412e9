"""Fills (private channel) under faults. Ground truth: the simulated account's orders; the contracts stored as
fills for each order during the window must equal how much the exchange filled it, exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kalshi_ws.simulator import Simulator

from .harness import check_fills, check_trades, framed_session, market_set_for, random_plan

pytestmark = pytest.mark.timeout(120)

CHANNELS = ["orderbook_delta", "ticker", "trade", "fill"]


async def test_fills_complete_under_sequence_faults_and_garbage(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    plan = random_plan(29, ["drop", "duplicate", "reorder", "malformed", "unknown_type", "stall"], rate=1.5,
                       channel="orderbook_delta")
    _summary, window = await framed_session(sim, db_url, tmp_path / "data", duration=7, plan=plan,
                                            market_set=market_set_for(sim, channels=CHANNELS))
    report = check_trades(db_url, sim, window)
    check_fills(db_url, sim, window, report=report)
    report.assert_clean()
    assert report.fills_expected > 0, "the account was never filled: the check proved nothing"


async def test_fills_complete_across_reconnects(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    async def plan(s: Simulator) -> None:
        for _ in range(3):
            await asyncio.sleep(1.2)
            s.inject("close", mode="abort")

    _summary, window = await framed_session(sim, db_url, tmp_path / "data", duration=7, plan=plan,
                                            market_set=market_set_for(sim, channels=CHANNELS))
    report = check_trades(db_url, sim, window)
    assert not report.problems, report.problems
    check_fills(db_url, sim, window, report=report)
    report.assert_clean()
    assert report.fills_expected > 0, "the account was never filled: the check proved nothing"
