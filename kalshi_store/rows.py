"""Message -> row mapping: one plain tuple per message, one staging table and one INSERT per target table.

The hot path is :meth:`RowBuilders.build`'s callers in the recorder: ``dispatch[type(message)]`` gives
``(table, builder)`` and the builder returns a tuple of attribute values, untouched (``Decimal`` stays
``Decimal``; integer milliseconds and nanoseconds stay integers). Conversions that cost Python time
(epoch integers to ``timestamptz``, partition days, content hashes) happen in the database, in the
``INSERT ... SELECT`` from the staging table (:attr:`TableSpec.insert`).

Each :class:`TableSpec` lists the staging columns in tuple order with their PostgreSQL and Python types; the
Python types let :mod:`kalshi_store.spill` decode spilled rows back to exactly the same tuples.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Final

import msgspec
from psycopg import sql

from kalshi_ws import messages as m

__all__ = [
    "DEAD_LETTER",
    "TABLES",
    "TABLE_ORDER",
    "Row",
    "RowBuilders",
    "TableSpec",
    "dead_letter_row",
    "fill_row",
    "trade_row",
]

Row = tuple[Any, ...]

_S = str | None
_D = Decimal | None
_I = int | None
_B = bool | None


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A target table: its staging columns (tuple order), and the statement moving staged rows into it."""

    name: str
    columns: tuple[tuple[str, str, Any], ...]
    insert: sql.Composed
    #: Per-batch values the ``insert`` takes as parameters (``%(name)s``) instead of a column in every row:
    #: the batch's ``session_id`` and ``session_date`` (see :class:`~kalshi_store.batch.Batch`).
    constants: tuple[str, ...] = ()

    def index(self, column: str) -> int:
        """Where ``column`` sits in this table's rows: code outside the builders reads a row by name, never by a
        literal position, so a column moved in :attr:`columns` moves every reader with it."""
        for position, (name, _, _) in enumerate(self.columns):
            if name == column:
                return position
        raise KeyError(f"table {self.name!r} has no staging column {column!r}")

    @property
    def staging(self) -> sql.Identifier:
        return sql.Identifier(f"stage_{self.name}")

    @property
    def create_staging(self) -> sql.Composed:
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pgtype)) for name, pgtype, _ in self.columns
        )
        return sql.SQL("create temp table if not exists {} ({}) on commit delete rows").format(self.staging, cols)

    @property
    def copy(self) -> sql.Composed:
        cols = sql.SQL(", ").join(sql.Identifier(name) for name, _, _ in self.columns)
        return sql.SQL("copy {} ({}) from stdin").format(self.staging, cols)

    @property
    def row_type(self) -> Any:
        """``tuple[...]`` of the Python types, for decoding spilled rows."""
        return tuple.__class_getitem__(tuple(pytype for _, _, pytype in self.columns))


# Epoch integers -> timestamptz, exactly (float8 holds these integers exactly). Composed with psycopg.sql
# (constant text and identifiers), never by string formatting.
_RECEIVED: Final = sql.SQL("to_timestamp(0) + received_ns / 1000 * interval '1 microsecond'")


def _ms(column: str) -> sql.Composable:
    return sql.SQL("to_timestamp(0) + {} * interval '1 millisecond'").format(sql.Identifier(column))


def _s(column: str) -> sql.Composable:
    return sql.SQL("to_timestamp(0) + {} * interval '1 second'").format(sql.Identifier(column))


# ---------------------------------------------------------------------------------------------------
# Table specs. Staging column order == builder tuple order.

TRADES = TableSpec(
    "trades",
    (
        ("trade_id", "text", str), ("market_ticker", "text", str), ("yes_price", "numeric", Decimal),
        ("no_price", "numeric", Decimal), ("count", "numeric", Decimal), ("taker_outcome_side", "text", _S),
        ("taker_book_side", "text", _S), ("taker_side", "text", _S), ("is_block_trade", "boolean", bool),
        ("ts_ms", "bigint", _I), ("ts_s", "bigint", _I), ("exchange_text", "text", _S),
        ("received_ns", "bigint", int), ("source", "text", str), ("session_id", "uuid", _S),
        ("generation", "integer", _I), ("sid", "integer", _I), ("seq", "bigint", _I),
    ),
    sql.SQL("""
        insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count,
            taker_outcome_side, taker_book_side, taker_side, is_block_trade, exchange_ts, received_at, source,
            session_id, generation, sid, seq)
        select trade_id, (coalesce(exchange_ts, received_at) at time zone 'UTC')::date, market_ticker, yes_price,
            no_price, count, taker_outcome_side, taker_book_side, taker_side, is_block_trade, exchange_ts,
            received_at, source, session_id, generation, sid, seq
        from (select s.*, coalesce({ms_ts_ms}, {s_ts_s}, exchange_text::timestamptz) as exchange_ts,
                     {received} as received_at
              from pg_temp.stage_trades s) staged
        on conflict do nothing""").format(ms_ts_ms=_ms("ts_ms"), s_ts_s=_s("ts_s"), received=_RECEIVED),  # noqa: S608 - constant SQL
)

