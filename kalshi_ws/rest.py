"""KalshiRestClient: the few REST endpoints a recorder needs (spec section 8), signed, retried, paginated.

* Every request is signed just before it is sent (each retry signs again) over
  ``timestamp + METHOD + /trade-api/v2/<path>`` without the query string (spec section 2.2).
* ``429``, ``5xx`` and transport errors are retried with capped, fully jittered exponential backoff; a
  ``Retry-After`` header (seconds or an HTTP date) is honoured when present (Kalshi itself sends none).
  Other statuses raise :class:`RestError` at once.
* List endpoints follow ``cursor`` until it is ``null``, missing or ``""`` and drop repeated ids (results can
  shift between pages).
* Prices and counts are :class:`~decimal.Decimal`; an empty string where a number is expected (seen for
  never-traded markets) is read as "absent".
* Trades and fills are returned as the payloads of the WebSocket ``trade`` and ``fill`` messages
  (:class:`~kalshi_ws.messages.TradePayload`, :class:`~kalshi_ws.messages.FillPayload`): REST's names and its
  RFC3339 ``created_time`` are mapped here, at the boundary, so storage has one row builder per table.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec

from .auth import REST_PREFIX, Signer, signature_rejected_hint
from .backoff import Backoff
from .errors import KalshiError
from .messages import FillPayload, PriceLevel, PriceRange, TradePayload

__all__ = [
    "ExchangeStatus",
    "KalshiRestClient",
    "Market",
    "MarketEvent",
    "RestError",
    "RestOrderbook",
]

log = logging.getLogger(__name__)

#: Statuses worth retrying: rate limited, and the server (or a proxy in front of it) failing.
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: Longest wait honoured from a ``Retry-After`` header (s).
MAX_RETRY_AFTER: Final = 120.0


class RestError(KalshiError):
    """A REST call failed with HTTP ``status``; ``code``/``message`` come from the error body if it had one."""

    def __init__(self, status: int, code: str, message: str, details: str = "", path: str = "",
                 hint: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.path = path
        #: What to do about it, when the client can tell (a 401: the clock or the key).
        self.hint = hint
        extra = f" ({details})" if details and details != message else ""
        where = f" {path}" if path else ""
        text = f"Kalshi REST{where} answered HTTP {status} {code}: {message}{extra}"
        super().__init__(f"{hint} [{text}]" if hint else text)

    @classmethod
    def from_response(cls, status: int, body: bytes, path: str = "") -> RestError:
        """Parse ``{"code","message","details"}``, ``{"error": {...}}`` or ``{"error": "text"}`` bodies."""
        try:
            obj: Any = msgspec.json.decode(body)
        except msgspec.DecodeError:
            text = body[:300].decode("utf-8", "replace").strip()
            return cls(status, "", text or f"HTTP {status}", path=path)
        if isinstance(obj, dict) and "error" in obj:
            obj = obj["error"]
        if isinstance(obj, str):
            return cls(status, "", obj, path=path)
        if not isinstance(obj, dict):
            return cls(status, "", str(obj)[:300], path=path)
        code = str(obj.get("code") or "")
        message = str(obj.get("message") or obj.get("msg") or code or f"HTTP {status}")
        details = obj.get("details") or ""
        return cls(status, code, message, details if isinstance(details, str) else str(details), path=path)


class _Struct(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Market(_Struct, frozen=True, kw_only=True):
    """A market as ``GET /markets`` returns it (the fields a recorder uses; unknown keys are ignored)."""

    ticker: str
    event_ticker: str = ""
    market_type: str | None = None
    #: Object vocabulary: initialized, inactive, active, closed, determined, disputed, amended, finalized.
    status: str = ""
    title: str | None = None
    subtitle: str | None = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    created_time: datetime | None = None
    updated_time: datetime | None = None
    open_time: datetime | None = None
    close_time: datetime | None = None
    expected_expiration_time: datetime | None = None
    latest_expiration_time: datetime | None = None
    last_price_dollars: Decimal | None = None
    yes_bid_dollars: Decimal | None = None
    yes_ask_dollars: Decimal | None = None
    no_bid_dollars: Decimal | None = None
    no_ask_dollars: Decimal | None = None
    yes_bid_size_fp: Decimal | None = None
    yes_ask_size_fp: Decimal | None = None
    volume_fp: Decimal | None = None
    volume_24h_fp: Decimal | None = None
    open_interest_fp: Decimal | None = None
    notional_value_dollars: Decimal | None = None
    result: str | None = None
    settlement_value_dollars: Decimal | None = None
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    price_level_structure: str | None = None
    price_ranges: list[PriceRange] | None = None
    exchange_index: int | None = None
    mve_collection_ticker: str | None = None
    can_close_early: bool | None = None


class _RestTrade(_Struct, frozen=True, kw_only=True):
    """A trade as ``GET /markets/trades`` sends it; :meth:`wire` makes it the WebSocket ``trade`` payload."""

    trade_id: str
    ticker: str
    count_fp: Decimal
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    taker_outcome_side: Literal["yes", "no"] | None = None
    taker_book_side: Literal["bid", "ask"] | None = None
    #: Deprecated direction field, kept for completeness.
    taker_side: Literal["yes", "no"] | None = None
    created_time: datetime
    is_block_trade: bool = False

    def wire(self) -> TradePayload:
        return TradePayload(trade_id=self.trade_id, market_ticker=self.ticker, yes_price_dollars=self.yes_price_dollars,
                            no_price_dollars=self.no_price_dollars, count_fp=self.count_fp,
                            taker_outcome_side=self.taker_outcome_side, taker_book_side=self.taker_book_side,
                            taker_side=self.taker_side, is_block_trade=self.is_block_trade,
                            ts_ms=_epoch_ms(self.created_time))


class _RestFill(_Struct, frozen=True, kw_only=True):
    """One of the account's fills as ``GET /portfolio/fills`` sends it; :meth:`wire` makes it the WebSocket
    ``fill`` payload (natural key ``(trade_id, order_id)``; ``fill_id`` and ``no_price_dollars`` have no WS
    field: the first is REST's own id, the second is ``1 - yes_price_dollars``)."""

    fill_id: str | None = None
    trade_id: str
    order_id: str
    client_order_id: str | None = None
    ticker: str
    side: str | None = None
    action: str | None = None
    count_fp: Decimal
    yes_price_dollars: Decimal
    no_price_dollars: Decimal | None = None
    is_taker: bool
    outcome_side: Literal["yes", "no"] | None = None
    book_side: Literal["bid", "ask"] | None = None
    fee_cost: Decimal | None = None
    created_time: datetime
    #: Deprecated Unix seconds, as the WS ``fill`` sends them.
    ts: int | None = None
    subaccount_number: int | None = None

    def wire(self) -> FillPayload:
        return FillPayload(trade_id=self.trade_id, order_id=self.order_id, market_ticker=self.ticker,
                           client_order_id=self.client_order_id, is_taker=self.is_taker,
                           outcome_side=self.outcome_side, book_side=self.book_side,
                           yes_price_dollars=self.yes_price_dollars, count_fp=self.count_fp, fee_cost=self.fee_cost,
                           ts_ms=_epoch_ms(self.created_time), ts=self.ts, side=self.side, action=self.action,
                           subaccount=self.subaccount_number)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)


