"""Wire faults (simulator fault injection) against the real recording path: nothing lost, nothing duplicated,
every book equal to the exchange's at the end, every damaged window in the gap ledger, every undecodable
frame in dead_letter."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalshi_ws.simulator import Simulator

from .conftest import SEEDS
from .harness import check_all, framed_session, random_plan, rows, scalar

pytestmark = pytest.mark.timeout(120)

DURATION = 7.5

#: Open bug (docs/fault-matrix.md): a gap on the trade stream (a dropped or reordered trade frame) is reported
#: and abandoned by the protocol ("the storage layer backfills trades over REST"), but run_recording_session
#: backfills over REST only after a reconnect, so the missing trade is never stored; likewise trades printed
#: between a subscription error (10/25) on the trade channel and its re-subscription.
TRADE_GAP_BUG = ("kalshi_ingest/session.py: no REST trade backfill after a SequenceGap on the trade channel or "
                 "a re-created trade subscription (only after reconnects): dropped/reordered trade frames and "
                 "trades printed while the subscription is dead are lost")

FAMILIES = {
    # socket closed mid-stream, repeatedly (abort and 1011), and mid-snapshot
    "close": ["close", "close_mid_snapshot"],
    # seq gaps, duplicated and reordered frames, decimals as JSON numbers, on the order book stream
    "sequence": ["drop", "duplicate", "reorder", "numbers"],
    # the same on the trade stream (no snapshot there: lost trades must come back over REST)
    "trade_sequence": ["drop", "duplicate", "reorder", "sub_error"],
    # asynchronous subscription errors 10 and 25
    "sub_error": ["sub_error"],
    # malformed JSON, unknown types, legacy-shaped and oversized (2 MiB) frames, undocumented keys
    "garbage": ["malformed", "unknown_type", "legacy", "oversized", "extra_key"],
    # server stalls with pings still flowing
    "stall": ["stall"],
}


@pytest.mark.parametrize(("family", "seed"), [(f, SEEDS[i % len(SEEDS)]) for i, f in enumerate(sorted(FAMILIES))])
async def test_wire_fault_family(family: str, seed: int, sim: Simulator, db_url: str, tmp_path: Path,
                                 request: pytest.FixtureRequest) -> None:
    channel = {"sequence": "orderbook_delta", "trade_sequence": "trade"}.get(family)
    if family == "trade_sequence":
        request.applymarker(pytest.mark.xfail(reason=TRADE_GAP_BUG, strict=False))
    plan = random_plan(seed, FAMILIES[family], rate=1.2, channel=channel)
    summary, window = await framed_session(sim, db_url, tmp_path / "data", duration=DURATION, plan=plan)
    assert window.faults, "the schedule injected nothing"
    report = check_all(db_url, sim, window)
    report.assert_clean()
    assert report.trades_expected > 20
    assert report.trades_lost == 0 and report.trades_duplicated == 0
    assert report.books_wrong == 0
    assert summary.status in ("completed", "degraded"), summary.status_message
    if family == "garbage":
        # neighbours of the bad frames were stored: every trade is there (above) and the stream never broke
        assert scalar(db_url, "select count(*) from kalshi.dead_letter where session_id = %s",
                      summary.session_id) >= 1
    if family == "close":
        assert summary.reconnects >= 1
        assert rows(db_url, "select 1 from kalshi.gap_ledger where session_id = %s and kind = 'disconnect'",
                    summary.session_id)
