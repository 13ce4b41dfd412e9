"""Honest flow-run states and what a person finds in the Prefect UI, on a real Prefect test server.

A flow run is stopped the way production stops it: ``kalshi-ingest run`` in its own process receives SIGTERM
(what a Prefect worker sends after ``prefect flow-run cancel``, after moving the run to Cancelling; and what a
service manager or container runtime sends). The run must end **Cancelled** (never Crashed), after the session was
flushed and closed as ``cancelled``, with its artifacts, the ``kalshi.session.cancelled`` event and the project's
log lines among the run's logs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from kalshi_ws.simulator import Simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.usefixtures("prefect_server")]
ROOT = Path(__file__).resolve().parents[2]


def _query(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return None if row is None else (row[0] if len(row) == 1 else row)


def _config(simulator: Simulator) -> str:
    return ("market_sets:\n"
            "  sim:\n"
            f"    series: [{', '.join(simulator.series)}]\n"
            "    channels: [orderbook_delta, ticker, trade, market_lifecycle_v2]\n"
            "    session_seconds: 30\n"
            "    depth_bucket_seconds: 2\n"
            "    depth_distances: ['0.02', '0.05', '0.10']\n")


async def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else await asyncio.to_thread(predicate)
        if value:
            return value
        assert loop.time() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("how", ["flow-run-cancel", "sigterm"])
async def test_a_stopped_run_ends_cancelled_with_its_artifacts_event_and_logs(
        how: str, simulator: Simulator, db_url: str, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Cancelling

    config = tmp_path / "market_sets.yaml"
    config.write_text(_config(simulator))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "KALSHI_"))}
    env.update(KALSHI_ENV=simulator.base_url, KALSHI_API_KEY_ID=simulator.key_id,
               KALSHI_PRIVATE_KEY_PATH=str(simulator.private_key_path), DATABASE_URL=db_url,
               KALSHI_INGEST_DATA_DIR=str(tmp_path / "data"), KALSHI_INGEST_CONFIG=str(config),
               PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_HOME=str(tmp_path / "prefect-home"),
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kalshi_ingest.cli", "run", "sim", "--duration", "120", cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        def recording() -> Any:
            assert proc.returncode is None, "the run ended before it was stopped"
            rows = _query(db_url, "select count(*) from kalshi.orderbook_deltas") or 0
            return rows and _query(db_url, "select flow_run_id from kalshi.sessions")

        run_id = UUID(await _wait(recording, 120, "rows recorded"))
        await asyncio.sleep(1.5)  # a progress update (every second for this length) reaches the artifact
        if how == "flow-run-cancel":  # what the worker does: the run is Cancelling, then its process gets SIGTERM
            async with get_client() as client:
                await client.set_flow_run_state(run_id, Cancelling(message="cancelled from the test"), force=True)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 143, text

    status, message = _query(db_url, "select status, status_message from kalshi.sessions")
    assert status == "cancelled" and "data flushed" in message

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        assert run.state is not None and run.state.is_cancelled(), (run.state, text)
        assert "session cancelled" in (run.state.message or "")
        history = [s.type.value for s in await client.read_flow_run_states(run_id)]
        assert "CRASHED" not in history and "FAILED" not in history, history

        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        artifacts = {a.key: a for a in found if a.key}
        assert "Session `sim`: **cancelled**" in str(artifacts["session-sim"].data)
        assert artifacts["depth-sim"].type == "table" and artifacts["report-sim"].type == "markdown"
        assert "rows written" in (artifacts["session-progress-sim"].description or "")

        async def cancelled_event() -> Any:
            page = await client.read_events(EventFilter(
                event=EventNameFilter(name=["kalshi.session.cancelled"]),
                related=EventRelatedFilter(id=[f"prefect.flow-run.{run_id}"])), limit=50)  # the default (100) is refused
            return page.events

        events = await _wait(cancelled_event, 30, "kalshi.session.cancelled event")
        assert events[0].resource.id == "kalshi.market-set.sim"
        assert events[0].payload["status"] == "cancelled"

        async def logs() -> Any:
            found = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            return [(log.name, log.level, log.message) for log in found if log.name.startswith("kalshi_")]

        ours = await _wait(logs, 30, "the project's log lines in the run's logs")
        every = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        assert not [log.message for log in every if "Crash detected" in log.message]
        assert any(name == "kalshi_ingest.session" and "SIGTERM" in msg for name, _, msg in ours), ours
        assert any(level == 20 and name == "kalshi_ingest.session" and "session" in msg for name, level, msg in ours)