#: The session's id and day are the same for every row of a batch: the order book tables (the bulk of a
#: stream) take them as parameters of their INSERT rather than in every COPY row.
_SESSION_CONSTANTS: Final = ("session_id", "session_date")

ORDERBOOK_SNAPSHOTS = TableSpec(
    "orderbook_snapshots",
    (
        ("generation", "integer", int),
        ("sid", "integer", int), ("seq", "bigint", int), ("market_ticker", "text", str), ("market_id", "text", str),
        ("yes_prices", "numeric[]", list[Decimal]), ("yes_sizes", "numeric[]", list[Decimal]),
        ("no_prices", "numeric[]", list[Decimal]), ("no_sizes", "numeric[]", list[Decimal]),
        ("use_yes_price", "boolean", bool), ("command_id", "bigint", _I), ("received_ns", "bigint", int),
    ),
    sql.SQL("""
        insert into kalshi.orderbook_snapshots (session_id, session_date, generation, sid, seq, market_ticker,
            market_id, yes_prices, yes_sizes, no_prices, no_sizes, use_yes_price, command_id, received_at)
        select %(session_id)s::uuid, %(session_date)s::date, generation, sid, seq, market_ticker,
            nullif(market_id, ''), yes_prices,
            yes_sizes, no_prices, no_sizes, use_yes_price, command_id, {received}
        from pg_temp.stage_orderbook_snapshots
        on conflict do nothing""").format(received=_RECEIVED),  # noqa: S608
    constants=_SESSION_CONSTANTS,
)

ORDERBOOK_DELTAS = TableSpec(
    "orderbook_deltas",
    (
        ("generation", "integer", int),
        ("sid", "integer", int), ("seq", "bigint", int), ("market_ticker", "text", str), ("market_id", "text", str),
        ("side", "text", str), ("price", "numeric", Decimal), ("delta", "numeric", Decimal),
        ("client_order_id", "text", _S), ("subaccount", "integer", _I), ("ts_ms", "bigint", _I),
        ("received_ns", "bigint", int),
    ),
    sql.SQL("""
        insert into kalshi.orderbook_deltas (session_id, session_date, generation, sid, seq, market_ticker,
            market_id, side, price, delta, client_order_id, subaccount, exchange_ts, received_at)
        select %(session_id)s::uuid, %(session_date)s::date, generation, sid, seq, market_ticker,
            nullif(market_id, ''), side, price,
            delta, client_order_id, subaccount, {ms_ts_ms}, {received}
        from pg_temp.stage_orderbook_deltas
        on conflict do nothing""").format(ms_ts_ms=_ms("ts_ms"), received=_RECEIVED),  # noqa: S608
    constants=_SESSION_CONSTANTS,
)

TICKERS = TableSpec(
    "tickers",
    (
        ("market_ticker", "text", str), ("market_id", "text", str), ("price", "numeric", _D),
        ("yes_bid", "numeric", _D), ("yes_ask", "numeric", _D), ("volume", "numeric", _D),
        ("open_interest", "numeric", _D), ("dollar_volume", "bigint", _I), ("dollar_open_interest", "bigint", _I),
        ("yes_bid_size", "numeric", _D), ("yes_ask_size", "numeric", _D), ("last_trade_size", "numeric", _D),
        ("ts_ms", "bigint", _I), ("ts_s", "bigint", _I), ("time_text", "text", _S), ("received_ns", "bigint", int),
        ("session_id", "uuid", str), ("generation", "integer", int), ("sid", "integer", int),
    ),
    sql.SQL("""
        insert into kalshi.tickers (market_ticker, exchange_ts, content_hash, market_id, price, yes_bid, yes_ask,
            volume, open_interest, dollar_volume, dollar_open_interest, yes_bid_size, yes_ask_size,
            last_trade_size, received_at, session_id, generation, sid)
        select market_ticker, coalesce({ms_ts_ms}, {s_ts_s}, time_text::timestamptz, {received}),
            md5(row(price, yes_bid, yes_ask, volume, open_interest, dollar_volume, dollar_open_interest,
                    yes_bid_size, yes_ask_size, last_trade_size)::text)::uuid,
            nullif(market_id, ''), price, yes_bid, yes_ask, volume, open_interest, dollar_volume,
            dollar_open_interest, yes_bid_size, yes_ask_size, last_trade_size, {received}, session_id,
            generation, sid
        from pg_temp.stage_tickers
        on conflict do nothing""").format(ms_ts_ms=_ms("ts_ms"), s_ts_s=_s("ts_s"), received=_RECEIVED),  # noqa: S608
)

