"""Depth summaries from book events: buckets, end-of-bucket prices, depth near the touch, trust."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from kalshi_ingest.summaries import _Gap, artifact_table, replay_depth
from kalshi_store.depth import BookEvent, StoredDelta, StoredSnapshot

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


def snapshot(seq: int, at: float, market: str = "M", generation: int = 1) -> StoredSnapshot:
    return StoredSnapshot(generation=generation, sid=1, seq=seq, market_ticker=market,
                          received_at=T0 + timedelta(seconds=at), use_yes_price=False,
                          yes_prices=[D("0.40"), D("0.41")], yes_sizes=[D(10), D(20)],
                          no_prices=[D("0.55"), D("0.57")], no_sizes=[D(5), D(7)])


def delta(seq: int, at: float, side: str, price: str, size: float, market: str = "M",
          generation: int = 1) -> StoredDelta:
    return StoredDelta(generation=generation, sid=1, seq=seq, market_ticker=market,
                       received_at=T0 + timedelta(seconds=at), side=side, price=D(price), delta=D(size))


def test_buckets_report_the_book_at_their_end_and_depth_near_the_touch() -> None:
    events: list[BookEvent] = [snapshot(1, 0.0), delta(2, 3.0, "yes", "0.42", 4), delta(3, 12.0, "no", "0.57", -7)]
    summary = replay_depth(events, bucket_seconds=10, distances=[D("0.01"), D("0.05")])

    assert list(summary["bucket_start"].unique()) == [T0, T0 + timedelta(seconds=10)]
    first = summary[(summary["bucket_start"] == T0) & (summary["distance"] == D("0.01"))].iloc[0]
    # after the delta at 3 s: best YES bid 0.42 (new level), best YES ask 1 - 0.57 = 0.43
    assert (first.best_bid, first.best_ask, first.spread) == (D("0.42"), D("0.43"), D("0.01"))
    assert first.updates == 2 and bool(first.trusted)
    second = summary[(summary["bucket_start"] == T0 + timedelta(seconds=10))
                     & (summary["distance"] == D("0.05"))].iloc[0]
    # the 0.57 NO level was removed: best NO bid 0.55 -> ask 0.45; all YES bids within 5c of 0.42
    assert second.best_ask == D("0.45")
    assert second.bid_depth_min == 34.0 and second.ask_depth == 5.0
    assert second.imbalance == (34.0 - 5.0) / 39.0


def test_deltas_without_a_snapshot_on_their_connection_are_untrusted() -> None:
    events: list[BookEvent] = [snapshot(1, 0.0), delta(1, 11.0, "yes", "0.40", 1, generation=2)]
    summary = replay_depth(events, bucket_seconds=10, distances=[D("0.01")])
    assert list(summary["trusted"]) == [True, False]


def test_gaps_mark_their_buckets_untrusted() -> None:
    events: list[BookEvent] = [snapshot(1, 0.0), delta(2, 1.0, "yes", "0.40", 1), delta(4, 12.0, "yes", "0.40", 1)]
    gap = _Gap(frozenset({"M"}), T0 + timedelta(seconds=11), T0 + timedelta(seconds=13))
    summary = replay_depth(events, bucket_seconds=10, distances=[D("0.01")], gaps=[gap])
    assert list(summary["trusted"]) == [True, False]


def test_empty_session_and_artifact_rows() -> None:
    assert replay_depth([], bucket_seconds=10, distances=[D("0.01")]).empty
    summary = replay_depth([snapshot(1, 0.0, "A"), snapshot(2, 0.0, "B")], bucket_seconds=10, distances=[D("0.02")])
    rows = artifact_table(summary)
    assert [row["market"] for row in rows] == ["A", "B"]
    assert rows[0]["best_bid"] == "0.4100" and rows[0]["distance"] == "0.02" and rows[0]["bid_depth"] == "30.00"


def test_artifact_rows_are_rounded_and_cover_every_distance() -> None:
    events: list[BookEvent] = [snapshot(1, 0.0, "A"), delta(2, 1.0, "yes", "0.40", 1.0 / 3, market="A")]
    summary = replay_depth(events, bucket_seconds=10, distances=[D("0.01"), D("0.05"), D("0.10")])
    rows = artifact_table(summary)
    assert [row["distance"] for row in rows] == ["0.01", "0.05", "0.10"]
    for row in rows:
        for key in ("best_bid", "best_ask", "spread"):
            assert len(row[key].split(".")[1]) == 4, row
        for key in ("bid_depth", "ask_depth"):
            assert len(row[key].split(".")[1]) == 2, row
