"""run_recording_session without Prefect: continuity between sessions and REST backfill after a reconnect.

The simulator's trade tape is the ground truth: every trade it printed while a session was recording, or
between two sessions, must be in PostgreSQL, whether it came over the WebSocket or from the REST backfill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kalshi_ingest.config import MarketSet, load_config
from kalshi_ingest.session import run_recording_session
from kalshi_ingest.settings import Settings
from kalshi_ws.simulator import Simulator

pytestmark = pytest.mark.timeout(180)


def _market_set(simulator: Simulator, write_config: Callable[[str], Path]) -> MarketSet:
    path = write_config("market_sets:\n  sim:\n"
                        f"    tickers: [{', '.join(simulator.tickers)}]\n"
                        "    channels: [orderbook_delta, ticker, trade]\n")
    return load_config(path).get("sim")


def _stored(url: str) -> dict[str, tuple[str, int]]:
    """trade_id -> (source, exchange time in ms)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("select trade_id, source, (extract(epoch from exchange_ts) * 1000)::bigint "
                            "from kalshi.trades").fetchall()
    return {trade_id: (source, ts_ms) for trade_id, source, ts_ms in rows}


def _tape(simulator: Simulator, start_ms: int, end_ms: int) -> set[str]:
    return {t["trade_id"] for t in simulator.trade_tape() if start_ms <= t["ts_ms"] <= end_ms}


async def test_next_session_backfills_the_trades_printed_between_sessions(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    url = ingest_env["DATABASE_URL"]
    market_set = _market_set(simulator, write_config)

    first = await run_recording_session(Settings(), market_set, url, duration=2)
    assert first.status == "completed"
    printed = len(simulator.trade_tape())
    await simulator.wait_for(lambda: len(simulator.trade_tape()) >= printed + 10, timeout=60)
    second = await run_recording_session(Settings(), market_set, url, duration=2)

    assert second.status == "completed"
    assert second.rest_backfilled > 0
    stored = _stored(url)
    ws_times = sorted(ts for source, ts in stored.values() if source == "ws")
    between = _tape(simulator, ws_times[0], ws_times[-1])  # from the first to the last trade seen live
    assert between, "the simulator printed no trade"
    assert between <= set(stored), f"{len(between - set(stored))} trades missing"
    assert any(stored[t][0] == "rest" for t in between)


async def test_reconnect_backfills_trades_missed_while_disconnected(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    url = ingest_env["DATABASE_URL"]
    market_set = _market_set(simulator, write_config)
    session = asyncio.ensure_future(run_recording_session(Settings(), market_set, url, duration=6))
    await simulator.wait_for(lambda: bool(simulator.connections) and len(simulator.trade_tape()) > 5, timeout=30)

    simulator.inject("close", mode="abort")
    summary = await session

    assert summary.reconnects >= 1
    assert summary.rest_backfilled > 0
    assert summary.status == "completed", summary.status_message
    stored = _stored(url)
    ws_times = sorted(ts for source, ts in stored.values() if source == "ws")
    during = _tape(simulator, ws_times[0], ws_times[-1])
    assert during <= set(stored), f"{len(during - set(stored))} trades missing after the reconnect"
    with psycopg.connect(url) as conn:
        kinds = {kind for (kind,) in conn.execute("select kind from kalshi.gap_ledger").fetchall()}
    assert "disconnect" in kinds


async def test_a_session_left_running_by_a_killed_process_is_closed_as_failed(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    url = ingest_env["DATABASE_URL"]
    market_set = _market_set(simulator, write_config)
    with psycopg.connect(url) as conn:  # what a SIGKILLed recorder leaves behind, and a live session elsewhere
        conn.execute("insert into kalshi.sessions (session_id, market_set, environment, started_at, planned_start, "
                     "planned_end, updated_at) values "
                     "(gen_random_uuid(), 'sim', 'test', now() - interval '2 hours', now() - interval '2 hours', "
                     "now() - interval '1 hour', now() - interval '90 minutes'), "
                     "(gen_random_uuid(), 'sim', 'test', now(), now(), now() + interval '1 hour', now())")

    await run_recording_session(Settings(), market_set, url, duration=1)

    with psycopg.connect(url) as conn:
        rows = conn.execute("select status, status_message from kalshi.sessions where environment = 'test' "
                            "order by started_at").fetchall()
    assert rows[0][0] == "failed" and rows[0][1].startswith("abandoned")
    assert rows[1] == ("running", None)