#: The columns of a fill, whichever source delivered it (:func:`fill_row`); the two specs below differ only in the
#: connection columns (a REST fill has none) and in the ``source`` their INSERT writes.
_FILL_COLUMNS: Final = (
    ("trade_id", "text", str), ("order_id", "text", str), ("market_ticker", "text", str),
    ("client_order_id", "text", _S), ("exchange_index", "integer", _I), ("is_taker", "boolean", bool),
    ("outcome_side", "text", _S), ("book_side", "text", _S), ("yes_price", "numeric", Decimal),
    ("count", "numeric", Decimal), ("fee_cost", "numeric", _D), ("post_position", "numeric", _D),
    ("side", "text", _S), ("action", "text", _S), ("purchased_side", "text", _S), ("subaccount", "integer", _I),
    ("ts_ms", "bigint", _I), ("ts_s", "bigint", _I), ("received_ns", "bigint", int),
)


def _fills_insert(staging: str, source: str) -> sql.Composed:
    return sql.SQL("""
        insert into kalshi.fills (trade_id, order_id, market_ticker, client_order_id, exchange_index, is_taker,
            outcome_side, book_side, yes_price, count, fee_cost, post_position, side, action, purchased_side,
            subaccount, exchange_ts, received_at, session_id, generation, sid, source)
        select trade_id, order_id, market_ticker, client_order_id, exchange_index, is_taker, outcome_side,
            book_side, yes_price, count, fee_cost, post_position, side, action, purchased_side, subaccount,
            coalesce({ms_ts_ms}, {s_ts_s}), {received}, session_id, generation, sid, {source}
        from pg_temp.{staging}
        on conflict do nothing""").format(ms_ts_ms=_ms("ts_ms"), s_ts_s=_s("ts_s"), received=_RECEIVED,
                                          source=sql.Literal(source), staging=sql.Identifier(staging))


FILLS = TableSpec(
    "fills",
    (*_FILL_COLUMNS, ("session_id", "uuid", str), ("generation", "integer", int), ("sid", "integer", int)),
    _fills_insert("stage_fills", "ws"),
)

#: Fills backfilled from ``GET /portfolio/fills`` (``source = 'rest'``): same table and key as :data:`FILLS`,
#: written after it in a batch, so a fill the WebSocket also delivered keeps the live row.
REST_FILLS = TableSpec(
    "rest_fills",
    (*_FILL_COLUMNS, ("session_id", "uuid", _S), ("generation", "integer", _I), ("sid", "integer", _I)),
    _fills_insert("stage_rest_fills", "rest"),
)

USER_ORDERS = TableSpec(
    "user_orders",
    (
        ("order_id", "text", str), ("user_id", "text", str), ("market_ticker", "text", str),
        ("exchange_index", "integer", _I), ("status", "text", str), ("outcome_side", "text", _S),
        ("book_side", "text", _S), ("side", "text", _S), ("is_yes", "boolean", _B), ("yes_price", "numeric", Decimal),
        ("fill_count", "numeric", Decimal), ("remaining_count", "numeric", Decimal),
        ("initial_count", "numeric", Decimal), ("taker_fill_cost", "numeric", _D),
        ("maker_fill_cost", "numeric", _D), ("taker_fees", "numeric", _D), ("maker_fees", "numeric", _D),
        ("client_order_id", "text", _S), ("order_group_id", "text", _S),
        ("self_trade_prevention_type", "text", _S), ("created_ts_ms", "bigint", _I),
        ("last_updated_ts_ms", "bigint", _I), ("expiration_ts_ms", "bigint", _I), ("created_time", "text", _S),
        ("last_update_time", "text", _S), ("expiration_time", "text", _S), ("last_update_reason", "text", _S),
        ("subaccount_number", "integer", _I), ("received_ns", "bigint", int), ("session_id", "uuid", str),
        ("generation", "integer", int), ("sid", "integer", int),
    ),
    sql.SQL("""
        insert into kalshi.user_orders (order_id, content_hash, user_id, market_ticker, exchange_index, status,
            outcome_side, book_side, side, is_yes, yes_price, fill_count, remaining_count, initial_count,
            taker_fill_cost, maker_fill_cost, taker_fees, maker_fees, client_order_id, order_group_id,
            self_trade_prevention_type, created_ts, last_updated_ts, expiration_ts, last_update_reason,
            subaccount_number, received_at, session_id, generation, sid)
        select order_id,
            md5(row(user_id, market_ticker, exchange_index, status, outcome_side, book_side, side, is_yes,
                    yes_price, fill_count, remaining_count, initial_count, taker_fill_cost, maker_fill_cost,
                    taker_fees, maker_fees, client_order_id, order_group_id, self_trade_prevention_type,
                    created_ts_ms, last_updated_ts_ms, expiration_ts_ms, created_time, last_update_time,
                    expiration_time, last_update_reason, subaccount_number)::text)::uuid,
            nullif(user_id, ''), market_ticker, exchange_index, status, outcome_side, book_side, side, is_yes,
            yes_price, fill_count, remaining_count, initial_count, taker_fill_cost, maker_fill_cost, taker_fees,
            maker_fees, client_order_id, order_group_id, self_trade_prevention_type,
            coalesce({ms_created_ts_ms}, created_time::timestamptz),
            coalesce({ms_last_updated_ts_ms}, last_update_time::timestamptz),
            coalesce({ms_expiration_ts_ms}, expiration_time::timestamptz),
            last_update_reason, subaccount_number, {received}, session_id, generation, sid
        from pg_temp.stage_user_orders
        on conflict do nothing""").format(ms_created_ts_ms=_ms("created_ts_ms"), ms_last_updated_ts_ms=_ms("last_updated_ts_ms"), ms_expiration_ts_ms=_ms("expiration_ts_ms"), received=_RECEIVED),  # noqa: S608
)

