"""Reads for researchers: the hot tables through SQLAlchemy (``pandas.read_sql``) and the archive's Parquet files,
as pandas DataFrames with the same columns and types from both tiers.

Every query of the read side is here (with :mod:`kalshi_store.archive` for the files): the hot tables are read only
through their logical columns (``kalshi.trades``, ``kalshi.orderbook_snapshots``, ``kalshi.orderbook_deltas``,
``kalshi.tickers`` as in sql/002) and the public views (``kalshi.untrusted_windows``, ``kalshi.coverage_windows``),
so a change of the physical layout is adapted in this module. Values keep their exact types in both tiers: numeric
columns are :class:`~decimal.Decimal`, uuids :class:`uuid.UUID`, timestamps ``datetime64[us, UTC]``, integers
the nullable ``Int64``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import sqlalchemy as sa

from kalshi_store import archive

__all__ = ["COLUMNS", "archived_frame", "coverage", "deltas", "engine", "snapshots", "tickers", "trades",
           "untrusted_windows"]

#: The logical columns of each table (sql/002) and their PostgreSQL types: what both tiers return.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "trades": (
        ("trade_id", "text"), ("trade_date", "date"), ("market_ticker", "text"), ("yes_price", "numeric"),
        ("no_price", "numeric"), ("count", "numeric"), ("taker_outcome_side", "text"), ("taker_book_side", "text"),
        ("taker_side", "text"), ("is_block_trade", "boolean"), ("exchange_ts", "timestamptz"),
        ("received_at", "timestamptz"), ("source", "text"), ("session_id", "uuid"), ("generation", "integer"),
        ("sid", "integer"), ("seq", "bigint")),
    "orderbook_snapshots": (
        ("session_id", "uuid"), ("session_date", "date"), ("generation", "integer"), ("sid", "integer"),
        ("seq", "bigint"), ("market_ticker", "text"), ("market_id", "text"), ("yes_prices", "numeric[]"),
        ("yes_sizes", "numeric[]"), ("no_prices", "numeric[]"), ("no_sizes", "numeric[]"),
        ("use_yes_price", "boolean"), ("command_id", "bigint"), ("received_at", "timestamptz")),
    "orderbook_deltas": (
        ("session_id", "uuid"), ("session_date", "date"), ("generation", "integer"), ("sid", "integer"),
        ("seq", "bigint"), ("market_ticker", "text"), ("market_id", "text"), ("side", "text"), ("price", "numeric"),
        ("delta", "numeric"), ("client_order_id", "text"), ("subaccount", "integer"), ("exchange_ts", "timestamptz"),
        ("received_at", "timestamptz")),
    "tickers": (
        ("market_ticker", "text"), ("exchange_ts", "timestamptz"), ("content_hash", "uuid"), ("market_id", "text"),
        ("price", "numeric"), ("yes_bid", "numeric"), ("yes_ask", "numeric"), ("volume", "numeric"),
        ("open_interest", "numeric"), ("dollar_volume", "bigint"), ("dollar_open_interest", "bigint"),
        ("yes_bid_size", "numeric"), ("yes_ask_size", "numeric"), ("last_trade_size", "numeric"),
        ("received_at", "timestamptz"), ("session_id", "uuid"), ("generation", "integer"), ("sid", "integer")),
    archive.WINDOWS_TABLE: (
        ("market_ticker", "text"), ("kind", "text"), ("session_id", "uuid"), ("lower", "timestamptz"),
        ("upper", "timestamptz"), ("lower_inc", "boolean"), ("upper_inc", "boolean")),
}


def engine(database_url: str) -> sa.Engine:
    """An SQLAlchemy engine on the psycopg 3 driver for ``database_url`` (a ``postgresql://`` URL or a libpq
    ``key=value`` string, as ``DATABASE_URL`` may be either)."""
    return sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(database_url))


def _select(table: str, where: str) -> sa.Executable:
    """The logical columns of ``kalshi.<table>`` (identifiers quoted by SQLAlchemy) where ``where`` holds."""
    return (sa.select(*(sa.column(name) for name, _ in COLUMNS[table]))
            .select_from(sa.table(table, schema="kalshi")).where(sa.text(where)))


def _read(db: sa.Engine, table: str, statement: sa.Executable, params: dict[str, Any]) -> pd.DataFrame:
    with db.connect() as conn:
        frame = pd.read_sql(statement, conn, params=params, coerce_float=False)
    return normalise(frame, table)


def trades(db: sa.Engine, market: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Hot trades of ``market`` with exchange time in ``[start, end)``."""
    where = "market_ticker = :market and exchange_ts >= :start and exchange_ts < :end"
    return _read(db, "trades", _select("trades", where), {"market": market, "start": start, "end": end})


