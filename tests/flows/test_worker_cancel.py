"""`prefect flow-run cancel` of a run in a process worker's subprocess, exactly as in production: the run ends
**Cancelled** (no "Crash detected!"), after the session was flushed and closed as ``cancelled``, with its session
artifact and the ``kalshi.session.cancelled`` event; the project's log lines from that subprocess are among the
run's logs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from kalshi_ws.simulator import Simulator

from .prefect_e2e import PREFECT, ROOT, cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

POOL = "kalshi-cancel-test"


def _query(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return None if row is None else (row[0] if len(row) == 1 else row)



async def test_flow_run_cancel_through_a_process_worker_ends_cancelled(
        prefect_api: dict[str, str], db_url: str, tmp_path: Path) -> None:
    async with Simulator(seed=3, rate=150.0, data_dir=tmp_path / "sim") as sim:
        config = tmp_path / "market_sets.yaml"
        config.write_text("market_sets:\n  sim:\n"
                          f"    series: [{', '.join(sim.series)}]\n"
                          "    channels: [orderbook_delta, ticker, trade]\n"
                          "    depth_bucket_seconds: 2\n")
        env = {**prefect_api, "KALSHI_ENV": sim.base_url, "KALSHI_API_KEY_ID": sim.key_id,
               "KALSHI_PRIVATE_KEY_PATH": str(sim.private_key_path), "DATABASE_URL": db_url,
               "KALSHI_INGEST_DATA_DIR": str(tmp_path / "data"), "KALSHI_INGEST_CONFIG": str(config)}
        await cli(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
        await cli(env, "--no-prompt", "deploy", "--name", "adhoc", "--pool", POOL)
        started = await cli(env, "deployment", "run", "ingest-market-set/adhoc",
                             "--param", "market_set=sim", "--param", "duration_seconds=120")
        run_id = next(line.split()[-1] for line in started.splitlines() if "UUID" in line)
        worker = await asyncio.create_subprocess_exec(
            PREFECT, "worker", "start", "--pool", POOL, "--type", "process", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 150
            while not await asyncio.to_thread(_query, db_url, "select count(*) from kalshi.orderbook_deltas"):
                assert worker.returncode is None and loop.time() < deadline, "nothing recorded"
                await asyncio.sleep(0.3)
            await cli(env, "flow-run", "cancel", run_id)
            while "state_type=StateType.CANCELLED" not in (inspected := await cli(env, "flow-run", "inspect", run_id)):
                assert "CRASHED" not in inspected and "FAILED" not in inspected, inspected
                assert loop.time() < deadline + 60, inspected
                await asyncio.sleep(1)
        finally:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), 30)

    status, message = _query(db_url, "select status, status_message from kalshi.sessions")
    assert status == "cancelled" and "SIGTERM" in message and "data flushed" in message
    logs = await cli(env, "flow-run", "logs", run_id)
    assert "Crash detected" not in logs, logs
    assert "SIGTERM: ending the session" in logs, logs  # kalshi_ingest.session, from the worker's subprocess
    artifacts = await cli(env, "artifact", "ls")
    assert "session-sim" in artifacts and "depth-sim" in artifacts, artifacts
    async with httpx.AsyncClient(base_url=prefect_api["PREFECT_API_URL"]) as client:
        for _ in range(100):  # events are stored asynchronously
            found = (await client.post("/events/filter", json={"filter": {
                "event": {"name": ["kalshi.session.cancelled"]},
                "related": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 10})).json()
            if found["events"]:
                break
            await asyncio.sleep(0.2)
    assert found["events"], found
