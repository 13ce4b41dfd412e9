"""KALSHI_SEQ_SCOPE end to end: a recording session against an exchange that numbers seq per connection.

With the matching setting the session records cleanly; with the other one it never guesses: the gap ledger gets a
``seq_scope`` row and the session's status message names the setting to change (spec 12.4, both readings).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from kalshi_ingest.session import run_recording_session
from kalshi_ws.simulator import Simulator

from .harness import market_set_for, settings_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


@pytest.mark.parametrize("setting", ["sid", "connection"])
async def test_a_session_says_when_the_exchange_numbers_seq_otherwise(setting: str, db_url: str,
                                                                     tmp_path: Path) -> None:
    async with Simulator(markets=3, seed=5, rate=300.0, data_dir=tmp_path / "sim", seq_scope="connection") as sim:
        settings = settings_for(sim, tmp_path / "data").model_copy(update={"kalshi_seq_scope": setting})
        summary = await run_recording_session(settings, market_set_for(sim), db_url, duration=4.0,
                                              progress_interval=3600)
    with psycopg.connect(db_url) as conn:
        scope_rows = conn.execute("select detail->>'seq_scope', sid, channel from kalshi.gap_ledger "
                                  "where kind = 'seq_scope'").fetchall()
        deltas = conn.execute("select count(*) from kalshi.orderbook_deltas").fetchone()
    assert deltas is not None and deltas[0] > 0
    if setting == "connection":
        assert scope_rows == []
        assert "KALSHI_SEQ_SCOPE" not in summary.status_message
        assert summary.gaps == 0, summary.status_message
    else:
        assert scope_rows and {row[0] for row in scope_rows} == {"sid"}
        assert summary.status == "degraded"
        assert "set KALSHI_SEQ_SCOPE=connection" in summary.status_message