def tickers(db: sa.Engine, market: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Hot ticker updates of ``market`` with exchange time in ``[start, end)``."""
    where = "market_ticker = :market and exchange_ts >= :start and exchange_ts < :end"
    return _read(db, "tickers", _select("tickers", where), {"market": market, "start": start, "end": end})


def snapshots(db: sa.Engine, market: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Hot order book snapshots of ``market`` received in ``[start, end]``."""
    where = "market_ticker = :market and received_at >= :start and received_at <= :end"
    return _read(db, "orderbook_snapshots", _select("orderbook_snapshots", where),
                 {"market": market, "start": start, "end": end})


def deltas(db: sa.Engine, market: str, sessions: Sequence[uuid.UUID], end: datetime) -> pd.DataFrame:
    """Hot order book deltas of ``market`` recorded by ``sessions`` whose exchange time (receive time when the
    exchange sent none) is at or before ``end``."""
    where = ("market_ticker = :market and session_id = any(:sessions) "
             "and coalesce(exchange_ts, received_at) <= :end")
    return _read(db, "orderbook_deltas", _select("orderbook_deltas", where),
                 {"market": market, "sessions": list(sessions), "end": end})


def untrusted_windows(db: sa.Engine, market: str, start: datetime, end: datetime) -> pd.DataFrame:
    """``kalshi.untrusted_windows`` of ``market`` overlapping ``[start, end]``, as bounds."""
    statement = sa.text(
        "select market_ticker, kind, session_id, lower(time_range) as lower, upper(time_range) as upper, "
        "lower_inc(time_range) as lower_inc, upper_inc(time_range) as upper_inc from kalshi.untrusted_windows "
        "where market_ticker = :market and time_range && tstzrange(:start, :end, '[]')")
    return _read(db, archive.WINDOWS_TABLE, statement, {"market": market, "start": start, "end": end})


def coverage(db: sa.Engine, market: str) -> pd.DataFrame:
    """Who recorded ``market`` when (``kalshi.coverage_windows``), with the day each session started (the day
    partition of its snapshots and deltas)."""
    statement = sa.text(
        "select w.session_id, w.recording_from, w.recording_to, (s.started_at at time zone 'UTC')::date "
        "as session_date from kalshi.coverage_windows w join kalshi.sessions s using (session_id) "
        "where w.market_ticker = :market order by w.recording_from")
    with db.connect() as conn:
        frame = pd.read_sql(statement, conn, params={"market": market}, coerce_float=False)
    for column in ("recording_from", "recording_to"):
        frame[column] = _timestamps(frame[column])
    return frame


def archived_frame(archive_url: str | None, table: str, days: Iterable[date], market: str) -> pd.DataFrame:
    """The archived rows of ``table`` of ``market`` in ``days``, with the hot tier's columns and types (empty when
    there is no archive or none of those days is in it)."""
    stored = None if archive_url is None else archive.read_archive(archive_url, table, days, market=market)
    if stored is None:
        return normalise(pd.DataFrame({name: [] for name, _ in COLUMNS[table]}), table)
    frame = stored.select([name for name, _ in COLUMNS[table]]).to_pandas()
    for name, field in zip(stored.column_names, stored.schema, strict=True):
        if pa.types.is_fixed_size_binary(field.type) and name in frame:
            frame[name] = [None if v is None else uuid.UUID(bytes=v) for v in frame[name]]
    return normalise(frame, table)


def normalise(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``frame`` with the columns of ``table`` in order and one dtype per PostgreSQL type (both tiers alike)."""
    columns: dict[str, Any] = {}
    for name, kind in COLUMNS[table]:
        column = frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index, dtype=object)
        if kind == "timestamptz":
            columns[name] = _timestamps(column)
        elif kind in ("integer", "bigint"):
            columns[name] = column if column.dtype == "Int64" else column.astype("Int64")
        elif kind == "boolean":
            columns[name] = column if column.dtype == "boolean" else column.astype("boolean")
        elif kind == "numeric[]":
            columns[name] = pd.Series([None if v is None else list(v) for v in column], index=frame.index,
                                      dtype=object)
        else:
            columns[name] = column if column.dtype == object else column.astype(object)
    return pd.DataFrame(columns, index=frame.index)


def _timestamps(column: pd.Series) -> pd.Series:
    if column.dtype == "datetime64[us, UTC]":
        return column
    return pd.to_datetime(column, utc=True).astype("datetime64[us, UTC]")
