"""Every message Kalshi's WebSocket API (v2, late 2026) sends, as immutable typed structs.

One struct per message ``type``. Field names are the wire names, so the spec
(``kalshi-ws-protocol.md`` section 4) is the documentation of every field. The client decodes
with these, the simulator encodes with these and the storage layer maps them to rows, so a field
is defined exactly once.

Exactness: every ``*_dollars`` price and every ``*_fp`` count is a :class:`~decimal.Decimal`, decoded
straight from the wire text (``"0.4150"`` stays ``Decimal("0.4150")``); JSON numbers where strings are
specified are accepted too, and so are unknown keys.

:func:`decode` never raises. It returns one of the structs below, an :class:`UnknownMessage` for a
``type`` this module does not know, a :class:`LegacyMessage` for the shapes Kalshi removed in 2026
(integer cents and counts, ``ticker_v2``, ``multivariate_lookup``), or a :class:`MalformedFrame` with the
reason, so a bad frame can be dead-lettered while its neighbours are stored.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from operator import attrgetter
from typing import Any, Final, Literal, NamedTuple, cast

import msgspec

__all__ = [
    "MAX_FRAME_BYTES",
    "AnyMessage",
    "DataMessage",
    "decode",
    "encode",
]

#: Frames larger than this are rejected without being parsed (Kalshi's own server-side limit is 64 MiB;
#: the biggest legitimate frames are ``ok`` replies listing every ticker of a huge subscription).
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
#: Deepest JSON nesting accepted; real frames nest at most 4 levels (``msg.additional_metadata.custom_strike``).
MAX_NESTING: Final = 32


class _Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every ``msg`` payload: immutable, keyword-only, defaults omitted when encoding."""


