"""CopyWriter: one batch, one transaction: COPY into temp staging tables, then INSERT ... ON CONFLICT DO NOTHING.

COPY is the fastest way into PostgreSQL but cannot skip duplicates; ``INSERT ... ON CONFLICT DO NOTHING`` skips
duplicates but is slow row by row. The writer combines them: each table's rows are COPYed into a temporary
staging table (created once per connection, emptied at every commit), then moved into the target by one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` that also converts epoch integers to timestamps and computes
partition days and content hashes. The inserted row count per table says how many rows were new.

If the database rejects anything for good (a value it cannot store: NUL in text, out of range, a constraint;
see :mod:`kalshi_store.dberrors`), the batch is retried piece by piece: the session row, each table (bisected
until the offending rows are isolated), each gap-ledger operation, the session counters. What cannot be stored
goes to ``kalshi.dead_letter`` (reason ``unstorable``, the error and the original values); the session row and
ledger rows are stored with their unstorable characters replaced, so a poison value never blocks a session, a
replay or a later session. Only transient errors (refused, shut down, timed out) and configuration errors
(authentication, privileges, missing schema) are raised to the caller: the first spill and retry later, the
second fail fast.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded
from functools import partial
from operator import itemgetter
from typing import Any, Final

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .batch import Batch, LedgerOp, SessionManifest, SessionProgress
from .dberrors import DatabaseConfigError, classify, connect_error, describe, redact, redact_url
from .rows import _RECEIVED, DEAD_LETTER, TABLE_ORDER, TABLES, Row, TableSpec, _ms, _s

__all__ = ["CopyWriter", "WriteResult", "is_connection_error", "is_rejection"]

log = logging.getLogger(__name__)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_json: Final = msgspec.json.Encoder(decimal_format="string")
_plain_json: Final = msgspec.json.Encoder()
_UNSTORABLE_NAMESPACE: Final = uuid.UUID("5d0c8f63-4a4e-4c55-9d43-6b2f1f0e7a11")


class _AccessProblem(Exception):
    """The schema is missing or the role cannot write it (a configuration error, see ``CopyWriter.connect``)."""


#: (table, privilege) pairs the recorder needs: checked at connect so a role without them fails before recording.
#: Besides those of the writer's moves (KeyedMove.privileges: the compact tables and their keys).
_NEEDED_PRIVILEGES: Final = (
    *((f"kalshi.{name}", "INSERT") for name in ("orderbook_snapshots", "fills", "dead_letter")),
    ("kalshi.sessions", "INSERT"), ("kalshi.sessions", "UPDATE"),
    ("kalshi.gap_ledger", "INSERT"), ("kalshi.gap_ledger", "UPDATE"),
)
_ACCESS_CHECK: Final = sql.SQL("""
    select case
        when to_regnamespace('kalshi') is null
            then 'schema kalshi is missing (run `kalshi-ingest db migrate`)'
        when not has_schema_privilege('kalshi', 'USAGE')
            then 'the role has no USAGE privilege on schema kalshi (grant it, or use the owner role)'
        else (select string_agg(case when to_regclass(p.t) is null then p.t || ' is missing'
                                     else 'no ' || p.priv || ' privilege on ' || p.t end, ', ')
                         || case when bool_or(to_regclass(p.t) is null)
                                 then ' (run `kalshi-ingest db migrate`)' else '' end
              from unnest(%s::text[], %s::text[]) as p(t, priv)
              where case when to_regclass(p.t) is null then true
                         else not has_table_privilege(to_regclass(p.t), p.priv) end)
    end""")


def ns_to_datetime(ns: int) -> datetime:
    """Nanoseconds since the epoch -> aware UTC datetime, exact to the microsecond."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the database is unreachable or went away (spill and retry, not a data problem)."""
    return classify(exc) == "transient"


def is_rejection(exc: BaseException) -> bool:
    """True when the database rejected what was sent for good (isolate it; never spill and retry it)."""
    return isinstance(exc, psycopg.Error | UnicodeError) and classify(exc) == "permanent"


@dataclass
class WriteResult:
    """Rows newly inserted and rows skipped as duplicates, per table; rows moved to dead_letter as unstorable."""

    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    unstorable: int = 0

    @property
    def total_inserted(self) -> int:
        return sum(self.inserted.values())


_SESSION_INSERT: Final = sql.SQL("""
    insert into kalshi.sessions (session_id, market_set, environment, markets, channels, use_yes_price,
        planned_start, planned_end, started_at, flow_run_id, host, updated_at)
    values (%(session_id)s, %(market_set)s, %(environment)s, %(markets)s, %(channels)s, %(use_yes_price)s,
        %(planned_start)s, %(planned_end)s, %(started_at)s, %(flow_run_id)s, %(host)s, %(started_at)s)
    on conflict (session_id) do nothing""")

_SESSION_COUNTS: Final = sql.SQL("""
    update kalshi.sessions s set
        written = (select coalesce(jsonb_object_agg(k, coalesce((s.written ->> k)::bigint, 0)
                                                      + coalesce((%(written)s::jsonb ->> k)::bigint, 0)), '{}')
                   from jsonb_object_keys(s.written || %(written)s::jsonb) k),
        duplicates = (select coalesce(jsonb_object_agg(k, coalesce((s.duplicates ->> k)::bigint, 0)
                                                         + coalesce((%(duplicates)s::jsonb ->> k)::bigint, 0)), '{}')
                      from jsonb_object_keys(s.duplicates || %(duplicates)s::jsonb) k)
    where s.session_id = %(session_id)s""")

_SESSION_PROGRESS: Final = sql.SQL("""
    update kalshi.sessions set
        received = %(received)s, rows_spilled = %(rows_spilled)s, reconnects = %(reconnects)s, gaps = %(gaps)s,
        max_message_age_ms = %(max_message_age_ms)s, paused_count = %(paused_count)s,
        paused_seconds = %(paused_seconds)s, status = coalesce(%(status)s, status),
        status_message = coalesce(%(status_message)s, status_message), ended_at = coalesce(%(ended_at)s, ended_at),
        updated_at = %(at)s
    where session_id = %(session_id)s and updated_at <= %(at)s""")

_LEDGER_OPEN: Final = sql.SQL("""
    insert into kalshi.gap_ledger (event_id, session_id, generation, incident_id, kind, sid, channel, markets,
        expected_seq, received_seq, started_at, ended_at, outcome, detail)
    values (%(event_id)s, %(session_id)s, %(generation)s, %(incident_id)s, %(kind)s, %(sid)s, %(channel)s,
        %(markets)s, %(expected_seq)s, %(received_seq)s, %(at)s, %(ended_at)s, %(outcome)s, %(detail)s)
    on conflict (event_id) do nothing""")

_LEDGER_CLOSE_INCIDENT: Final = sql.SQL("""
    update kalshi.gap_ledger set ended_at = %(at)s, outcome = %(outcome)s
    where session_id = %(session_id)s and incident_id = %(incident_id)s and ended_at is null""")

_LEDGER_CLOSE_EVENT: Final = sql.SQL("""
    update kalshi.gap_ledger set ended_at = %(at)s, outcome = %(outcome)s, detail = detail || %(detail)s
    where event_id = %(target_event_id)s and ended_at is null""")

