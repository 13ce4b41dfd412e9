"""Market data for researchers: pandas DataFrames of trades, bars, top of book and order books, from the hot tables
and the archive in one call, with a ``trusted`` flag on every row.

::

    from kalshi_ingest.data import MarketData

    data = MarketData()                      # DATABASE_URL and KALSHI_ARCHIVE_URL from the environment
    trades = data.trades("KXFED-26DEC-T4.00", "2026-11-03", "2026-11-05")
    bars = data.bars("KXFED-26DEC-T4.00", "5min", "2026-11-03", "2026-11-05")
    book = data.book_at("KXFED-26DEC-T4.00", "2026-11-03 10:15:03.250+00")

Each call reads the hot tables (PostgreSQL, through SQLAlchemy) and the archived days (Parquet) that the interval
touches and returns one DataFrame: a row in both tiers (while a day is being archived) appears once. The results
are the ones the SQL report functions give (``kalshi.trade_bars``, ``kalshi.top_of_book``, ``kalshi.book_at``)
over the hot data, computed the same way over both tiers. ``trusted`` is false when an untrusted window
(``kalshi.untrusted_windows``: a gap, a disconnect, time nobody recorded) covers the row's instant (overlaps a
bar); the windows of archived days are kept in the archive, so archived rows keep their flag.

Times are ``datetime64[us, UTC]``; prices and sizes are exact :class:`~decimal.Decimal`. Any ``start``/``end``/``at``
accepts what :class:`pandas.Timestamp` does (a naive time is UTC).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from kalshi_ingest.settings import Settings
from kalshi_store import archive, reads

__all__ = ["MarketData"]

#: Bars are aligned to this instant, as ``kalshi.trade_bars`` does (``date_bin`` from 2000-01-01 UTC).
BAR_ORIGIN = pd.Timestamp("2000-01-01", tz="UTC")
#: Sessions besides those recording at an instant whose snapshots may give its book (the latest ones started).
_FALLBACK_SESSIONS = 2
_STREAM_KEY = ("session_id", "generation", "sid")
_BOOK_COLUMNS = ("side", "price", "size", "yes_price", "trusted", "session_id", "generation", "sid", "snapshot_seq",
                 "last_seq", "snapshot_received_at", "as_of")
_TOP_COLUMNS = ("market_ticker", "exchange_ts", "yes_bid", "yes_ask", "spread", "mid", "yes_bid_size",
                "yes_ask_size", "last_price", "last_trade_size", "volume", "open_interest", "received_at",
                "latency_ms", "session_id", "trusted")


def _utc(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _days(start: datetime, end: datetime) -> list[date]:
    first, last = start.date(), end.date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _combined(hot: pd.DataFrame, archived: pd.DataFrame, table: str) -> pd.DataFrame:
    """Both tiers' rows, each row once (by the table's key)."""
    frames = [f for f in (hot, archived) if not f.empty]
    if not frames:
        return hot
    both = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return both.drop_duplicates(subset=list(archive.ARCHIVED_TABLES[table].key), ignore_index=True)


def _session_days(coverage: pd.DataFrame, sessions: Iterable[uuid.UUID]) -> set[date]:
    """The day partitions that may hold the snapshots and deltas of ``sessions``: the UTC day each started (the
    partition key), and the days either side in case the recorder's clock put the start across midnight."""
    started = coverage.loc[coverage["session_id"].isin(set(sessions)), "session_date"]
    return {day + timedelta(days=shift) for day in started for shift in (-1, 0, 1)}