MARKET_POSITIONS = TableSpec(
    "market_positions",
    (
        ("user_id", "text", str), ("market_ticker", "text", str), ("position", "numeric", Decimal),
        ("position_cost", "numeric", _D), ("realized_pnl", "numeric", _D), ("fees_paid", "numeric", _D),
        ("position_fee_cost", "numeric", _D), ("volume", "numeric", _D), ("subaccount", "integer", _I),
        ("received_ns", "bigint", int), ("session_id", "uuid", str), ("generation", "integer", int),
        ("sid", "integer", int),
    ),
    sql.SQL("""
        insert into kalshi.market_positions (market_ticker, content_hash, user_id, position, position_cost,
            realized_pnl, fees_paid, position_fee_cost, volume, subaccount, received_at, session_id, generation,
            sid)
        select market_ticker,
            md5(row(user_id, position, position_cost, realized_pnl, fees_paid, position_fee_cost, volume,
                    subaccount)::text)::uuid,
            nullif(user_id, ''), position, position_cost, realized_pnl, fees_paid, position_fee_cost, volume,
            subaccount, {received}, session_id, generation, sid
        from pg_temp.stage_market_positions
        on conflict do nothing""").format(received=_RECEIVED),  # noqa: S608
)

_SEQ_COLUMNS: Final = (
    ("session_id", "uuid", str), ("generation", "integer", int), ("sid", "integer", int), ("seq", "bigint", _I),
)

MARKET_LIFECYCLE = TableSpec(
    "market_lifecycle",
    (
        *_SEQ_COLUMNS, ("message_type", "text", str), ("market_ticker", "text", str), ("event_type", "text", str),
        ("exchange_index", "integer", _I), ("open_ts", "bigint", _I), ("close_ts", "bigint", _I),
        ("determination_ts", "bigint", _I), ("result", "text", _S), ("settlement_value", "numeric", _D),
        ("settled_ts", "bigint", _I), ("is_deactivated", "boolean", _B), ("additional_metadata", "jsonb", _S),
        ("price_level_structure", "text", _S), ("price_ranges", "jsonb", _S), ("strike_type", "text", _S),
        ("floor_strike", "numeric", _D), ("cap_strike", "numeric", _D), ("custom_strike", "jsonb", _S),
        ("yes_sub_title", "text", _S), ("received_ns", "bigint", int),
    ),
    sql.SQL("""
        insert into kalshi.market_lifecycle (session_id, generation, sid, seq, content_hash, message_type,
            market_ticker, event_type, exchange_index, open_ts, close_ts, determination_ts, result,
            settlement_value, settled_ts, is_deactivated, additional_metadata, price_level_structure, price_ranges,
            strike_type, floor_strike, cap_strike, custom_strike, yes_sub_title, received_at)
        select session_id, generation, sid, seq,
            md5(row(message_type, market_ticker, event_type, exchange_index, open_ts, close_ts, determination_ts,
                    result, settlement_value, settled_ts, is_deactivated, additional_metadata,
                    price_level_structure, price_ranges, strike_type, floor_strike, cap_strike, custom_strike,
                    yes_sub_title)::text)::uuid,
            message_type, market_ticker, event_type, exchange_index, {s_open_ts}, {s_close_ts},
            {s_determination_ts}, result, settlement_value, {s_settled_ts}, is_deactivated,
            additional_metadata, price_level_structure, price_ranges, strike_type, floor_strike, cap_strike,
            custom_strike, yes_sub_title, {received}
        from pg_temp.stage_market_lifecycle
        on conflict do nothing""").format(s_open_ts=_s("open_ts"), s_close_ts=_s("close_ts"), s_determination_ts=_s("determination_ts"), s_settled_ts=_s("settled_ts"), received=_RECEIVED),  # noqa: S608
)

