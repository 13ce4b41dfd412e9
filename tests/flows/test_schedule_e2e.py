"""Issue 10's acceptance test: back-to-back scheduled sessions on a real Prefect server and process worker leave no
instant of the market set unrecorded, and the stored books stay exact across every handover.

The `demo` deployment of prefect.yaml is deployed exactly as shipped (its concurrency settings, work pool, pull
step), except that its schedule is an interval of INTERVAL seconds, and its market set (a test market-set file)
records the simulator's series with ``session_seconds = INTERVAL`` and ``handover_seconds = HANDOVER``. A
long-lived ``prefect worker start`` (default prefetch and polling) runs the flow runs in subprocesses, which reach
the simulator (run here, in the test's event loop) and the test database through the worker's environment.

Once the SESSIONS-th scheduled run has been submitted, the deployment is paused (its later scheduled runs are
deleted), so the last session sees no next run and ends at its slot's end. Then:

* no flow run was Cancelled, Crashed or Failed; every one is Completed (none Skipped);
* each session but the last was handed over to the next one (``kalshi.sessions.superseded_by``);
* no market of the set went unrecorded between sessions for more than 1 s (``kalshi.uncovered_windows``);
* ``kalshi.book_at`` equals the simulator's book at every trusted instant around every handover, and an untrusted
  answer is explained by the coverage record or an incident (as in tests/faults/test_continuity.py).

It prints, per session, the start lag, the flow-run start to books stored, and per handover the overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
import yaml

from kalshi_ingest.config import load_config
from kalshi_ws.simulator import Simulator

from .prefect_e2e import POOL, PREFECT, ROOT, cli, prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

#: Seconds between scheduled starts, and the length of each session's slot.
INTERVAL = 20
#: How long a session may record past its slot while the next one starts (the market set's handover_seconds).
HANDOVER = 60
#: Consecutive scheduled sessions to record.
SESSIONS = 5
#: Seconds a flow run may take after its recording ended (depth summary, alerts, report) before the test gives up.
FOLLOW_UPS = 90


@dataclass
class Run:
    id: str
    expected: datetime
    state_type: str
    state_name: str
    message: str | None
    start_time: datetime | None


def _state(run: Any) -> tuple[str, str, str | None]:
    if run.state is None:
        return "", "", None
    return str(run.state.type.value), str(run.state.name), run.state.message


async def _runs(client: Any, deployment_id: UUID) -> list[Run]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
    from prefect.client.schemas.sorting import FlowRunSort

    found = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200)
    out = []
    for r in found:
        assert r.auto_scheduled, f"flow run {r.id} was not made by the schedule"
        kind, name, message = _state(r)
        out.append(Run(str(r.id), _utc(r.expected_start_time), kind, name, message,
                       _utc(r.start_time) if r.start_time else None))
    return out


def _utc(at: datetime) -> datetime:
    return datetime.fromtimestamp(at.timestamp(), tz=UTC)  # not Prefect's DateTime (it is naive after arithmetic)


async def _poll(what: str, timeout: float, check: Callable[[], Any]) -> Any:
    """Call the coroutine function ``check`` every half second until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout:.0f} s")
        await asyncio.sleep(0.5)


def _scheduled_deployment(tmp_path: Path) -> Path:
    """prefect.yaml with only the `demo` deployment's schedule replaced by an interval of INTERVAL seconds."""
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (demo,) = [d for d in document["deployments"] if d["name"] == "demo"]
    demo["schedules"] = [{"interval": INTERVAL, "slug": "e2e-back-to-back"}]
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _market_sets(tmp_path: Path, sim: Simulator) -> Path:
    path = tmp_path / "market_sets.yaml"
    path.write_text(yaml.safe_dump({"market_sets": {"demo": {
        "series": list(sim.series), "channels": ["orderbook_delta", "ticker", "trade", "market_lifecycle_v2"],
        "session_seconds": INTERVAL, "handover_seconds": HANDOVER, "depth_bucket_seconds": 5}}}))
    assert load_config(path).get("demo").handover_seconds == HANDOVER
    return path


