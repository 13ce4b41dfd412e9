"""Alerts: evaluate a market set's rules after a session, store them, notify each new one once.

A *condition* is a rule holding for one market (or for the session). Conditions are kept as alert
episodes in ``kalshi.alerts``: a condition that starts to hold opens an episode and is notified; while it
keeps holding in later sessions the episode stays open and nothing is sent again; when it stops holding
the episode is resolved. So the same condition is never notified twice in a row, across sessions and
across flow retries.

Evaluation and storage are synchronous (psycopg); :func:`notify` is async (Prefect blocks).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from kalshi_ingest.config import (
    DepthBelowRule,
    MarketSet,
    MarketStaleRule,
    PriceMoveRule,
    SessionUnhealthyRule,
    SpreadRule,
    rule_name,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionFacts:
    """What the alert rules need to know about the session that just ended."""

    session_id: str
    market_set: str
    markets: Sequence[str]
    started_at: datetime
    ended_at: datetime
    gaps: int = 0
    unrecovered_gaps: int = 0
    reconnects: int = 0
    rows_spilled: int = 0


@dataclass(frozen=True)
class Condition:
    rule: str
    kind: str
    market_ticker: str | None
    value: Decimal | None
    threshold: Decimal | None
    message: str

    @property
    def key(self) -> str:
        return f"{self.rule}|{self.market_ticker or '*'}"


@dataclass
class Alert:
    """A newly opened alert episode (the only ones that are notified)."""

    alert_id: str
    condition: Condition
    notified: bool = False
    notify_error: str | None = None


# ----------------------------------------------------------------------------------------------- evaluation

_LAST_PRICES_SQL = """
with prices as (
    select market_ticker, coalesce(exchange_ts, received_at) as at, yes_price as price
    from kalshi.trades where market_ticker = any(%(markets)s) and coalesce(exchange_ts, received_at) <= %(until)s
      and coalesce(exchange_ts, received_at) > %(since)s
    union all
    select market_ticker, exchange_ts, price from kalshi.tickers
    where market_ticker = any(%(markets)s) and price is not null and exchange_ts <= %(until)s
      and exchange_ts > %(since)s
)
select distinct on (market_ticker) market_ticker, price from prices order by market_ticker, at desc
"""

_WINDOW_PRICES_SQL = """
with prices as (
    select market_ticker, coalesce(exchange_ts, received_at) as at, yes_price as price
    from kalshi.trades where market_ticker = any(%(markets)s)
      and coalesce(exchange_ts, received_at) between %(since)s and %(until)s
    union all
    select market_ticker, exchange_ts, price from kalshi.tickers
    where market_ticker = any(%(markets)s) and price is not null and exchange_ts between %(since)s and %(until)s
)
select market_ticker, min(price), max(price) from prices group by market_ticker
"""

_PREVIOUS_SESSION_SQL = """
select max(ended_at) from kalshi.sessions
where market_set = %(market_set)s and session_id <> %(session_id)s and ended_at is not null
  and ended_at <= %(started_at)s
