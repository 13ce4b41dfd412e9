"""The Prefect flow: one time-boxed recording session of a market set, then depth summaries and alerts.

The WebSocket session and the database writer live in ONE task awaited on the flow's event loop (never
``.submit()``: that would move them to another thread and loop). The follow-up tasks have retries and
read what the session stored, so a retry or a rerun is safe (their writes are upserts).

A session that spilled data, lost data or could not finish its follow-ups ends the flow run **Failed**
with a message saying so; only a clean session ends **Completed**.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from prefect.states import Completed, Failed, State

from kalshi_ingest import alerts as alert_rules
from kalshi_ingest import summaries
from kalshi_ingest.artifacts import session_markdown
from kalshi_ingest.config import DepthBelowRule, MarketSet, load_config
from kalshi_ingest.report import session_report
from kalshi_ingest.session import Progress, SessionSummary, run_recording_session
from kalshi_ingest.settings import Settings

#: Prefect's hard backstop on a whole flow run; the session's own deadline ends it gracefully long before.
BACKSTOP_SECONDS = 6 * 3600
#: Extra time the record task may take beyond its session (closing, flushing, REST backfill).
RECORD_MARGIN_SECONDS = 300


def load_market_set(name: str) -> MarketSet:
    """The validated market set; a bad config fails here, before anything connects."""
    return load_config(Settings().config_path).get(name)


async def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server's (started if it is not running)."""
    from kalshi_store.embedded import ensure_database

    return await asyncio.to_thread(ensure_database, settings.database(), settings.data_dir)


async def prepare_database(settings: Settings) -> str:
    """The database URL, migrated if the database is reachable (if not, the recorder spills)."""
    from kalshi_store.migrations import migrate

    url = await database_url(settings)
    try:
        await asyncio.to_thread(migrate, url)
    except Exception as exc:  # an unreachable database: the recorder spills, the session reports it
        get_run_logger().warning("database not reachable (%s); recording will spill to %s",
                                 type(exc).__name__, settings.data_dir / "spill")
    return url


@task(name="record-session", cache_policy=NO_CACHE, persist_result=False)
async def record_session(market_set: str, duration_seconds: float | None) -> SessionSummary:
    """Record the market set until its deadline; the socket, REST and the writer share this event loop."""
    logger = get_run_logger()
    settings = Settings()
    config = load_market_set(market_set)
    signer = await settings.signer()  # a missing key fails here, naming the variable to set
    url = await prepare_database(settings)
    progress_id = await acreate_progress_artifact(
        progress=0.0, key=f"session-progress-{_slug(market_set)}", description=f"Recording {market_set}")

    async def on_progress(progress: Progress) -> None:
        logger.info(progress.line())
        await aupdate_progress_artifact(progress_id, progress=round(progress.fraction * 100, 1))

    async with _session_slot(settings.kalshi_session_limit):
        summary = await run_recording_session(
            settings, config, url, duration=duration_seconds, on_progress=on_progress,
            progress_interval=min(10.0, max(1.0, (duration_seconds or config.session_seconds) / 12)),
            flow_run_id=str(runtime.flow_run.id or ""), signer=signer)
    await aupdate_progress_artifact(progress_id, progress=100.0)
    logger.info("session %s %s: %s", summary.session_id, summary.status, summary.status_message)
    return summary


@task(name="depth-summary", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE, persist_result=False)
async def summarise_depth(summary: SessionSummary) -> pd.DataFrame:
    """Replay the session's books into per-bucket depth summaries; store them and publish a table."""
    settings = Settings()
    config = load_market_set(summary.market_set)
    extra = [rule.within for rule in config.alerts if isinstance(rule, DepthBelowRule)]
    distances = sorted({*config.depth_distances, *extra})
    url = await database_url(settings)
    depth = await asyncio.to_thread(summaries.compute_depth_summaries, url, summary.session_id, summary.market_set,
                                    bucket_seconds=config.depth_bucket_seconds, distances=distances)
    await acreate_table_artifact(key=f"depth-{_slug(summary.market_set)}", table=summaries.artifact_table(depth),
                                 description=f"Depth at the end of session {summary.session_id}")
    get_run_logger().info("depth summary: %d rows for %d markets", len(depth), depth["market_ticker"].nunique())
    return depth