@dataclass
class _Windows:
    """Untrusted windows of one market, as arrays of bounds."""

    lower: np.ndarray
    upper: np.ndarray
    lower_inc: np.ndarray
    upper_inc: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Windows:
        frame = frame.drop_duplicates(subset=["kind", "session_id", "lower", "upper", "lower_inc", "upper_inc"])
        lower = frame["lower"].fillna(pd.Timestamp.min.tz_localize("UTC"))
        upper = frame["upper"].fillna(pd.Timestamp.max.tz_localize("UTC"))
        return cls(lower.to_numpy("datetime64[us]"), upper.to_numpy("datetime64[us]"),
                   frame["lower_inc"].to_numpy(bool), frame["upper_inc"].to_numpy(bool))

    def contains(self, instants: pd.Series) -> np.ndarray:
        """For each instant: is it inside some window?"""
        t = instants.to_numpy("datetime64[us]")[:, None]
        after = (t > self.lower) | (self.lower_inc & (t == self.lower))
        before = (t < self.upper) | (self.upper_inc & (t == self.upper))
        return np.asarray((after & before).any(axis=1), dtype=bool)

    def overlaps(self, starts: pd.Series, ends: pd.Series) -> np.ndarray:
        """For each ``[start, end)``: does some window overlap it?"""
        s = starts.to_numpy("datetime64[us]")[:, None]
        e = ends.to_numpy("datetime64[us]")[:, None]
        return np.asarray(((self.lower < e) & ((self.upper > s) | (self.upper_inc & (self.upper == s)))).any(axis=1),
                          dtype=bool)


@dataclass
class _Book:
    """A book being rebuilt: the stream it follows and its levels (``kalshi.level_size``: floored at zero)."""

    snapshot: Mapping[str, Any]
    recording: bool
    levels: dict[tuple[str, Decimal], Decimal] = field(default_factory=dict)
    last_seq: int = 0
    as_of: datetime | None = None

    @classmethod
    def start(cls, snapshot: Mapping[str, Any], recording: bool) -> _Book:
        book = cls(snapshot, recording, last_seq=int(snapshot["seq"]), as_of=snapshot["received_at"])
        for side in ("yes", "no"):
            for price, size in zip(snapshot[f"{side}_prices"] or [], snapshot[f"{side}_sizes"] or [], strict=True):
                book.change(side, price, size)
        return book

    @property
    def stream(self) -> tuple[Any, ...]:
        return tuple(self.snapshot[c] for c in _STREAM_KEY)

    def change(self, side: str, price: Decimal, change: Decimal) -> Decimal:
        size = max(self.levels.get((side, price), Decimal(0)) + change, Decimal(0))
        self.levels[(side, price)] = size
        return size

    def apply(self, delta: Mapping[str, Any]) -> Decimal:
        size = self.change(delta["side"], delta["price"], delta["delta"])
        self.last_seq = max(self.last_seq, int(delta["seq"]))
        self.as_of = max(self.as_of, delta["changed_at"]) if self.as_of is not None else delta["changed_at"]
        return size

    def yes_price(self, side: str, price: Decimal) -> Decimal:
        return price if side == "yes" or self.snapshot["use_yes_price"] else 1 - price

    def best(self) -> tuple[Decimal | None, Decimal | None, Decimal | None, Decimal | None]:
        """Best YES bid and its size, best YES ask (1 - best NO bid) and its size."""
        bid = ask = bid_size = ask_size = None
        for (side, price), size in self.levels.items():
            if size <= 0:
                continue
            yes = self.yes_price(side, price)
            if side == "yes" and (bid is None or yes > bid):
                bid, bid_size = yes, size
            elif side == "no" and (ask is None or yes < ask):
                ask, ask_size = yes, size
        return bid, bid_size, ask, ask_size