EVENT_LIFECYCLE = TableSpec(
    "event_lifecycle",
    (
        *_SEQ_COLUMNS, ("event_ticker", "text", str), ("exchange_index", "integer", _I), ("title", "text", _S),
        ("subtitle", "text", _S), ("collateral_return_type", "text", _S), ("series_ticker", "text", _S),
        ("strike_date", "bigint", _I), ("strike_period", "text", _S), ("received_ns", "bigint", int),
    ),
    sql.SQL("""
        insert into kalshi.event_lifecycle (session_id, generation, sid, seq, content_hash, event_ticker,
            exchange_index, title, subtitle, collateral_return_type, series_ticker, strike_date, strike_period,
            received_at)
        select session_id, generation, sid, seq,
            md5(row(event_ticker, exchange_index, title, subtitle, collateral_return_type, series_ticker,
                    strike_date, strike_period)::text)::uuid,
            event_ticker, exchange_index, title, subtitle, collateral_return_type, series_ticker,
            {s_strike_date}, strike_period, {received}
        from pg_temp.stage_event_lifecycle
        on conflict do nothing""").format(s_strike_date=_s("strike_date"), received=_RECEIVED),  # noqa: S608
)

EVENT_FEE_UPDATES = TableSpec(
    "event_fee_updates",
    (
        *_SEQ_COLUMNS, ("event_ticker", "text", str), ("fee_type_override", "text", _S),
        ("fee_multiplier_override", "numeric", _D), ("received_ns", "bigint", int),
    ),
    sql.SQL("""
        insert into kalshi.event_fee_updates (session_id, generation, sid, seq, content_hash, event_ticker,
            fee_type_override, fee_multiplier_override, received_at)
        select session_id, generation, sid, seq,
            md5(row(event_ticker, fee_type_override, fee_multiplier_override)::text)::uuid,
            event_ticker, fee_type_override, fee_multiplier_override, {received}
        from pg_temp.stage_event_fee_updates
        on conflict do nothing""").format(received=_RECEIVED),  # noqa: S608
)

ORDER_GROUP_UPDATES = TableSpec(
    "order_group_updates",
    (
        *_SEQ_COLUMNS, ("event_type", "text", str), ("order_group_id", "text", str),
        ("contracts_limit", "numeric", _D), ("ts_ms", "bigint", _I), ("received_ns", "bigint", int),
    ),
    sql.SQL("""
        insert into kalshi.order_group_updates (session_id, generation, sid, seq, content_hash, event_type,
            order_group_id, contracts_limit, exchange_ts, received_at)
        select session_id, generation, sid, seq,
            md5(row(event_type, order_group_id, contracts_limit, ts_ms)::text)::uuid,
            event_type, order_group_id, contracts_limit, {ms_ts_ms}, {received}
        from pg_temp.stage_order_group_updates
        on conflict do nothing""").format(ms_ts_ms=_ms("ts_ms"), received=_RECEIVED),  # noqa: S608
)

COMMUNICATIONS = TableSpec(
    "communications",
    (
        *_SEQ_COLUMNS, ("message_type", "text", str), ("rfq_id", "text", str), ("rfq_creator_id", "text", _S),
        ("quote_id", "text", _S), ("quote_creator_id", "text", _S), ("market_ticker", "text", str),
        ("event_ticker", "text", _S), ("contracts", "numeric", _D), ("target_cost", "numeric", _D),
        ("yes_bid", "numeric", _D), ("no_bid", "numeric", _D), ("yes_contracts_offered", "numeric", _D),
        ("no_contracts_offered", "numeric", _D), ("rfq_target_cost", "numeric", _D), ("accepted_side", "text", _S),
        ("contracts_accepted", "numeric", _D), ("order_id", "text", _S), ("client_order_id", "text", _S),
        ("created_ts", "text", _S), ("deleted_ts", "text", _S), ("executed_ts", "text", _S),
        ("mve_collection_ticker", "text", _S), ("mve_selected_legs", "jsonb", _S), ("subaccount", "integer", _I),
        ("received_ns", "bigint", int),
    ),
    sql.SQL("""
        insert into kalshi.communications (session_id, generation, sid, seq, content_hash, message_type, rfq_id,
            rfq_creator_id, quote_id, quote_creator_id, market_ticker, event_ticker, contracts, target_cost,
            yes_bid, no_bid, yes_contracts_offered, no_contracts_offered, rfq_target_cost, accepted_side,
            contracts_accepted, order_id, client_order_id, created_ts, deleted_ts, executed_ts,
            mve_collection_ticker, mve_selected_legs, subaccount, received_at)
        select session_id, generation, sid, seq,
            md5(row(message_type, rfq_id, rfq_creator_id, quote_id, quote_creator_id, market_ticker, event_ticker,
                    contracts, target_cost, yes_bid, no_bid, yes_contracts_offered, no_contracts_offered,
                    rfq_target_cost, accepted_side, contracts_accepted, order_id, client_order_id, created_ts,
                    deleted_ts, executed_ts, mve_collection_ticker, mve_selected_legs, subaccount)::text)::uuid,
            message_type, rfq_id, nullif(rfq_creator_id, ''), quote_id, nullif(quote_creator_id, ''),
            market_ticker, event_ticker, contracts, target_cost, yes_bid, no_bid, yes_contracts_offered,
            no_contracts_offered, rfq_target_cost, accepted_side, contracts_accepted, order_id, client_order_id,
            created_ts::timestamptz, deleted_ts::timestamptz, executed_ts::timestamptz, mve_collection_ticker,
            mve_selected_legs, subaccount, {received}
        from pg_temp.stage_communications
        on conflict do nothing""").format(received=_RECEIVED),  # noqa: S608
)