_LEDGER_ANNOTATE: Final = sql.SQL("""
    update kalshi.gap_ledger set detail = detail || %(detail)s
    where session_id = %(session_id)s and incident_id = %(incident_id)s and ended_at is null""")


# Order book deltas are stored compactly (sql/050_compact_deltas.sql, docs/storage.md). The writer resolves the books
# a batch's deltas change (session, connection, subscription, market, side) to their integer keys itself, as it does
# the markets and feeds of trades and tickers (below): the deltas are staged with their book's key, so the rows'
# INSERT ... SELECT joins nothing, and a third statement stores the rare extra columns, run only when a staged row
# has one. The exchange time is stored as whole milliseconds before the receive millisecond when an integer holds
# that (kalshi.delta_exchange_ts rebuilds it), else exactly in the extras. A row keeps the low 31 bits of seq; the
# rest (seq >> 31, zero unless a stream passes 2^31 messages) is part of the book (sql/080).
_DELTA_LAG: Final = sql.SQL("s.received_ns / 1000000 - s.ts_ms")
_DELTA_LAG_FITS: Final = sql.SQL("{lag} between -2147483648 and 2147483647").format(lag=_DELTA_LAG)
_DELTA_NAMES: Final = [name for name, _, _ in TABLES["orderbook_deltas"].columns]
_CLIENT_ORDER_ID, _SUBACCOUNT, _TS_MS, _RECEIVED_NS = (
    _DELTA_NAMES.index(name) for name in ("client_order_id", "subaccount", "ts_ms", "received_ns"))
_GENERATION, _SID, _MARKET_TICKER, _MARKET_ID, _SIDE, _SEQ = (
    _DELTA_NAMES.index(name) for name in ("generation", "sid", "market_ticker", "market_id", "side", "seq"))


_INT4: Final = range(-(2**31), 2**31)


