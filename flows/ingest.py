"""The Prefect flow: one time-boxed recording session of a market set, then depth summaries and alerts.

The WebSocket session and the database writer live in ONE task awaited on the flow's event loop (never
``.submit()``: that would move them to another thread and loop). The follow-up tasks have retries and
read what the session stored, so a retry or a rerun is safe (their writes are upserts).

A session that spilled data, lost data or could not finish its follow-ups ends the flow run **Failed**
with a message saying so; only a clean session ends **Completed**. A session stopped by SIGTERM (what a Prefect
worker sends when the run is cancelled, or a service manager / container runtime stopping the process) flushes,
closes as ``cancelled``, publishes what it recorded and ends the run **Cancelled** (not Crashed).

The project's loggers (``kalshi_ws``, ``kalshi_store``, ``kalshi_ingest``) go to the run's logs in the Prefect UI at
INFO while the flow runs, in whatever process runs it (a worker's flow-run subprocess, ``kalshi-ingest run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.states import Cancelled, Completed, Failed, State

from kalshi_ingest import alerts as alert_rules
from kalshi_ingest import summaries
from kalshi_ingest.artifacts import final_progress_description, progress_description, session_markdown
from kalshi_ingest.config import DepthBelowRule, MarketSet, load_config
from kalshi_ingest.report import session_report
from kalshi_ingest.session import Progress, SessionNotStarted, SessionSummary, Slot, run_recording_session
from kalshi_ingest.settings import Settings

#: Prefect's hard backstop on a whole flow run; the session's own deadline ends it gracefully long before.
BACKSTOP_SECONDS = 6 * 3600
#: The global concurrency limit sessions hold a slot of when it exists (``-<API key id>`` first): see _session_limit.
SESSION_LIMIT = "kalshi-ws-sessions"
#: Lease of a held slot: renewed while the session runs; a killed holder's slot comes free after it.
SLOT_LEASE_SECONDS = 60.0
#: Extra time the record task may take beyond its session (closing, flushing, REST backfill).
RECORD_MARGIN_SECONDS = 300
#: A cancelled session's depth summary and report get this long in all (a Prefect worker kills a cancelled run's
#: process 30 s after its SIGTERM); what does not finish in time is skipped and the session artifact says so.
CANCELLED_FOLLOW_UPS_SECONDS = 12.0
#: The project's loggers whose records go to the flow run's logs (the Prefect UI), and from which level.
PROJECT_LOGGERS = ("kalshi_ws", "kalshi_store", "kalshi_ingest", "kalshi_flows")
#: This module's own lines (slot waits, the slot a run records): project lines, in the run's logs at INFO.
log = logging.getLogger("kalshi_flows.ingest")
RUN_LOG_LEVEL = logging.INFO


def load_market_set(name: str) -> MarketSet:
    """The validated market set; a bad config fails here, before anything connects."""
    return load_config(Settings().config_path).get(name)


async def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server's (started if it is not running)."""
    from kalshi_store.embedded import ensure_database

    return await asyncio.to_thread(ensure_database, settings.database(), settings.data_dir)


async def prepare_database(settings: Settings) -> str:
    """The database URL, migrated if the database is reachable (if not, the recorder spills)."""
    from kalshi_store.dberrors import DatabaseConfigError
    from kalshi_store.migrations import migrate

    url = await database_url(settings)
    try:
        await asyncio.to_thread(migrate, url)
    except DatabaseConfigError:
        raise  # a wrong DATABASE_URL, password or privilege: fail now, naming it, rather than spill a session
    except Exception as exc:  # an unreachable database: the recorder spills, the session reports it
        get_run_logger().warning("database not reachable (%s); recording will spill to %s",
                                 type(exc).__name__, settings.data_dir / "spill")
    return url


@task(name="record-session", cache_policy=NO_CACHE, persist_result=False)
async def record_session(market_set: str, slot: Slot) -> SessionSummary | str:
    """Record the market set for its slot; the socket, REST and the writer share this event loop. Returns the
    reason when the session did not start (a duplicate of a live session, or a slot already over)."""
    logger = get_run_logger()
    settings = Settings()
    config = load_market_set(market_set)
    signer = await settings.signer()  # a missing key fails here, naming the variable to set
    url = await prepare_database(settings)
    progress_id = await acreate_progress_artifact(
        progress=0.0, key=f"session-progress-{_slug(market_set)}", description=f"Recording {market_set}: starting")

    async def on_progress(progress: Progress) -> None:  # the session logs the same line (kalshi_ingest.session)
        await aupdate_progress_artifact(progress_id, progress=round(progress.fraction * 100, 1),
                                        description=progress_description(progress))

    if slot.start is None:  # an ad-hoc run records its whole duration from now, after the preparation above
        slot = Slot.adhoc((slot.end - slot.begins).total_seconds())
    seconds = (slot.deadline - datetime.now(UTC)).total_seconds()
    try:
        summary = await run_recording_session(
            settings, config, url, slot=slot, on_progress=on_progress,
            progress_interval=min(10.0, max(1.0, seconds / 12)), flow_run_id=str(runtime.flow_run.id or ""),
            signer=signer)
    except SessionNotStarted as exc:
        logger.info("session not started: %s", exc)
        return str(exc)
    done = 100.0 if summary.status != "cancelled" else round(100 * min(1.0, max(0.0, (
        summary.ended_at - summary.started_at) / max(slot.deadline - summary.started_at, timedelta(seconds=1)))), 1)
    await aupdate_progress_artifact(progress_id, progress=done, description=final_progress_description(summary))
    logger.info("session %s %s: %s", summary.session_id, summary.status, summary.status_message)
    return summary