class _Frame(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of every top-level frame; ``type`` is the tag."""


class _DataFrame(_Frame, frozen=True, kw_only=True):
    """A data message: the subscription it belongs to and, on sequenced channels, its place in the stream."""

    sid: int
    seq: int | None = None


# ---------------------------------------------------------------------------------------------------
# orderbook_delta channel: orderbook_snapshot, orderbook_delta (section 4.1)

PriceLevel = tuple[Decimal, Decimal]
"""``[price_dollars, count_fp]``, both exact."""


class OrderbookSnapshotPayload(_Payload, frozen=True, kw_only=True):
    market_ticker: str
    market_id: str = ""
    #: YES bids; the key is absent on the wire when there are none.
    yes_dollars_fp: list[PriceLevel] = []
    #: NO bids, in no-leg prices unless the subscription pinned ``use_yes_price: true``.
    no_dollars_fp: list[PriceLevel] = []


class OrderbookSnapshot(_DataFrame, tag="orderbook_snapshot", frozen=True, kw_only=True):
    #: Present when the snapshot answers a ``get_snapshot`` command.
    id: int | None = None
    msg: OrderbookSnapshotPayload


class OrderbookDeltaPayload(_Payload, frozen=True, kw_only=True):
    market_ticker: str
    market_id: str = ""
    price_dollars: Decimal
    #: Signed change of the resting size at ``price_dollars``; size <= 0 removes the level.
    delta_fp: Decimal
    side: Literal["yes", "no"]
    client_order_id: str | None = None
    subaccount: int | None = None
    ts_ms: int | None = None
    #: Deprecated RFC3339 time; kept for completeness.
    ts: str | int | None = None


class OrderbookDelta(_DataFrame, tag="orderbook_delta", frozen=True, kw_only=True):
    msg: OrderbookDeltaPayload


# ---------------------------------------------------------------------------------------------------
# ticker (section 4.2)


class TickerPayload(_Payload, frozen=True, kw_only=True):
    market_ticker: str
    market_id: str = ""
    #: Last traded price; ``None`` when the market never traded (the wire then sends ``""``).
    price_dollars: Decimal | None = None
    yes_bid_dollars: Decimal | None = None
    yes_ask_dollars: Decimal | None = None
    volume_fp: Decimal | None = None
    open_interest_fp: Decimal | None = None
    dollar_volume: int | None = None
    dollar_open_interest: int | None = None
    yes_bid_size_fp: Decimal | None = None
    yes_ask_size_fp: Decimal | None = None
    last_trade_size_fp: Decimal | None = None
    ts_ms: int | None = None
    ts: int | None = None
    time: str | None = None


class Ticker(_DataFrame, tag="ticker", frozen=True, kw_only=True):
    msg: TickerPayload


# ---------------------------------------------------------------------------------------------------
# trade (section 4.4)


class TradePayload(_Payload, frozen=True, kw_only=True):
    trade_id: str
    market_ticker: str
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    count_fp: Decimal
    taker_outcome_side: Literal["yes", "no"] | None = None
    taker_book_side: Literal["bid", "ask"] | None = None
    taker_side: Literal["yes", "no"] | None = None
    is_block_trade: bool = False
    ts_ms: int | None = None
    ts: int | None = None


class Trade(_DataFrame, tag="trade", frozen=True, kw_only=True):
    msg: TradePayload


# ---------------------------------------------------------------------------------------------------
# fill (section 4.5)


class FillPayload(_Payload, frozen=True, kw_only=True):
    trade_id: str
    order_id: str
    market_ticker: str
    client_order_id: str | None = None
    exchange_index: int | None = None
    is_taker: bool
    outcome_side: Literal["yes", "no"] | None = None
    book_side: Literal["bid", "ask"] | None = None
    yes_price_dollars: Decimal
    count_fp: Decimal
    fee_cost: Decimal | None = None
    post_position_fp: Decimal | None = None
    ts_ms: int | None = None
    ts: int | None = None
    side: str | None = None
    action: str | None = None
    purchased_side: str | None = None
    subaccount: int | None = None


class Fill(_DataFrame, tag="fill", frozen=True, kw_only=True):
    msg: FillPayload


# ---------------------------------------------------------------------------------------------------
# market_positions -> market_position (section 4.6)


class MarketPositionPayload(_Payload, frozen=True, kw_only=True):
    user_id: str = ""
    market_ticker: str
    position_fp: Decimal
    position_cost_dollars: Decimal | None = None
    realized_pnl_dollars: Decimal | None = None
    fees_paid_dollars: Decimal | None = None
    position_fee_cost_dollars: Decimal | None = None
    volume_fp: Decimal | None = None
    subaccount: int | None = None


class MarketPosition(_DataFrame, tag="market_position", frozen=True, kw_only=True):
    msg: MarketPositionPayload


# ---------------------------------------------------------------------------------------------------
# market_lifecycle_v2 -> market_lifecycle_v2, event_lifecycle, event_fee_update (section 4.7)
# multivariate_market_lifecycle -> multivariate_market_lifecycle, event_lifecycle (section 4.8)


class PriceRange(_Payload, frozen=True, kw_only=True):
    start: Decimal
    end: Decimal
    step: Decimal


class MarketLifecyclePayload(_Payload, frozen=True, kw_only=True):
    market_ticker: str
    #: created, activated, deactivated, close_date_updated, determined, settled,
    #: price_level_structure_updated, metadata_updated (kept as ``str``: new kinds must not fail decoding).
    event_type: str
    exchange_index: int | None = None
    open_ts: int | None = None
    close_ts: int | None = None
    determination_ts: int | None = None
    result: str | None = None
    settlement_value: Decimal | None = None
    settled_ts: int | None = None
    is_deactivated: bool | None = None
    additional_metadata: dict[str, Any] | None = None
    price_level_structure: str | None = None
    price_ranges: list[PriceRange] | None = None
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    custom_strike: dict[str, Any] | None = None
    yes_sub_title: str | None = None


class MarketLifecycle(_DataFrame, tag="market_lifecycle_v2", frozen=True, kw_only=True):
    msg: MarketLifecyclePayload


class MultivariateMarketLifecycle(_DataFrame, tag="multivariate_market_lifecycle", frozen=True, kw_only=True):
    msg: MarketLifecyclePayload


class EventLifecyclePayload(_Payload, frozen=True, kw_only=True):
    event_ticker: str
    exchange_index: int | None = None
    title: str = ""
    #: The spec's name; one third-party capture shows ``sub_title`` instead (both are accepted).
    subtitle: str | None = None
    sub_title: str | None = None
    collateral_return_type: str | None = None
    series_ticker: str | None = None
    strike_date: int | None = None
    strike_period: str | None = None


class EventLifecycle(_DataFrame, tag="event_lifecycle", frozen=True, kw_only=True):
    msg: EventLifecyclePayload


class EventFeeUpdatePayload(_Payload, frozen=True, kw_only=True):
    event_ticker: str
    fee_type_override: str | None = None
    fee_multiplier_override: Decimal | None = None


class EventFeeUpdate(_DataFrame, tag="event_fee_update", frozen=True, kw_only=True):
    msg: EventFeeUpdatePayload


# ---------------------------------------------------------------------------------------------------
# communications -> RFQ and quote messages (section 4.10)


class MveLeg(_Payload, frozen=True, kw_only=True):
    event_ticker: str | None = None
    market_ticker: str | None = None
    side: str | None = None
    yes_settlement_value_dollars: Decimal | None = None


class RfqCreatedPayload(_Payload, frozen=True, kw_only=True):
    id: str
    creator_id: str = ""
    market_ticker: str
    event_ticker: str | None = None
    contracts_fp: Decimal | None = None
    target_cost_dollars: Decimal | None = None
    created_ts: str | None = None
    mve_collection_ticker: str | None = None
    mve_selected_legs: list[MveLeg] | None = None


class RfqCreated(_DataFrame, tag="rfq_created", frozen=True, kw_only=True):
    msg: RfqCreatedPayload


class RfqDeletedPayload(_Payload, frozen=True, kw_only=True):
    id: str
    creator_id: str = ""
    market_ticker: str
    event_ticker: str | None = None
    contracts_fp: Decimal | None = None
    target_cost_dollars: Decimal | None = None
    deleted_ts: str | None = None


class RfqDeleted(_DataFrame, tag="rfq_deleted", frozen=True, kw_only=True):
    msg: RfqDeletedPayload


class QuotePayload(_Payload, frozen=True, kw_only=True):
    """Shared by quote_created, quote_accepted and quote_executed (each uses a subset)."""

    quote_id: str
    rfq_id: str
    quote_creator_id: str = ""
    rfq_creator_id: str = ""
    market_ticker: str
    event_ticker: str | None = None
    yes_bid_dollars: Decimal | None = None
    no_bid_dollars: Decimal | None = None
    yes_contracts_offered_fp: Decimal | None = None
    no_contracts_offered_fp: Decimal | None = None
    rfq_target_cost_dollars: Decimal | None = None
    accepted_side: str | None = None
    contracts_accepted_fp: Decimal | None = None
    order_id: str | None = None
    client_order_id: str | None = None
    created_ts: str | None = None
    executed_ts: str | None = None
    subaccount: int | None = None


class QuoteCreated(_DataFrame, tag="quote_created", frozen=True, kw_only=True):
    msg: QuotePayload


class QuoteAccepted(_DataFrame, tag="quote_accepted", frozen=True, kw_only=True):
    msg: QuotePayload


class QuoteExecuted(_DataFrame, tag="quote_executed", frozen=True, kw_only=True):
    msg: QuotePayload


# ---------------------------------------------------------------------------------------------------
# order_group_updates (section 4.11)


class OrderGroupUpdatePayload(_Payload, frozen=True, kw_only=True):
    event_type: str
    order_group_id: str
    contracts_limit_fp: Decimal | None = None
    ts_ms: int | None = None


class OrderGroupUpdate(_DataFrame, tag="order_group_updates", frozen=True, kw_only=True):
    msg: OrderGroupUpdatePayload


# ---------------------------------------------------------------------------------------------------
# user_orders -> user_order (section 4.12)


class UserOrderPayload(_Payload, frozen=True, kw_only=True):
    order_id: str
    user_id: str = ""
    #: The market ticker (this message calls it ``ticker``, not ``market_ticker``).
    ticker: str
    exchange_index: int | None = None
    status: str
    outcome_side: Literal["yes", "no"] | None = None
    book_side: Literal["bid", "ask"] | None = None
    side: str | None = None
    is_yes: bool | None = None
    yes_price_dollars: Decimal
    fill_count_fp: Decimal
    remaining_count_fp: Decimal
    initial_count_fp: Decimal
    taker_fill_cost_dollars: Decimal | None = None
    maker_fill_cost_dollars: Decimal | None = None
    taker_fees_dollars: Decimal | None = None
    maker_fees_dollars: Decimal | None = None
    client_order_id: str | None = None
    order_group_id: str | None = None
    self_trade_prevention_type: str | None = None
    created_ts_ms: int | None = None
    last_updated_ts_ms: int | None = None
    expiration_ts_ms: int | None = None
    last_update_reason: str | None = None
    created_time: str | None = None
    last_update_time: str | None = None
    expiration_time: str | None = None
    subaccount_number: int | None = None


class UserOrder(_DataFrame, tag="user_order", frozen=True, kw_only=True):
    msg: UserOrderPayload


# ---------------------------------------------------------------------------------------------------
# Reference-data channels (section 4.13): entitled sessions only, decoded for completeness.


class WindowAverage(_Payload, frozen=True, kw_only=True):
    value: Decimal | None = None
    window_size: int | None = None
    window_start_ts_ms: int | None = None
    window_end_ts_exclusive: int | None = None


class CfbenchmarksValuePayload(_Payload, frozen=True, kw_only=True):
    index_id: str
    received_at: int | None = None
    #: Raw upstream JSON, as a string.
    data: str | None = None
    avg_60s_data: WindowAverage | None = None
    last_60s_windowed_average_15min: WindowAverage | None = None


class CfbenchmarksValue(_DataFrame, tag="cfbenchmarks_value", frozen=True, kw_only=True):
    msg: CfbenchmarksValuePayload


class IndexValuePayload(_Payload, frozen=True, kw_only=True):
    index_id: str | None = None
    underlying_ticker: str | None = None
    value_usd: Decimal | None = None
    source_ts_ms: int | None = None
    received_at: int | None = None
    data: str | None = None


class CfbenchmarksValue5hz(_DataFrame, tag="cfbenchmarks_value_5hz", frozen=True, kw_only=True):
    msg: IndexValuePayload


class PythValue(_DataFrame, tag="pyth_value", frozen=True, kw_only=True):
    msg: IndexValuePayload


class IndexListPayload(_Payload, frozen=True, kw_only=True):
    index_ids: list[str] = []
    underlying_tickers: list[str] = []


class CfbenchmarksIndexList(_DataFrame, tag="cfbenchmarks_value_indexlist", frozen=True, kw_only=True):
    id: int | None = None
    msg: IndexListPayload


class CfbenchmarksIndexList5hz(_DataFrame, tag="cfbenchmarks_value_5hz_indexlist", frozen=True, kw_only=True):
    id: int | None = None
    msg: IndexListPayload


class PythUnderlyingList(_DataFrame, tag="pyth_value_underlying_list", frozen=True, kw_only=True):
    id: int | None = None
    msg: IndexListPayload


# ---------------------------------------------------------------------------------------------------
# Command replies (section 3)


class SubscribedPayload(_Payload, frozen=True, kw_only=True):
    channel: str
    sid: int


class Subscribed(_Frame, tag="subscribed", frozen=True, kw_only=True):
    id: int | None = None
    msg: SubscribedPayload


class Unsubscribed(_Frame, tag="unsubscribed", frozen=True, kw_only=True):
    id: int | None = None
    sid: int
    seq: int | None = None


class SubscriptionInfo(_Payload, frozen=True, kw_only=True):
    channel: str
    sid: int


class OkPayload(_Payload, frozen=True, kw_only=True):
    market_tickers: list[str] | None = None
    market_ids: list[str] | None = None
    index_ids: list[str] | None = None
    underlying_tickers: list[str] | None = None
    #: A ``list_subscriptions`` answer wrapped in an object instead of being the ``msg`` array itself.
    subscriptions: list[SubscriptionInfo] | None = None


class Ok(_Frame, tag="ok", frozen=True, kw_only=True):
    """Reply to ``update_subscription`` (object ``msg``) or ``list_subscriptions`` (array ``msg``)."""

    id: int | None = None
    sid: int | None = None
    seq: int | None = None
    msg: OkPayload | list[SubscriptionInfo] | None = None
    #: One third-party capture puts the ``ok`` fields at the top level instead of inside ``msg``: the ticker
    #: list, and so the ``list_subscriptions`` answer too (read through :attr:`subscriptions`).
    market_tickers: list[str] | None = None
    listed: list[SubscriptionInfo] | None = msgspec.field(default=None, name="subscriptions")

    @property
    def tickers(self) -> list[str] | None:
        """The subscription's full ticker list, wherever the server put it (``None`` if omitted)."""
        if isinstance(self.msg, OkPayload) and self.msg.market_tickers is not None:
            return self.msg.market_tickers
        return self.market_tickers

    @property
    def subscriptions(self) -> list[SubscriptionInfo] | None:
        """The ``list_subscriptions`` answer wherever the server put it (the ``msg`` array, a ``subscriptions``
        list inside ``msg`` or at the top level), or ``None`` for other ``ok`` replies."""
        msg = self.msg
        if isinstance(msg, list):
            return msg
        if isinstance(msg, OkPayload) and msg.subscriptions is not None:
            return msg.subscriptions
        return self.listed


class ErrorPayload(_Payload, frozen=True, kw_only=True):
    code: int
    msg: str = ""
    market_ticker: str | None = None
    market_tickers: list[str] | None = None


class Error(_Frame, tag="error", frozen=True, kw_only=True):
    id: int | None = None
    sid: int | None = None
    seq: int | None = None
    msg: ErrorPayload


# ---------------------------------------------------------------------------------------------------
# What decode() returns for frames it cannot type.


class UnknownMessage(msgspec.Struct, frozen=True):
    """A well-formed frame of a ``type`` this module does not know (Kalshi adds types over time)."""

    type: str
    raw: bytes
    sid: int | None = None
    seq: int | None = None


class LegacyMessage(msgspec.Struct, frozen=True):
    """A frame in a shape Kalshi removed in 2026; reported, never mis-parsed as current data."""

    type: str
    reason: str
    raw: bytes
    sid: int | None = None
    seq: int | None = None


class MalformedFrame(msgspec.Struct, frozen=True):
    """A frame that could not be decoded at all (bad JSON, wrong types, missing fields, too big)."""

    error: str
    raw: bytes
    type: str | None = None
    sid: int | None = None
    seq: int | None = None


DataMessage = (
    OrderbookSnapshot
    | OrderbookDelta
    | Ticker
    | Trade
    | Fill
    | MarketPosition
    | MarketLifecycle
    | MultivariateMarketLifecycle
    | EventLifecycle
    | EventFeeUpdate
    | RfqCreated
    | RfqDeleted
    | QuoteCreated
    | QuoteAccepted
    | QuoteExecuted
    | OrderGroupUpdate
    | UserOrder
    | CfbenchmarksValue
    | CfbenchmarksValue5hz
    | PythValue
    | CfbenchmarksIndexList
    | CfbenchmarksIndexList5hz
    | PythUnderlyingList
)
ControlMessage = Subscribed | Unsubscribed | Ok | Error
Message = DataMessage | ControlMessage
AnyMessage = Message | UnknownMessage | LegacyMessage | MalformedFrame

#: Message ``type`` -> struct, for every type this module knows.
MESSAGE_TYPES: Final[dict[str, type[_Frame]]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (*DataMessage.__args__, *ControlMessage.__args__)  # type: ignore[attr-defined]
}

#: Channel name -> the message types it delivers (``type`` is not always the channel name).
CHANNEL_MESSAGE_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "orderbook_delta": ("orderbook_snapshot", "orderbook_delta"),
    "ticker": ("ticker",),
    "trade": ("trade",),
    "fill": ("fill",),
    "market_positions": ("market_position",),
    "market_lifecycle_v2": ("market_lifecycle_v2", "event_lifecycle", "event_fee_update"),
    "multivariate_market_lifecycle": ("multivariate_market_lifecycle", "event_lifecycle"),
    "communications": ("rfq_created", "rfq_deleted", "quote_created", "quote_accepted", "quote_executed"),
    "order_group_updates": ("order_group_updates",),
    "user_orders": ("user_order",),
    "cfbenchmarks_value": ("cfbenchmarks_value", "cfbenchmarks_value_indexlist"),
    "cfbenchmarks_value_5hz": ("cfbenchmarks_value_5hz", "cfbenchmarks_value_5hz_indexlist"),
    "pyth_value": ("pyth_value", "pyth_value_underlying_list"),
}
#: Every channel a client may subscribe to today.
CHANNELS: Final = frozenset(CHANNEL_MESSAGE_TYPES)
#: Channels Kalshi removed; subscribing to them yields error 8.
REMOVED_CHANNELS: Final = {"ticker_v2": "removed 2026-02-12", "multivariate": "removed 2026-08-06"}
#: Removed message types and when they went away.
REMOVED_TYPES: Final = {"ticker_v2": "removed 2026-02-12", "multivariate_lookup": "removed 2026-08-06"}
#: Channels that must be filtered by market (subscribe without tickers yields error 14).
MARKET_REQUIRED_CHANNELS: Final = frozenset({"orderbook_delta"})