def _deltas_need_extras(rows: Sequence[Row]) -> bool:
    """Whether any staged delta has a column kept in kalshi.orderbook_delta_extras (the same test as the SQL's)."""
    for row in rows:
        if row[_CLIENT_ORDER_ID] is not None or row[_SUBACCOUNT] is not None:
            return True
        ts_ms, received_ns = row[_TS_MS], row[_RECEIVED_NS]
        if ts_ms is not None and (received_ns < 0 or received_ns // 1_000_000 - ts_ms not in _INT4):
            return True
    return False


# Trades and ticker updates are stored compactly too (sql/060_compact_trades_tickers.sql, docs/storage.md). The
# writer resolves the markets and feeds (session, connection, subscription, market_id) a batch needs to their integer
# keys itself: those it stored or read before are remembered (``CopyWriter._keys``), the others are stored
# and read by one statement per table for the whole batch (one probe per distinct market or feed, in key order). The
# rows are then staged with their keys, so the rows' INSERT ... SELECT joins nothing. A trade whose values the flags
# hold exactly ("plain": a lower-case uuid id, a no_price exactly 1 - yes_price, the usual side values, source ws or
# rest; checked in Python, _plain_trade) is staged with its uuid and flags and without the columns they replace;
# any other trade is staged whole, and the SQL computes its key and flags (kalshi.trade_uuid, kalshi.trade_flags)
# and stores its extras. The row tuples are unchanged: the staged columns are derived here (spill files replay).
_NIL: Final = sql.Literal("00000000-0000-0000-0000-000000000000")


def _feed_match(a: str, b: str) -> sql.Composed:
    """``a`` and ``b`` are the same feed: equalities on kalshi.feeds_key's expressions (exact, index- and
    hash-friendly, unlike ``is not distinct from``)."""
    x, y = sql.Identifier(a), sql.Identifier(b)
    return sql.SQL("""coalesce({x}.session_id, {nil}) = coalesce({y}.session_id, {nil})
        and coalesce({x}.generation, -1) = coalesce({y}.generation, -1) and coalesce({x}.sid, -1) = coalesce({y}.sid, -1)
        and {x}.market_id = {y}.market_id and ({x}.session_id is null) = ({y}.session_id is null)
        and ({x}.generation is null) = ({y}.generation is null) and ({x}.sid is null) = ({y}.sid is null)""").format(
        x=x, y=y, nil=_NIL)


# Each takes the wanted keys as one JSON array (psycopg adapts a list element by element in Python: 2 ms for 800
# feeds) and returns (ordinal of the wanted key, its key), found by one index probe each (a join could hash every
# market or feed ever stored); a key stored by a concurrent transaction that committed after the statement's
# snapshot is missing from the answer (its insert skipped it): _RESOLVE_*_AGAIN finds it.
_WANTED_MARKETS: Final = sql.SQL("json_array_elements_text(%(wanted)s::json) with ordinality w (market_ticker, i)")
_MARKET_PROBE: Final = sql.SQL("""left join lateral (
        select m.market_key from kalshi.market_keys m where m.market_ticker = w.market_ticker) m on true""")
_RESOLVE_MARKETS: Final = sql.SQL("""
    with w as materialized (select w.*, m.market_key from {wanted} {probe}),
    stored as (
        insert into kalshi.market_keys (market_ticker)
        select w.market_ticker from w where w.market_key is null
        order by 1
        on conflict do nothing
        returning market_key, market_ticker)
    select w.i, coalesce(w.market_key, n.market_key) from w
    left join stored n on n.market_ticker = w.market_ticker""").format(wanted=_WANTED_MARKETS, probe=_MARKET_PROBE)
_RESOLVE_MARKETS_AGAIN: Final = sql.SQL("select w.i, m.market_key from {wanted} {probe}").format(
    wanted=_WANTED_MARKETS, probe=_MARKET_PROBE)
_WANTED_FEEDS: Final = sql.SQL("""(select (e ->> 0)::uuid as session_id, (e ->> 1)::integer as generation,
        (e ->> 2)::integer as sid, e ->> 3 as market_id, i
        from jsonb_array_elements(%(wanted)s::jsonb) with ordinality x (e, i) offset 0) w""")
_FEED_PROBE: Final = sql.SQL("""left join lateral (
        select f.feed_key from kalshi.feeds f where {fw} limit 1) f on true""").format(fw=_feed_match("f", "w"))
_RESOLVE_FEEDS: Final = sql.SQL("""
    with w as materialized (select w.*, f.feed_key from {wanted} {probe}),
    stored as (
        insert into kalshi.feeds (session_id, generation, sid, market_id)
        select w.session_id, w.generation, w.sid, w.market_id from w where w.feed_key is null
        order by 1, 2, 3, 4
        on conflict do nothing
        returning feed_key, session_id, generation, sid, market_id)
    select w.i, coalesce(w.feed_key, n.feed_key) from w
    left join stored n on {nw}""").format(wanted=_WANTED_FEEDS, probe=_FEED_PROBE, nw=_feed_match("n", "w"))
_RESOLVE_FEEDS_AGAIN: Final = sql.SQL("select w.i, f.feed_key from {wanted} {probe}").format(
    wanted=_WANTED_FEEDS, probe=_FEED_PROBE)
# The books of the batch's session (%(session_id)s), found by the books' unique key.
_WANTED_BOOKS: Final = sql.SQL("""(select (e ->> 0)::integer as generation, (e ->> 1)::integer as sid,
        e ->> 2 as market_ticker, e ->> 3 as market_id, e ->> 4 as side, (e ->> 5)::bigint as seq_high, i
        from jsonb_array_elements(%(wanted)s::jsonb) with ordinality x (e, i) offset 0) w""")
_BOOK_PROBE: Final = sql.SQL("""left join lateral (
        select b.book_key from kalshi.orderbook_delta_books b
        where b.session_id = %(session_id)s::uuid and b.generation = w.generation and b.sid = w.sid
          and b.market_ticker = w.market_ticker and b.market_id = w.market_id and b.side = w.side
          and b.seq_high = w.seq_high) b on true""")
_RESOLVE_BOOKS: Final = sql.SQL("""
    with w as materialized (select w.*, b.book_key from {wanted} {probe}),
    stored as (
        insert into kalshi.orderbook_delta_books (session_id, session_date, generation, sid, market_ticker,
            market_id, side, seq_high)
        select %(session_id)s::uuid, %(session_date)s::date, w.generation, w.sid, w.market_ticker, w.market_id,
            w.side, w.seq_high
        from w where w.book_key is null
        order by 3, 4, 5, 6, 7, 8
        on conflict do nothing
        returning book_key, generation, sid, market_ticker, market_id, side, seq_high)
    select w.i, coalesce(w.book_key, n.book_key) from w
    left join stored n on n.generation = w.generation and n.sid = w.sid and n.market_ticker = w.market_ticker
     and n.market_id = w.market_id and n.side = w.side and n.seq_high = w.seq_high""").format(
    wanted=_WANTED_BOOKS, probe=_BOOK_PROBE)
_RESOLVE_BOOKS_AGAIN: Final = sql.SQL("select w.i, b.book_key from {wanted} {probe}").format(
    wanted=_WANTED_BOOKS, probe=_BOOK_PROBE)

_TRADE_NAMES: Final = [name for name, _, _ in TABLES["trades"].columns]
_T_ID, _T_TICKER, _T_YES, _T_NO, _T_COUNT, _T_OUTCOME, _T_BOOK, _T_TAKER, _T_BLOCK = (
    _TRADE_NAMES.index(name) for name in ("trade_id", "market_ticker", "yes_price", "no_price", "count",
                                          "taker_outcome_side", "taker_book_side", "taker_side", "is_block_trade"))
_T_TS_MS, _T_TS_S, _T_TEXT, _T_RECEIVED, _T_SOURCE, _T_SESSION, _T_GENERATION, _T_SID, _T_SEQ = (
    _TRADE_NAMES.index(name) for name in ("ts_ms", "ts_s", "exchange_text", "received_ns", "source", "session_id",
                                          "generation", "sid", "seq"))
#: Staging of the compact trades: the keys and, for a plain trade, its uuid and flags; the columns they replace are
#: staged (and read) only for the other trades.
_TRADE_STAGING: Final = (
    ("staged_uuid", "uuid"), ("staged_flags", "smallint"), ("market_key", "integer"), ("feed_key", "integer"),
    ("trade_id", "text"), ("yes_price", "numeric"), ("no_price", "numeric"), ("count", "numeric"),
    ("taker_outcome_side", "text"), ("taker_book_side", "text"), ("taker_side", "text"),
    ("is_block_trade", "boolean"), ("ts_ms", "bigint"), ("ts_s", "bigint"), ("exchange_text", "text"),
    ("received_ns", "bigint"), ("source", "text"), ("seq", "bigint"))
_TICKER_NAMES: Final = [name for name, _, _ in TABLES["tickers"].columns]
#: Staging of the compact tickers: the keys instead of the ticker, market_id and connection columns.
_TICKER_STAGING: Final = (
    ("market_key", "integer"), ("feed_key", "integer"),
    *((name, pgtype) for name, pgtype, _ in TABLES["tickers"].columns
      if name not in ("market_ticker", "market_id", "session_id", "generation", "sid")))
_TICKER_VALUES: Final = itemgetter(*(_TICKER_NAMES.index(name) for name, _ in _TICKER_STAGING[2:]))

# A row's market (its ticker) and feed (session, generation, sid, and for tickers the market_id: a trade's feed has
# none, '' in kalshi.feeds): the keys of CopyWriter's maps, read with C-level getters (every row of a batch).
_TRADE_MARKET: Final = itemgetter(_T_TICKER)
_TRADE_FEED: Final = itemgetter(_T_SESSION, _T_GENERATION, _T_SID)
_TICKER_MARKET: Final = itemgetter(_TICKER_NAMES.index("market_ticker"))
_TICKER_FEED: Final = itemgetter(*(_TICKER_NAMES.index(name) for name in ("session_id", "generation", "sid",
                                                                         "market_id")))

_UUID_MATCH: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
_FLAG_VALUES: Final = itemgetter(_T_OUTCOME, _T_BOOK, _T_TAKER, _T_BLOCK, _T_SOURCE)
#: The flags of kalshi.trade_flags for every (taker_outcome_side, taker_book_side, taker_side, is_block_trade, source)
#: that needs nothing in kalshi.trade_extras (0 null, 1 yes/bid, 2 no/ask; 64 block trade; 128 rest).
_PLAIN_FLAGS: Final = {
    (outcome, book, taker, block, source): o | b << 2 | t << 4 | (64 if block else 0) | source_flag
    for o, outcome in enumerate((None, "yes", "no")) for b, book in enumerate((None, "bid", "ask"))
    for t, taker in enumerate((None, "yes", "no")) for block in (None, False, True)
    for source, source_flag in (("ws", 0), ("rest", 128))}
_ONE: Final = Decimal(1)
#: Exact Decimal arithmetic for the no_price test: a result that would need rounding is not "plain" (the SQL decides).
_SUBTRACT: Final = Context(prec=60, traps=[Inexact, Rounded, InvalidOperation]).subtract


def _plain_trade(row: Row) -> int | None:
    """The flags of a trade (as kalshi.trade_flags computes them) when its id, no_price and side values need nothing
    kept in kalshi.trade_extras and its source is ws or rest; ``None`` otherwise (the SQL computes them then)."""
    flags = _PLAIN_FLAGS.get(_FLAG_VALUES(row))
    trade_id, yes, no = row[_T_ID], row[_T_YES], row[_T_NO]
    if (flags is None or type(trade_id) is not str or _UUID_MATCH(trade_id) is None or type(yes) is not Decimal
            or type(no) is not Decimal):
        return None
    try:
        complement = _SUBTRACT(_ONE, yes)
    except ArithmeticError:
        return None
    # The same value, sign and scale (compare_total is 0 only then; PostgreSQL's scale of 1 - yes_price is
    # max(scale(yes_price), 0), Decimal's exponent of 1 - yes_price min(exponent, 0)): the same text.
    if not complement.is_finite() or no.compare_total(complement):
        return None
    return flags


def _stage_trades(rows: Sequence[Row], keys: Sequence[dict[Any, int]]) -> tuple[list[Row], bool]:
    """The staged trades, and whether any is not plain (the extras statement may then have work)."""
    markets, feeds = keys
    staged: list[Row] = []
    append = staged.append
    rare = False
    for row in rows:
        flags = _plain_trade(row)
        if flags is None:
            rare = True
            append((None, None, markets[row[_T_TICKER]], feeds[_TRADE_FEED(row)], row[_T_ID], row[_T_YES],
                    row[_T_NO], row[_T_COUNT], row[_T_OUTCOME], row[_T_BOOK], row[_T_TAKER], row[_T_BLOCK],
                    row[_T_TS_MS], row[_T_TS_S], row[_T_TEXT], row[_T_RECEIVED], row[_T_SOURCE], row[_T_SEQ]))
        else:
            append((row[_T_ID], flags, markets[row[_T_TICKER]], feeds[_TRADE_FEED(row)], None, row[_T_YES], None,
                    row[_T_COUNT], None, None, None, None, row[_T_TS_MS], row[_T_TS_S], row[_T_TEXT],
                    row[_T_RECEIVED], None, row[_T_SEQ]))
    return staged, rare


def _stage_tickers(rows: Sequence[Row], keys: Sequence[dict[Any, int]]) -> tuple[list[Row], bool]:
    (markets, feeds), market, feed, values = keys, _TICKER_MARKET, _TICKER_FEED, _TICKER_VALUES
    return [(markets[market(row)], feeds[feed(row)], *values(row)) for row in rows], False


def _feed_order(feed: tuple[Any, ...]) -> tuple[Any, ...]:
    session, generation, sid = feed[:3]
    return (session or "", -1 if generation is None else generation, -1 if sid is None else sid,
            (feed[3] if len(feed) > 3 else None) or "")


def _feed_element(feed: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*feed[:3], (feed[3] if len(feed) > 3 else None) or "")


#: A delta's book as the writer remembers it: (generation, sid, market_ticker, market_id, side), and seq >> 31 after
#: them when it is not 0 (a stream past 2^31 messages).
_BOOK_OF: Final = itemgetter(_GENERATION, _SID, _MARKET_TICKER, _MARKET_ID, _SIDE)
_SEQ_OF: Final = itemgetter(_SEQ)
_LOW_SEQ: Final = 2**31
_INT8_MIN, _INT8_MAX = -(2**63), 2**63 - 1


def _low_seqs(rows: Sequence[Row]) -> bool:
    """Whether every delta's seq is below 2^31 (its book's seq_high is 0): the usual case, checked at C speed."""
    try:
        return min(map(_SEQ_OF, rows)) >= 0 and max(map(_SEQ_OF, rows)) < _LOW_SEQ
    except (TypeError, ValueError):  # no rows, or a seq that is no number (the database refuses its row)
        return False


def _book_of(row: Row) -> tuple[Any, ...]:
    book, seq = _BOOK_OF(row), row[_SEQ]
    if type(seq) is not int or not _INT8_MIN <= seq <= _INT8_MAX:
        return (*book, None)  # not a bigint seq: the book cannot be stored, and the row goes to dead_letter
    return book if 0 <= seq < _LOW_SEQ else (*book, seq >> 31)


def _low_bits(seq: Any) -> Any:
    return seq & (_LOW_SEQ - 1) if type(seq) is int else seq


def _books_of(rows: Sequence[Row]) -> Iterable[tuple[Any, ...]]:
    return map(_BOOK_OF if _low_seqs(rows) else _book_of, rows)


def _book_element(book: tuple[Any, ...]) -> tuple[Any, ...]:
    generation, sid, market_ticker, market_id, side = book[:5]
    return generation, sid, market_ticker, market_id or "", side, book[5] if len(book) > 5 else 0


@dataclass(frozen=True, slots=True)
class Dimension:
    """A table of integer keys the compact rows refer to, as the writer resolves them (:meth:`CopyWriter._resolve`):
    a row's value in it, the statements that store the missing values and find their keys, and the key column."""

    #: The writer's map of remembered keys, and the parameter of the remembered-keys check.
    name: str
    table: str
    key: str
    #: The rows' values, one per row (at C speed: ``map`` of a getter), the keys of the writer's map.
    of: Callable[[Sequence[Row]], Iterable[Any]]
    #: The JSON element sent for a missing value, and the order they are sent in (key order: two writers never wait
    #: on each other in a cycle).
    element: Callable[[Any], Any]
    order: Callable[[Any], Any]
    resolve: sql.Composed
    again: sql.Composed
    #: Whether a value names a key only within the batch's session (the books): remembered with the session id,
    #: and the statements take the batch's session_id and session_date.
    per_session: bool = False

    @property
    def stored(self) -> sql.Composed:
        """How many of the remembered keys (a parameter named after the dimension) are stored."""
        return sql.SQL("(select count(*) from {} where {} = any({}::integer[]))").format(
            sql.Identifier("kalshi", self.table), sql.Identifier(self.key), sql.Placeholder(self.name))


def _same(value: Any) -> Any:
    return value


_TRADE_MARKETS: Final = Dimension("markets", "market_keys", "market_key", partial(map, _TRADE_MARKET), _same, _same,
                                  _RESOLVE_MARKETS, _RESOLVE_MARKETS_AGAIN)
_TRADE_FEEDS: Final = Dimension("feeds", "feeds", "feed_key", partial(map, _TRADE_FEED), _feed_element, _feed_order,
                                _RESOLVE_FEEDS, _RESOLVE_FEEDS_AGAIN)
_TICKER_FEEDS: Final = Dimension("feeds", "feeds", "feed_key", partial(map, _TICKER_FEED), _feed_element, _feed_order,
                                 _RESOLVE_FEEDS, _RESOLVE_FEEDS_AGAIN)
_TICKER_MARKETS: Final = Dimension("markets", "market_keys", "market_key", partial(map, _TICKER_MARKET), _same, _same,
                                   _RESOLVE_MARKETS, _RESOLVE_MARKETS_AGAIN)
_BOOKS: Final = Dimension("books", "orderbook_delta_books", "book_key", _books_of, _book_element, _book_element,
                          _RESOLVE_BOOKS, _RESOLVE_BOOKS_AGAIN, per_session=True)


def _remembered(*dimensions: Dimension) -> sql.Composed:
    """The keys the writer remembers from earlier transactions are still stored (feeds and books go with the days
    that used them, kalshi_store.retention; a database can be restored under a connection, rows deleted by hand):
    checked once per statement (an init plan: one index probe per distinct key, not per row). When the check fails
    the statement stores nothing, and the writer finds the keys again (CopyWriter._keyed_insert)."""
    return sql.SQL("{} = %(remembered)s").format(sql.SQL(" + ").join(d.stored for d in dimensions))


_REMEMBERED: Final = _remembered(_TRADE_MARKETS, _TRADE_FEEDS)
_TRADE_TIMES: Final = sql.SQL(
    "coalesce({ms_ts_ms}, {s_ts_s}, s.exchange_text::timestamptz) as exchange_ts, {received} as received_at").format(
    ms_ts_ms=_ms("ts_ms"), s_ts_s=_s("ts_s"), received=_RECEIVED)
_TRADE_FLAGS: Final = sql.SQL("""kalshi.trade_flags(kalshi.trade_uuid(s.trade_id), s.trade_id, s.yes_price, s.no_price,
        s.taker_outcome_side, s.taker_book_side, s.taker_side, s.is_block_trade, s.source)""")
_TRADE_INSERT: Final = sql.SQL("""
    insert into kalshi.trade_rows (exchange_ts, received_at, seq, trade_uuid, market_key, feed_key, trade_date, flags,
        yes_price, count)
    select s.exchange_ts, s.received_at, s.seq, coalesce(s.staged_uuid, kalshi.trade_uuid(s.trade_id)), s.market_key,
        s.feed_key, (coalesce(s.exchange_ts, s.received_at) at time zone 'UTC')::date,
        coalesce(s.staged_flags, {flags}), s.yes_price, s.count
    from (select s.*, {times} from pg_temp.stage_trade_rows s) s
    where {remembered}
    on conflict do nothing""").format(flags=_TRADE_FLAGS, times=_TRADE_TIMES, remembered=_REMEMBERED)
# Only the trades that are not plain can have extras (a plain trade's flags say none).
_TRADE_EXTRAS: Final = sql.SQL("""
    insert into kalshi.trade_extras (trade_uuid, trade_date, trade_id, no_price, taker_outcome_side, taker_book_side,
        taker_side)
    select kalshi.trade_uuid(s.trade_id), (coalesce(s.exchange_ts, s.received_at) at time zone 'UTC')::date,
        case when s.flags & 512 <> 0 then s.trade_id end, case when s.flags & 256 <> 0 then s.no_price end,
        case when s.flags & 3 = 3 then s.taker_outcome_side end,
        case when s.flags & 12 = 12 then s.taker_book_side end,
        case when s.flags & 48 = 48 then s.taker_side end
    from (select s.*, {flags} as flags, {times} from pg_temp.stage_trade_rows s where s.staged_flags is null offset 0) s
    where kalshi.trade_needs_extras(s.flags)
    on conflict do nothing""").format(flags=_TRADE_FLAGS, times=_TRADE_TIMES)
_TICKER_INSERT: Final = sql.SQL("""
    insert into kalshi.ticker_rows (exchange_ts, received_at, content_key, dollar_volume, dollar_open_interest,
        market_key, feed_key, price, yes_bid, yes_ask, volume, open_interest, yes_bid_size, yes_ask_size,
        last_trade_size)
    select coalesce({ms_ts_ms}, {s_ts_s}, s.time_text::timestamptz, {received}), {received},
        kalshi.ticker_content_key(s.price, s.yes_bid, s.yes_ask, s.volume, s.open_interest, s.dollar_volume,
                                  s.dollar_open_interest, s.yes_bid_size, s.yes_ask_size, s.last_trade_size),
        s.dollar_volume, s.dollar_open_interest, s.market_key, s.feed_key, s.price, s.yes_bid, s.yes_ask, s.volume,
        s.open_interest, s.yes_bid_size, s.yes_ask_size, s.last_trade_size
    from pg_temp.stage_ticker_rows s
    where {remembered}
    on conflict do nothing""").format(ms_ts_ms=_ms("ts_ms"), s_ts_s=_s("ts_s"), received=_RECEIVED,
                                      remembered=_REMEMBERED)


def _staging(name: str, columns: Sequence[tuple[str, str]]) -> tuple[sql.Composed, sql.Composed]:
    table = sql.Identifier(name)
    create = sql.SQL("create temp table if not exists {} ({}) on commit delete rows").format(
        table, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns))
    copy = sql.SQL("copy {} ({}) from stdin").format(table, sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns))
    return create, copy


