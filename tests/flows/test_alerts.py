"""Alert rules against stored rows in a real PostgreSQL: each kind, episodes, no repeats, resolution."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import psycopg

from kalshi_ingest import alerts
from kalshi_ingest.config import MarketSet, parse_config

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def market_set(*rules: dict[str, Any]) -> MarketSet:
    document = {"market_sets": {"s": {"tickers": ["A", "B"], "alerts": list(rules)}}}
    return parse_config(document, Path("market_sets.yaml")).get("s")


def add_session(url: str, start: datetime, seconds: float = 60) -> alerts.SessionFacts:
    session_id = str(uuid.uuid4())
    with psycopg.connect(url) as conn:
        conn.execute("insert into kalshi.sessions (session_id, market_set, environment, markets, started_at, "
                     "ended_at, status) values (%s, 's', 'test', %s, %s, %s, 'completed')",
                     (session_id, ["A", "B"], start, start + timedelta(seconds=seconds)))
    return alerts.SessionFacts(session_id=session_id, market_set="s", markets=["A", "B"], started_at=start,
                               ended_at=start + timedelta(seconds=seconds))


def add_trade(url: str, session: alerts.SessionFacts, market: str, price: str, at: datetime) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, "
                     "exchange_ts, received_at, source, session_id) values (%s, %s, %s, %s, 1 - %s::numeric, 1, "
                     "%s, %s, 'ws', %s)",
                     (str(uuid.uuid4()), at.date(), market, D(price), D(price), at, at, session.session_id))


def add_depth(url: str, session: alerts.SessionFacts, market: str, spread: str, bid: float, ask: float) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("insert into kalshi.depth_summaries (session_id, market_set, market_ticker, bucket_start, "
                     "bucket_seconds, distance, samples, updates, spread, bid_depth, ask_depth) "
                     "values (%s, 's', %s, %s, 60, 0.05, 1, 1, %s, %s, %s)",
                     (session.session_id, market, session.started_at, D(spread), bid, ask))


def evaluate(url: str, config: MarketSet, facts: alerts.SessionFacts) -> list[alerts.Alert]:
    return alerts.evaluate_and_record(url, config, facts)


def test_price_move_since_the_previous_session(db_url: str) -> None:
    config = market_set({"kind": "price_move", "threshold": 0.05})
    first = add_session(db_url, T0)
    add_trade(db_url, first, "A", "0.40", T0 + timedelta(seconds=30))
    add_trade(db_url, first, "B", "0.60", T0 + timedelta(seconds=30))
    assert evaluate(db_url, config, first) == []  # nothing to compare with yet
    second = add_session(db_url, T0 + timedelta(hours=1))
    add_trade(db_url, second, "A", "0.47", T0 + timedelta(hours=1, seconds=30))
    add_trade(db_url, second, "B", "0.62", T0 + timedelta(hours=1, seconds=30))

    fired = evaluate(db_url, config, second)

    assert [(a.condition.market_ticker, a.condition.value) for a in fired] == [("A", D("0.07"))]
    assert "price moved +0.07 since the previous session (0.40 -> 0.47" in fired[0].condition.message


def test_price_move_within_a_window(db_url: str) -> None:
    config = market_set({"kind": "price_move", "threshold": 0.05, "window_seconds": 30})
    session = add_session(db_url, T0)
    add_trade(db_url, session, "A", "0.40", T0 + timedelta(seconds=5))   # outside the last 30 s
    add_trade(db_url, session, "A", "0.50", T0 + timedelta(seconds=35))
    add_trade(db_url, session, "A", "0.52", T0 + timedelta(seconds=55))
    add_trade(db_url, session, "B", "0.30", T0 + timedelta(seconds=40))
    add_trade(db_url, session, "B", "0.36", T0 + timedelta(seconds=50))
    fired = evaluate(db_url, config, session)
    assert [(a.condition.market_ticker, a.condition.value) for a in fired] == [("B", D("0.06"))]


def test_spread_and_depth_rules_use_the_last_bucket(db_url: str) -> None:
    config = market_set({"kind": "spread_above", "threshold": 0.05}, {"kind": "spread_below", "threshold": 0.02},
                        {"kind": "depth_below", "threshold": 100, "within": 0.05})
    session = add_session(db_url, T0)
    add_depth(db_url, session, "A", "0.08", 500, 40)
    add_depth(db_url, session, "B", "0.01", 300, 300)
    fired = {(a.condition.kind, a.condition.market_ticker) for a in evaluate(db_url, config, session)}
    assert fired == {("spread_above", "A"), ("spread_below", "B"), ("depth_below", "A")}


def test_stale_markets_and_unhealthy_sessions(db_url: str) -> None:
    config = market_set({"kind": "market_stale", "seconds": 20}, {"kind": "session_unhealthy", "max_reconnects": 1})
    session = add_session(db_url, T0)
    add_trade(db_url, session, "A", "0.40", T0 + timedelta(seconds=55))  # B never traded: stale
    facts = alerts.SessionFacts(**{**session.__dict__, "reconnects": 2, "rows_spilled": 10})
    fired = {a.condition.kind: a.condition for a in evaluate(db_url, config, facts)}
    assert fired["market_stale"].market_ticker == "B" and "no data at all" in fired["market_stale"].message
    assert "2 reconnects" in fired["session_unhealthy"].message
    assert "10 rows spilled" in fired["session_unhealthy"].message


def test_an_alert_is_not_repeated_while_it_holds_and_resolves_when_it_stops(db_url: str) -> None:
    config = market_set({"kind": "spread_above", "threshold": 0.05})
    first = add_session(db_url, T0)
    add_depth(db_url, first, "A", "0.08", 1, 1)
    assert len(evaluate(db_url, config, first)) == 1
    second = add_session(db_url, T0 + timedelta(hours=1))
    add_depth(db_url, second, "A", "0.09", 1, 1)
    assert evaluate(db_url, config, second) == []  # still holds: same episode, not sent again
    third = add_session(db_url, T0 + timedelta(hours=2))
    add_depth(db_url, third, "A", "0.01", 1, 1)
    assert evaluate(db_url, config, third) == []
    fourth = add_session(db_url, T0 + timedelta(hours=3))
    add_depth(db_url, fourth, "A", "0.10", 1, 1)
    assert len(evaluate(db_url, config, fourth)) == 1  # a new episode after it had resolved
    with psycopg.connect(db_url) as conn:
        episodes = conn.execute("select session_id::text, last_session_id::text, resolved_at is not null "
                                "from kalshi.alerts order by fired_at").fetchall()
    assert episodes == [(first.session_id, second.session_id, True), (fourth.session_id, fourth.session_id, False)]


async def test_alerts_without_a_notification_block_keep_the_reason() -> None:
    alert = alerts.Alert("id", alerts.Condition("r", "spread_above", "A", D(1), D(0), "A: spread 1"))
    await alerts.notify(None, "s", [alert])
    assert not alert.notified and alert.notify_error == "no notify_block configured for this market set"
