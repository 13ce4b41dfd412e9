"""The ingest flow end to end: Prefect test server + the simulator over sockets + real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kalshi_testing import wait_until

from kalshi_flows.ingest import ingest_market_set
from kalshi_ingest.config import load_config
from kalshi_ingest.session import run_recording_session
from kalshi_ingest.settings import Settings
from kalshi_ws.simulator import Simulator

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("prefect_server")]

SESSION_SECONDS = 6.0


def query(url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else (row[0] if len(row) == 1 else row)


def market_set_yaml(simulator: Simulator, *, extra: str = "", name: str = "sim") -> str:
    return (
        "market_sets:\n"
        f"  {name}:\n"
        f"    series: [{', '.join(simulator.series)}]\n"
        "    channels: [orderbook_delta, ticker, trade, market_lifecycle_v2]\n"
        "    session_seconds: 30\n"
        "    depth_bucket_seconds: 2\n"
        "    alerts:\n"
        "      - {kind: spread_above, threshold: 0}\n"
        "      - {kind: session_unhealthy}\n"
        f"{extra}"
    )


async def test_session_stores_every_channel_and_completes_at_its_deadline(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    write_config(market_set_yaml(simulator))
    url = ingest_env["DATABASE_URL"]

    # The simulator pauses (deactivates) and reactivates markets on its own: the session must record every market
    # that stayed open from before it started until it ended (a paused one is not subscribed until it reopens).
    paused: set[str] = set()
    recording = asyncio.Event()

    def ended() -> bool:
        return bool(query(url, "select count(*) from kalshi.sessions where market_set = 'sim' and ended_at is not null"))

    async def watch_pauses() -> None:
        while True:
            paused.update(t for t in simulator.tickers if simulator.model.markets[t].status != "active")
            if recording.is_set() and await asyncio.to_thread(ended):
                return
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_pauses())
    await asyncio.sleep(0.05)
    recording.set()
    state = await ingest_market_set("sim", SESSION_SECONDS, return_state=True)
    await asyncio.wait_for(watcher, 30)
    open_throughout = set(simulator.tickers) - paused

    assert state.is_completed(), state.message
    assert (state.message or "").startswith("session completed")
    status, seconds, markets, planned = query(
        url, "select status, extract(epoch from ended_at - started_at), cardinality(markets), "
             "extract(epoch from planned_end - planned_start) from kalshi.sessions where market_set = 'sim'")
    assert status == "completed"
    assert planned == pytest.approx(SESSION_SECONDS, abs=0.5)
    assert SESSION_SECONDS - 0.5 <= float(seconds) <= SESSION_SECONDS + 10
    # the open ones, resolved from the series through REST, and any that opened in those series while recording
    assert set(query(url, "select markets from kalshi.sessions where market_set = 'sim'")) >= open_throughout
    assert markets >= max(1, len(open_throughout))
    # The close at the deadline ends the recording; it leaves no incident open in the gap ledger.
    assert query(url, "select count(*) from kalshi.gap_ledger where ended_at is null") == 0
    assert query(url, "select outcome from kalshi.gap_ledger where kind = 'disconnect'") == "session_end"
    for table in ("orderbook_snapshots", "orderbook_deltas", "tickers", "trades"):
        assert query(url, f"select count(*) from kalshi.{table}") > 0, table  # noqa: S608 - fixed names
    assert query(url, "select count(*) from kalshi.depth_summaries where market_set = 'sim'") > 0
    assert query(url, "select count(*) from kalshi.depth_summaries where spread is not null and bid_depth > 0") > 0
    # spread_above 0 holds for every two-sided book; session_unhealthy must not fire on a clean session
    kinds = query(url, "select array_agg(distinct kind) from kalshi.alerts")
    assert kinds == ["spread_above"]
    artifacts = await flow_run_artifacts(state.state_details.flow_run_id)
    assert artifacts["session-progress-sim"].data == 100.0
    assert "rows written" in artifacts["session-progress-sim"].description and "messages" in artifacts[
        "session-progress-sim"].description
    assert artifacts["depth-sim"].type == "table"
    depth = json.loads(artifacts["depth-sim"].data)
    assert {row["distance"] for row in depth} == {"0.01", "0.02", "0.05", "0.10"}  # every configured distance
    assert {len(row["best_bid"].split(".")[1]) for row in depth if row["best_bid"]} == {4}
    assert {len(row["bid_depth"].split(".")[1]) for row in depth if row["bid_depth"]} == {2}
    summary = artifacts["session-sim"]
    assert summary.type == "markdown" and "Session `sim`: **completed**" in str(summary.data)
    assert "| | |" not in str(summary.data) and f"| markets | {markets} recorded (" in str(summary.data)
    recorded = query(url, "select markets from kalshi.sessions where market_set = 'sim'")
    listed = str(summary.data).split("## Markets")[1].split("##")[0]  # names in paragraphs, which wrap in the UI
    assert "Open at the end: " in listed and all(market in listed for market in recorded)
    report = artifacts["report-sim"]
    reports = Path(ingest_env["KALSHI_INGEST_DATA_DIR"]) / "reports"
    assert report.type == "markdown" and "Full report" in str(report.data)
    assert "file://" not in str(report.data) and str(reports.resolve()) in str(report.data)
    html = next(reports.glob("report-sim-*.html")).read_text()
    assert "<img" in html and "data:image/png;base64," in html
    # the project's own log lines (session, recorder, client) are among the run's logs, at INFO
    logs = await flow_run_logs(state.state_details.flow_run_id)
    assert any(name == "kalshi_ingest.session" and level == 20 and "session" in message
               for name, level, message in logs), logs


async def test_a_market_that_closes_during_the_session_raises_no_alert_and_leaves_the_depth_table(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    # depth_below with a threshold no book reaches fires for every market still open at the end; the one that
    # closed (determined) mid-session has an empty book, and an alert about it would be noise on every settlement.
    write_config(market_set_yaml(simulator, extra="      - {kind: depth_below, threshold: 100000000, within: 0.05}\n"))
    url = ingest_env["DATABASE_URL"]
    gone = simulator.tickers[0]

    async def close_one() -> None:
        await wait_until(lambda: query(url, "select count(*) from kalshi.orderbook_snapshots where market_ticker = %s",
                                       gone) > 0, timeout=30, in_thread=True)
        simulator.close_market(gone)

    closer = asyncio.create_task(close_one())
    state = await ingest_market_set("sim", SESSION_SECONDS, return_state=True)
    await closer

    assert state.is_completed(), state.message
    depth_alerts = {row[0] for row in query_all(url, "select market_ticker from kalshi.alerts where kind = 'depth_below'")}
    assert depth_alerts and gone not in depth_alerts, depth_alerts
    artifacts = await flow_run_artifacts(state.state_details.flow_run_id)
    assert gone not in {row["market"] for row in json.loads(artifacts["depth-sim"].data)}
    summary = str(artifacts["session-sim"].data)
    closed = [line for line in summary.splitlines() if line.startswith("Closed during the session")]
    assert closed and gone in closed[0], summary
    assert f"| {gone} |" not in summary


def query_all(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


async def test_alert_reaches_a_webhook_once_per_condition(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    with webhook_server() as received:
        await CustomWebhookNotificationBlock(
            name="kalshi-test-alerts", url=f"http://127.0.0.1:{received.port}/hook",
            json_data={"text": "{{subject}}: {{body}}"}, headers=None, cookies=None,
        ).save("kalshi-test-alerts", overwrite=True)
        write_config(market_set_yaml(simulator, extra="    notify_block: kalshi-test-alerts\n"))
        url = ingest_env["DATABASE_URL"]

        first = await ingest_market_set("sim", 3.0, return_state=True)
        assert first.is_completed(), first.message
        alerts = query(url, "select count(*) from kalshi.alerts where notified")
        assert alerts > 0
        assert len(received.bodies) == alerts
        assert all("kalshi alert [sim] spread_above" in body["text"] for body in received.bodies)

        second = await ingest_market_set("sim", 3.0, return_state=True)
        assert second.is_completed(), second.message
        # Conditions that still hold stay open episodes and are not sent again: every stored alert was
        # notified exactly once, and at least one of them was seen again by the second session.
        assert len(received.bodies) == query(url, "select count(*) from kalshi.alerts") == query(
            url, "select count(*) from kalshi.alerts where notified")
        assert query(url, "select count(*) from kalshi.alerts where last_session_id <> session_id") >= 1


async def test_unreachable_database_spills_and_the_run_fails_honestly(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path],
        monkeypatch: pytest.MonkeyPatch, unused_tcp_port: int) -> None:
    write_config(market_set_yaml(simulator))
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/kalshi?connect_timeout=2")

    state = await ingest_market_set("sim", 3.0, return_state=True)

    assert state.is_failed()
    message = state.message or ""
    assert "rows went to the local spill" in message and "kalshi-ingest db replay" in message
    spill = Path(ingest_env["KALSHI_INGEST_DATA_DIR"]) / "spill"
    assert any(p.is_file() and p.stat().st_size > 0 for p in spill.rglob("*"))


async def test_cancelled_session_flushes_and_says_so(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    path = write_config(market_set_yaml(simulator))
    url = ingest_env["DATABASE_URL"]
    market_set = load_config(path).get("sim")
    task = asyncio.ensure_future(run_recording_session(Settings(), market_set, url, duration=60))
    await wait_until(lambda: (query(url, "select count(*) from kalshi.orderbook_deltas") or 0) > 0, 30,
                     "rows stored", interval=0.1, in_thread=True)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    status, message, ended = query(url, "select status, status_message, ended_at from kalshi.sessions")
    assert status == "cancelled" and ended is not None
    assert "flushed" in message
    assert query(url, "select count(*) from kalshi.orderbook_snapshots") > 0


async def test_bad_config_fails_the_flow_before_connecting(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    path = write_config("market_sets:\n  sim:\n    series: [X]\n    channels: [ticker, ticker_v2]\n")
    state = await ingest_market_set("sim", 3.0, return_state=True)
    assert state.is_failed()
    assert f"{path}: market set 'sim': key 'channels[1]': unknown channel 'ticker_v2'" in (state.message or "")
    assert simulator.handshakes == []


# ---------------------------------------------------------------------------------------------- helpers

async def flow_run_artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in found if artifact.key}


async def flow_run_logs(flow_run_id: Any) -> list[tuple[str, int, str]]:
    """The run's logs from the API (they are shipped in batches: wait for the project's to arrive)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    found: list[tuple[str, int, str]] = []

    def ours() -> bool:
        return any(name.startswith("kalshi_") for name, _, _ in found)

    async with get_client() as client:
        for _ in range(100):
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            found = [(log.name, log.level, log.message) for log in logs]
            if ours():
                break
            await asyncio.sleep(0.2)
    return found