@dataclass(frozen=True, slots=True)
class KeyedMove:
    """How the staged rows of a compact table are stored (order book deltas 050, trades and tickers 060): the writer
    resolves the keys of the rows' dimensions, stages the rows with them (``stage``) in its own staging table, and
    inserts."""

    staging: str
    create_staging: sql.Composed
    copy: sql.Composed
    dimensions: tuple[Dimension, ...]
    #: The staged rows (from the rows and, per dimension, the keys of their values), and whether ``rare`` must run.
    stage: Callable[[Sequence[Row], Sequence[dict[Any, int]]], tuple[list[Row], bool]]
    #: The rows themselves, unless a remembered key is gone (``_remembered``): its row count is the number of new
    #: rows.
    insert: sql.Composed
    #: The same check alone (run when the insert stored nothing).
    check: sql.Composed
    rare: sql.Composed | None = None
    #: The tables ``insert`` and ``rare`` store into.
    targets: tuple[str, ...] = ()

    @property
    def privileges(self) -> tuple[tuple[str, str], ...]:
        """What the role needs for this move: INSERT on its tables, INSERT and SELECT on its dimensions'."""
        return (*((f"kalshi.{t}", "INSERT") for t in self.targets),
                *((f"kalshi.{d.table}", p) for d in self.dimensions for p in ("INSERT", "SELECT")))