@contextlib.asynccontextmanager
async def _worker(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`prefect worker start` as a long-lived process (its own process group: stopping it stops its flow runs)."""
    with log.open("wb") as out:
        worker = await asyncio.create_subprocess_exec(
            PREFECT, "worker", "start", "--pool", POOL, "--type", "process", cwd=ROOT, env=env, stdout=out,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            yield worker
        finally:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                if worker.returncode is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, sig)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.wait(), wait)
            with contextlib.suppress(ProcessLookupError):  # flow runs still going when the test failed
                os.killpg(worker.pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()


def _dec(x: Any) -> Decimal:
    return Decimal(str(x)).normalize()


def _compare_books(url: str, sim: Simulator, markets: Sequence[str], instants: Sequence[int]) -> tuple[int, int]:
    """kalshi.book_at against the simulator at each instant (ms) and market: (trusted and equal, untrusted because
    no session was recording the market then). An untrusted answer while a session recorded the market fails."""
    compared = untrusted = 0
    with psycopg.connect(url, connect_timeout=3) as conn:
        for ts_ms in instants:
            at = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
            for market in markets:
                found = conn.execute("select side, price, size, trusted from kalshi.book_at(%s, %s)",
                                     (market, at)).fetchall()
                if not found:
                    continue  # nothing stored before `at` (a market not recorded yet)
                if not all(t for *_, t in found):  # only where nobody recorded it (the market was inactive)
                    row = conn.execute("select kalshi.is_covered_at(%s, %s)", (market, at)).fetchone()
                    assert row is not None and not row[0], f"{market} untrusted at {at} while it was recorded"
                    untrusted += 1
                    continue
                stored: dict[str, dict[Decimal, Decimal]] = {"yes": {}, "no": {}}
                for side, price, size, _ in found:
                    stored[side][_dec(price)] = _dec(size)
                book = sim.book_at(market, ts_ms)
                truth = {"yes": {_dec(p): _dec(s) for p, s in book["yes_dollars"]},
                         "no": {_dec(p): _dec(s) for p, s in book["no_dollars"]}}
                assert stored == truth, f"{market} at {at}: book_at {stored} != the exchange's {truth}"
                compared += 1
    return compared, untrusted


async def test_back_to_back_scheduled_sessions_hand_over_without_a_hole(db_url: str, tmp_path: Path) -> None:
    began = time.monotonic()
    async with prefect_server(tmp_path / "prefect-home", scheduler=True) as server_env, \
            Simulator(markets=4, seed=11, rate=150.0, data_dir=tmp_path / "sim") as sim:
        from prefect.client.orchestration import PrefectClient

        env = {**server_env, "KALSHI_ENV": sim.base_url, "KALSHI_API_KEY_ID": sim.key_id,
               "KALSHI_PRIVATE_KEY_PATH": str(sim.private_key_path), "DATABASE_URL": db_url,
               "KALSHI_INGEST_DATA_DIR": str(tmp_path / "data"),
               "KALSHI_INGEST_CONFIG": str(_market_sets(tmp_path, sim))}
        worker_env = {**env, "PREFECT_LOGGING_LEVEL": "INFO",
                      "PREFECT_LOGGING_EXTRA_LOGGERS": "kalshi_ingest,kalshi_store,kalshi_ws"}
        await cli(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
        deployed = await cli(env, "--no-prompt", "deploy", "--name", "demo",
                             "--prefect-file", str(_scheduled_deployment(tmp_path)))
        assert "ingest-market-set/demo" in deployed, deployed
        log = tmp_path / "worker.log"
        print(f"\nserver up and deployed after {time.monotonic() - began:.1f} s")

        async with PrefectClient(api=server_env["PREFECT_API_URL"]) as client, _worker(worker_env, log) as worker:
            deployment = await client.read_deployment_by_name("ingest-market-set/demo")
            shipped = yaml.safe_load((ROOT / "prefect.yaml").read_text())
            (demo,) = [d for d in shipped["deployments"] if d["name"] == "demo"]
            assert deployment.global_concurrency_limit is not None
            assert deployment.global_concurrency_limit.limit == demo["concurrency_limit"]["limit"]
            assert deployment.concurrency_options is not None
            assert deployment.concurrency_options.collision_strategy.value == \
                demo["concurrency_limit"]["collision_strategy"]

            waited: set[str] = set()  # runs that waited for a slot of the deployment's concurrency limit

            def check_no_failures(runs: list[Run]) -> None:
                waited.update(r.id for r in runs if r.state_name == "AwaitingConcurrencySlot")
                assert worker.returncode is None, f"the worker exited with {worker.returncode}:\n{_tail(log)}"
                bad = [r for r in runs if r.state_type in ("CANCELLED", "CRASHED", "FAILED")
                       or r.state_name in ("Skipped", "Cancelling")]
                assert not bad, "\n".join([*(f"{r.expected:%H:%M:%S} {r.state_name}: {r.message}" for r in bad),
                                           "worker log:", _tail(log)])

            async def last_one_submitted() -> list[Run] | None:
                runs = await _runs(client, deployment.id)
                check_no_failures(runs)
                if len(runs) >= SESSIONS and (runs[SESSIONS - 1].state_type != "SCHEDULED"
                                              or runs[SESSIONS - 1].state_name == "AwaitingConcurrencySlot"):
                    return runs
                return None

            # The scheduler makes the runs as soon as the deployment exists; the first starts within INTERVAL s.
            first = await _poll("the schedule's first run", 30, lambda: _runs(client, deployment.id))
            budget = (first[0].expected - datetime.now(UTC)).total_seconds() + SESSIONS * INTERVAL + 60
            await _poll(f"the {SESSIONS}th scheduled run submitted", budget, last_one_submitted)
            # No run after it: its session sees no successor coming and ends at its slot's end.
            await client.pause_deployment(deployment.id)
            runs = await _runs(client, deployment.id)
            assert len(runs) == SESSIONS and all(r.state_name not in ("Scheduled", "Late") for r in runs), runs

            async def all_final() -> list[Run] | None:
                runs = await _runs(client, deployment.id)
                check_no_failures(runs)
                return runs if all(r.state_type == "COMPLETED" for r in runs) else None

            # The last session may expect a successor if it read the schedule before the pause: it then records
            # its handover time too.
            budget = (runs[-1].expected - datetime.now(UTC)).total_seconds() + INTERVAL + HANDOVER + FOLLOW_UPS
            runs = await _poll("every flow run finished", budget, all_final)
            assert [r.state_name for r in runs] == ["Completed"] * SESSIONS, [(r.state_name, r.message) for r in runs]

        print(f"every flow run finished after {time.monotonic() - began:.1f} s")
        sessions = [Session(*row) for row in await asyncio.to_thread(
            _rows, db_url, "select s.session_id::text, s.flow_run_id, s.slot_start, s.ended_at, s.superseded_by::text, "
                           "s.superseded_at, s.status, s.status_message, min(c.recording_from), max(c.recording_to) "
                           "from kalshi.sessions s left join kalshi.coverage_windows c using (session_id) "
                           "where s.market_set = 'demo' group by s.session_id order by s.slot_start")]
        print("\n" + _figures(sessions, runs, waited))
        assert [s.flow_run_id for s in sessions] == [r.id for r in runs], (sessions, runs)
        assert [s.slot_start for s in sessions] == [r.expected for r in runs]
        assert all(s.status == "completed" for s in sessions), [s.message for s in sessions]
        # Each session but the last was handed over to the next one; the last one ended at its deadline.
        for before, after in zip(sessions, sessions[1:], strict=False):
            assert before.superseded_by == after.session_id, (
                f"session {before.session_id} was handed over to {before.superseded_by}, not to the next one "
                f"{after.session_id}: {before.message}; {len(waited)} run(s) waited for a deployment concurrency slot")
        assert sessions[-1].superseded_by is None
        # A predecessor stops within a few heartbeats of the handover (its final REST backfill included).
        overlaps = [(s.recorded_to - s.superseded_at).total_seconds() for s in sessions[:-1] if s.superseded_at]
        assert all(0 <= o < 5 for o in overlaps), overlaps

        # No instant from the first to the last session at which a market went unrecorded between sessions for
        # more than a second (a market that opened mid-session has its wait for a snapshot on record too).
        between = await asyncio.to_thread(
            _rows, db_url, "select market_ticker, started_at, seconds from kalshi.uncovered_windows "
                           "where market_set = 'demo' and reason = 'between_sessions' order by seconds desc")
        assert not between or between[0][2] <= 1.0, between[:5]
        # The set as a whole: the union of every session's coverage has no gap.
        gaps = await asyncio.to_thread(
            _rows, db_url, "select lower(g), upper(g) from unnest((select tstzmultirange(tstzrange(min(recording_from), "
                           "max(recording_to))) - range_agg(time_range) from kalshi.coverage_windows "
                           "where market_set = 'demo')) g")
        assert all((hi - lo).total_seconds() <= 1.0 for lo, hi in gaps), gaps

        # kalshi.book_at across every handover equals the simulator's book: from a second before the successor's
        # first snapshot to a second after the predecessor stopped.
        instants: list[int] = []
        for before, after in zip(sessions, sessions[1:], strict=False):
            lo = int(after.recorded_from.timestamp() * 1000) - 1000
            hi = int(before.recorded_to.timestamp() * 1000) + 1000
            instants += range(lo, hi, max(20, (hi - lo) // 30))
        started = time.monotonic()
        compared, untrusted = await asyncio.to_thread(_compare_books, db_url, sim, sim.tickers, instants)
        print(f"book_at compared with the simulator at {len(instants)} instants around {len(sessions) - 1} handovers "
              f"x {len(sim.tickers)} markets: {compared} equal and trusted, {untrusted} untrusted (the market was not "
              f"recorded then: inactive); {time.monotonic() - started:.1f} s")
        assert len(instants) >= 100 and compared >= 100


@dataclass
class Session:
    session_id: str
    flow_run_id: str
    slot_start: datetime
    ended_at: datetime
    superseded_by: str | None
    superseded_at: datetime | None
    status: str
    message: str
    #: The first and last instant it recorded any market (kalshi.coverage_windows).
    recorded_from: datetime
    recorded_to: datetime


def _figures(sessions: Sequence[Session], runs: Sequence[Run], waited: set[str]) -> str:
    """Per session: when it started, took over, stopped; per handover the overlap."""
    lines = [f"{len(sessions)} scheduled sessions, every {INTERVAL} s (handover_seconds {HANDOVER}); {len(waited)} "
             "flow run(s) waited for a deployment concurrency slot",
             "session  scheduled  flow run start  first snapshot  took over  stopped recording  overlap",
             "         (UTC)      (s after the scheduled start ..........................)  (s)"]
    for i, (session, run) in enumerate(zip(sessions, runs, strict=True)):
        took_over = sessions[i - 1].superseded_at if i else None

        def after(t: datetime | None, base: datetime = session.slot_start) -> str:
            return "      -" if t is None else f"{(t - base).total_seconds():+7.2f}"

        overlap = (session.recorded_to - session.superseded_at).total_seconds() if session.superseded_at else None
        lines.append(f"{i + 1:>7}  {session.slot_start:%H:%M:%S}   {after(run.start_time)}         "
                     f"{after(session.recorded_from)}        {after(took_over)}    {after(session.recorded_to)}"
                     f"            {'-' if overlap is None else f'{overlap:.2f}'}")
    stored = [(took - start).total_seconds() for took, start in
              zip([s.superseded_at for s in sessions[:-1]], [r.start_time for r in runs[1:]], strict=True)
              if took is not None and start is not None]
    lag = [(s.recorded_from - s.slot_start).total_seconds() for s in sessions[1:]]
    if stored and lag:
        lines.append(f"flow run start -> books stored (took over): {min(stored):.2f}-{max(stored):.2f} s; successor's "
                     f"start lag (first snapshot - scheduled start): {min(lag):.2f}-{max(lag):.2f} s")
    return "\n".join(lines)