REFERENCE_VALUES = TableSpec(
    "reference_values",
    (
        *_SEQ_COLUMNS, ("message_type", "text", str), ("index_id", "text", _S), ("underlying_ticker", "text", _S),
        ("value_usd", "numeric", _D), ("source_ts_ms", "bigint", _I), ("payload", "jsonb", str),
        ("received_ns", "bigint", int),
    ),
    sql.SQL("""
        insert into kalshi.reference_values (session_id, generation, sid, seq, content_hash, message_type,
            index_id, underlying_ticker, value_usd, source_ts, payload, received_at)
        select session_id, generation, sid, seq, md5(row(message_type, payload)::text)::uuid, message_type,
            index_id, underlying_ticker, value_usd, {ms_source_ts_ms}, payload, {received}
        from pg_temp.stage_reference_values
        on conflict do nothing""").format(ms_source_ts_ms=_ms("source_ts_ms"), received=_RECEIVED),  # noqa: S608
)

DEAD_LETTER = TableSpec(
    "dead_letter",
    (
        ("id", "uuid", str), ("session_id", "uuid", _S), ("generation", "integer", _I),
        ("received_ns", "bigint", int), ("reason", "text", str), ("type", "text", _S), ("sid", "integer", _I),
        ("seq", "bigint", _I), ("error", "text", _S), ("raw", "bytea", bytes),
    ),
    sql.SQL("""
        insert into kalshi.dead_letter (id, session_id, generation, received_at, reason, type, sid, seq, error, raw)
        select id, session_id, generation, {received}, reason, type, sid, seq, error, raw
        from pg_temp.stage_dead_letter
        on conflict do nothing""").format(received=_RECEIVED),  # noqa: S608
)

#: Every COPY target, in the order a batch writes them.
TABLE_ORDER: Final = (
    TRADES, ORDERBOOK_SNAPSHOTS, ORDERBOOK_DELTAS, TICKERS, FILLS, REST_FILLS, USER_ORDERS, MARKET_POSITIONS,
    MARKET_LIFECYCLE, EVENT_LIFECYCLE, EVENT_FEE_UPDATES, ORDER_GROUP_UPDATES, COMMUNICATIONS,
    REFERENCE_VALUES, DEAD_LETTER,
)
TABLES: Final[dict[str, TableSpec]] = {spec.name: spec for spec in TABLE_ORDER}


# ---------------------------------------------------------------------------------------------------
# Builders


class MissingSeqError(ValueError):
    """A message type that must carry ``seq`` (order book snapshots and deltas) arrived without it."""


_json: Final = msgspec.json.Encoder(decimal_format="string")


def _json_text(value: object) -> str | None:
    return None if value is None else _json.encode(value).decode()


def trade_row(p: m.TradePayload, received_ns: int, source: str, session_id: str | None, generation: int | None,
              sid: int | None, seq: int | None) -> Row:
    """A ``trades`` row, for a WebSocket ``trade`` (``source`` ``'ws'``) and a REST trade (``'rest'``, no
    connection: ``generation``, ``sid`` and ``seq`` are ``None``) alike. ``exchange_text`` is ``None``: both
    carry the exchange time as ``ts_ms``."""
    return (p.trade_id, p.market_ticker, p.yes_price_dollars, p.no_price_dollars, p.count_fp, p.taker_outcome_side,
            p.taker_book_side, p.taker_side, p.is_block_trade, p.ts_ms, p.ts, None, received_ns, source, session_id,
            generation, sid, seq)


def fill_row(p: m.FillPayload, received_ns: int, session_id: str | None, generation: int | None,
             sid: int | None) -> Row:
    """A ``fills`` row (:data:`FILLS` for a WebSocket ``fill``, :data:`REST_FILLS` for a REST fill, which has no
    connection: ``generation`` and ``sid`` are ``None``)."""
    return (p.trade_id, p.order_id, p.market_ticker, p.client_order_id, p.exchange_index, p.is_taker,
            p.outcome_side, p.book_side, p.yes_price_dollars, p.count_fp, p.fee_cost, p.post_position_fp, p.side,
            p.action, p.purchased_side, p.subaccount, p.ts_ms, p.ts, received_ns, session_id, generation, sid)