def _keyed_move(staging: str, columns: Sequence[tuple[str, str]], dimensions: tuple[Dimension, ...],
                **kwargs: Any) -> KeyedMove:
    create, copy = _staging(staging, columns)
    check = sql.SQL("select {}").format(_remembered(*dimensions))
    return KeyedMove(staging=staging, create_staging=create, copy=copy, dimensions=dimensions, check=check, **kwargs)


_TRADE_MOVE: Final = _keyed_move("stage_trade_rows", _TRADE_STAGING, (_TRADE_MARKETS, _TRADE_FEEDS), stage=_stage_trades,
                                 insert=_TRADE_INSERT, rare=_TRADE_EXTRAS, targets=("trade_rows", "trade_extras"))
_TICKER_MOVE: Final = _keyed_move("stage_ticker_rows", _TICKER_STAGING, (_TICKER_MARKETS, _TICKER_FEEDS),
                                  stage=_stage_tickers, insert=_TICKER_INSERT, targets=("ticker_rows",))

#: Staging of the compact deltas: the book's key instead of the connection, market and side columns, and the low 31
#: bits of seq (the book has the rest).
_DELTA_STAGING: Final = (("book_key", "integer"), ("seq", "integer"), ("price", "numeric"), ("delta", "numeric"),
                         ("client_order_id", "text"), ("subaccount", "integer"), ("ts_ms", "bigint"),
                         ("received_ns", "bigint"))
_DELTA_VALUES: Final = itemgetter(*(_DELTA_NAMES.index(name) for name, _ in _DELTA_STAGING[1:]))
_DELTA_AFTER_SEQ: Final = itemgetter(*(_DELTA_NAMES.index(name) for name, _ in _DELTA_STAGING[2:]))


def _stage_deltas(rows: Sequence[Row], keys: Sequence[dict[Any, int]]) -> tuple[list[Row], bool]:
    (books,), values = keys, _DELTA_VALUES
    if _low_seqs(rows):
        book = _BOOK_OF
        staged = [(books[book(row)], *values(row)) for row in rows]
    else:
        after_seq = _DELTA_AFTER_SEQ
        staged = [(books[_book_of(row)], _low_bits(row[_SEQ]), *after_seq(row)) for row in rows]
    return staged, _deltas_need_extras(rows)