# Integer-cent / integer-count keys removed from payloads on 2026-03-12 (section 4.14: "integer count fields (those
# with ``_fp`` twins) and integer-cent price fields (those with ``_dollars`` twins) removed from all payloads").
# The twins are derived from the structs, so every type and field is covered: ``count_fp`` -> ``count``,
# ``yes_bid_dollars`` -> ``yes_bid``, snapshot ``yes_dollars_fp`` -> ``yes_dollars`` (``[price_dollars, int]``)
# and ``yes`` (``[cents, int]``). A frame whose payload has one of the old keys and lacks its fixed-point twin
# is in the legacy shape: a :class:`LegacyMessage`, never the current type with that value missing.


def _legacy_names(field: str) -> tuple[str, ...]:
    if field.endswith("_dollars_fp"):
        return (field[:-3], field[:-11])
    if field.endswith("_fp"):
        return (field[:-3],)
    if field.endswith("_dollars"):
        return (field[:-8],)
    return ()


def _twins(cls: type[_Frame]) -> dict[str, str]:
    """``{legacy key: fixed-point field}`` of a message type's payload (empty for types without a payload)."""
    msg = {f.name: f for f in msgspec.structs.fields(cls)}.get("msg")
    payload = msg.type if msg is not None else None
    if not (isinstance(payload, type) and issubclass(payload, _Payload)):
        return {}
    fields = {f.name for f in msgspec.structs.fields(payload)}
    twins = {old: new for new in sorted(fields) for old in _legacy_names(new)}
    clash = fields & twins.keys()
    assert not clash, f"{cls.__name__}: a current field has a legacy name: {clash}"
    return twins