@task(name="alerts", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE, persist_result=False)
async def raise_alerts(summary: SessionSummary) -> list[alert_rules.Alert]:
    """Evaluate the rules, store alert episodes, notify each new one once, emit an event per alert."""
    settings = Settings()
    config = load_market_set(summary.market_set)
    url = await database_url(settings)
    facts = alert_rules.SessionFacts(
        session_id=summary.session_id, market_set=summary.market_set, markets=summary.markets,
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
    await acreate_markdown_artifact(key=f"report-{_slug(summary.market_set)}", markdown=made.markdown,
                                    description=f"Report of session {summary.session_id}: {made.path}")
    get_run_logger().info("report written to %s", made.path)
    return str(made.path)


@flow(name="ingest-market-set", flow_run_name="ingest-{market_set}", timeout_seconds=BACKSTOP_SECONDS)
async def ingest_market_set(market_set: str, duration_seconds: float | None = None) -> State[Any]:
    """Record one session of ``market_set`` (``duration_seconds``, default: the set's ``session_seconds``),
    then summarise depth and raise alerts. Failed when data was spilled or lost, Completed otherwise."""
    config = load_market_set(market_set)
    timeout = (duration_seconds or config.session_seconds) + RECORD_MARGIN_SECONDS
    summary = await record_session.with_options(timeout_seconds=timeout)(market_set, duration_seconds)
    depth, fired, problems = await _follow_ups(summary)
    problems += alert_rules.delivery_problems(fired)  # e.g. a notify_block that does not exist
    await acreate_markdown_artifact(key=f"session-{_slug(market_set)}", description=f"Session {summary.session_id}",
                                    markdown=session_markdown(summary, depth, fired, problems))
    emit_event(event=f"kalshi.session.{summary.status}", resource=_resource(market_set), payload=summary.as_dict())
    message = "; ".join([f"session {summary.status}: {summary.status_message}", *problems])
    return Completed(message=message, data=summary) if summary.healthy and not problems else Failed(message=message)


async def _follow_ups(summary: SessionSummary) -> tuple[pd.DataFrame | None, list[alert_rules.Alert], list[str]]:
    """Depth summary, alerts and the report, each with its own retries; their failures are reported, not raised."""
    if summary.rows_spilled and not sum(summary.rows_written.values()):
        return None, [], ["depth summary and alerts skipped: nothing reached the database (replay the spill first)"]
    depth = await summarise_depth(summary, return_state=True)  # type: ignore[misc]  # async task
    alerts = await raise_alerts(summary, return_state=True)  # type: ignore[misc]
    report = await publish_report(summary, return_state=True)  # type: ignore[misc]  # reads depth and alerts
    problems = [f"{name} failed: {state.message}"
                for name, state in (("depth summary", depth), ("alerts", alerts), ("report", report))
                if not state.is_completed()]
    return (await depth.aresult() if depth.is_completed() else None,
            await alerts.aresult() if alerts.is_completed() else [], problems)


@contextlib.asynccontextmanager
async def _session_slot(limit_name: str | None) -> Any:
    """Hold one slot of the global WebSocket-session limit (per API key) while recording, if configured."""
    if not limit_name:
        yield
        return
    from prefect.concurrency.asyncio import concurrency

    async with concurrency(limit_name, occupy=1, strict=True):
        yield


def _resource(market_set: str) -> dict[str, str]:
    return {"prefect.resource.id": f"kalshi.market-set.{market_set}", "prefect.resource.name": market_set}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "set"
