"""`kalshi-ingest run` in its own process, stopped with SIGTERM (a service manager or container stopping):
the session is flushed and closed as `cancelled`, and the process exits 143."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kalshi_ws.simulator import Simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]


def _rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from kalshi.orderbook_deltas").fetchone()
    return int(row[0]) if row else 0


async def test_sigterm_flushes_and_closes_the_session_as_cancelled(db_url: str, tmp_path: Path) -> None:
    async with Simulator(seed=5, rate=150.0, data_dir=tmp_path / "sim") as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "KALSHI_"))}
        env.update(KALSHI_ENV=sim.base_url, KALSHI_API_KEY_ID=sim.key_id,
                   KALSHI_PRIVATE_KEY_PATH=str(sim.private_key_path), DATABASE_URL=db_url,
                   KALSHI_INGEST_DATA_DIR=str(tmp_path / "data"), PREFECT_LOGGING_LEVEL="WARNING")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kalshi_ingest.cli", "run", "demo", "--duration", "120", cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while await asyncio.to_thread(_rows, db_url) == 0:
            assert proc.returncode is None, (await proc.stdout.read()).decode() if proc.stdout else ""
            assert loop.time() < deadline, "the run stored nothing within 120 s"
            await asyncio.sleep(0.2)

        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 143, out.decode()
    with psycopg.connect(db_url) as conn:
        session: Any = conn.execute("select status, status_message, ended_at from kalshi.sessions").fetchone()
        last: Any = conn.execute("select max(received_at) from kalshi.orderbook_deltas").fetchone()
    status, message, ended = session
    assert status == "cancelled" and "data flushed" in message
    assert ended is not None and last[0] <= ended