#: Message ``type`` -> {legacy key: its fixed-point twin} (section 4, the "Legacy" notes of every message).
_LEGACY_TWINS: Final[dict[str, dict[str, str]]] = {
    kind: twins for kind, cls in MESSAGE_TYPES.items() if (twins := _twins(cls))}


class _PostParseCheck(NamedTuple):
    """The fixed-point fields of a type that may be absent, so a legacy frame still parses without them."""

    #: payload -> the values of those fields, as a tuple (one C call on the hot path).
    values: Callable[[Any], tuple[Any, ...]]
    #: What such a field holds when absent (``None``, or ``[]`` for book sides).
    absent: Any
    #: (field, the quoted legacy key to look for in the raw frame) for a closer look.
    fields: tuple[tuple[str, bytes], ...]


def _post_parse_check(cls: type[_Frame]) -> _PostParseCheck | None:
    """Required twins need no check (their absence fails the parse and the slow path classifies the frame)."""
    msg = {f.name: f for f in msgspec.structs.fields(cls)}["msg"]
    fields = []
    absent = set()
    for f in msgspec.structs.fields(msg.type):
        if f.required:
            continue
        for old in _legacy_names(f.name):
            fields.append((f.name, f'"{old}"'.encode()))
            absent.add("list" if f.default_factory is list or f.default == [] else repr(f.default))
    if not fields:
        return None
    assert len(absent) == 1, f"{cls.__name__}: optional fixed-point fields with different defaults {absent}"
    names = [name for name, _ in fields]
    return _PostParseCheck(attrgetter(*names, names[0]), [] if absent == {"list"} else None, tuple(fields))