def _epoch_ms(moment: datetime) -> int:
    """Unix milliseconds of ``moment`` (UTC when it has no offset), exactly: integer arithmetic, no float; a
    sub-millisecond part is dropped, as the exchange's own ``ts_ms`` drops it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MILLISECOND


class RestOrderbook(_Struct, frozen=True, kw_only=True):
    """``GET /markets/{ticker}/orderbook``: bids only, ascending by price (best bid last); NO in no-leg prices."""

    ticker: str
    yes_dollars: list[PriceLevel] = []
    no_dollars: list[PriceLevel] = []


class ExchangeIndexStatus(_Struct, frozen=True, kw_only=True):
    exchange_index: int
    description: str = ""
    exchange_active: bool = False
    trading_active: bool = False
    intra_exchange_transfers_active: bool | None = None


class ExchangeStatus(_Struct, frozen=True, kw_only=True):
    exchange_active: bool
    trading_active: bool
    intra_exchange_transfers_active: bool | None = None
    exchange_estimated_resume_time: datetime | None = None
    exchange_index_statuses: list[ExchangeIndexStatus] = []


class MarketEvent(_Struct, frozen=True, kw_only=True):
    """An event from ``GET /events`` (with its markets when asked for ``with_nested_markets``)."""

    event_ticker: str
    series_ticker: str = ""
    title: str = ""
    sub_title: str | None = None
    status: str | None = None
    strike_date: datetime | None = None
    mutually_exclusive: bool | None = None
    markets: list[Market] = []


class _MarketsPage(_Struct, frozen=True):
    markets: list[Market] | None = None
    cursor: str | None = None


class _TradesPage(_Struct, frozen=True):
    trades: list[_RestTrade] | None = None
    cursor: str | None = None


class _FillsPage(_Struct, frozen=True):
    fills: list[_RestFill] | None = None
    cursor: str | None = None


class _EventsPage(_Struct, frozen=True):
    events: list[MarketEvent] | None = None
    cursor: str | None = None


class _MarketReply(_Struct, frozen=True):
    market: Market


class _OrderbookFp(_Struct, frozen=True):
    yes_dollars: list[PriceLevel] | None = None
    no_dollars: list[PriceLevel] | None = None


class _OrderbookReply(_Struct, frozen=True):
    orderbook_fp: _OrderbookFp | None = None


_T = TypeVar("_T")
_generic: Final = msgspec.json.Decoder()


def _decode(body: bytes, kind: type[_T]) -> _T:
    """Decode strictly; on failure retry once with empty-string numbers treated as absent."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError:
        return msgspec.convert(_drop_empty_numbers(_generic.decode(body)), kind, strict=False)


