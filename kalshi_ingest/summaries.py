"""Depth summaries: replay one session's stored books and summarise them per market and time bucket.

The session's ``orderbook_snapshots`` and ``orderbook_deltas`` are replayed in wire order (per
connection generation and subscription, by ``seq``) through :class:`kalshi_ws.orderbook.OrderBook`, the
same book the client keeps. The book is sampled at most once per second of updates per market and at the
end of every bucket; pandas then aggregates the samples per (market, bucket): best bid/ask, spread, mid,
depth within several distances of the touch, and imbalance. The result goes to
``kalshi.depth_summaries`` (tidy: one row per distance) and to a Prefect table artifact.

Everything here is synchronous (pandas; the reads and the write are :class:`kalshi_store.depth.DepthStore`'s);
the flow runs it in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pandas as pd

from kalshi_store.depth import DEPTH_SUMMARY_COLUMNS, BookEvent, DepthStore, LedgerGap, StoredSnapshot
from kalshi_ws.orderbook import OrderBook

#: The book is sampled at most this often (seconds of receive time) per market, plus at every bucket end.
SAMPLE_SECONDS = 1.0


@dataclass(frozen=True)
class _Gap:
    markets: frozenset[str]
    start: datetime
    end: datetime | None

    def covers(self, market: str, at: datetime) -> bool:
        return (not self.markets or market in self.markets) and self.start <= at and (self.end is None or at <= self.end)

    @classmethod
    def from_ledger(cls, gap: LedgerGap) -> _Gap:
        """An abandoned recovery never ended: the book stays untrusted to the end of the session."""
        return cls(gap.markets, gap.started_at, gap.ended_at if gap.outcome != "abandoned" else None)


class _Sampler:
    """Replays book events and records samples (dicts) at most once per SAMPLE_SECONDS and at bucket ends, only
    within ``window`` (the time the session is authoritative for: see
    :meth:`kalshi_store.depth.DepthStore.authoritative_window`)."""

    def __init__(self, bucket_seconds: float, distances: Sequence[Decimal], gaps: Sequence[_Gap],
                 window: tuple[datetime | None, datetime | None] = (None, None)) -> None:
        self.window = window
        self.bucket = timedelta(seconds=bucket_seconds)
        self.distances = list(distances)
        self.gaps = gaps
        self.books: dict[str, OrderBook] = {}
        self.generation: dict[str, int] = {}
        self.next_sample: dict[str, datetime] = {}
        self.bucket_of: dict[str, datetime] = {}
        self.updates: dict[tuple[str, datetime], int] = {}
        self.untrusted: set[tuple[str, datetime]] = set()
        self.samples: list[dict[str, Any]] = []

    def bucket_start(self, at: datetime) -> datetime:
        seconds = self.bucket.total_seconds()
        epoch = at.timestamp()
        return datetime.fromtimestamp(math.floor(epoch / seconds) * seconds, tz=at.tzinfo)

    def _inside(self, at: datetime) -> bool:
        start, end = self.window
        return (start is None or at >= start) and (end is None or at < end)

    def apply(self, event: BookEvent) -> None:
        market = event.market_ticker
        at = event.received_at
        bucket = self.bucket_start(at)
        previous = self.bucket_of.get(market)
        if previous is not None and bucket != previous:
            self._sample(market, previous + self.bucket - timedelta(microseconds=1), previous)
        self.bucket_of[market] = bucket
        key = (market, bucket)
        if self._inside(at):
            self.updates[key] = self.updates.get(key, 0) + 1
        book = self.books.get(market)
        if isinstance(event, StoredSnapshot):
            book = OrderBook(market, use_yes_price=event.use_yes_price)
            book.apply_snapshot(zip(event.yes_prices, event.yes_sizes, strict=False),
                                zip(event.no_prices, event.no_sizes, strict=False))
            self.books[market] = book
            self.generation[market] = event.generation
        elif book is None or self.generation.get(market) != event.generation:
            self.untrusted.add(key)  # a delta without a snapshot on this connection: the book is unknown
            return
        else:
            book.apply_delta(event.side, event.price, event.delta)
        if any(gap.covers(market, at) for gap in self.gaps):
            self.untrusted.add(key)
        if at >= self.next_sample.get(market, at):
            self._sample(market, at, bucket)
            self.next_sample[market] = at + timedelta(seconds=SAMPLE_SECONDS)

    def finish(self) -> None:
        for market, bucket in self.bucket_of.items():
            self._sample(market, bucket + self.bucket - timedelta(microseconds=1), bucket)

    def _sample(self, market: str, at: datetime, bucket: datetime) -> None:
        book = self.books.get(market)
        if book is None or not self._inside(at):
            return
        sample: dict[str, Any] = {
            "market_ticker": market, "at": at, "bucket_start": bucket,
            "best_bid": book.best_yes_bid, "best_ask": book.best_yes_ask, "spread": book.spread, "mid": book.mid,
        }
        for i, distance in enumerate(self.distances):
            depth = book.depth_within(distance * 100)
            sample[f"bid_{i}"] = float(depth.yes)
            sample[f"ask_{i}"] = float(depth.no)
        self.samples.append(sample)


def replay_depth(events: Iterable[BookEvent], *, bucket_seconds: float, distances: Sequence[Decimal],
                 gaps: Sequence[_Gap] = (),
                 window: tuple[datetime | None, datetime | None] = (None, None)) -> pd.DataFrame:
    """Summaries (tidy, one row per market x bucket x distance) from book events in wire order, sampled only
    within ``window``."""
    sampler = _Sampler(bucket_seconds, distances, gaps, window)
    for event in events:
        sampler.apply(event)
    sampler.finish()
    return _aggregate(sampler, bucket_seconds)


def _aggregate(sampler: _Sampler, bucket_seconds: float) -> pd.DataFrame:
    columns = list(DEPTH_SUMMARY_COLUMNS)
    if not sampler.samples:
        return pd.DataFrame(columns=columns)
    samples = pd.DataFrame(sampler.samples).sort_values(["market_ticker", "at"], kind="stable")
    samples["spread_f"] = pd.to_numeric(samples["spread"].map(_float), errors="coerce")
    grouped = samples.groupby(["market_ticker", "bucket_start"], sort=True)
    last = grouped[["best_bid", "best_ask", "spread", "mid"]].last()
    base = pd.DataFrame({"samples": grouped.size(), "spread_mean": grouped["spread_f"].mean()}).join(last)
    frames = []
    for i, distance in enumerate(sampler.distances):
        depth = grouped.agg(bid_depth=(f"bid_{i}", "mean"), ask_depth=(f"ask_{i}", "mean"),
                            bid_depth_min=(f"bid_{i}", "min"), ask_depth_min=(f"ask_{i}", "min"))
        total = depth["bid_depth"] + depth["ask_depth"]
        depth["imbalance"] = ((depth["bid_depth"] - depth["ask_depth"]) / total).where(total > 0)
        depth["distance"] = distance
        frames.append(base.join(depth))
    out = pd.concat(frames).reset_index()
    keys = list(zip(out["market_ticker"], out["bucket_start"], strict=True))
    out["updates"] = [sampler.updates.get(k, 0) for k in keys]
    out["trusted"] = [k not in sampler.untrusted for k in keys]
    out["bucket_seconds"] = float(bucket_seconds)
    return out[columns].sort_values(["market_ticker", "bucket_start", "distance"], kind="stable").reset_index(drop=True)


def _float(value: Decimal | None) -> float:
    return math.nan if value is None else float(value)


def compute_depth_summaries(database_url: str, session_id: UUID | str, market_set: str, *,
                            bucket_seconds: float, distances: Sequence[Decimal]) -> pd.DataFrame:
    """Replay the session's books from PostgreSQL, store the summary, return it. A bucket is untrusted when a gap
    touched it or when nobody was recording its market for part of it (kalshi.uncovered_windows). Only the time the
    session was authoritative for is summarised (:meth:`~kalshi_store.depth.DepthStore.authoritative_window`): during
    the overlap of a handover both sessions stored the same events, and each instant is summarised once, from the
    session that was the recorder then."""
    with DepthStore.connect(database_url) as store:
        gaps = [_Gap.from_ledger(gap) for gap in store.gaps(session_id)]
        window = store.authoritative_window(session_id)
        holes = store.uncovered_windows(session_id, market_set)
        summary = replay_depth(store.book_events(session_id), bucket_seconds=bucket_seconds, distances=distances,
                               gaps=gaps, window=window)
        if holes and not summary.empty:
            bucket = timedelta(seconds=bucket_seconds)
            touched = [any(hole.market_ticker == market and hole.started_at < b + bucket and hole.ended_at > b
                           for hole in holes)
                       for market, b in zip(summary["market_ticker"], summary["bucket_start"], strict=True)]
            summary["trusted"] = summary["trusted"] & ~pd.Series(touched, index=summary.index)
        store.write_summaries(session_id, market_set, summary)
    return summary


def artifact_table(summary: pd.DataFrame, *, max_rows: int = 200) -> list[dict[str, Any]]:
    """The latest bucket of every market, one row per market and distance (nearest first), as text rounded for
    reading (prices 4 decimals, contracts 2, imbalance 2): the rows of the Prefect table artifact."""
    if summary.empty:
        return []
    newest = summary.groupby("market_ticker")["bucket_start"].transform("max")
    latest = summary[summary["bucket_start"] == newest].sort_values(["market_ticker", "distance"], kind="stable")
    return [{"market": r.market_ticker, "bucket_start": f"{r.bucket_start:%Y-%m-%d %H:%M:%S}",
             "distance": fixed(r.distance, 2), "best_bid": fixed(r.best_bid, 4), "best_ask": fixed(r.best_ask, 4),
             "spread": fixed(r.spread, 4), "bid_depth": fixed(r.bid_depth, 2), "ask_depth": fixed(r.ask_depth, 2),
             "imbalance": fixed(r.imbalance, 2, sign=True), "trusted": bool(r.trusted)}
            for r in latest.head(max_rows).itertuples(index=False)]


def fixed(value: object, places: int, *, sign: bool = False) -> str:
    """``value`` with exactly ``places`` decimals (``""`` for None or NaN); exact for Decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    number = value if isinstance(value, Decimal) else Decimal(repr(float(value)))  # type: ignore[arg-type]
    return format(number, f"{'+' if sign else ''}.{places}f")