#: Struct -> the check after a successful parse (types without optional fixed-point fields are absent, so the
#: hot path of ``orderbook_delta``, whose twins are required, costs one dict lookup).
_POST_PARSE_CHECKS: Final[dict[type, _PostParseCheck]] = {
    cls: check for kind, cls in MESSAGE_TYPES.items() if kind in _LEGACY_TWINS
    if (check := _post_parse_check(cls)) is not None}

_decoder: Final = msgspec.json.Decoder(Message)
_encoder: Final = msgspec.json.Encoder(decimal_format="string")
_generic: Final = msgspec.json.Decoder()


def decode(frame: bytes | str) -> AnyMessage:
    """Decode one text frame. Never raises; see the module docstring for what comes back."""
    if isinstance(frame, str):
        frame = frame.encode()
    if len(frame) > MAX_FRAME_BYTES:
        return MalformedFrame(error=f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_BYTES} limit",
                              raw=frame[:4096])
    try:
        message: Message = _decoder.decode(frame)
    except msgspec.ValidationError as exc:
        return _classify(frame, str(exc))
    except msgspec.DecodeError as exc:
        return MalformedFrame(error=f"invalid JSON: {exc}", raw=frame)
    except RecursionError:  # absurd nesting: msgspec gives up before MAX_NESTING can be checked
        return MalformedFrame(error=f"frame nests deeper than {MAX_NESTING} levels", raw=frame)
    check = _POST_PARSE_CHECKS.get(message.__class__)
    if check is not None:
        # A fixed-point field that may be absent is absent: a legacy frame parses "successfully" without its
        # value (a snapshot with no levels would wipe a book); look closer. (A loop of ``is None``: ``None in
        # values`` compares each Decimal with None, which costs an ABC isinstance check each.)
        if check.absent is None:
            for value in check.values(message.msg):  # type: ignore[union-attr]
                if value is None:
                    return _absent_twin(message, frame, check)
        elif not all(check.values(message.msg)):  # type: ignore[union-attr]
            return _absent_twin(message, frame, check)
    return message