_DELTA_INSERT: Final = sql.SQL("""
    insert into kalshi.orderbook_delta_rows (received_at, seq, book_key, session_date, exchange_lag_ms, price, delta)
    select to_timestamp(0) + s.received_ns / 1000 * interval '1 microsecond', s.seq, s.book_key,
        %(session_date)s::date, case when {fits} then ({lag})::integer end, s.price, s.delta
    from pg_temp.stage_delta_rows s
    where {remembered}
    on conflict do nothing""").format(fits=_DELTA_LAG_FITS, lag=_DELTA_LAG, remembered=_remembered(_BOOKS))
_DELTA_EXTRAS: Final = sql.SQL("""
    insert into kalshi.orderbook_delta_extras (book_key, session_date, seq, exchange_ts, client_order_id, subaccount)
    select s.book_key, %(session_date)s::date, s.seq,
        case when not {fits} then to_timestamp(0) + s.ts_ms * interval '1 millisecond' end,
        s.client_order_id, s.subaccount
    from pg_temp.stage_delta_rows s
    where s.client_order_id is not null or s.subaccount is not null or not {fits}
    on conflict do nothing""").format(fits=_DELTA_LAG_FITS)
_DELTA_MOVE: Final = _keyed_move("stage_delta_rows", _DELTA_STAGING, (_BOOKS,), stage=_stage_deltas,
                                 insert=_DELTA_INSERT, rare=_DELTA_EXTRAS,
                                 targets=("orderbook_delta_rows", "orderbook_delta_extras"))


def _int_array(keys: set[int]) -> str:
    """An integer[] literal (cheaper to send than a list adapted element by element)."""
    return "{" + ",".join(map(str, sorted(keys))) + "}"


#: Bound of the keys a writer remembers per dimension (a session follows thousands of markets: two books each per
#: connection).
_MAX_KNOWN_KEYS: Final = 200_000
#: Tables whose staged rows are stored by a :class:`KeyedMove` instead of their ``TableSpec.insert``.
_MOVES: Final[dict[str, KeyedMove]] = {
    "orderbook_deltas": _DELTA_MOVE,
    "trades": _TRADE_MOVE,
    "tickers": _TICKER_MOVE,
}


