"""prefect.yaml end to end: a Prefect server on loopback, `prefect deploy --all`, a triggered run picked up
by `prefect worker start --run-once` (a process worker), and the rows found in PostgreSQL.

The flow run happens in the worker's subprocess, exactly as in production; it reaches the simulator (run
here) through the environment the worker passes on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from kalshi_ws.simulator import Simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
POOL = "kalshi-process"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    proc = await asyncio.create_subprocess_exec(PREFECT, *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"prefect {' '.join(args)} exited {proc.returncode}:\n{text}"
    return text


@pytest.fixture
async def prefect_api(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
               PWD=str(ROOT))
    server = await asyncio.create_subprocess_exec(
        PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(1200):
                if server.returncode is not None:
                    raise RuntimeError(f"prefect server exited with {server.returncode}")
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/api/health", timeout=2)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise TimeoutError("prefect server did not become healthy within 120 s")
        yield env
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)


async def test_deploy_all_then_a_process_worker_records_into_postgres(
        prefect_api: dict[str, str], db_url: str, tmp_path: Path) -> None:
    async with Simulator(seed=3, rate=150.0, data_dir=tmp_path / "sim") as sim:
        env = {**prefect_api, "KALSHI_ENV": sim.base_url, "KALSHI_API_KEY_ID": sim.key_id,
               "KALSHI_PRIVATE_KEY_PATH": str(sim.private_key_path), "DATABASE_URL": db_url,
               "KALSHI_INGEST_DATA_DIR": str(tmp_path / "data")}
        await _cli(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
        deployed = await _cli(env, "--no-prompt", "deploy", "--all")
        assert "ingest-market-set/demo" in deployed and "ingest-market-set/adhoc" in deployed

        inspected = await _cli(env, "deployment", "inspect", "ingest-market-set/demo")
        assert "CANCEL_NEW" in inspected and "market-set:demo" in inspected
        # The same deployment on every worker host: the flow comes from the installed package, no pull step
        # ties it to the folder it was deployed from.
        assert "'pull_steps': []" in inspected and "'kalshi_flows.ingest:ingest_market_set'" in inspected

        started = await _cli(env, "deployment", "run", "ingest-market-set/adhoc",
                             "--param", "market_set=demo", "--param", "duration_seconds=4")
        run_id = next(line.split()[-1] for line in started.splitlines() if "UUID" in line)
        await _cli(env, "worker", "start", "--pool", POOL, "--type", "process", "--run-once", timeout=240)

        state = await _cli(env, "flow-run", "inspect", run_id)
        assert "state_name='Completed'" in state, state

    with psycopg.connect(db_url) as conn:
        sessions: Any = conn.execute("select status, flow_run_id from kalshi.sessions where market_set = 'demo'").fetchall()
        deltas = conn.execute("select count(*) from kalshi.orderbook_deltas").fetchone()
        summaries = conn.execute("select count(*) from kalshi.depth_summaries").fetchone()
    assert sessions == [("completed", run_id)]
    assert deltas is not None and deltas[0] > 0
    assert summaries is not None and summaries[0] > 0