def _absent_twin(message: Message, frame: bytes, check: _PostParseCheck) -> AnyMessage:
    """``message`` unless a fixed-point field is absent and its old key is in the frame (then the closer look)."""
    payload: Any = message.msg  # type: ignore[union-attr]
    for name, old_key in check.fields:
        value = getattr(payload, name)
        if (value is None if check.absent is None else not value) and old_key in frame:
            return _legacy_or(message, frame)
    return message


def _legacy_or(message: Message, frame: bytes) -> AnyMessage:
    """``message``, or a :class:`LegacyMessage` if the frame has the pre-2026-03-12 integer keys."""
    obj = _generic.decode(frame)
    payload = obj.get("msg")
    kind = obj["type"]
    if isinstance(payload, dict):
        reason = _legacy_reason(kind, payload)
        if reason:
            return LegacyMessage(type=kind, reason=reason, raw=frame, sid=obj.get("sid"), seq=obj.get("seq"))
    return message


def _legacy_reason(kind: str, payload: dict[str, Any]) -> str | None:
    legacy = [old for old, new in _LEGACY_TWINS.get(kind, {}).items() if old in payload and new not in payload]
    if not legacy:
        return None
    return (f"{kind} in the pre-2026-03-12 integer shape (has {', '.join(legacy)}, "
            "lacks the fixed-point fields)")


