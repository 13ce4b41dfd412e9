"""A market ticker the database cannot store (NUL) in the market-set file blocks neither its session nor the next
ones on the same data folder (issue 11, item 8): it is dropped from the session row with a warning naming it,
the other markets are recorded, nothing is left in the spill."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kalshi_ingest.config import load_config
from kalshi_ingest.session import run_recording_session
from kalshi_ingest.settings import Settings
from kalshi_ws.simulator import Simulator

pytestmark = pytest.mark.timeout(180)


async def test_nul_ticker_from_the_config_file_blocks_no_session(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path],
        caplog: pytest.LogCaptureFixture) -> None:
    url = ingest_env["DATABASE_URL"]
    path = write_config("market_sets:\n  sim:\n"
                        f"    tickers: [{', '.join(simulator.tickers)}, \"BAD\\0TICKER\"]\n"
                        "    channels: [trade]\n")
    market_set = load_config(path).get("sim")
    assert "BAD\x00TICKER" in market_set.tickers
    caplog.set_level(logging.WARNING)
    first = await run_recording_session(Settings(), market_set, url, duration=2)
    assert "BAD\\x00TICKER" in caplog.text  # the warning names it
    second = await run_recording_session(Settings(), market_set, url, duration=2)
    with psycopg.connect(url) as conn:
        sessions = dict(conn.execute("select session_id::text, markets from kalshi.sessions").fetchall())
        trades = conn.execute("select count(*) from kalshi.trades where session_id = %s",
                              (second.session_id,)).fetchone()
    assert set(sessions) == {first.session_id, second.session_id}, "a session row is missing"
    assert sessions[second.session_id] == list(simulator.tickers)
    assert trades is not None and trades[0] > 0
    assert first.rows_spilled == 0 and second.rows_spilled == 0, "a poison value was handled as an outage"
    spill = Path(ingest_env["KALSHI_INGEST_DATA_DIR"]) / "spill"
    assert not [p for p in spill.rglob("*") if p.is_file()], "nothing may be left in the spill"