class MarketData:
    """Reads recorded market data from the hot tables and the archive; every method returns a DataFrame.

    ``database_url`` defaults to ``DATABASE_URL`` (or the embedded PostgreSQL of the data folder), ``archive_url``
    to ``KALSHI_ARCHIVE_URL`` (a folder or an object-store URL; ``None``: hot tables only).
    """

    def __init__(self, database_url: str | None = None, archive_url: str | None = None) -> None:
        settings = Settings()
        if database_url is None:
            from kalshi_store.embedded import ensure_database

            database_url = ensure_database(settings.database(), settings.data_dir)
        self.database_url = database_url
        self.archive_url = archive_url if archive_url is not None else settings.kalshi_archive_url
        self.engine = reads.engine(database_url)
        self._archived: dict[tuple[str, date, str], tuple[Any, pd.DataFrame]] = {}

    # ---- trades and bars -----------------------------------------------------------------------------------

    def trades(self, market: str, start: Any, end: Any) -> pd.DataFrame:
        """Trades of ``market`` with exchange time in ``[start, end)``, in the exchange's matching order: the
        columns of ``kalshi.trades`` and ``trusted``."""
        lo, hi = _utc(start), _utc(end)
        frame = _combined(reads.trades(self.engine, market, lo, hi),
                          self._archive("trades", _days(lo, hi), market), "trades")
        frame = frame[(frame["exchange_ts"] >= lo) & (frame["exchange_ts"] < hi)]
        frame = frame.sort_values(["exchange_ts", "seq", "received_at", "trade_id"], na_position="last",
                                  ignore_index=True)
        frame["trusted"] = ~self._windows(market, lo, hi).contains(frame["exchange_ts"])
        return frame

    def bars(self, market: str, bar: Any, start: Any, end: Any) -> pd.DataFrame:
        """Trade bars of ``market`` (the columns of ``kalshi.trade_bars``): one row per bar of length ``bar`` (a
        fixed length: ``"5min"``, ``"1h"``, a :class:`~datetime.timedelta`) with at least one trade in
        ``[start, end)``, aligned to 2000-01-01 UTC; ``trusted`` is false when an untrusted window overlaps the bar."""
        length = pd.Timedelta(bar)
        trades = self.trades(market, start, end)
        columns = ["market_ticker", "bar_start", "bar_end", "open", "high", "low", "close", "vwap", "volume",
                   "notional", "trades", "yes_taker_volume", "no_taker_volume", "block_trades", "trusted"]
        if trades.empty:
            return pd.DataFrame({c: [] for c in columns})
        trades["bar_start"] = BAR_ORIGIN + ((trades["exchange_ts"] - BAR_ORIGIN) // length) * length
        rows = []
        for bar_start, group in trades.groupby("bar_start", sort=True):
            prices, counts = list(group["yes_price"]), list(group["count"])
            volume = sum(counts, Decimal(0))
            notional = sum((p * c for p, c in zip(prices, counts, strict=True)), Decimal(0))
            sides = list(group["taker_outcome_side"])
            rows.append({
                "market_ticker": market, "bar_start": bar_start, "bar_end": bar_start + length,
                "open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
                "vwap": notional / volume if volume else None, "volume": volume, "notional": notional,
                "trades": len(prices),
                "yes_taker_volume": sum((c for c, s in zip(counts, sides, strict=True) if s == "yes"), Decimal(0)),
                "no_taker_volume": sum((c for c, s in zip(counts, sides, strict=True) if s == "no"), Decimal(0)),
                "block_trades": int(group["is_block_trade"].sum()),
            })
        frame = pd.DataFrame(rows)
        for column in ("bar_start", "bar_end"):
            frame[column] = frame[column].astype("datetime64[us, UTC]")
        windows = self._windows(market, frame["bar_start"].min().to_pydatetime(),
                                frame["bar_end"].max().to_pydatetime())
        frame["trusted"] = ~windows.overlaps(frame["bar_start"], frame["bar_end"])
        return frame[columns]

    # ---- top of book ---------------------------------------------------------------------------------------

    def top_of_book(self, market: str, start: Any, end: Any) -> pd.DataFrame:
        """Every ticker update of ``market`` with exchange time in ``[start, end)``: the columns of
        ``kalshi.top_of_book`` (a missing side, sent as bid 0 / ask 1, is ``None``) and ``trusted``."""
        lo, hi = _utc(start), _utc(end)
        t = _combined(reads.tickers(self.engine, market, lo, hi),
                      self._archive("tickers", _days(lo, hi), market), "tickers")
        t = t[(t["exchange_ts"] >= lo) & (t["exchange_ts"] < hi)]
        t = t.sort_values(["exchange_ts", "received_at"], ignore_index=True)
        bid = [None if v is None or v == 0 else v for v in t["yes_bid"]]
        ask = [None if v is None or v == 1 else v for v in t["yes_ask"]]
        frame = pd.DataFrame({
            "market_ticker": t["market_ticker"], "exchange_ts": t["exchange_ts"],
            "yes_bid": pd.Series(bid, dtype=object), "yes_ask": pd.Series(ask, dtype=object),
            "spread": pd.Series([None if b is None or a is None else a - b for b, a in zip(bid, ask, strict=True)],
                                dtype=object),
            "mid": pd.Series([None if b is None or a is None else (a + b) / 2 for b, a in zip(bid, ask, strict=True)],
                             dtype=object),
            "yes_bid_size": t["yes_bid_size"], "yes_ask_size": t["yes_ask_size"], "last_price": t["price"],
            "last_trade_size": t["last_trade_size"], "volume": t["volume"], "open_interest": t["open_interest"],
            "received_at": t["received_at"],
            "latency_ms": (t["received_at"] - t["exchange_ts"]) / pd.Timedelta(milliseconds=1),
            "session_id": t["session_id"],
        })
        frame["trusted"] = ~self._windows(market, lo, hi).contains(frame["exchange_ts"])
        return frame[list(_TOP_COLUMNS)]

    # ---- order books ---------------------------------------------------------------------------------------

    def book_at(self, market: str, at: Any) -> pd.DataFrame:
        """The order book of ``market`` at instant ``at``, as ``kalshi.book_at`` gives it (one row per resting level,
        best first within each side; no rows when no snapshot was recorded before ``at``)."""
        instant = _utc(at)
        coverage = reads.coverage(self.engine, market)
        book = self._book_at(market, instant, coverage)
        if book is None:
            return pd.DataFrame({c: [] for c in _BOOK_COLUMNS})
        trusted = book.recording and not bool(self._windows(market, instant, instant).contains(
            pd.Series([instant]))[0])
        snapshot = book.snapshot
        rows = [{"side": side, "price": price, "size": size, "yes_price": book.yes_price(side, price),
                 "trusted": trusted, "session_id": snapshot["session_id"], "generation": snapshot["generation"],
                 "sid": snapshot["sid"], "snapshot_seq": snapshot["seq"], "last_seq": book.last_seq,
                 "snapshot_received_at": snapshot["received_at"], "as_of": book.as_of}
                for (side, price), size in book.levels.items() if size > 0]
        frame = pd.DataFrame(rows, columns=list(_BOOK_COLUMNS))
        return frame.sort_values(["side", "price"], ascending=False, ignore_index=True)

    def book_replay(self, market: str, start: Any, end: Any) -> pd.DataFrame:
        """The book of ``market`` replayed over ``[start, end]``: one row for the book at ``start`` (kind ``start``),
        then one per change (kind ``delta``, or ``snapshot`` when the book was rebuilt from a new snapshot), with
        the level that changed, its size after the change, the best YES bid and ask after it (with sizes) and
        ``trusted``. The best bid and ask of the last row at or before an instant are those of
        :meth:`book_at` at that instant."""
        lo, hi = _utc(start), _utc(end)
        coverage = reads.coverage(self.engine, market)
        book = self._book_at(market, lo, coverage)
        sessions = self._sessions_between(coverage, lo, hi)
        if book is not None:
            sessions.add(book.snapshot["session_id"])
        snaps = self._snapshots(market, lo, hi, coverage, sessions)
        snaps = snaps[snaps["received_at"] > lo]
        deltas = self._deltas(market, sessions, hi, coverage)
        deltas = deltas[deltas["changed_at"] > lo]
        events = sorted([(s["received_at"], 0, int(s["seq"]), "snapshot", s) for s in snaps.to_dict("records")]
                        + [(d["changed_at"], 1, int(d["seq"]), "delta", d) for d in deltas.to_dict("records")],
                        key=lambda e: e[:3])
        stretches = self._stretches(coverage)
        windows = self._windows(market, lo, hi)
        rows: list[dict[str, Any]] = []

        def emit(when: datetime, kind: str, side: str | None = None, price: Decimal | None = None,
                 change: Decimal | None = None, size: Decimal | None = None, seq: int | None = None) -> None:
            assert book is not None
            bid, bid_size, ask, ask_size = book.best()
            covered = any(a <= when < b for a, b in stretches.get(book.snapshot["session_id"], ()))
            rows.append({"at": when, "kind": kind, "side": side, "price": price, "delta": change, "size": size,
                         "best_yes_bid": bid, "best_yes_bid_size": bid_size, "best_yes_ask": ask,
                         "best_yes_ask_size": ask_size, "trusted": covered, "session_id": book.snapshot["session_id"],
                         "generation": book.snapshot["generation"], "sid": book.snapshot["sid"], "seq": seq})

        if book is not None:
            emit(lo, "start", seq=book.last_seq)
        for when, _order, seq, kind, row in events:
            if kind == "snapshot":
                recording = any(a <= when < b for a, b in stretches.get(row["session_id"], ()))
                if book is None or recording or not any(
                        a <= when < b for a, b in stretches.get(book.snapshot["session_id"], ())):
                    book = _Book.start(row, recording)
                    stream = deltas[(deltas["session_id"] == row["session_id"])
                                    & (deltas["generation"] == row["generation"]) & (deltas["sid"] == row["sid"])
                                    & (deltas["seq"] > seq) & (deltas["changed_at"] <= when)]
                    for delta in stream.sort_values("seq").to_dict("records"):
                        book.apply(delta)
                    emit(when, "snapshot", seq=seq)
            elif book is not None and tuple(row[c] for c in _STREAM_KEY) == book.stream \
                    and seq > int(book.snapshot["seq"]) and seq > book.last_seq:
                size = book.apply(row)
                emit(when, "delta", row["side"], row["price"], row["delta"], size, seq)
        frame = pd.DataFrame(rows, columns=["at", "kind", "side", "price", "delta", "size", "best_yes_bid",
                                            "best_yes_bid_size", "best_yes_ask", "best_yes_ask_size", "trusted",
                                            "session_id", "generation", "sid", "seq"])
        if not frame.empty:
            frame["at"] = frame["at"].astype("datetime64[us, UTC]")
            frame["trusted"] = frame["trusted"].astype(bool) & ~windows.contains(frame["at"])
        return frame

    # ---- internals -----------------------------------------------------------------------------------------

    def _archive(self, table: str, days: Iterable[date], market: str) -> pd.DataFrame:
        """Archived rows of ``market`` in ``days``; a day read before is kept while its files are unchanged."""
        frames = []
        for day in sorted(set(days)):
            if self.archive_url is None:
                break
            signature = archive.day_signature(self.archive_url, table, day)
            if not signature:
                continue
            cached = self._archived.get((table, day, market))
            if cached is None or cached[0] != signature:
                cached = (signature, reads.archived_frame(self.archive_url, table, [day], market))
                self._archived[(table, day, market)] = cached
            frames.append(cached[1])
        if not frames:
            return reads.archived_frame(None, table, [], market)
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _windows(self, market: str, start: datetime, end: datetime) -> _Windows:
        hot = reads.untrusted_windows(self.engine, market, start, end)
        archived = self._archive(archive.WINDOWS_TABLE, _days(start - timedelta(days=1), end + timedelta(days=1)),
                                 market)
        frames = [f for f in (hot, archived) if not f.empty]
        return _Windows.of(pd.concat(frames, ignore_index=True) if frames else hot)

    @staticmethod
    def _stretches(coverage: pd.DataFrame) -> dict[uuid.UUID, list[tuple[pd.Timestamp, pd.Timestamp]]]:
        """Per session, the stretches of time it recorded the market."""
        stretches: dict[uuid.UUID, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
        for row in coverage.to_dict("records"):
            stretches.setdefault(row["session_id"], []).append((row["recording_from"], row["recording_to"]))
        return stretches

    @staticmethod
    def _sessions_between(coverage: pd.DataFrame, start: datetime, end: datetime) -> set[uuid.UUID]:
        overlapping = coverage[(coverage["recording_from"] <= end) & (coverage["recording_to"] > start)]
        return set(overlapping["session_id"])

    def _snapshots(self, market: str, start: datetime, end: datetime, coverage: pd.DataFrame,
                   sessions: Iterable[uuid.UUID]) -> pd.DataFrame:
        wanted = set(sessions)
        days = _session_days(coverage, wanted)
        frame = _combined(reads.snapshots(self.engine, market, start, end),
                          self._archive("orderbook_snapshots", days, market),
                          "orderbook_snapshots")
        frame = frame[frame["session_id"].isin(wanted) & (frame["received_at"] >= start)
                      & (frame["received_at"] <= end)]
        return frame.sort_values(["received_at", "seq"], ignore_index=True)

    def _deltas(self, market: str, sessions: Iterable[uuid.UUID], end: datetime,
                coverage: pd.DataFrame) -> pd.DataFrame:
        wanted = list(set(sessions))
        days = _session_days(coverage, wanted)
        frame = _combined(reads.deltas(self.engine, market, wanted, end),
                          self._archive("orderbook_deltas", days, market),
                          "orderbook_deltas")
        frame["changed_at"] = frame["exchange_ts"].fillna(frame["received_at"])
        frame = frame[frame["session_id"].isin(wanted) & (frame["changed_at"] <= end)]
        return frame.sort_values(["changed_at", "seq"], ignore_index=True)

    def _book_at(self, market: str, at: datetime, coverage: pd.DataFrame) -> _Book | None:
        """The book at ``at`` as ``kalshi.book_at`` rebuilds it: the latest snapshot received at or before ``at`` by
        a session recording the market then (else by the latest sessions before), plus its stream's later deltas
        up to ``at``."""
        started = coverage[coverage["recording_from"] <= at]
        recording = set(started.loc[started["recording_to"] > at, "session_id"])
        others = [s for s in started.sort_values("recording_from", ascending=False)["session_id"]
                  if s not in recording]
        candidates = recording | set(dict.fromkeys(others[:_FALLBACK_SESSIONS]))
        if not candidates:
            return None
        earliest = self._earliest_start(coverage, candidates)
        snaps = self._snapshots(market, earliest, at, coverage, candidates)
        if snaps.empty:
            return None
        mine = snaps[snaps["session_id"].isin(recording)]
        chosen = (mine if not mine.empty else snaps).iloc[-1]
        book = _Book.start(chosen, not mine.empty)
        deltas = self._deltas(market, [chosen["session_id"]], at, coverage)
        stream = deltas[(deltas["generation"] == chosen["generation"]) & (deltas["sid"] == chosen["sid"])
                        & (deltas["seq"] > chosen["seq"])]
        for delta in stream.sort_values("seq").to_dict("records"):
            book.apply(delta)
        return book

    @staticmethod
    def _earliest_start(coverage: pd.DataFrame, sessions: set[uuid.UUID]) -> datetime:
        """The day the earliest of ``sessions`` started (its snapshots were received after that)."""
        first = min(coverage.loc[coverage["session_id"].isin(sessions), "session_date"])
        return datetime(first.year, first.month, first.day, tzinfo=UTC)
