"""A notify_block that does not exist is a problem the flow reports (and logs), not a silent Completed."""

from __future__ import annotations

import logging
from decimal import Decimal as D

from kalshi_ingest import alerts


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_missing_notify_block_is_returned_logged_and_reported(prefect_server: None) -> None:
    records = _Records()
    logging.getLogger("kalshi_ingest.alerts").addHandler(records)  # Prefect's logging setup bypasses caplog
    fired = [alerts.Alert(f"id-{i}", alerts.Condition("r", "spread_above", "A", D(1), D(0), "A: spread 1"))
             for i in range(2)]
    try:
        problems = await alerts.notify("no-such-block", "cpi", fired)
    finally:
        logging.getLogger("kalshi_ingest.alerts").removeHandler(records)
    expected = ("notify block 'no-such-block' not found: create it (UI -> Blocks) or fix notify_block in market set "
                "'cpi'; 2 alert(s) not sent")
    assert problems == [expected]
    assert alerts.delivery_problems(fired) == [expected]  # what the flow adds to its problems list
    assert not any(a.notified for a in fired)
    assert records.lines == [expected]


async def test_no_notify_block_at_all_is_not_a_problem() -> None:
    fired = [alerts.Alert("id", alerts.Condition("r", "spread_above", "A", D(1), D(0), "A: spread 1"))]
    assert await alerts.notify(None, "cpi", fired) == []
    assert alerts.delivery_problems(fired) == []
