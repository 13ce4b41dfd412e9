"""Alerts: evaluate a market set's rules after a session, store them, notify each new one once.

A *condition* (:class:`~kalshi_store.alerts_store.Condition`) is a rule holding for one market (or for the
session). Conditions are kept as alert episodes in ``kalshi.alerts``: a condition that starts to hold opens an
episode and is notified; while it keeps holding in later sessions the episode stays open and nothing is sent
again; when it stops holding the episode is resolved. So the same condition is never notified twice in a row,
across sessions and across flow retries.

Evaluation and storage are synchronous (the reads and writes are :class:`kalshi_store.alerts_store.AlertStore`'s);
:func:`notify` is async (Prefect blocks).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kalshi_ingest.config import (
    DepthBelowRule,
    MarketSet,
    MarketStaleRule,
    PriceMoveRule,
    SessionUnhealthyRule,
    SpreadRule,
    rule_name,
)
from kalshi_store.alerts_store import AlertStore, Condition, Delivery, NewEpisode, store_deliveries
from kalshi_store.depth import LastBucket

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


@dataclass
class Alert:
    """A newly opened alert episode (the only ones that are notified)."""

    alert_id: str
    condition: Condition
    notified: bool = False
    notify_error: str | None = None


# ----------------------------------------------------------------------------------------------- evaluation

def evaluate(store: AlertStore, market_set: MarketSet, facts: SessionFacts) -> list[Condition]:
    """Every condition that holds now, for every rule of the market set."""
    conditions: list[Condition] = []
    last_bucket: dict[str, dict[Decimal, LastBucket]] | None = None
    markets = set(facts.markets)
    for rule in market_set.alerts:
        name = rule_name(rule)
        if isinstance(rule, PriceMoveRule):
            conditions += _price_moves(store, name, rule, facts)
        elif isinstance(rule, SpreadRule | DepthBelowRule):
            if last_bucket is None:  # the session's books, of the markets the rules watch (facts.markets)
                last_bucket = {}
                for bucket in store.depth.last_buckets(facts.session_id):
                    if bucket.market_ticker in markets:
                        last_bucket.setdefault(bucket.market_ticker, {})[bucket.distance] = bucket
            conditions += _book_conditions(name, rule, last_bucket)
        elif isinstance(rule, MarketStaleRule):
            conditions += _stale(store, name, rule, facts)
        elif isinstance(rule, SessionUnhealthyRule):
            conditions += _unhealthy(name, rule, facts)
    return conditions


def _price_moves(store: AlertStore, name: str, rule: PriceMoveRule, facts: SessionFacts) -> list[Condition]:
    threshold = rule.threshold
    out = []
    if rule.window_seconds is not None:
        since = facts.ended_at - timedelta(seconds=rule.window_seconds)
        for market, low, high in store.price_ranges(facts.markets, since=since, until=facts.ended_at):
            move = high - low
            if move >= threshold:
                out.append(Condition(name, rule.kind, market, move, threshold,
                                     f"{market}: price moved {move} (from {low} to {high}) within "
                                     f"{rule.window_seconds:g} s (threshold {threshold})"))
        return out
    previous_end = store.previous_session_end(facts.market_set, facts.session_id, facts.started_at)
    if previous_end is None:
        return out  # first session of this market set: nothing to compare with
    epoch = datetime.fromtimestamp(0, tz=facts.ended_at.tzinfo)
    before = store.last_prices(facts.markets, since=epoch, until=previous_end)
    now = store.last_prices(facts.markets, since=previous_end, until=facts.ended_at)
    for market, price in now.items():
        if market in before and abs(price - before[market]) >= threshold:
            move = price - before[market]
            out.append(Condition(name, rule.kind, market, abs(move), threshold,
                                 f"{market}: price moved {move:+} since the previous session "
                                 f"({before[market]} -> {price}, threshold {threshold})"))
    return out


def _book_conditions(name: str, rule: SpreadRule | DepthBelowRule,
                     last_bucket: dict[str, dict[Decimal, LastBucket]]) -> list[Condition]:
    out = []
    for market, by_distance in sorted(last_bucket.items()):
        if isinstance(rule, SpreadRule):
            spread = next(iter(by_distance.values())).spread
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
        nearest = by_distance[eligible[0]]
        bid, ask = nearest.bid_depth, nearest.ask_depth
        if bid is None or ask is None:
            continue
        thinnest = min(bid, ask)
        if thinnest < rule.threshold:
            side = "bid" if bid <= ask else "ask"
            out.append(Condition(name, rule.kind, market, thinnest, rule.threshold,
                                 f"{market}: {side} depth within {rule.within} of the touch is {thinnest} "
                                 f"contracts (below {rule.threshold})"))
    return out


def _stale(store: AlertStore, name: str, rule: MarketStaleRule, facts: SessionFacts) -> list[Condition]:
    seen = store.last_seen(facts.session_id)
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

def record(store: AlertStore, market_set: MarketSet, facts: SessionFacts,
           conditions: Sequence[Condition]) -> list[Alert]:
    """Open new episodes, keep the ones still holding, resolve the rest; returns the new alerts.

    An open episode of a rule the market set no longer has is left as it is (neither kept nor resolved)."""
    rules = set(market_set.rule_names())
    current = {c.key: c for c in conditions}
    open_episodes = {e.condition_key: e for e in store.open_episodes(facts.market_set)}
    holding = [e.alert_id for key, e in open_episodes.items() if key in current]
    resolved = [e.alert_id for key, e in open_episodes.items() if key not in current and e.rule in rules]
    new = [Alert(str(uuid.uuid4()), c) for key, c in current.items() if key not in open_episodes]
    store.update_episodes(facts.market_set, facts.session_id, holding=holding, resolved=resolved,
                          opened=[NewEpisode(a.alert_id, a.condition) for a in new])
    return new


def store_notified(database_url: str, alerts: Sequence[Alert]) -> None:
    """Record on each alert whether its notification was accepted (and why not)."""
    store_deliveries(database_url, [Delivery(a.alert_id, a.notified, a.notify_error) for a in alerts])


def evaluate_and_record(database_url: str, market_set: MarketSet, facts: SessionFacts) -> list[Alert]:
    with AlertStore.connect(database_url) as store:
        return record(store, market_set, facts, evaluate(store, market_set, facts))


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
