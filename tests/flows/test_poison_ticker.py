"""A market ticker the database cannot store (NUL) blocks no session (issue 11, item 2): from the market-set file it
is a configuration error naming the key; from REST (a series' markets) it is dropped with a warning naming it, the
other markets are recorded, and nothing is left in the spill for later sessions to trip over."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from kalshi_ingest.config import ConfigError, MarketSet, load_config
from kalshi_ingest.session import run_recording_session
from kalshi_ingest.settings import Settings
from kalshi_ws.simulator import Simulator

pytestmark = pytest.mark.timeout(180)


def test_nul_ticker_in_the_market_set_file_is_a_configuration_error(
        simulator: Simulator, write_config: Callable[[str], Path]) -> None:
    path = write_config("market_sets:\n  sim:\n"
                        f"    tickers: [{', '.join(simulator.tickers)}, \"BAD\\0TICKER\"]\n"
                        "    channels: [trade]\n")
    with pytest.raises(ConfigError, match=r"market set 'sim': key 'tickers'.*is not a ticker"):
        load_config(path)


async def test_nul_ticker_from_rest_blocks_no_session(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    poison = "KXSIMP-26NOV00-BAD\x00X"
    async with Simulator(markets=["KXSIMP-26NOV00-T1", "KXSIMP-26NOV00-T2", poison], seed=3, rate=150.0,
                         data_dir=tmp_path / "sim") as sim:
        for key, value in {"KALSHI_ENV": sim.base_url, "KALSHI_API_KEY_ID": sim.key_id,
                           "KALSHI_PRIVATE_KEY_PATH": str(sim.private_key_path),
                           "KALSHI_INGEST_DATA_DIR": str(tmp_path / "data")}.items():
            monkeypatch.setenv(key, value)
        market_set = MarketSet(name="sim", series=["KXSIMP"], channels=["orderbook_delta", "trade"])
        caplog.set_level(logging.WARNING)
        first = await run_recording_session(Settings(), market_set, db_url, duration=2)
        assert "BAD\\x00X" in caplog.text  # the warning names it
        second = await run_recording_session(Settings(), market_set, db_url, duration=2)
    with psycopg.connect(db_url) as conn:
        sessions = dict(conn.execute("select session_id::text, markets from kalshi.sessions").fetchall())
        trades = conn.execute("select count(*) from kalshi.trades where session_id = %s",
                              (second.session_id,)).fetchone()
    assert set(sessions) == {first.session_id, second.session_id}, "a session row is missing"
    assert poison not in sessions[second.session_id]
    assert {"KXSIMP-26NOV00-T1", "KXSIMP-26NOV00-T2"} <= set(sessions[second.session_id])
    assert trades is not None and trades[0] > 0
    assert first.status == "completed" and second.status == "completed", (first.status_message,
                                                                           second.status_message)
    assert first.rows_spilled == 0 and second.rows_spilled == 0, "a poison value was handled as an outage"
    spill = tmp_path / "data" / "spill"
    assert not list(spill.rglob("*.spill")), "nothing may be left in the spill"