"""

_LAST_BUCKET_SQL = """
select distinct on (market_ticker, distance) market_ticker, distance, spread, bid_depth, ask_depth
from kalshi.depth_summaries where session_id = %(session_id)s
order by market_ticker, distance, bucket_start desc
"""

_LAST_SEEN_SQL = """
select market_ticker, max(received_at) from (
    select market_ticker, received_at from kalshi.orderbook_deltas where session_id = %(session_id)s
    union all select market_ticker, received_at from kalshi.orderbook_snapshots where session_id = %(session_id)s
    union all select market_ticker, received_at from kalshi.tickers where session_id = %(session_id)s
    union all select market_ticker, received_at from kalshi.trades where session_id = %(session_id)s
) seen group by market_ticker
"""


def evaluate(conn: psycopg.Connection[Any], market_set: MarketSet, facts: SessionFacts) -> list[Condition]:
    """Every condition that holds now, for every rule of the market set."""
    conditions: list[Condition] = []
    markets = list(facts.markets)
    params = {"session_id": facts.session_id, "markets": markets, "market_set": facts.market_set,
              "started_at": facts.started_at, "until": facts.ended_at}
    last_bucket: dict[str, dict[Decimal, tuple[Any, Any, Any]]] | None = None
    for rule in market_set.alerts:
        name = rule_name(rule)
        if isinstance(rule, PriceMoveRule):
            conditions += _price_moves(conn, name, rule, facts, params)
        elif isinstance(rule, SpreadRule | DepthBelowRule):
            if last_bucket is None:  # the session's books, of the markets the rules watch (facts.markets)
                last_bucket = {market: by_distance for market, by_distance in _query_last_bucket(conn, params).items()
                               if market in markets}
            conditions += _book_conditions(name, rule, last_bucket)
        elif isinstance(rule, MarketStaleRule):
            conditions += _stale(conn, name, rule, facts, params)
        elif isinstance(rule, SessionUnhealthyRule):
            conditions += _unhealthy(name, rule, facts)
    return conditions


def _query_last_bucket(conn: psycopg.Connection[Any], params: dict[str, Any]) -> dict[str, dict[Decimal, tuple[Any, Any, Any]]]:
    out: dict[str, dict[Decimal, tuple[Any, Any, Any]]] = {}
    with conn.cursor() as cur:
        cur.execute(_LAST_BUCKET_SQL, params)
        for market, distance, spread, bid, ask in cur.fetchall():
            out.setdefault(market, {})[distance] = (spread, bid, ask)
    return out


def _price_moves(conn: psycopg.Connection[Any], name: str, rule: PriceMoveRule, facts: SessionFacts,
                 params: dict[str, Any]) -> list[Condition]:
    threshold = rule.threshold
    out = []
    with conn.cursor() as cur:
        if rule.window_seconds is not None:
            since = facts.ended_at - timedelta(seconds=rule.window_seconds)
            cur.execute(_WINDOW_PRICES_SQL, {**params, "since": since})
            for market, low, high in cur.fetchall():
                move = high - low
                if move >= threshold:
                    out.append(Condition(name, rule.kind, market, move, threshold,
                                         f"{market}: price moved {move} (from {low} to {high}) within "
                                         f"{rule.window_seconds:g} s (threshold {threshold})"))
            return out
        cur.execute(_PREVIOUS_SESSION_SQL, params)
        previous_end = cur.fetchone()[0]  # type: ignore[index]
        if previous_end is None:
            return out  # first session of this market set: nothing to compare with
        epoch = datetime.fromtimestamp(0, tz=facts.ended_at.tzinfo)
        cur.execute(_LAST_PRICES_SQL, {**params, "until": previous_end, "since": epoch})
        before = dict(cur.fetchall())
        cur.execute(_LAST_PRICES_SQL, {**params, "since": previous_end})
        now = dict(cur.fetchall())
    for market, price in now.items():
        if market in before and abs(price - before[market]) >= threshold:
            move = price - before[market]
            out.append(Condition(name, rule.kind, market, abs(move), threshold,
                                 f"{market}: price moved {move:+} since the previous session "
                                 f"({before[market]} -> {price}, threshold {threshold})"))
    return out


def _book_conditions(name: str, rule: SpreadRule | DepthBelowRule,
                     last_bucket: dict[str, dict[Decimal, tuple[Any, Any, Any]]]) -> list[Condition]:
    out = []
    for market, by_distance in sorted(last_bucket.items()):
        if isinstance(rule, SpreadRule):
            spread = next(iter(by_distance.values()))[0]
            if spread is None:
                continue
            if (rule.kind == "spread_above" and spread > rule.threshold) or (
                    rule.kind == "spread_below" and spread < rule.threshold):
                word = "above" if rule.kind == "spread_above" else "below"
                out.append(Condition(name, rule.kind, market, spread, rule.threshold,
                                     f"{market}: spread {spread} is {word} {rule.threshold}"))
            continue
        eligible = sorted(d for d in by_distance if d >= rule.within)
        if not eligible:
            continue
        _, bid, ask = by_distance[eligible[0]]
        if bid is None or ask is None:
            continue
        thinnest = min(bid, ask)
        if thinnest < rule.threshold:
            side = "bid" if bid <= ask else "ask"
            out.append(Condition(name, rule.kind, market, thinnest, rule.threshold,
                                 f"{market}: {side} depth within {rule.within} of the touch is {thinnest} "
                                 f"contracts (below {rule.threshold})"))
    return out


def _stale(conn: psycopg.Connection[Any], name: str, rule: MarketStaleRule, facts: SessionFacts,
           params: dict[str, Any]) -> list[Condition]:
    with conn.cursor() as cur:
        cur.execute(_LAST_SEEN_SQL, params)
        seen = dict(cur.fetchall())
    out = []
    threshold = Decimal(str(rule.seconds))
    for market in facts.markets:
        last = seen.get(market)
        silent = (facts.ended_at - (last or facts.started_at)).total_seconds()
        if silent >= rule.seconds:
            what = "no data at all" if last is None else f"no data for {silent:.0f} s"
            out.append(Condition(name, rule.kind, market, Decimal(f"{silent:.3f}"), threshold,
                                 f"{market}: stale, {what} at the end of the session (threshold {rule.seconds:g} s)"))
    return out


def _unhealthy(name: str, rule: SessionUnhealthyRule, facts: SessionFacts) -> list[Condition]:
    problems = []
    if facts.gaps > rule.max_gaps:
        problems.append(f"{facts.gaps} sequence gaps ({facts.unrecovered_gaps} unrecovered)")
    if facts.reconnects > rule.max_reconnects:
        problems.append(f"{facts.reconnects} reconnects")
    if facts.rows_spilled:
        problems.append(f"{facts.rows_spilled} rows spilled to local files (database unavailable)")
    if not problems:
        return []
    count = Decimal(facts.gaps + facts.reconnects + (1 if facts.rows_spilled else 0))
    return [Condition(name, rule.kind, None, count, None,
                      f"session {facts.session_id} of {facts.market_set!r} unhealthy: {'; '.join(problems)}")]


# ----------------------------------------------------------------------------------------------- episodes

_OPEN_SQL = """
select alert_id, condition_key, rule from kalshi.alerts
where market_set = %(market_set)s and resolved_at is null
"""


def record(conn: psycopg.Connection[Any], market_set: MarketSet, facts: SessionFacts,
           conditions: Sequence[Condition]) -> list[Alert]:
    """Open new episodes, keep the ones still holding, resolve the rest; returns the new alerts."""
    rules = set(market_set.rule_names())
    current = {c.key: c for c in conditions}
    new: list[Alert] = []
    with conn.cursor() as cur:
        cur.execute(_OPEN_SQL, {"market_set": facts.market_set})
        open_alerts = {key: (alert_id, rule) for alert_id, key, rule in cur.fetchall()}
        for key, (alert_id, rule) in open_alerts.items():
            if key in current:
                cur.execute("update kalshi.alerts set last_seen_at = now(), last_session_id = %s where alert_id = %s",
                            (facts.session_id, alert_id))
            elif rule in rules:
                cur.execute("update kalshi.alerts set resolved_at = now() where alert_id = %s", (alert_id,))
        for key, condition in current.items():
            if key in open_alerts:
                continue
            alert = Alert(str(uuid.uuid4()), condition)
            cur.execute(
                "insert into kalshi.alerts (alert_id, market_set, condition_key, rule, kind, market_ticker, "
                "session_id, last_session_id, value, threshold, message) "
                "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (alert.alert_id, facts.market_set, key, condition.rule, condition.kind, condition.market_ticker,
                 facts.session_id, facts.session_id, condition.value, condition.threshold, condition.message))
            new.append(alert)
    conn.commit()
    return new


def store_notified(database_url: str, alerts: Sequence[Alert]) -> None:
    """Record on each alert whether its notification was accepted (and why not)."""
    if not alerts:
        return
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        for alert in alerts:
            cur.execute("update kalshi.alerts set notified = %s, notify_error = %s where alert_id = %s",
                        (alert.notified, alert.notify_error, alert.alert_id))


def evaluate_and_record(database_url: str, market_set: MarketSet, facts: SessionFacts) -> list[Alert]:
    with psycopg.connect(database_url) as conn:
        return record(conn, market_set, facts, evaluate(conn, market_set, facts))


# ----------------------------------------------------------------------------------------------- delivery

async def load_notification_block(name: str) -> Any:
    """A saved notification block by ``name`` (or ``block-type-slug/name``), whatever its type."""
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client

    if "/" not in name:
        async with get_client() as client:
            documents = await client.read_block_documents(include_secrets=False)
        slugs = [d.block_type.slug for d in documents if d.name == name and d.block_type is not None]
        if not slugs:
            raise ValueError(f"no Prefect block named {name!r} (create it in the UI under Blocks, or in Python "
                             f"with e.g. SlackWebhook(url=...).save({name!r}))")
        name = f"{slugs[0]}/{name}"
    block = await Block.aload(name)
    if not callable(getattr(block, "notify", None)):
        raise ValueError(f"Prefect block {name!r} is a {type(block).__name__}, not a notification block")
    return block


async def notify(block_name: str | None, market_set: str, alerts: Sequence[Alert]) -> list[str]:
    """Send every new alert through the block; failures are recorded on the alert, never raised.

    Returns the delivery problems (one line each, saying what to fix), also logged as warnings, for the
    flow to report: a configured block that is missing or is not a notification block, sends that failed.
    No ``notify_block`` at all is a choice (alerts are still stored and emitted as events), not a problem.
    """
    if not alerts:
        return []
    if not block_name:
        for alert in alerts:
            alert.notify_error = "no notify_block configured for this market set"
        return []
    try:
        block = await load_notification_block(block_name)
    except Exception as exc:  # a missing block must not lose the stored alerts
        missing = isinstance(exc, ValueError) and str(exc).startswith("no Prefect block named")
        what = "not found: create it" if missing else f"cannot be used ({type(exc).__name__}: {exc}): fix it"
        problem = (f"notify block {block_name!r} {what} (UI -> Blocks) or fix notify_block in market set {market_set!r}; "
                   f"{len(alerts)} alert(s) not sent")
        for alert in alerts:
            alert.notify_error = problem
        return _warn([problem])
    failed: list[str] = []
    for alert in alerts:
        subject = f"kalshi alert [{market_set}] {alert.condition.kind}"
        try:
            result = block.notify(alert.condition.message, subject=subject)
            if hasattr(result, "__await__"):
                await result
            alert.notified = True
        except Exception as exc:  # one failed delivery is recorded and the others are still tried
            alert.notify_error = f"{type(exc).__name__}: {exc}"
            failed.append(alert.notify_error)
    if not failed:
        return []
    return _warn([f"notify block {block_name!r} failed to send {len(failed)} of {len(alerts)} alert(s) of market set "
                  f"{market_set!r} (first: {failed[0]}): check the block's settings (UI -> Blocks)"])


def delivery_problems(alerts: Sequence[Alert]) -> list[str]:
    """The distinct delivery problems recorded on ``alerts`` by :func:`notify` (for the flow's problems list)."""
    problems = [a.notify_error for a in alerts if a.notify_error and not a.notified
                and a.notify_error != "no notify_block configured for this market set"]
    return list(dict.fromkeys(problems))


def _warn(problems: list[str]) -> list[str]:
    """Log each problem as a warning, on the Prefect run logger when there is one (it shows in the UI)."""
    logger: Any = log
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError

        try:
            logger = get_run_logger()
        except MissingContextError:
            pass
    except ImportError:  # pragma: no cover - Prefect is a dependency
        pass
    for problem in problems:
        logger.warning(problem)
    return problems
