"""MarketFollower's rules for markets that come and go (pure: no client, no database)."""

from __future__ import annotations

import time

import msgspec

from kalshi_ingest.config import MarketSet
from kalshi_ingest.following import MarketFollower
from kalshi_ws import messages


def _lifecycle(market: str, kind: str) -> messages.MarketLifecyclePayload:
    return msgspec.convert({"market_ticker": market, "event_type": kind}, messages.MarketLifecyclePayload)


def test_a_market_seen_closing_is_not_taken_back_from_the_predecessors_coverage() -> None:
    """After a handover the successor adds what the predecessor still records (its open coverage). A market the
    successor itself saw close is open there only until the predecessor's next heartbeat: taking it back would
    subscribe a closed market and put a false hole on record between its two stretches."""
    market_set = MarketSet(name="s", series=["KXA"], channels=["orderbook_delta", "trade"])
    follower = MarketFollower(market_set, ["KXA-1", "KXA-2"], link=None)
    follower.on_lifecycle(_lifecycle("KXA-2", "deactivated"), time.time_ns())
    assert follower.markets == ["KXA-1"]
    assert follower.add(["KXA-1", "KXA-2"], opened_at=None, inherited=True) == []
    # It opens again: the lifecycle channel brings it back, as for any market.
    follower.on_lifecycle(_lifecycle("KXA-2", "activated"), time.time_ns())
    assert follower.markets == ["KXA-1", "KXA-2"]
