"""Fills backfilled from REST: stored with source = 'rest', never duplicating a live (WebSocket) fill."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import storage_frames as f

from kalshi_store.recorder import Recorder
from kalshi_ws import messages as m

pytestmark = pytest.mark.asyncio


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute("set time zone 'UTC'")
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def rest_fill(trade_id: str, order_id: str, ts_ms: int) -> m.FillPayload:
    """A fill as ``KalshiRestClient.get_fills`` returns it: the WebSocket payload, without what REST lacks
    (``exchange_index``, ``post_position_fp``, ``purchased_side``)."""
    return m.FillPayload(trade_id=trade_id, order_id=order_id, client_order_id="c-1", market_ticker="M-1",
                         side="no", action="buy", count_fp=Decimal("0.01"), yes_price_dollars=Decimal("0.4300"),
                         is_taker=True, outcome_side="no", book_side="ask", fee_cost=Decimal("0.330000"),
                         ts_ms=ts_ms)


async def test_rest_fills_deduplicate_with_websocket_fills(db_url: str, tmp_path: Path) -> None:
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        session_id = await recorder.open_session("test", "simulator", ["M-1"], ["fill"])
        recorder.on_message(f.fill("same", "order-1"), 1, time.time_ns())
        await recorder.flush()
        missed = rest_fill("missed", "order-1", 1795599600500)
        assert recorder.add_rest_fills([rest_fill("same", "order-1", 1795600000123), missed]) == 2
        await recorder.flush()
        # the same REST fills again (overlapping backfill windows), and a live duplicate in the same batch
        recorder.add_rest_fills([missed, rest_fill("both", "order-2", 1795599660000)])
        recorder.on_message(f.fill("both", "order-2"), 1, time.time_ns())
        await recorder.close_session()
    assert rows(db_url, "select trade_id, order_id, source, exchange_ts, count::text, yes_price::text, "
                "fee_cost::text, is_taker, outcome_side, post_position::text, session_id::text "
                "from kalshi.fills order by trade_id") == [
        ("both", "order-2", "ws", datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC), "0.01", "0.4300",
         "0.330000", True, "no", "-75.25", session_id),
        ("missed", "order-1", "rest", datetime(2026, 11, 25, 9, 40, 0, 500000, tzinfo=UTC), "0.01", "0.4300",
         "0.330000", True, "no", None, session_id),
        ("same", "order-1", "ws", datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC), "0.01", "0.4300",
         "0.330000", True, "no", "-75.25", session_id),
    ]