class CopyWriter:
    """Writes :class:`~kalshi_store.batch.Batch` es through one async connection (see the module docstring)."""

    #: Tables moved from staging by several statements (the compact order book deltas, trades and tickers); the
    #: others by their ``TableSpec.insert``. ``bench/storage_scale.py`` empties it to write the layout of before 050.
    moves: dict[str, KeyedMove] = _MOVES

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn
        # Staging tables created on this connection. Only the tables a session uses are created, because at every
        # commit PostgreSQL empties *all* of a connection's ON COMMIT DELETE ROWS tables (a few ms for 14).
        self._staged: set[str] = set()
        # Sessions whose manifest the database rejected and which were stored cleaned: later batches of the session
        # carry the same manifest, and upsert the cleaned one instead of failing (and isolating) every time.
        self._cleaned_sessions: set[str] = set()
        # The keys of each Dimension (books, markets, feeds) this writer stored or read in a committed transaction,
        # and those of the open transaction (its rows may be rolled back). Markets are never deleted, books and
        # feeds only with the days that used them (kalshi_store.retention); a rows insert that finds a remembered
        # key gone stores nothing, and the keys are resolved again (docs/storage.md, "Writing").
        self._keys: dict[str, dict[Any, int]] = {name: {} for name in ("books", "markets", "feeds")}
        self._pending: dict[str, dict[Any, int]] = {name: {} for name in self._keys}

    @classmethod
    async def connect(cls, url: str, *, connect_timeout: float = 5.0, application_name: str = "kalshi-recorder"
                      ) -> CopyWriter:
        """Connect and prepare; raises :class:`~kalshi_store.dberrors.DatabaseConfigError` (wrong password, missing
        database, role or schema, no privileges, malformed URL) or
        :class:`~kalshi_store.dberrors.DatabaseUnavailableError` (refused, timed out ...), both redacted."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                url, connect_timeout=max(1, round(connect_timeout)), application_name=application_name
            )
        except (psycopg.Error, OSError) as exc:
            raise connect_error(exc, url) from None
        writer = cls(conn)
        try:
            await writer._prepare()
        except BaseException as exc:
            await writer.close()
            if isinstance(exc, _AccessProblem):
                raise DatabaseConfigError(f"DATABASE_URL ({redact_url(url)}): {exc}") from None
            if isinstance(exc, psycopg.Error | OSError):
                raise connect_error(exc, url) from None
            raise
        return writer

    async def close(self) -> None:
        await self.conn.close()

    @property
    def closed(self) -> bool:
        return self.conn.closed or self.conn.broken

    async def _prepare(self) -> None:
        async with self.conn.transaction():
            # Timestamps are UTC in and out whatever the server's default.
            await self.conn.execute("set time zone 'UTC'")
            # A batch leaves memory/spill once its commit returns, so the commit must be durable even if the
            # server runs with synchronous_commit = off (an asynchronous commit is lost if the server crashes).
            await self.conn.execute("set synchronous_commit = on")
        # A missing schema or a role without privileges is a configuration error, found here before recording
        # starts rather than at the first batch (see kalshi_store.dberrors).
        tables = sorted({*_NEEDED_PRIVILEGES, *(p for move in self.moves.values() for p in move.privileges)})
        async with self.conn.transaction():
            cur = await self.conn.execute(_ACCESS_CHECK, ([t for t, _ in tables], [p for _, p in tables]))
            row = await cur.fetchone()
        if row is not None and row[0]:
            raise _AccessProblem(row[0])

    async def ensure_partitions(self, days_ahead: int) -> int:
        async with self.conn.transaction():
            cur = await self.conn.execute("select kalshi.ensure_partitions(%s)", (days_ahead,))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- writing ------------------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> WriteResult:
        """Write ``batch`` (idempotent). Raises on connection and configuration problems; isolates anything the
        database rejects for good (module docstring)."""
        try:
            async with self.conn.transaction():
                result = await self._write_all(batch)
            self._committed()
            return result
        except BaseException as exc:
            self._rolled_back()
            if not is_rejection(exc):
                raise
            log.warning("batch %s: the database rejected part of it (%s); isolating it", batch.batch_id,
                        describe(exc))
        return await self._write_isolating(batch)

    def _committed(self) -> None:
        for name, pending in self._pending.items():
            known = self._keys[name]
            if len(known) > _MAX_KNOWN_KEYS:
                known.clear()
            known |= pending
            pending.clear()

    def _rolled_back(self) -> None:
        self._staged.clear()  # staging tables created in the rolled-back transaction are gone
        for pending in self._pending.values():
            pending.clear()

    async def _write_all(self, batch: Batch) -> WriteResult:
        result = WriteResult()
        if batch.session is not None:
            await self._upsert_session(batch.session)
        for spec in TABLE_ORDER:
            rows = batch.tables.get(spec.name)
            if rows:
                inserted = await self._copy_insert(spec, rows, _constants(batch, spec))
                result.inserted[spec.name] = inserted
                result.duplicates[spec.name] = len(rows) - inserted
        await self._apply_ledger(batch.ledger)
        await self._bookkeeping(batch, result)
        return result

    async def _attempt(self, work: Any) -> str | None:
        """Run ``work()`` in its own transaction; the rejection's description if the database rejected it for good
        (other errors are raised)."""
        try:
            async with self.conn.transaction():
                await work()
        except BaseException as exc:
            self._rolled_back()
            if not is_rejection(exc):
                raise
            return describe(exc)
        return None

    async def _write_isolating(self, batch: Batch) -> WriteResult:
        result = WriteResult()
        rejected: list[Row] = []
        session_id = batch.session.session_id if batch.session else (
            batch.progress.session_id if batch.progress else None)
        if batch.session is not None:
            manifest = batch.session
            error = await self._attempt(lambda: self._upsert_session(manifest))
            if error is not None:
                log.error("session %s: the session row could not be stored as is (%s); storing it with unstorable "
                          "characters replaced, the original in dead_letter", manifest.session_id, error)
                rejected.append(_unstorable_record("sessions", msgspec.structs.asdict(manifest), error, session_id))
                clean = msgspec.structs.replace(manifest, **_clean(msgspec.structs.asdict(manifest)))
                again = await self._attempt(lambda: self._upsert_session(clean))
                if again is None:
                    self._cleaned_sessions.add(manifest.session_id)
                else:
                    log.error("session %s: the session row could not be stored (%s)", manifest.session_id, again)
        for spec in TABLE_ORDER:
            rows = batch.tables.get(spec.name)
            if not rows:
                continue
            inserted, bad = await self._bisect(spec, rows, _constants(batch, spec))
            result.inserted[spec.name] = inserted
            result.duplicates[spec.name] = len(rows) - inserted - len(bad)
            for row, error in bad:
                log.error("%s row could not be stored (%s); moved to dead_letter", spec.name, error)
                rejected.append(_unstorable_row(spec, row, error, session_id))
        for op in batch.ledger:
            error = await self._attempt(lambda op=op: self._apply_ledger([op]))
            if error is None:
                continue
            log.error("gap-ledger %s %s could not be stored as is (%s); storing it with unstorable characters "
                      "replaced, the original in dead_letter", op.op, op.event_id, error)
            rejected.append(_unstorable_record("gap_ledger", msgspec.structs.asdict(op), error, session_id))
            clean_op = msgspec.structs.replace(op, **_clean(msgspec.structs.asdict(op)))
            if await self._attempt(lambda clean_op=clean_op: self._apply_ledger([clean_op])) is not None:
                log.error("gap-ledger %s %s could not be stored", op.op, op.event_id)
        if rejected:
            result.unstorable = await self._store_rejected(rejected)
            result.inserted["dead_letter"] = result.inserted.get("dead_letter", 0) + result.unstorable
        error = await self._attempt(lambda: self._bookkeeping(batch, result))
        if error is not None and batch.progress is not None:
            log.error("session %s: progress could not be stored as is (%s); storing it with unstorable characters "
                      "replaced", batch.progress.session_id, error)
            progress = batch.progress
            clean_progress = msgspec.structs.replace(progress, **_clean(msgspec.structs.asdict(progress)))
            cleaned = Batch(batch_id=batch.batch_id, session=None, session_id=batch.session_id,
                            session_date=batch.session_date, progress=clean_progress)
            if await self._attempt(lambda: self._bookkeeping(cleaned, result)) is not None:
                log.error("session %s: progress could not be stored", progress.session_id)
        return result

    async def _store_rejected(self, rejected: list[Row]) -> int:
        """Store dead_letter rows; one that is itself unstorable (NUL in its type) is stored with text cleaned."""
        inserted, bad = await self._bisect(DEAD_LETTER, rejected, None)
        for row, error in bad:
            clean_row = tuple(_clean(v) if isinstance(v, str) else v for v in row)
            try:
                async with self.conn.transaction():
                    inserted += await self._copy_insert(DEAD_LETTER, [clean_row])
            except BaseException as exc:
                self._rolled_back()
                if not is_rejection(exc):
                    raise
                log.error("a dead_letter row could not be stored (%s; first: %s)", describe(exc), error)
        return inserted

    async def _bisect(self, spec: TableSpec, rows: Sequence[Row], constants: dict[str, Any] | None
                      ) -> tuple[int, list[tuple[Row, str]]]:
        try:
            async with self.conn.transaction():
                inserted = await self._copy_insert(spec, rows, constants)
            self._committed()
            return inserted, []
        except BaseException as exc:
            self._rolled_back()
            if not is_rejection(exc):
                raise
            if len(rows) == 1:
                return 0, [(rows[0], describe(exc))]
        half = len(rows) // 2
        left, bad_left = await self._bisect(spec, rows[:half], constants)
        right, bad_right = await self._bisect(spec, rows[half:], constants)
        return left + right, bad_left + bad_right

    async def _copy_insert(self, spec: TableSpec, rows: Sequence[Row], constants: dict[str, Any] | None = None
                           ) -> int:
        move = self.moves.get(spec.name)
        if move is not None:
            return await self._keyed_insert(move, rows, constants)
        async with self.conn.cursor() as cur:
            if spec.name not in self._staged:
                await cur.execute(spec.create_staging)
                self._staged.add(spec.name)
            async with cur.copy(spec.copy) as copy:
                # Rows are formatted synchronously into the copy buffer; only a full buffer (~32 KiB) is awaited,
                # instead of one coroutine per row (``await copy.write_row(row)``). A text-format COPY passes
                # ``write``'s bytes through unchanged, and ``finish`` sends what is left in the buffer.
                format_row = copy.formatter.write_row
                for row in rows:
                    if data := format_row(row):
                        await copy.write(data)
            await cur.execute(spec.insert, constants)
            return max(cur.rowcount, 0)

    async def _keyed_insert(self, move: KeyedMove, rows: Sequence[Row], constants: dict[str, Any] | None) -> int:
        async with self.conn.cursor() as cur:
            if move.staging not in self._staged:
                await cur.execute(move.create_staging)
                self._staged.add(move.staging)
            for attempt in range(2):
                keys, remembered = await self._resolve(rows, move, constants)
                staged, rare = move.stage(rows, keys)
                if attempt:
                    await cur.execute(sql.SQL("delete from pg_temp.{}").format(sql.Identifier(move.staging)))
                async with cur.copy(move.copy) as copy:
                    format_row = copy.formatter.write_row
                    for row in staged:
                        if data := format_row(row):
                            await copy.write(data)
                check: dict[str, Any] = {d.name: _int_array(r) for d, r in zip(move.dimensions, remembered, strict=True)}
                check["remembered"] = sum(map(len, remembered))
                await cur.execute(move.insert, {**constants, **check} if constants else check)
                inserted = max(cur.rowcount, 0)
                if inserted == 0 and check["remembered"]:
                    # Every row a duplicate (a replay), or remembered keys gone: forget them and find them again.
                    await cur.execute(move.check, check)
                    answer = await cur.fetchone()
                    if answer is None or not answer[0]:
                        for dimension in move.dimensions:
                            self._keys[dimension.name].clear()
                        continue
                break
            if rare and move.rare is not None:
                await cur.execute(move.rare, constants)
            return inserted

    async def _resolve(self, rows: Sequence[Row], move: KeyedMove, constants: dict[str, Any] | None
                       ) -> tuple[list[dict[Any, int]], list[set[int]]]:
        """Per dimension of ``move``, the keys of the rows' values, and which of them were remembered from committed
        transactions (the others were stored or read in this one): remembered ones, the others stored (when new)
        and read by one statement per dimension, in key order (two writers never wait on each other in a cycle)."""
        session_id = constants.get("session_id") if constants else None
        found: list[dict[Any, int]] = []
        remembered_keys: list[set[int]] = []
        for dimension in move.dimensions:
            known, pending = self._keys[dimension.name], self._pending[dimension.name]
            per_session = dimension.per_session
            keys: dict[Any, int] = {}
            remembered: set[int] = set()
            unknown: list[Any] = []
            for value in set(dimension.of(rows)):
                name = (session_id, value) if per_session else value
                key = pending.get(name)
                if key is None:
                    key = known.get(name)
                    if key is None:
                        unknown.append(value)
                        continue
                    remembered.add(key)
                keys[value] = key
            if unknown:
                for value, key in (await self._store(dimension, unknown, constants)).items():
                    keys[value] = pending[(session_id, value) if per_session else value] = key
            found.append(keys)
            remembered_keys.append(remembered)
        return found, remembered_keys

    async def _store(self, dimension: Dimension, unknown: list[Any], constants: dict[str, Any] | None
                     ) -> dict[Any, int]:
        """Store the values of ``dimension`` among ``unknown`` not stored yet; the keys of all of them."""
        params: dict[str, Any] = dict(constants or {}) if dimension.per_session else {}
        keys: dict[Any, int] = {}
        try:
            unknown.sort(key=dimension.order)
        except TypeError:  # a value of the wrong type: the database refuses it, and its row goes to dead_letter
            unknown.sort(key=repr)
        statement = dimension.resolve
        async with self.conn.cursor() as cur:
            while unknown:
                params["wanted"] = _plain_json.encode([dimension.element(v) for v in unknown]).decode()
                await cur.execute(statement, params)
                answer = {int(i): key for i, key in await cur.fetchall() if key is not None}
                for i, value in enumerate(unknown, start=1):
                    if i in answer:
                        keys[value] = answer[i]
                missing = [v for i, v in enumerate(unknown, start=1) if i not in answer]
                if len(missing) == len(unknown) and statement is dimension.again:
                    raise RuntimeError(f"{len(missing)} {dimension.name} could not be stored or found")
                # Stored by a transaction that committed after the statement began: a new one sees them.
                unknown, statement = missing, dimension.again
        return keys

    async def _upsert_session(self, manifest: SessionManifest) -> None:
        params = msgspec.structs.asdict(manifest)
        if manifest.session_id in self._cleaned_sessions:
            params = _clean(params)
        await self.conn.execute(_SESSION_INSERT, params)

    async def _bookkeeping(self, batch: Batch, result: WriteResult) -> None:
        session_id = batch.session.session_id if batch.session else (
            batch.progress.session_id if batch.progress else None)
        if session_id is not None and (result.inserted or result.duplicates):
            await self.conn.execute(_SESSION_COUNTS, {
                "session_id": session_id, "written": Jsonb(result.inserted), "duplicates": Jsonb(result.duplicates),
            })
        if batch.progress is not None:
            await self._progress(batch.progress)

    async def _progress(self, progress: SessionProgress) -> None:
        params = msgspec.structs.asdict(progress)
        params["received"] = Jsonb(progress.received)
        await self.conn.execute(_SESSION_PROGRESS, params)

    async def _apply_ledger(self, ops: Sequence[LedgerOp]) -> None:
        for op in ops:
            at = ns_to_datetime(op.at_ns)
            params = {
                "event_id": op.event_id, "session_id": op.session_id, "generation": op.generation,
                "incident_id": op.incident_id, "kind": op.kind, "sid": op.sid, "channel": op.channel,
                "markets": op.markets, "expected_seq": op.expected_seq, "received_seq": op.received_seq,
                "at": at, "ended_at": ns_to_datetime(op.ended_ns) if op.ended_ns is not None else None, "outcome": op.outcome,
                "detail": Jsonb(op.detail), "target_event_id": op.target_event_id,
            }
            if op.op == "open":
                await self.conn.execute(_LEDGER_OPEN, params)
            elif op.op == "close_incident":
                await self.conn.execute(_LEDGER_CLOSE_INCIDENT, params)
                params["ended_at"] = at
                await self.conn.execute(_LEDGER_OPEN, params)
            elif op.op == "close_event":
                await self.conn.execute(_LEDGER_CLOSE_EVENT, params)
            else:
                await self.conn.execute(_LEDGER_ANNOTATE, params)


def _constants(batch: Batch, spec: TableSpec) -> dict[str, Any] | None:
    """The batch-level parameters of ``spec.insert`` (``None`` for tables that take none)."""
    if not spec.constants:
        return None
    if batch.session_id is None or batch.session_date is None:
        raise ValueError(f"batch {batch.batch_id} has {spec.name} rows but no session_id/session_date")
    return {"session_id": batch.session_id, "session_date": batch.session_date}


def _clean(value: Any) -> Any:
    """``value`` with what PostgreSQL text cannot hold replaced by U+FFFD (NUL, lone surrogates), recursively."""
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    return value


def _integer(value: Any, bits: int) -> int | None:
    """``value`` if it is an int a signed integer of ``bits`` holds, else None: the dead_letter row's own columns
    (generation, sid, seq, time) must be storable whatever the rejected row held (its raw JSON keeps it as is)."""
    return value if type(value) is int and -(1 << (bits - 1)) <= value < 1 << (bits - 1) else None


def _unstorable_record(kind: str, values: dict[str, Any], error: str, session_id: str | None) -> Row:
    """A dead_letter row keeping a session manifest or ledger operation that could not be stored as is."""
    raw = _json.encode(values)
    row_id = uuid.uuid5(_UNSTORABLE_NAMESPACE, kind + "\0" + raw.decode("utf-8", "replace"))
    return (str(row_id), session_id, _integer(values.get("generation"), 32),
            _integer(values.get("at_ns"), 64) or time.time_ns(), "unstorable", kind, _integer(values.get("sid"), 32),
            None, redact(error).replace("\x00", "\\0")[:2000], raw)


def _unstorable_row(spec: TableSpec, row: Row, error: str, session_id: str | None) -> Row:
    names = [name for name, _, _ in spec.columns]
    values = dict(zip(names, row, strict=True))
    raw = _json.encode(values)
    # Derived from the row, so replaying the batch never stores the rejection twice.
    row_id = uuid.uuid5(_UNSTORABLE_NAMESPACE, spec.name + "\0" + raw.decode("utf-8", "replace"))
    return (
        str(row_id), session_id, _integer(values.get("generation"), 32), _integer(values.get("received_ns"), 64) or 0,
        "unstorable", spec.name, _integer(values.get("sid"), 32), _integer(values.get("seq"), 64),
        redact(error).replace("\x00", "\\0")[:2000], raw,
    )