def _classify(frame: bytes, error: str) -> AnyMessage:
    """The slow path: work out why a frame did not fit the fast decoder."""
    try:
        obj = _generic.decode(frame)
    except msgspec.DecodeError as exc:  # pragma: no cover - the fast decoder would have said so
        return MalformedFrame(error=f"invalid JSON: {exc}", raw=frame)
    except RecursionError:
        return MalformedFrame(error=f"frame nests deeper than {MAX_NESTING} levels", raw=frame)
    if not isinstance(obj, dict):
        return MalformedFrame(error=f"frame is a JSON {type(obj).__name__}, not an object", raw=frame)
    kind = obj.get("type")
    sid = obj.get("sid") if isinstance(obj.get("sid"), int) else None
    seq = obj.get("seq") if isinstance(obj.get("seq"), int) else None
    if not isinstance(kind, str):
        return MalformedFrame(error="frame has no string 'type'", raw=frame, sid=sid, seq=seq)
    if _depth(obj) > MAX_NESTING:
        return MalformedFrame(error=f"frame nests deeper than {MAX_NESTING} levels", raw=frame,
                              type=kind, sid=sid, seq=seq)
    if kind in REMOVED_TYPES:
        return LegacyMessage(type=kind, reason=f"message type {kind!r} was {REMOVED_TYPES[kind]}",
                             raw=frame, sid=sid, seq=seq)
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        return UnknownMessage(type=kind, raw=frame, sid=sid, seq=seq)
    payload = obj.get("msg")
    if isinstance(payload, dict):
        reason = _legacy_reason(kind, payload)
        if reason:
            return LegacyMessage(type=kind, reason=reason, raw=frame, sid=sid, seq=seq)
        # Observed in the wild: "" for a never-traded market's price. Treat empty decimals as absent.
        lenient = {key: value for key, value in payload.items()
                   if not (value == "" and (key.endswith("_dollars") or key.endswith("_fp")))}
        if len(lenient) != len(payload):
            try:
                return cast(Message, msgspec.convert({**obj, "msg": lenient}, cls, strict=False))
            except msgspec.ValidationError as exc:
                error = str(exc)
    return MalformedFrame(error=error, raw=frame, type=kind, sid=sid, seq=seq)


def _depth(obj: object, level: int = 0) -> int:
    if level > MAX_NESTING:
        return level
    if isinstance(obj, dict):
        return max((_depth(v, level + 1) for v in obj.values()), default=level + 1)
    if isinstance(obj, list):
        return max((_depth(v, level + 1) for v in obj), default=level + 1)
    return level


def encode(message: Message) -> bytes:
    """Encode a message exactly as Kalshi puts it on the wire (decimals as strings)."""
    return _encoder.encode(message)