class _Received(list[dict[str, Any]]):
    port: int = 0

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return list(self)


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class webhook_server:  # noqa: N801 - used as a context manager like a function
    """A loopback HTTP server recording the JSON bodies POSTed to it."""

    def __enter__(self) -> _Received:
        received = _Received()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        received.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return received

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()



async def test_cancelled_flow_run_flushes_and_marks_the_session_cancelled(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    """Cancelling the run (what a Prefect cancellation or SIGTERM becomes in an async flow) flushes first."""
    write_config(market_set_yaml(simulator))
    url = ingest_env["DATABASE_URL"]
    run = asyncio.ensure_future(ingest_market_set("sim", 120, return_state=True))
    await wait_until(lambda: (query(url, "select count(*) from kalshi.orderbook_deltas") or 0) > 0, 30,
                     "rows stored", interval=0.1, in_thread=True)

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    status, message, ended = query(url, "select status, status_message, ended_at from kalshi.sessions")
    assert status == "cancelled" and ended is not None, message
    assert "data flushed" in message
    assert query(url, "select max(received_at) from kalshi.orderbook_deltas") <= ended


async def test_private_key_from_a_prefect_secret_block(
        simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.blocks.system import Secret

    from kalshi_ingest.settings import CredentialsError

    pem = simulator.private_key_path.read_text()
    await Secret(value=pem).save("kalshi-test-key", overwrite=True)  # type: ignore[arg-type]  # str is accepted
    for name in ("KALSHI_PRIVATE_KEY_PATH", "KALSHI_PRIVATE_KEY_PEM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KALSHI_ENV", simulator.base_url)
    monkeypatch.setenv("KALSHI_API_KEY_ID", simulator.key_id)
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_BLOCK", "kalshi-test-key")
    assert (await Settings().signer()).key_id == simulator.key_id

    monkeypatch.setenv("KALSHI_PRIVATE_KEY_BLOCK", "no-such-block")
    with pytest.raises(CredentialsError, match="^KALSHI_PRIVATE_KEY_BLOCK: Prefect Secret block 'no-such-block'"):
        await Settings().signer()


async def test_the_server_owned_session_limit_holds_without_any_worker_setting(
        simulator: Simulator, ingest_env: dict[str, Any], write_config: Callable[[str], Path]) -> None:
    """A global limit named kalshi-ws-sessions on the Prefect server limits every session, with no
    KALSHI_SESSION_LIMIT anywhere: a run waits for a slot (and says so), and the wait does not eat its recording."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.asyncio import concurrency

    write_config(market_set_yaml(simulator))
    async with get_client() as client:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="kalshi-ws-sessions", limit=1))
    try:
        held = asyncio.Event()
        release = asyncio.Event()

        async def occupy() -> None:  # another session somewhere holds the only slot for 4 s
            async with concurrency("kalshi-ws-sessions", occupy=1, strict=True):
                held.set()
                await release.wait()

        holder = asyncio.create_task(occupy())
        await asyncio.wait_for(held.wait(), 30)
        run = asyncio.create_task(ingest_market_set("sim", SESSION_SECONDS, return_state=True))
        await asyncio.sleep(4)
        assert not run.done()
        release.set()
        await holder
        state = await asyncio.wait_for(run, 180)
        assert state.is_completed(), state.message
        logs = " ".join(message for _, _, message in await flow_run_logs(state.state_details.flow_run_id))
        assert "waiting for a slot of the global concurrency limit 'kalshi-ws-sessions'" in logs
        seconds = query(ingest_env["DATABASE_URL"],
                        "select extract(epoch from ended_at - started_at) from kalshi.sessions where market_set = 'sim'")
        assert float(seconds) >= SESSION_SECONDS - 0.5  # the wait did not shorten the recording
    finally:
        async with get_client() as client:
            await client.delete_global_concurrency_limit_by_name("kalshi-ws-sessions")