@task(name="depth-summary", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE, persist_result=False)
async def summarise_depth(summary: SessionSummary) -> pd.DataFrame:
    """Replay the session's books into per-bucket depth summaries (every market); store them, publish a table of the
    markets still open at the end and return their rows (the session artifact shows them)."""
    settings = Settings()
    config = load_market_set(summary.market_set)
    extra = [rule.within for rule in config.alerts if isinstance(rule, DepthBelowRule)]
    distances = sorted({*config.depth_distances, *extra})
    url = await database_url(settings)
    depth = await asyncio.to_thread(summaries.compute_depth_summaries, url, summary.session_id, summary.market_set,
                                    bucket_seconds=config.depth_bucket_seconds, distances=distances)
    at_end = depth[depth["market_ticker"].isin(summary.markets_at_end)] if not depth.empty else depth
    table = summaries.artifact_table(at_end)
    shown = "" if len(table) == len(at_end.groupby(["market_ticker", "distance"])) else f" (first {len(table)} rows)"
    closed = summary.markets_closed
    await acreate_table_artifact(
        key=f"depth-{_slug(summary.market_set)}", table=table,
        description=(f"Depth at the end of session {summary.session_id}: one row per market still open and distance "
                     f"from the touch ({', '.join(str(d) for d in distances)}); prices in dollars, depth in contracts"
                     f"{shown}" + (f"; {len(closed)} market(s) closed during the session are not shown" if closed else "")))
    get_run_logger().info("depth summary: %d rows for %d markets", len(depth), depth["market_ticker"].nunique())
    return at_end  # what the session artifact shows: the markets still open at the end


@task(name="alerts", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE, persist_result=False)
async def raise_alerts(summary: SessionSummary) -> list[alert_rules.Alert]:
    """Evaluate the rules, store alert episodes, notify each new one once, emit an event per alert."""
    settings = Settings()
    config = load_market_set(summary.market_set)
    url = await database_url(settings)
    # The rules watch the markets still open at the end: one that closed during the session (determined,
    # deactivated) has an empty book and no more trades, so its depth, spread, staleness and last move are not news.
    facts = alert_rules.SessionFacts(
        session_id=summary.session_id, market_set=summary.market_set, markets=summary.markets_at_end,
        started_at=summary.started_at, ended_at=summary.ended_at, gaps=summary.gaps,
        unrecovered_gaps=summary.unrecovered_gaps, reconnects=summary.reconnects, rows_spilled=summary.rows_spilled)
    new = await asyncio.to_thread(alert_rules.evaluate_and_record, url, config, facts)
    await alert_rules.notify(config.notify_block, summary.market_set, new)
    await asyncio.to_thread(alert_rules.store_notified, url, new)
    for alert in new:
        get_run_logger().warning("ALERT %s", alert.condition.message)
        emit_event(event="kalshi.alert.fired", resource=_resource(summary.market_set),
                   payload={"rule": alert.condition.rule, "kind": alert.condition.kind,
                            "market": alert.condition.market_ticker, "message": alert.condition.message,
                            "value": str(alert.condition.value), "notified": alert.notified})
    return new


@task(name="report", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE, persist_result=False)
async def publish_report(summary: SessionSummary) -> str:
    """Render the session's HTML report (charts, trade bars, completeness, alerts) and link it as an artifact."""
    settings = Settings()
    url = await database_url(settings)
    made = await asyncio.to_thread(session_report, url, summary.session_id, settings.data_dir / "reports")
    where = report_location(made.path)
    await acreate_markdown_artifact(key=f"report-{_slug(summary.market_set)}", markdown=made.markdown,
                                    description=f"Report of session {summary.session_id}: {where}")
    get_run_logger().info("report written to %s", where)
    return where


def report_location(path: Any) -> str:
    """Where the HTML report is, for a person reading the UI elsewhere: the file under the data folder and its host."""
    return f"{path.resolve()} on host {socket.gethostname()}"