def _drop_empty_numbers(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {key: _drop_empty_numbers(value) for key, value in obj.items()
                if not (value == "" and (key.endswith("_dollars") or key.endswith("_fp")
                                         or key.endswith("_strike") or key.endswith("_time")))}
    if isinstance(obj, list):
        return [_drop_empty_numbers(value) for value in obj]
    return obj


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


class KalshiRestClient:
    """Async client for Kalshi's REST API at ``base_url`` (``.../trade-api/v2``; see ``environments``).

    Use as ``async with KalshiRestClient(env.rest_url, signer) as rest: ...`` or call ``aclose()``.
    ``signer=None`` sends unsigned requests (only public endpoints or a simulator accept them).
    """

    def __init__(
        self,
        base_url: str,
        signer: Signer | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_initial: float = 0.5,
        backoff_cap: float = 10.0,
        page_limit: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        if not urlsplit(base).path:
            base += REST_PREFIX
        self.base_url = base
        self._signer = signer
        self.max_retries = max_retries
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.page_limit = page_limit
        self._backoff = Backoff(backoff_initial, 2.0, backoff_cap, rng=rng)
        self._http = httpx.AsyncClient(base_url=base + "/", timeout=timeout, transport=transport,
                                       headers={"Accept": "application/json"})
        #: Requests sent, including retries (for reports and tests).
        self.requests_sent = 0

    async def __aenter__(self) -> KalshiRestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------------------------------------
    # Transport

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """GET ``path`` (relative to the base URL), signed, retried; returns the body of the 2xx answer."""
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        attempt = 0
        while True:
            request = self._http.build_request("GET", path.lstrip("/"), params=clean)
            if self._signer is not None:
                request.headers.update(self._signer.headers("GET", request.url.path))
            self.requests_sent += 1
            try:
                response = await self._http.send(request)
                body = await response.aread()
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise RestError(0, "transport_error", f"{type(exc).__name__}: {exc}",
                                    path=request.url.path) from exc
                delay = self._backoff.delay(attempt)
                log.warning("GET %s failed (%s); retry %d in %.2f s", request.url.path, type(exc).__name__,
                            attempt + 1, delay)
            else:
                if response.is_success:
                    return body
                error = RestError.from_response(response.status_code, body, request.url.path)
                if response.status_code == 401 and self._signer is not None:
                    error = RestError(error.status, error.code, error.message, error.details, error.path,
                                      hint=signature_rejected_hint(response.headers.get("Date"),
                                                                request.headers.get("KALSHI-ACCESS-TIMESTAMP")))
                if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                    raise error
                hinted = _retry_after(response.headers.get("Retry-After"))
                delay = hinted if hinted is not None else self._backoff.delay(attempt)
                log.warning("GET %s answered %d; retry %d in %.2f s", request.url.path, response.status_code,
                            attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def _pages(self, path: str, kind: type[_T], params: Mapping[str, Any]) -> AsyncIterator[_T]:
        """Every page of a cursor-paginated list; stops at a null, missing or empty cursor."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = _decode(await self.get(path, {**params, "cursor": cursor}), kind)
            yield page
            cursor = getattr(page, "cursor", None)
            if not cursor:
                return
            if cursor in seen:  # a server bug must not loop forever
                raise RestError(200, "pagination_loop", f"cursor {cursor!r} repeated", path=path)
            seen.add(cursor)

    # ------------------------------------------------------------------------------------------------
    # Endpoints

    async def get_markets(
        self,
        tickers: Iterable[str] | None = None,
        series_ticker: str | None = None,
        event_ticker: str | None = None,
        status: str | None = None,
    ) -> list[Market]:
        """``GET /markets`` across all pages, de-duplicated by ticker, in server order.

        ``status`` is the filter vocabulary (``unopened``, ``open``, ``paused``, ``closed``, ``settled``).
        Many ``tickers`` are sent in chunks of 100 to keep URLs short.
        """
        base: dict[str, Any] = {"limit": self.page_limit, "series_ticker": series_ticker,
                                "event_ticker": event_ticker, "status": status}
        chunks: list[dict[str, Any]]
        if tickers is None:
            chunks = [base]
        else:
            wanted = list(dict.fromkeys(tickers))
            if not wanted:
                return []
            chunks = [{**base, "tickers": ",".join(wanted[i:i + 100])} for i in range(0, len(wanted), 100)]
        found: dict[str, Market] = {}
        for params in chunks:
            async for page in self._pages("markets", _MarketsPage, params):
                for market in page.markets or ():
                    found.setdefault(market.ticker, market)
        return list(found.values())

    async def get_market(self, ticker: str) -> Market:
        return _decode(await self.get(f"markets/{ticker}"), _MarketReply).market

    async def get_trades(self, ticker: str | None = None, min_ts: int | None = None,
                         max_ts: int | None = None) -> list[TradePayload]:
        """``GET /markets/trades`` (``min_ts``/``max_ts`` in Unix seconds), all pages, de-duplicated by
        ``trade_id``, sorted by time then ``trade_id`` (the server's order is undocumented), as the payloads of
        WebSocket ``trade`` messages (``ticker`` -> ``market_ticker``, ``created_time`` -> ``ts_ms``)."""
        params = {"limit": self.page_limit, "ticker": ticker, "min_ts": min_ts, "max_ts": max_ts}
        found: dict[str, TradePayload] = {}
        async for page in self._pages("markets/trades", _TradesPage, params):
            for trade in page.trades or ():
                if trade.trade_id not in found:
                    found[trade.trade_id] = trade.wire()
        return sorted(found.values(), key=lambda t: (t.ts_ms or 0, t.trade_id))

    async def get_fills(self, ticker: str | None = None, min_ts: int | None = None,
                        max_ts: int | None = None) -> list[FillPayload]:
        """``GET /portfolio/fills`` for the signer's account (``min_ts``/``max_ts`` in Unix seconds), all pages,
        de-duplicated by ``(trade_id, order_id)``, sorted by time then ``trade_id``, as the payloads of WebSocket
        ``fill`` messages (``ticker`` -> ``market_ticker``, ``created_time`` -> ``ts_ms``,
        ``subaccount_number`` -> ``subaccount``)."""
        params = {"limit": self.page_limit, "ticker": ticker, "min_ts": min_ts, "max_ts": max_ts}
        found: dict[tuple[str, str], FillPayload] = {}
        async for page in self._pages("portfolio/fills", _FillsPage, params):
            for fill in page.fills or ():
                if (fill.trade_id, fill.order_id) not in found:
                    found[(fill.trade_id, fill.order_id)] = fill.wire()
        return sorted(found.values(), key=lambda f: (f.ts_ms or 0, f.trade_id, f.order_id))

    async def get_orderbook(self, ticker: str, depth: int = 0) -> RestOrderbook:
        """``GET /markets/{ticker}/orderbook`` (``depth`` 0 = every level), both sides ascending by price."""
        reply = _decode(await self.get(f"markets/{ticker}/orderbook", {"depth": depth}), _OrderbookReply)
        book = reply.orderbook_fp or _OrderbookFp()
        return RestOrderbook(ticker=ticker, yes_dollars=sorted(book.yes_dollars or ()),
                             no_dollars=sorted(book.no_dollars or ()))

    async def get_exchange_status(self) -> ExchangeStatus:
        return _decode(await self.get("exchange/status"), ExchangeStatus)

    async def get_events(self, series_ticker: str | None = None, status: str | None = None,
                         with_nested_markets: bool = True) -> list[MarketEvent]:
        """``GET /events`` across all pages, de-duplicated by event ticker."""
        params = {"limit": 200, "series_ticker": series_ticker, "status": status,
                  "with_nested_markets": "true" if with_nested_markets else None}
        found: dict[str, MarketEvent] = {}
        async for page in self._pages("events", _EventsPage, params):
            for event in page.events or ():
                found.setdefault(event.event_ticker, event)
        return list(found.values())

    async def resolve_markets(self, *, series: Sequence[str] = (), events: Sequence[str] = (),
                              tickers: Sequence[str] = (), status: str | None = "open") -> list[str]:
        """The de-duplicated tickers of explicit ``tickers`` (kept as given), then every market of each
        event and each series with ``status`` (``None`` = any status), in that order."""
        found: dict[str, None] = dict.fromkeys(tickers)
        for event_ticker in events:
            for market in await self.get_markets(event_ticker=event_ticker, status=status):
                found.setdefault(market.ticker)
        for series_ticker in series:
            for market in await self.get_markets(series_ticker=series_ticker, status=status):
                found.setdefault(market.ticker)
        return list(found)
