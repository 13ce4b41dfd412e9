"""prefect.yaml end to end: a Prefect server on loopback, `prefect deploy --all`, a triggered run picked up
by `prefect worker start --run-once` (a process worker), and the rows found in PostgreSQL.

The flow run happens in the worker's subprocess, exactly as in production; it reaches the simulator (run
here) through the environment the worker passes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from kalshi_ws.simulator import Simulator

from .prefect_e2e import POOL, api_get, cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]



async def test_deploy_all_then_a_process_worker_records_into_postgres(
        prefect_api: dict[str, str], db_url: str, tmp_path: Path) -> None:
    async with Simulator(seed=3, rate=150.0, data_dir=tmp_path / "sim") as sim:
        env = {**prefect_api, "KALSHI_ENV": sim.base_url, "KALSHI_API_KEY_ID": sim.key_id,
               "KALSHI_PRIVATE_KEY_PATH": str(sim.private_key_path), "DATABASE_URL": db_url,
               "KALSHI_INGEST_DATA_DIR": str(tmp_path / "data")}
        await cli(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
        deployed = await cli(env, "--no-prompt", "deploy", "--all")
        assert "ingest-market-set/demo" in deployed and "ingest-market-set/adhoc" in deployed

        demo = await api_get(env, "/deployments/name/ingest-market-set/demo")
        assert demo["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        assert demo["global_concurrency_limit"]["limit"] == 3 and "market-set:demo" in demo["tags"]
        # The same deployment on every worker host: the flow comes from the installed package, no pull step
        # ties it to the folder it was deployed from.
        assert demo["pull_steps"] == [] and demo["entrypoint"] == "kalshi_flows.ingest:ingest_market_set"

        started = await cli(env, "deployment", "run", "ingest-market-set/adhoc",
                             "--param", "market_set=demo", "--param", "duration_seconds=4")
        run_id = next(line.split()[-1] for line in started.splitlines() if "UUID" in line)
        await cli(env, "worker", "start", "--pool", POOL, "--type", "process", "--run-once", timeout=240)

        run = await api_get(env, f"/flow_runs/{run_id}")
        assert run["state"]["name"] == "Completed", run["state"]

    with psycopg.connect(db_url) as conn:
        sessions: Any = conn.execute("select status, flow_run_id from kalshi.sessions where market_set = 'demo'").fetchall()
        deltas = conn.execute("select count(*) from kalshi.orderbook_deltas").fetchone()
        summaries = conn.execute("select count(*) from kalshi.depth_summaries").fetchone()
    assert sessions == [("completed", run_id)]
    assert deltas is not None and deltas[0] > 0
    assert summaries is not None and summaries[0] > 0