@flow(name="ingest-market-set", flow_run_name="ingest-{market_set}", timeout_seconds=BACKSTOP_SECONDS)
async def ingest_market_set(market_set: str, duration_seconds: float | None = None) -> State[Any]:
    """Record one session of ``market_set`` (``duration_seconds``, default: the set's ``session_seconds``),
    then summarise depth and raise alerts. Failed when data was spilled or lost, Completed otherwise."""
    config = load_market_set(market_set)
    with project_logs_in_run():
        async with _session_slot(await _session_limit(Settings())):
            slot = await _slot_of_this_run(config, duration_seconds)
            log.info("recording %s: %s", market_set, slot.describe())
            timeout = max(0.0, (slot.deadline - datetime.now(UTC)).total_seconds()) + RECORD_MARGIN_SECONDS
            summary = await record_session.with_options(timeout_seconds=timeout)(market_set, slot)
        if isinstance(summary, str):
            return Completed(name="Skipped", message=summary)
        cancelled = summary.status == "cancelled"
        depth, fired, problems, report = await _follow_ups(
            summary, budget=CANCELLED_FOLLOW_UPS_SECONDS if cancelled else None)
        problems += alert_rules.delivery_problems(fired)  # e.g. a notify_block that does not exist
        await acreate_markdown_artifact(key=f"session-{_slug(market_set)}",
                                        description=f"Session {summary.session_id}: {summary.status}",
                                        markdown=session_markdown(summary, depth, fired, problems, report=report))
        emit_event(event=f"kalshi.session.{summary.status}", resource=_resource(market_set),
                   payload=summary.as_dict())
        message = "; ".join([f"session {summary.status}: {summary.status_message}", *problems])
        if cancelled:  # the run was cancelled or its process stopped: say so, after publishing what was recorded
            return Cancelled(message=message)
        return (Completed(message=message, data=summary) if summary.healthy and not problems
                else Failed(message=message))


async def _follow_ups(summary: SessionSummary, *, budget: float | None = None
                      ) -> tuple[pd.DataFrame | None, list[alert_rules.Alert], list[str], str | None]:
    """Depth summary, alerts and the report, each with its own retries; their failures are reported, not raised.

    With a ``budget`` (a cancelled session: its process is about to be stopped), alerts are not evaluated, and the
    depth summary and the report run once each, within ``budget`` seconds in all."""
    if summary.rows_spilled and not sum(summary.rows_written.values()):
        return None, [], ["depth summary and alerts skipped: nothing reached the database (replay the spill first)"], None
    if budget is not None:
        end = asyncio.get_running_loop().time() + budget
        quick_depth = summarise_depth.with_options(retries=0, timeout_seconds=budget)
        depth = await quick_depth(summary, return_state=True)  # type: ignore[misc]  # async task
        left = end - asyncio.get_running_loop().time()
        quick_report = publish_report.with_options(retries=0, timeout_seconds=left)
        report = await quick_report(summary, return_state=True) if left > 1 else None  # type: ignore[misc]
        problems = ["alerts not evaluated: the session was cancelled"]
        problems += [f"{name} not made: {state.message}" if state is not None else
                     f"{name} skipped: no time left after the cancellation"
                     for name, state in (("depth summary", depth), ("report", report))
                     if state is None or not state.is_completed()]
        return (await depth.aresult() if depth.is_completed() else None, [], problems,
                await report.aresult() if report is not None and report.is_completed() else None)
    depth = await summarise_depth(summary, return_state=True)  # type: ignore[misc]  # async task
    alerts = await raise_alerts(summary, return_state=True)  # type: ignore[misc]
    report = await publish_report(summary, return_state=True)  # type: ignore[misc]  # reads depth and alerts
    problems = [f"{name} failed: {state.message}"
                for name, state in (("depth summary", depth), ("alerts", alerts), ("report", report))
                if not state.is_completed()]
    return (await depth.aresult() if depth.is_completed() else None,
            await alerts.aresult() if alerts.is_completed() else [], problems,
            await report.aresult() if report.is_completed() else None)


class _InThisRun(logging.Filter):
    """Records made inside a flow or task run (the API handler needs the run's id; others stay on the console)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return bool(getattr(record, "flow_run_id", None) or FlowRunContext.get() or TaskRunContext.get())


class _Console(logging.Handler):
    """Hands a record to the root logger's handlers (the console) if its logger would have let it through before
    :func:`project_logs_in_run` lowered its level: the run's logs get INFO, the console keeps what it showed."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().callHandlers(record)