def dead_letter_row(
    message: m.AnyMessage,
    generation: int | None,
    received_ns: int,
    session_id: str | None,
    *,
    reason: str | None = None,
    error: str | None = None,
) -> Row:
    """A ``dead_letter`` row. Its id is made here, once: a replayed batch stores the row once, and two identical
    frames received separately stay two rows."""
    if isinstance(message, m.MalformedFrame):
        kind, raw, type_, err = "malformed", message.raw, message.type, message.error
    elif isinstance(message, m.LegacyMessage):
        kind, raw, type_, err = "legacy", message.raw, message.type, message.reason
    elif isinstance(message, m.UnknownMessage):
        kind, raw, type_, err = "unknown", message.raw, message.type, f"unknown message type {message.type!r}"
    else:
        kind, raw, type_, err = "unstorable", m.encode(message), str(message.__struct_config__.tag), None
    return (
        str(uuid.uuid4()), session_id, generation, received_ns, reason or kind, type_,
        getattr(message, "sid", None), getattr(message, "seq", None), error or err, raw,
    )


Builder = Callable[[Any, int, int], Row]


class RowBuilders:
    """Row builders bound to one session: ``dispatch[type(message)] -> (table, builder(message, gen, ns))``."""

    def __init__(self, session_id: str, session_date: date, *, use_yes_price: bool = False) -> None:
        self.session_id = session_id
        self.session_date = session_date
        self.use_yes_price = use_yes_price
        self.dispatch: dict[type, tuple[str, Builder]] = self._dispatch()

    def _dispatch(self) -> dict[type, tuple[str, Builder]]:
        sess = self.session_id
        yes_price = self.use_yes_price

        def trade(x: m.Trade, gen: int, ns: int) -> Row:
            return trade_row(x.msg, ns, "ws", sess, gen, x.sid, x.seq)

        def delta(x: m.OrderbookDelta, gen: int, ns: int) -> Row:
            p = x.msg
            if x.seq is None:
                raise MissingSeqError("orderbook_delta without seq")
            return (gen, x.sid, x.seq, p.market_ticker, p.market_id, p.side, p.price_dollars, p.delta_fp,
                    p.client_order_id, p.subaccount, p.ts_ms, ns)

        def snapshot(x: m.OrderbookSnapshot, gen: int, ns: int) -> Row:
            p = x.msg
            if x.seq is None:
                raise MissingSeqError("orderbook_snapshot without seq")
            yes = p.yes_dollars_fp
            no = p.no_dollars_fp
            return (gen, x.sid, x.seq, p.market_ticker, p.market_id, [lv[0] for lv in yes],
                    [lv[1] for lv in yes], [lv[0] for lv in no], [lv[1] for lv in no], yes_price, x.id, ns)

        def ticker(x: m.Ticker, gen: int, ns: int) -> Row:
            p = x.msg
            return (p.market_ticker, p.market_id, p.price_dollars, p.yes_bid_dollars, p.yes_ask_dollars, p.volume_fp,
                    p.open_interest_fp, p.dollar_volume, p.dollar_open_interest, p.yes_bid_size_fp,
                    p.yes_ask_size_fp, p.last_trade_size_fp, p.ts_ms, p.ts, p.time, ns, sess, gen, x.sid)

        def fill(x: m.Fill, gen: int, ns: int) -> Row:
            return fill_row(x.msg, ns, sess, gen, x.sid)

        def user_order(x: m.UserOrder, gen: int, ns: int) -> Row:
            p = x.msg
            return (p.order_id, p.user_id, p.ticker, p.exchange_index, p.status, p.outcome_side, p.book_side,
                    p.side, p.is_yes, p.yes_price_dollars, p.fill_count_fp, p.remaining_count_fp,
                    p.initial_count_fp, p.taker_fill_cost_dollars, p.maker_fill_cost_dollars, p.taker_fees_dollars,
                    p.maker_fees_dollars, p.client_order_id, p.order_group_id, p.self_trade_prevention_type,
                    p.created_ts_ms, p.last_updated_ts_ms, p.expiration_ts_ms, p.created_time, p.last_update_time,
                    p.expiration_time, p.last_update_reason, p.subaccount_number, ns, sess, gen, x.sid)

        def position(x: m.MarketPosition, gen: int, ns: int) -> Row:
            p = x.msg
            return (p.user_id, p.market_ticker, p.position_fp, p.position_cost_dollars, p.realized_pnl_dollars,
                    p.fees_paid_dollars, p.position_fee_cost_dollars, p.volume_fp, p.subaccount, ns, sess, gen,
                    x.sid)

        def lifecycle(x: m.MarketLifecycle | m.MultivariateMarketLifecycle, gen: int, ns: int) -> Row:
            p = x.msg
            return (sess, gen, x.sid, x.seq, x.__struct_config__.tag, p.market_ticker, p.event_type,
                    p.exchange_index, p.open_ts, p.close_ts, p.determination_ts, p.result, p.settlement_value,
                    p.settled_ts, p.is_deactivated, _json_text(p.additional_metadata), p.price_level_structure,
                    _json_text(p.price_ranges), p.strike_type, p.floor_strike, p.cap_strike,
                    _json_text(p.custom_strike), p.yes_sub_title, ns)

        def event(x: m.EventLifecycle, gen: int, ns: int) -> Row:
            p = x.msg
            subtitle = p.subtitle if p.subtitle is not None else p.sub_title
            return (sess, gen, x.sid, x.seq, p.event_ticker, p.exchange_index, p.title, subtitle,
                    p.collateral_return_type, p.series_ticker, p.strike_date, p.strike_period, ns)

        def fee(x: m.EventFeeUpdate, gen: int, ns: int) -> Row:
            p = x.msg
            return (sess, gen, x.sid, x.seq, p.event_ticker, p.fee_type_override, p.fee_multiplier_override, ns)

        def order_group(x: m.OrderGroupUpdate, gen: int, ns: int) -> Row:
            p = x.msg
            return (sess, gen, x.sid, x.seq, p.event_type, p.order_group_id, p.contracts_limit_fp, p.ts_ms, ns)

        def rfq_created(x: m.RfqCreated, gen: int, ns: int) -> Row:
            p = x.msg
            return (sess, gen, x.sid, x.seq, "rfq_created", p.id, p.creator_id, None, None, p.market_ticker,
                    p.event_ticker, p.contracts_fp, p.target_cost_dollars, None, None, None, None, None, None, None,
                    None, None, p.created_ts, None, None, p.mve_collection_ticker, _json_text(p.mve_selected_legs),
                    None, ns)

        def rfq_deleted(x: m.RfqDeleted, gen: int, ns: int) -> Row:
            p = x.msg
            return (sess, gen, x.sid, x.seq, "rfq_deleted", p.id, p.creator_id, None, None, p.market_ticker,
                    p.event_ticker, p.contracts_fp, p.target_cost_dollars, None, None, None, None, None, None, None,
                    None, None, None, p.deleted_ts, None, None, None, None, ns)

        def quote(x: m.QuoteCreated | m.QuoteAccepted | m.QuoteExecuted, gen: int, ns: int) -> Row:
            p = x.msg
            return (sess, gen, x.sid, x.seq, x.__struct_config__.tag, p.rfq_id, p.rfq_creator_id, p.quote_id,
                    p.quote_creator_id, p.market_ticker, p.event_ticker, None, None, p.yes_bid_dollars,
                    p.no_bid_dollars, p.yes_contracts_offered_fp, p.no_contracts_offered_fp,
                    p.rfq_target_cost_dollars, p.accepted_side, p.contracts_accepted_fp, p.order_id,
                    p.client_order_id, p.created_ts, None, p.executed_ts, None, None, p.subaccount, ns)

        def cfb_value(x: m.CfbenchmarksValue, gen: int, ns: int) -> Row:
            p = x.msg
            avg = p.avg_60s_data
            return (sess, gen, x.sid, x.seq, "cfbenchmarks_value", p.index_id, None,
                    avg.value if avg is not None else None, p.received_at, _json.encode(p).decode(), ns)

        def index_value(x: m.CfbenchmarksValue5hz | m.PythValue, gen: int, ns: int) -> Row:
            p = x.msg
            return (sess, gen, x.sid, x.seq, x.__struct_config__.tag, p.index_id, p.underlying_ticker, p.value_usd,
                    p.source_ts_ms, _json.encode(p).decode(), ns)

        def index_list(x: m.CfbenchmarksIndexList | m.CfbenchmarksIndexList5hz | m.PythUnderlyingList, gen: int,
                       ns: int) -> Row:
            return (sess, gen, x.sid, x.seq, x.__struct_config__.tag, None, None, None, None,
                    _json.encode(x.msg).decode(), ns)

        return {
            m.Trade: ("trades", trade),
            m.OrderbookDelta: ("orderbook_deltas", delta),
            m.OrderbookSnapshot: ("orderbook_snapshots", snapshot),
            m.Ticker: ("tickers", ticker),
            m.Fill: ("fills", fill),
            m.UserOrder: ("user_orders", user_order),
            m.MarketPosition: ("market_positions", position),
            m.MarketLifecycle: ("market_lifecycle", lifecycle),
            m.MultivariateMarketLifecycle: ("market_lifecycle", lifecycle),
            m.EventLifecycle: ("event_lifecycle", event),
            m.EventFeeUpdate: ("event_fee_updates", fee),
            m.OrderGroupUpdate: ("order_group_updates", order_group),
            m.RfqCreated: ("communications", rfq_created),
            m.RfqDeleted: ("communications", rfq_deleted),
            m.QuoteCreated: ("communications", quote),
            m.QuoteAccepted: ("communications", quote),
            m.QuoteExecuted: ("communications", quote),
            m.CfbenchmarksValue: ("reference_values", cfb_value),
            m.CfbenchmarksValue5hz: ("reference_values", index_value),
            m.PythValue: ("reference_values", index_value),
            m.CfbenchmarksIndexList: ("reference_values", index_list),
            m.CfbenchmarksIndexList5hz: ("reference_values", index_list),
            m.PythUnderlyingList: ("reference_values", index_list),
        }