@contextlib.contextmanager
def project_logs_in_run(level: int = RUN_LOG_LEVEL) -> Iterator[None]:
    """While inside, records of :data:`PROJECT_LOGGERS` from ``level`` up go to the current flow run's logs.

    This is what ``PREFECT_LOGGING_EXTRA_LOGGERS=kalshi_ws,kalshi_store,kalshi_ingest`` does (it only adds
    Prefect's API handler, when set before Prefect is imported) plus the level: it is done here, in the flow, so
    every way of running it gets it (a worker's flow-run subprocess, ``kalshi-ingest run``, tests) without touching
    the worker's environment. A logger that already has Prefect's API handler (the variable was set) keeps it.
    """
    from prefect.logging.handlers import APILogHandler

    api = APILogHandler()
    api.addFilter(_InThisRun())
    saved = []
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, list(logger.handlers)))
        before = logger.getEffectiveLevel()
        if not any(isinstance(handler, APILogHandler) for handler in logger.handlers):
            logger.addHandler(api)
        if before > level:
            console = _Console(before)
            logger.addHandler(console)
            logger.propagate = False  # the console handler above passes on what propagated before
            logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old_level, propagate, handlers in saved:
            logger.setLevel(old_level)
            logger.propagate = propagate
            logger.handlers[:] = handlers


async def _slot_of_this_run(config: MarketSet, duration_seconds: float | None) -> Slot:
    """A run made by the deployment's schedule owns its slot: from its scheduled start to the next scheduled start
    of the deployment (at most ``session_seconds``, or ``duration_seconds`` when given), plus ``handover_seconds``
    for the next run to take over. Any other run (manual, ad hoc, the CLI) records ``duration_seconds`` (default
    ``session_seconds``) from now."""
    seconds = duration_seconds or config.session_seconds
    run_id = runtime.flow_run.id
    if not run_id:
        return Slot.adhoc(seconds)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterExpectedStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        if not run.auto_scheduled or run.deployment_id is None or run.expected_start_time is None:
            return Slot.adhoc(seconds)
        start = _utc(run.expected_start_time)
        later = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[run.deployment_id]),
                # pydantic converts the datetime to Prefect's DateTime
                expected_start_time=FlowRunFilterExpectedStartTime(
                    after_=start + timedelta(seconds=1))),  # type: ignore[arg-type]
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=20)
    following = next((_utc(r.expected_start_time) for r in later
                      if r.auto_scheduled and r.expected_start_time is not None), None)
    end = start + timedelta(seconds=seconds)
    successor = following is not None and following <= end
    if successor and following is not None:
        end = following
    return Slot.scheduled(start, end, successor_expected=successor, handover_seconds=config.handover_seconds)


def _utc(at: datetime) -> datetime:
    """A plain ``datetime`` in UTC. Prefect's client returns its own ``DateTime`` (pendulum's), which drops a
    stdlib ``tzinfo`` in arithmetic: ``expected_start_time.astimezone(UTC) + timedelta(...)`` is naive."""
    return datetime.fromtimestamp(at.timestamp(), tz=UTC)


@contextlib.asynccontextmanager
async def _session_slot(limit_name: str | None) -> Any:
    """Hold one slot of the global WebSocket-session limit (per API key) while recording, if there is one. The wait
    for a slot is logged and does not count against the recording's time box. The slot's lease is short
    (:data:`SLOT_LEASE_SECONDS`, renewed while held), so a killed holder frees it within about a minute."""
    if not limit_name:
        yield
        return
    from prefect.concurrency.asyncio import concurrency

    log.info("waiting for a slot of the global concurrency limit %r (WebSocket sessions per API key)", limit_name)
    async with concurrency(limit_name, occupy=1, strict=True, lease_duration=SLOT_LEASE_SECONDS):
        log.info("got a slot of %r", limit_name)
        yield


async def _session_limit(settings: Settings) -> str | None:
    """The global limit every session holds a slot of, owned by the Prefect server rather than each worker's
    environment: ``KALSHI_SESSION_LIMIT`` when set, else ``kalshi-ws-sessions-<API key id>`` or ``kalshi-ws-sessions``
    when such a limit exists on the server, else none (logged once per run)."""
    if settings.kalshi_session_limit:
        return settings.kalshi_session_limit
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    names = [f"{SESSION_LIMIT}-{settings.kalshi_api_key_id}"] if settings.kalshi_api_key_id else []
    names.append(SESSION_LIMIT)
    async with get_client() as client:
        for name in names:
            try:
                await client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                continue
            return name
    log.info("no global concurrency limit %r: WebSocket sessions are not limited per API key "
             "(`prefect gcl create %s --limit N` limits them, whichever worker runs them)", SESSION_LIMIT, SESSION_LIMIT)
    return None


def _resource(market_set: str) -> dict[str, str]:
    return {"prefect.resource.id": f"kalshi.market-set.{market_set}", "prefect.resource.name": market_set}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "set"
