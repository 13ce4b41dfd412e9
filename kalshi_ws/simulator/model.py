"""Seeded, deterministic market model for the simulator.

The model owns every market's bids-only YES/NO book, the trade tape (ground truth), the per-market book
history (for ``book_at``), a simulated account (resting orders, fills, positions), order groups and an RFQ
flow. :meth:`MarketModel.step` performs one random action and returns the messages it caused, as
:class:`Emit` records (a payload plus the channel it belongs to); the server adds ``sid``/``seq``.

Determinism: given a seed, the sequence of actions and payload contents is fixed (ids come from the
seeded RNG); only the timestamps come from the wall clock.
"""

from __future__ import annotations

import bisect
import functools
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import msgspec

from kalshi_ws import messages as m

Q4 = Decimal("0.0001")
Q2 = Decimal("0.01")
Q6 = Decimal("0.000001")
ZERO = Decimal(0)
ONE = Decimal(1)

CHECKPOINT = 512

#: Message types whose frames carry ``seq`` (spec 4.0).
UNSEQUENCED: frozenset[type] = frozenset({m.Ticker, m.Fill, m.MarketPosition, m.UserOrder})

LINEAR_CENT: list[tuple[Decimal, Decimal, Decimal]] = [(ZERO, ONE, Decimal("0.01"))]
TAPERED_DECI_CENT: list[tuple[Decimal, Decimal, Decimal]] = [
    (ZERO, Decimal("0.1"), Decimal("0.001")),
    (Decimal("0.1"), Decimal("0.9"), Decimal("0.01")),
    (Decimal("0.9"), ONE, Decimal("0.001")),
]
CENTER_DECI_EDGE_CENTI: list[tuple[Decimal, Decimal, Decimal]] = [
    (ZERO, Decimal("0.02"), Decimal("0.0001")),
    (Decimal("0.02"), Decimal("0.98"), Decimal("0.001")),
    (Decimal("0.98"), ONE, Decimal("0.0001")),
]


def d4(x: Decimal) -> Decimal:
    return x.quantize(Q4)


def d2(x: Decimal) -> Decimal:
    return x.quantize(Q2)


def d6(x: Decimal) -> Decimal:
    return x.quantize(Q6)


@functools.lru_cache(maxsize=4096)
def rfc3339(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def grid(ranges: list[tuple[Decimal, Decimal, Decimal]]) -> list[Decimal]:
    """Every valid price strictly between 0 and 1, ascending, 4 dp (shared, do not mutate)."""
    return _grid(tuple(ranges))


@functools.lru_cache(maxsize=64)
def _grid(ranges: tuple[tuple[Decimal, Decimal, Decimal], ...]) -> list[Decimal]:
    prices: set[Decimal] = set()
    for start, end, step in ranges:
        p = start
        while p <= end:
            if ZERO < p < ONE:
                prices.add(d4(p))
            p += step
    return sorted(prices)


@dataclass(slots=True)
class Emit:
    """One message produced by the model, before the server gives it a ``sid`` (and ``seq``)."""

    channel: str
    frame: type
    payload: Any
    ticker: str | None = None
    #: ``use_yes_price: true`` variant of an orderbook payload (NO side re-priced), when it differs.
    yes_payload: Any = None


@dataclass
class Order:
    order_id: str
    ticker: str
    side: str  # "yes" / "no": which bid ladder
    price: Decimal  # leg price (no-leg for NO bids)
    initial: Decimal
    remaining: Decimal
    client_order_id: str
    created_ms: int
    order_group_id: str | None = None
    filled: Decimal = ZERO
    maker_cost: Decimal = ZERO
    maker_fees: Decimal = ZERO
    status: str = "resting"
    updated_ms: int = 0
    reason: str | None = None


@dataclass
class Position:
    position: Decimal = ZERO
    cost: Decimal = ZERO
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    volume: Decimal = ZERO


@dataclass
class Market:
    ticker: str
    event_ticker: str
    series_ticker: str
    market_id: str
    structure: str
    ranges: list[tuple[Decimal, Decimal, Decimal]]
    prices: list[Decimal]
    mid_index: int
    open_ts: int
    close_ts: int
    created_ms: int
    exchange_index: int = 0
    status: str = "active"  # REST object vocabulary: initialized, active, inactive, closed, determined, finalized
    mve: bool = False
    trading: bool = True  # takes part in the random book activity
    yes: dict[Decimal, Decimal] = field(default_factory=dict)
    no: dict[Decimal, Decimal] = field(default_factory=dict)
    last_price: Decimal | None = None
    last_trade_size: Decimal = ZERO
    volume: Decimal = ZERO
    open_interest: Decimal = ZERO
    notional: Decimal = ZERO
    result: str = ""
    settlement_value: Decimal | None = None
    settled_ts: int | None = None
    strike_type: str = "greater"
    floor_strike: Decimal | None = None
    yes_sub_title: str = ""
    updated_ms: int = 0
    # history: initial books and a delta log (ts_ms, side, price, delta) for book_at()
    initial_ms: int = 0
    initial_yes: dict[Decimal, Decimal] = field(default_factory=dict)
    initial_no: dict[Decimal, Decimal] = field(default_factory=dict)
    log: list[tuple[int, str, Decimal, Decimal]] = field(default_factory=list)
    #: (yes, no) copies of the book after every CHECKPOINT-th log entry, so book_at() replays little.
    checkpoints: list[tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = field(default_factory=list)

    def book_side(self, side: str) -> dict[Decimal, Decimal]:
        return self.yes if side == "yes" else self.no

    def best(self, side: str) -> Decimal | None:
        book = self.book_side(side)
        return max(book) if book else None

    def top(self) -> tuple[Decimal | None, Decimal, Decimal | None, Decimal]:
        by = self.best("yes")
        bn = self.best("no")
        return by, (self.yes[by] if by is not None else ZERO), bn, (self.no[bn] if bn is not None else ZERO)


@dataclass
class Event:
    event_ticker: str
    series_ticker: str
    title: str
    mve: bool = False
    exchange_index: int = 0
    strike_date: int = 0
    fee_type_override: str | None = None
    fee_multiplier_override: Decimal | None = None


def levels(book: dict[Decimal, Decimal]) -> list[list[str]]:
    return [[f"{p:.4f}", f"{q:.2f}"] for p, q in sorted(book.items())]


class MarketModel:
    """Random but seeded exchange activity over any number of markets."""

    def __init__(self, tickers: int | list[str] = 8, *, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self._last_ms = 0
        self.markets: dict[str, Market] = {}
        self.events: dict[str, Event] = {}
        self.series: list[str] = []
        self.tape: list[dict[str, Any]] = []  # REST-shaped trades + "ts_ms", oldest first
        self.tape_index: dict[str, list[int]] = {}
        self.orders: dict[str, Order] = {}  # every account order ever placed
        self.fills: list[dict[str, Any]] = []  # the account's fills, REST-shaped + "ts_ms", oldest first
        self.resting: dict[str, Order] = {}  # the resting ones, in placement order
        self.resting_by_market: dict[str, dict[str, Order]] = {}
        self._lc_pending: list[Market] = []  # lifecycle-only markets not yet settled
        self.positions: dict[str, Position] = {}
        self.user_id = self._uuid()
        self.comm_id = self.rng.getrandbits(128).to_bytes(16, "big").hex()
        self.order_groups: dict[str, Decimal] = {}
        self.rfqs: list[dict[str, Any]] = []
        self._counter = 0
        self._lifecycle_markets = 0
        self._opened_markets = 0
        self.halted = False  # exchange-wide trading pause (pause_market_activity does not use this)
        now = self.now_ms()
        self.start_ms = now
        if isinstance(tickers, int):
            names = self._make_tickers(tickers)
        else:
            names = list(tickers)
        for i, t in enumerate(names):
            self._add_market(t, i, now)
        self.tickers = list(names)
        # One multivariate (combo) market at a time, lifecycle only; a settled one is replaced by a new one.
        self._mve_count = 0
        self.mve_ticker = self._new_mve(now)
        self.markets[self.mve_ticker].status = "active"

    def _new_mve(self, now: int) -> str:
        self._mve_count += 1
        mve_event = f"KXMVESIMCOMBO-S{self.seed % 10000:04d}{self._mve_count:03d}{self.rng.getrandbits(24):06X}"
        self.events[mve_event] = Event(mve_event, "KXMVESIMCOMBO", "Simulated combo", mve=True, exchange_index=1)
        mve_ticker = f"{mve_event}-{self.rng.getrandbits(40):010X}"
        mk = self._new_market(mve_ticker, mve_event, "KXMVESIMCOMBO", "center_deci_edge_centi_cent",
                              CENTER_DECI_EDGE_CENTI, now, trading=False)
        mk.mve = True
        mk.exchange_index = 1
        mk.status = "initialized"
        return mve_ticker

    # ------------------------------------------------------------------ setup

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def now_ms(self) -> int:
        now = time.time_ns() // 1_000_000
        if now <= self._last_ms:
            return self._last_ms
        self._last_ms = now
        return now

    def _make_tickers(self, n: int) -> list[str]:
        names = []
        series = ["KXSIMCPI", "KXSIMFED", "KXSIMBTC"]
        for i in range(n):
            s = series[i % len(series)]
            ev = f"{s}-26NOV{i // (len(series) * 4):02d}"
            names.append(f"{ev}-T{i}.{(i * 7) % 10}")
        return names

    def _add_market(self, ticker: str, i: int, now: int) -> None:
        parts = ticker.split("-")
        series = parts[0]
        event = "-".join(parts[:-1]) if len(parts) > 1 else ticker
        if event not in self.events:
            self.events[event] = Event(event, series, f"Simulated event {event}",
                                       strike_date=now // 1000 + 30 * 86400)
        if series not in self.series:
            self.series.append(series)
        tapered = i % 3 == 2
        mk = self._new_market(ticker, event, series, "tapered_deci_cent" if tapered else "linear_cent",
                              TAPERED_DECI_CENT if tapered else LINEAR_CENT, now)
        if tapered:  # live near an edge, so the sub-penny tail is exercised
            target = Decimal("0.05") if self.rng.random() < 0.5 else Decimal("0.95")
        else:
            target = d4(Decimal(self.rng.randint(20, 80)) / 100)
        mk.mid_index = min(bisect.bisect_left(mk.prices, target), len(mk.prices) - 1)
        # Seed the book: a few levels each side.
        for _ in range(self.rng.randint(5, 10)):
            self._place_random(mk, "yes", now, record=False)
            self._place_random(mk, "no", now, record=False)
        mk.initial_ms = now
        mk.initial_yes = dict(mk.yes)
        mk.initial_no = dict(mk.no)

    def _new_market(self, ticker: str, event: str, series: str, structure: str,
                    ranges: list[tuple[Decimal, Decimal, Decimal]], now: int, *, trading: bool = True) -> Market:
        prices = grid(ranges)
        mk = Market(ticker=ticker, event_ticker=event, series_ticker=series, market_id=self._uuid(),
                    structure=structure, ranges=ranges, prices=prices, mid_index=len(prices) // 2,
                    open_ts=now // 1000 - 86400, close_ts=now // 1000 + 30 * 86400, created_ms=now,
                    trading=trading, updated_ms=now, initial_ms=now, floor_strike=Decimal("0.3"),
                    yes_sub_title=f"Above {ticker.rsplit('-', 1)[-1]}")
        self.markets[ticker] = mk
        return mk

    # ------------------------------------------------------------------ queries

    def book(self, ticker: str, depth: int = 0) -> dict[str, list[list[str]]]:
        mk = self.markets[ticker]
        return {"yes_dollars": _depth(levels(mk.yes), depth), "no_dollars": _depth(levels(mk.no), depth)}

    def book_at(self, ticker: str, ts_ms: int) -> dict[str, list[list[str]]]:
        mk = self.markets[ticker]
        if ts_ms < mk.initial_ms:
            return {"yes_dollars": [], "no_dollars": []}
        end = bisect.bisect_right(mk.log, ts_ms, key=lambda e: e[0])  # entries with ts <= ts_ms
        cp = min(end // CHECKPOINT, len(mk.checkpoints))
        base = (mk.initial_yes, mk.initial_no) if cp == 0 else mk.checkpoints[cp - 1]
        yes = dict(base[0])
        no = dict(base[1])
        for _, side, price, delta in mk.log[cp * CHECKPOINT:end]:
            book = yes if side == "yes" else no
            size = book.get(price, ZERO) + delta
            if size <= 0:
                book.pop(price, None)
            else:
                book[price] = size
        return {"yes_dollars": levels(yes), "no_dollars": levels(no)}

    def snapshot_payloads(self, ticker: str) -> tuple[m.OrderbookSnapshotPayload, m.OrderbookSnapshotPayload]:
        """(no-leg, yes-price) snapshot payloads of one market."""
        mk = self.markets[ticker]
        yes = sorted(mk.yes.items())
        no = sorted(mk.no.items())
        plain = m.OrderbookSnapshotPayload(market_ticker=ticker, market_id=mk.market_id,
                                           yes_dollars_fp=yes, no_dollars_fp=no)
        yes_priced = m.OrderbookSnapshotPayload(market_ticker=ticker, market_id=mk.market_id, yes_dollars_fp=yes,
                                                no_dollars_fp=sorted((d4(ONE - p), q) for p, q in no))
        return plain, yes_priced

    def ticker_payload(self, ticker: str, ts_ms: int | None = None) -> m.TickerPayload:
        mk = self.markets[ticker]
        ts = self.now_ms() if ts_ms is None else ts_ms
        by, bys, bn, bns = mk.top()
        price = mk.last_price if mk.last_price is not None else (by if by is not None else Decimal("0.5"))
        return m.TickerPayload(
            market_ticker=ticker, market_id=mk.market_id,
            price_dollars=d4(price),
            yes_bid_dollars=d4(by) if by is not None else d4(ZERO),
            yes_ask_dollars=d4(ONE - bn) if bn is not None else d4(ONE),
            volume_fp=d2(mk.volume), open_interest_fp=d2(mk.open_interest),
            dollar_volume=int(mk.notional), dollar_open_interest=int(mk.open_interest * price),
            yes_bid_size_fp=d2(bys), yes_ask_size_fp=d2(bns), last_trade_size_fp=d2(mk.last_trade_size),
            ts_ms=ts, ts=ts // 1000, time=rfc3339(ts),
        )

    # ------------------------------------------------------------------ book primitives

    def _apply(self, mk: Market, side: str, price: Decimal, delta: Decimal, ts: int, *, record: bool = True,
               client_order_id: str | None = None) -> Emit | None:
        book = mk.book_side(side)
        size = book.get(price, ZERO) + delta
        if size <= 0:
            book.pop(price, None)
        else:
            book[price] = size
        mk.updated_ms = ts
        if not record:
            return None
        mk.log.append((ts, side, price, delta))
        if len(mk.log) % CHECKPOINT == 0:
            mk.checkpoints.append((dict(mk.yes), dict(mk.no)))
        payload = m.OrderbookDeltaPayload(market_ticker=mk.ticker, market_id=mk.market_id, price_dollars=price,
                                          delta_fp=delta, side=side,  # type: ignore[arg-type]
                                          client_order_id=client_order_id, ts_ms=ts, ts=rfc3339(ts))
        yes_payload = None
        if side == "no":
            yes_payload = m.OrderbookDeltaPayload(
                market_ticker=mk.ticker, market_id=mk.market_id, price_dollars=d4(ONE - price), delta_fp=delta,
                side="no", client_order_id=client_order_id, ts_ms=ts, ts=rfc3339(ts))
        return Emit("orderbook_delta", m.OrderbookDelta, payload, mk.ticker, yes_payload)

    def _random_size(self, mk: Market) -> Decimal:
        if self.rng.random() < 0.3 or mk.structure != "linear_cent":
            return d2(Decimal(self.rng.randint(1, 30000)) / 100)
        return d2(Decimal(self.rng.randint(1, 400)))

    def _price_for(self, mk: Market, side: str) -> Decimal | None:
        """A price for a new bid on ``side``: clustered around the mid, never crossing the other side.

        Works on the market's grid in yes-price terms (the grids are symmetric, so a NO bid at ``q`` is
        the grid point ``1 - q``).
        """
        k = min(int(self.rng.expovariate(0.2)), 40)
        last = len(mk.prices) - 1
        if side == "yes":
            bn = mk.best("no")
            ask_idx = bisect.bisect_left(mk.prices, d4(ONE - bn)) if bn is not None else last + 1
            idx = min(ask_idx - 1, mk.mid_index) - k
            return mk.prices[idx] if idx >= 0 else None
        by = mk.best("yes")
        bid_idx = bisect.bisect_left(mk.prices, by) if by is not None else -1
        idx = max(bid_idx + 1, mk.mid_index + 1) + k
        return d4(ONE - mk.prices[idx]) if idx <= last else None

    def _place_random(self, mk: Market, side: str, ts: int, *, record: bool = True) -> list[Emit]:
        price = self._price_for(mk, side)
        if price is None:
            return []
        top_before = mk.top()
        e = self._apply(mk, side, price, self._random_size(mk), ts, record=record)
        out = [e] if e is not None else []
        if record and mk.top() != top_before:
            out.append(Emit("ticker", m.Ticker, self.ticker_payload(mk.ticker, ts), mk.ticker))
        return out

    def _account_resting(self, mk: Market, side: str, price: Decimal) -> Decimal:
        return sum((o.remaining for o in self.resting_by_market.get(mk.ticker, {}).values()
                    if o.side == side and o.price == price), ZERO)

    def _cancel_random(self, mk: Market, ts: int) -> list[Emit]:
        side = "yes" if self.rng.random() < 0.5 else "no"
        book = mk.book_side(side)
        if len(book) <= 4:
            return self._place_random(mk, side, ts)
        price = self.rng.choice(sorted(book))
        free = book[price] - self._account_resting(mk, side, price)
        if free <= 0:
            return []
        amount = free if self.rng.random() < 0.3 else d2(free * Decimal(self.rng.randint(1, 99)) / 100)
        if amount <= 0:
            return []
        top_before = mk.top()
        out = [e for e in [self._apply(mk, side, price, -amount, ts)] if e is not None]
        if mk.top() != top_before:
            out.append(Emit("ticker", m.Ticker, self.ticker_payload(mk.ticker, ts), mk.ticker))
        return out

    # ------------------------------------------------------------------ trades

    def _trade(self, mk: Market, ts: int) -> list[Emit]:
        taker = "yes" if self.rng.random() < 0.5 else "no"
        maker_side = "no" if taker == "yes" else "yes"  # a YES taker lifts NO bids and vice versa
        book = mk.book_side(maker_side)
        if len(book) <= 2:  # keep some depth: refill instead of trading the book empty
            return self._place_random(mk, maker_side, ts)
        want = self._random_size(mk)
        out: list[Emit] = []
        private: list[Emit] = []
        sweeps = 0
        while want > 0 and len(book) > 1 and sweeps < 3:
            sweeps += 1
            price = max(book)
            count = min(want, book[price])
            want -= count
            yes_price = d4(ONE - price) if maker_side == "no" else price
            no_price = d4(ONE - yes_price)
            trade_id = self._uuid()
            payload = m.TradePayload(trade_id=trade_id, market_ticker=mk.ticker, yes_price_dollars=yes_price,
                                     no_price_dollars=no_price, count_fp=d2(count), taker_outcome_side=taker,  # type: ignore[arg-type]
                                     taker_book_side="bid" if taker == "yes" else "ask", taker_side=taker,  # type: ignore[arg-type]
                                     is_block_trade=False, ts_ms=ts, ts=ts // 1000)
            out.append(Emit("trade", m.Trade, payload, mk.ticker))
            self._record_trade(mk, payload, ts)
            delta = self._apply(mk, maker_side, price, -count, ts)
            if delta is not None:
                out.append(delta)
            private.extend(self._fill_account(mk, maker_side, price, count, trade_id, ts))
            mk.last_price = yes_price
            mk.last_trade_size = d2(count)
            mk.volume += count
            mk.notional += count * yes_price
            if self.rng.random() < 0.6:
                mk.open_interest += count
            else:
                mk.open_interest = max(ZERO, mk.open_interest - count)
        # the price moves toward the trade
        step = 1 if taker == "yes" else -1
        mk.mid_index = max(3, min(len(mk.prices) - 4, mk.mid_index + step))
        out.append(Emit("ticker", m.Ticker, self.ticker_payload(mk.ticker, ts), mk.ticker))
        return out + private

    def _record_trade(self, mk: Market, p: m.TradePayload, ts: int, *, block: bool = False) -> None:
        row = {
            "trade_id": p.trade_id, "ticker": mk.ticker, "count_fp": f"{p.count_fp:.2f}",
            "yes_price_dollars": f"{p.yes_price_dollars:.4f}", "no_price_dollars": f"{p.no_price_dollars:.4f}",
            "taker_outcome_side": p.taker_outcome_side, "taker_book_side": p.taker_book_side,
            "taker_side": p.taker_side, "created_time": rfc3339(ts), "is_block_trade": block, "ts_ms": ts,
        }
        self.tape_index.setdefault(mk.ticker, []).append(len(self.tape))
        self.tape.append(row)

    def _fill_account(self, mk: Market, side: str, price: Decimal, count: Decimal, trade_id: str,
                      ts: int) -> list[Emit]:
        out: list[Emit] = []
        left = count
        for o in list(self.resting_by_market.get(mk.ticker, {}).values()):
            if left <= 0:
                break
            if o.side != side or o.price != price:
                continue
            n = min(left, o.remaining)
            left -= n
            o.remaining -= n
            o.filled += n
            o.maker_cost += n * price
            fee = (Decimal("0.0175") * n * price * (ONE - price)).quantize(Q2, rounding=ROUND_CEILING)
            o.maker_fees += fee
            o.updated_ms = ts
            o.reason = "Trade"
            if o.remaining <= 0:
                o.status = "executed"
                self._unrest(o)
            pos = self.positions.setdefault(mk.ticker, Position())
            signed = n if side == "yes" else -n
            if pos.position == 0 or (pos.position > 0) == (signed > 0):
                pos.cost += n * price
            else:
                closing = min(n, abs(pos.position))
                avg = pos.cost / abs(pos.position)
                pos.realized += closing * (ONE - price - avg)
                pos.cost -= closing * avg
                if n > closing:
                    pos.cost += (n - closing) * price
            pos.position += signed
            pos.fees += fee
            pos.volume += n
            yes_price = price if side == "yes" else d4(ONE - price)
            outcome = side
            fill_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fill/{trade_id}/{o.order_id}"))  # no rng draw
            self.fills.append({
                "fill_id": fill_id, "trade_id": trade_id, "order_id": o.order_id,
                "client_order_id": o.client_order_id, "ticker": mk.ticker, "market_ticker": mk.ticker,
                "side": side, "action": "buy", "count_fp": f"{d2(n):.2f}",
                "yes_price_dollars": f"{yes_price:.4f}", "no_price_dollars": f"{d4(ONE - yes_price):.4f}",
                "is_taker": False, "outcome_side": outcome, "book_side": "bid" if side == "yes" else "ask",
                "fee_cost": f"{d6(fee):.6f}", "created_time": rfc3339(ts), "ts": ts // 1000, "ts_ms": ts,
            })
            out.append(Emit("fill", m.Fill, m.FillPayload(
                trade_id=trade_id, order_id=o.order_id, market_ticker=mk.ticker, client_order_id=o.client_order_id,
                exchange_index=mk.exchange_index, is_taker=False, outcome_side=outcome,  # type: ignore[arg-type]
                book_side="bid" if side == "yes" else "ask", yes_price_dollars=yes_price, count_fp=d2(n),
                fee_cost=d6(fee), post_position_fp=d2(pos.position), ts_ms=ts, ts=ts // 1000, side=side,
                action="buy", purchased_side=side), mk.ticker))
            out.append(Emit("user_orders", m.UserOrder, self._user_order_payload(o), mk.ticker))
            out.append(Emit("market_positions", m.MarketPosition, self._position_payload(mk.ticker), mk.ticker))
        return out

    def _unrest(self, o: Order) -> None:
        del self.resting[o.order_id]
        del self.resting_by_market[o.ticker][o.order_id]

    def _user_order_payload(self, o: Order) -> m.UserOrderPayload:
        yes_price = o.price if o.side == "yes" else d4(ONE - o.price)
        return m.UserOrderPayload(
            order_id=o.order_id, user_id=self.user_id, ticker=o.ticker, exchange_index=0, status=o.status,
            outcome_side=o.side, book_side="bid" if o.side == "yes" else "ask",  # type: ignore[arg-type]
            side=o.side, is_yes=o.side == "yes", yes_price_dollars=yes_price, fill_count_fp=d2(o.filled),
            remaining_count_fp=d2(o.remaining), initial_count_fp=d2(o.initial),
            taker_fill_cost_dollars=d6(ZERO), maker_fill_cost_dollars=d6(o.maker_cost),
            taker_fees_dollars=d6(ZERO), maker_fees_dollars=d6(o.maker_fees), client_order_id=o.client_order_id,
            order_group_id=o.order_group_id, self_trade_prevention_type="taker_at_cross",
            created_ts_ms=o.created_ms, last_updated_ts_ms=o.updated_ms or o.created_ms,
            last_update_reason=o.reason, created_time=rfc3339(o.created_ms),
            last_update_time=rfc3339(o.updated_ms or o.created_ms), subaccount_number=0)

    def _position_payload(self, ticker: str) -> m.MarketPositionPayload:
        pos = self.positions.setdefault(ticker, Position())
        return m.MarketPositionPayload(
            user_id=self.user_id, market_ticker=ticker, position_fp=d2(pos.position),
            position_cost_dollars=d4(pos.cost), realized_pnl_dollars=d4(pos.realized),
            fees_paid_dollars=d4(pos.fees), position_fee_cost_dollars=d4(pos.fees), volume_fp=d2(pos.volume))

    # ------------------------------------------------------------------ account actions

    def _account_place(self, mk: Market, ts: int) -> list[Emit]:
        side = "yes" if self.rng.random() < 0.5 else "no"
        price = self._price_for(mk, side)
        if price is None:
            return []
        size = self._random_size(mk)
        self._counter += 1
        group = next(iter(self.order_groups), None) if self.rng.random() < 0.5 else None
        o = Order(order_id=self._uuid(), ticker=mk.ticker, side=side, price=price, initial=size, remaining=size,
                  client_order_id=f"sim-{self._counter:06d}", created_ms=ts, order_group_id=group, updated_ms=ts)
        self.orders[o.order_id] = o
        self.resting[o.order_id] = o
        self.resting_by_market.setdefault(o.ticker, {})[o.order_id] = o
        top_before = mk.top()
        out = [Emit("user_orders", m.UserOrder, self._user_order_payload(o), mk.ticker)]
        e = self._apply(mk, side, price, size, ts, client_order_id=o.client_order_id)
        if e is not None:
            out.append(e)
        if mk.top() != top_before:
            out.append(Emit("ticker", m.Ticker, self.ticker_payload(mk.ticker, ts), mk.ticker))
        return out

    def _account_cancel(self, ts: int) -> list[Emit]:
        if not self.resting:
            return []
        o = self.rng.choice(list(self.resting.values()))
        self._unrest(o)
        mk = self.markets[o.ticker]
        amount = o.remaining
        o.remaining = ZERO
        o.status = "canceled"
        o.updated_ms = ts
        o.reason = None
        top_before = mk.top()
        out = [Emit("user_orders", m.UserOrder, self._user_order_payload(o), mk.ticker)]
        e = self._apply(mk, o.side, o.price, -amount, ts, client_order_id=o.client_order_id)
        if e is not None:
            out.append(e)
        if mk.top() != top_before:
            out.append(Emit("ticker", m.Ticker, self.ticker_payload(mk.ticker, ts), mk.ticker))
        return out

    def _order_group(self, ts: int) -> list[Emit]:
        if not self.order_groups or (len(self.order_groups) < 3 and self.rng.random() < 0.3):
            gid = f"og_{self.rng.getrandbits(32):08x}"
            limit = d2(Decimal(self.rng.randint(100, 1000)))
            self.order_groups[gid] = limit
            kind = "created"
        else:
            gid = self.rng.choice(sorted(self.order_groups))
            kind = self.rng.choice(["limit_updated", "triggered", "reset", "deleted"])
            limit = d2(Decimal(self.rng.randint(100, 1000)))
            if kind == "limit_updated":
                self.order_groups[gid] = limit
            elif kind == "deleted":
                del self.order_groups[gid]
                for o in self.resting.values():
                    if o.order_group_id == gid:
                        o.order_group_id = None
        payload = m.OrderGroupUpdatePayload(
            event_type=kind, order_group_id=gid,
            contracts_limit_fp=limit if kind in ("created", "limit_updated") else None, ts_ms=ts)
        return [Emit("order_group_updates", m.OrderGroupUpdate, payload)]

    def _communications(self, ts: int) -> list[Emit]:
        ticker = self.rng.choice(self.tickers) if self.tickers else self.mve_ticker
        mk = self.markets[ticker]
        created = rfc3339(ts)
        if not self.rfqs or (len(self.rfqs) < 3 and self.rng.random() < 0.3):
            rfq: dict[str, Any] = {"id": f"rfq_{self.rng.getrandbits(32):08x}", "ticker": ticker, "stage": 0,
                                   "contracts": d2(Decimal(self.rng.randint(10, 1000))),
                                   "creator": self.comm_id if self.rng.random() < 0.25 else "0"}
            self.rfqs.append(rfq)
            return [Emit("communications", m.RfqCreated, m.RfqCreatedPayload(
                id=rfq["id"], creator_id=rfq["creator"], market_ticker=ticker, event_ticker=mk.event_ticker,
                contracts_fp=rfq["contracts"], created_ts=created), ticker)]
        rfq = self.rfqs[0]
        ticker = rfq["ticker"]
        mk = self.markets[ticker]
        stage = rfq["stage"]
        rfq["stage"] = stage + 1
        yes_bid = mk.best("yes") or Decimal("0.4")
        no_bid = d4(ONE - yes_bid - Decimal("0.02")) if yes_bid < Decimal("0.97") else Decimal("0.0100")
        if stage == 0:
            rfq["quote"] = f"quote_{self.rng.getrandbits(32):08x}"
            return [Emit("communications", m.QuoteCreated, m.QuotePayload(
                quote_id=rfq["quote"], rfq_id=rfq["id"], quote_creator_id=self.comm_id[:8], rfq_creator_id="0",
                market_ticker=ticker, event_ticker=mk.event_ticker, yes_bid_dollars=d4(yes_bid),
                no_bid_dollars=no_bid, yes_contracts_offered_fp=rfq["contracts"],
                no_contracts_offered_fp=rfq["contracts"], created_ts=created), ticker)]
        if stage == 1:
            return [Emit("communications", m.QuoteAccepted, m.QuotePayload(
                quote_id=rfq["quote"], rfq_id=rfq["id"], quote_creator_id=self.comm_id[:8], rfq_creator_id="0",
                market_ticker=ticker, event_ticker=mk.event_ticker, yes_bid_dollars=d4(yes_bid),
                no_bid_dollars=no_bid, accepted_side="yes", contracts_accepted_fp=rfq["contracts"]), ticker)]
        if stage == 2 and mk.status == "active":  # executed: an off-book (block) trade on the public tape
            out = [Emit("communications", m.QuoteExecuted, m.QuotePayload(
                quote_id=rfq["quote"], rfq_id=rfq["id"], quote_creator_id=self.comm_id[:8], rfq_creator_id="0",
                order_id=self._uuid(), client_order_id=f"sim-rfq-{rfq['id'][4:]}", market_ticker=ticker,
                executed_ts=created), ticker)]
            price = d4(yes_bid)
            trade = m.TradePayload(trade_id=self._uuid(), market_ticker=ticker, yes_price_dollars=price,
                                   no_price_dollars=d4(ONE - price), count_fp=rfq["contracts"],
                                   taker_outcome_side="yes", taker_book_side="bid", taker_side="yes",
                                   is_block_trade=True, ts_ms=ts, ts=ts // 1000)
            self._record_trade(mk, trade, ts, block=True)
            mk.last_price = price
            mk.last_trade_size = rfq["contracts"]
            mk.volume += rfq["contracts"]
            mk.notional += rfq["contracts"] * price
            out.append(Emit("trade", m.Trade, trade, ticker))
            out.append(Emit("ticker", m.Ticker, self.ticker_payload(ticker, ts), ticker))
            return out
        self.rfqs.remove(rfq)
        return [Emit("communications", m.RfqDeleted, m.RfqDeletedPayload(
            id=rfq["id"], creator_id=rfq["creator"], market_ticker=ticker, event_ticker=mk.event_ticker,
            contracts_fp=rfq["contracts"], deleted_ts=created), ticker)]

    # ------------------------------------------------------------------ lifecycle

    def _ranges_payload(self, mk: Market) -> list[m.PriceRange]:
        return [m.PriceRange(start=d4(a), end=d4(b), step=d4(c)) for a, b, c in mk.ranges]

    def _created(self, mk: Market, channel: str, frame: type) -> Emit:
        ev = self.events[mk.event_ticker]
        meta = {"name": mk.ticker, "title": f"Will {mk.ticker} resolve yes?", "yes_sub_title": mk.yes_sub_title,
                "no_sub_title": "No", "rules_primary": "Simulated market.", "rules_secondary": "",
                "can_close_early": mk.mve, "event_ticker": ev.event_ticker, "expected_expiration_ts": mk.close_ts,
                "strike_type": mk.strike_type, "floor_strike": 0.3}
        return Emit(channel, frame, m.MarketLifecyclePayload(
            market_ticker=mk.ticker, event_type="created", exchange_index=mk.exchange_index, open_ts=mk.open_ts,
            close_ts=mk.close_ts, additional_metadata=meta, price_level_structure=mk.structure,
            price_ranges=None if mk.mve else self._ranges_payload(mk)), mk.ticker)

    def _event_created(self, ev: Event, channel: str) -> Emit:
        return Emit(channel, m.EventLifecycle, m.EventLifecyclePayload(
            event_ticker=ev.event_ticker, exchange_index=ev.exchange_index, title=ev.title,
            subtitle="simulated", collateral_return_type="", series_ticker=ev.series_ticker,
            strike_date=ev.strike_date or None))

    def _lifecycle(self, ts: int) -> list[Emit]:
        r = self.rng.random()
        # New short-lived (lifecycle-only) markets: created -> activated -> determined -> settled.
        pending = self._lc_pending
        if r < 0.30:
            if pending:
                mk = pending[0]
                if mk.status == "initialized":
                    mk.status = "active"
                    return [self._lc(mk, "activated", is_deactivated=False)]
                if mk.status == "active":
                    mk.status = "determined"
                    mk.result = self.rng.choice(["yes", "no"])
                    mk.settlement_value = ONE if mk.result == "yes" else ZERO
                    return [self._lc(mk, "determined", result=mk.result, settlement_value=d4(mk.settlement_value),
                                     determination_ts=ts // 1000)]
                mk.status = "finalized"
                mk.settled_ts = ts // 1000
                pending.remove(mk)
                return [self._lc(mk, "settled", settled_ts=ts // 1000)]
            self._lifecycle_markets += 1
            series = self.series[0] if self.series else "KXSIM"
            ev_ticker = f"{series}-27LC{self._lifecycle_markets:03d}"
            out: list[Emit] = []
            if ev_ticker not in self.events:
                self.events[ev_ticker] = Event(ev_ticker, series, f"Lifecycle event {self._lifecycle_markets}",
                                               strike_date=ts // 1000 + 3600)
                out.append(self._event_created(self.events[ev_ticker], "market_lifecycle_v2"))
            mk = self._new_market(f"{ev_ticker}-T1", ev_ticker, series, "linear_cent", LINEAR_CENT, ts,
                                  trading=False)
            mk.status = "initialized"
            pending.append(mk)
            out.append(self._created(mk, "market_lifecycle_v2", m.MarketLifecycle))
            return out
        if r < 0.45:  # multivariate market lifecycle: a small state machine
            mk = self.markets[self.mve_ticker]
            if mk.status == "initialized":
                mk.status = "active"
                return [self._lc(mk, "activated", is_deactivated=False)]
            if mk.status == "inactive":
                mk.status = "active"
                return [self._lc(mk, "activated", is_deactivated=False)]
            if mk.status == "determined":
                mk.status = "finalized"
                mk.settled_ts = ts // 1000
                out = [self._lc(mk, "settled", settled_ts=ts // 1000)]
                self.mve_ticker = self._new_mve(ts)
                new = self.markets[self.mve_ticker]
                return out + [self._event_created(self.events[new.event_ticker], "multivariate_market_lifecycle"),
                              self._created(new, "multivariate_market_lifecycle", m.MultivariateMarketLifecycle)]
            kind = self.rng.choice(["deactivated", "close_date_updated", "close_date_updated", "determined"])
            if kind == "close_date_updated":
                mk.close_ts -= 60
                return [self._lc(mk, kind, close_ts=mk.close_ts)]
            if kind == "determined":
                mk.status = "determined"
                mk.result = self.rng.choice(["yes", "no"])
                mk.settlement_value = ONE if mk.result == "yes" else ZERO
                return [self._lc(mk, kind, result=mk.result, settlement_value=d4(mk.settlement_value),
                                 determination_ts=ts // 1000)]
            mk.status = "inactive"
            return [self._lc(mk, kind, is_deactivated=True)]
        if r < 0.52:
            if not self.tickers:
                return []
            ev = self.events[self.markets[self.rng.choice(self.tickers)].event_ticker]
            if ev.fee_type_override is None:
                ev.fee_type_override = "quadratic_with_maker_fees"
                ev.fee_multiplier_override = Decimal(1)
            else:
                ev.fee_type_override = None
                ev.fee_multiplier_override = None
            return [Emit("market_lifecycle_v2", m.EventFeeUpdate, m.EventFeeUpdatePayload(
                event_ticker=ev.event_ticker, fee_type_override=ev.fee_type_override,
                fee_multiplier_override=ev.fee_multiplier_override))]
        if not self.tickers:
            return []
        mk = self.markets[self.rng.choice(self.tickers)]
        if r < 0.65:
            if mk.status == "active":
                mk.status = "inactive"
                return [self._lc(mk, "deactivated", is_deactivated=True)]
            mk.status = "active"
            return [self._lc(mk, "activated", is_deactivated=False)]
        if r < 0.75:
            mk.close_ts += self.rng.choice([-3600, 3600])
            return [self._lc(mk, "close_date_updated", close_ts=mk.close_ts)]
        if r < 0.87:
            mk.yes_sub_title = f"Above {self.rng.randint(1, 9)}.{self.rng.randint(0, 9)}"
            return [self._lc(mk, "metadata_updated", strike_type=mk.strike_type, floor_strike=mk.floor_strike,
                             yes_sub_title=mk.yes_sub_title)]
        if mk.structure == "linear_cent":  # upgrading to a finer grid keeps every resting level valid
            mk.structure = "tapered_deci_cent"
            mk.ranges = TAPERED_DECI_CENT
            mid = mk.prices[mk.mid_index]
            mk.prices = grid(mk.ranges)
            mk.mid_index = bisect.bisect_left(mk.prices, mid)
        return [self._lc(mk, "price_level_structure_updated", price_level_structure=mk.structure,
                         price_ranges=self._ranges_payload(mk))]

    def open_market(self, series: str | None = None) -> tuple[str, list[Emit]]:
        """Open a new tradeable market in an existing series (default: the first): a new event, ``created`` and
        ``activated`` lifecycle messages, then books, trades and tickers like every other market."""
        ts = self.now_ms()
        series = series or (self.series[0] if self.series else "KXSIM")
        self._opened_markets += 1
        event = f"{series}-27OPEN{self._opened_markets:03d}"
        ticker = f"{event}-T{self._opened_markets}.5"
        self._add_market(ticker, len(self.tickers), ts)
        mk = self.markets[ticker]
        mk.open_ts = ts // 1000
        self.tickers.append(ticker)
        out = [self._event_created(self.events[event], "market_lifecycle_v2"),
               self._created(mk, "market_lifecycle_v2", m.MarketLifecycle),
               self._lc(mk, "activated", is_deactivated=False)]
        return ticker, out

    def close_market(self, ticker: str) -> list[Emit]:
        """Close and settle a tradeable market: it stops trading (``deactivated``), is determined and settled."""
        mk = self.markets[ticker]
        ts = self.now_ms()
        if ticker in self.tickers:
            self.tickers.remove(ticker)
        mk.trading = False
        mk.status = "finalized"
        mk.close_ts = ts // 1000
        mk.result = "yes" if (mk.last_price or ZERO) >= Decimal("0.5") else "no"
        mk.settlement_value = ONE if mk.result == "yes" else ZERO
        mk.settled_ts = ts // 1000
        return [self._lc(mk, "deactivated", is_deactivated=True),
                self._lc(mk, "determined", result=mk.result, settlement_value=d4(mk.settlement_value),
                         determination_ts=ts // 1000),
                self._lc(mk, "settled", settled_ts=ts // 1000)]

    def _lc(self, mk: Market, kind: str, **fields: Any) -> Emit:
        if mk.mve:
            return Emit("multivariate_market_lifecycle", m.MultivariateMarketLifecycle,
                        m.MarketLifecyclePayload(market_ticker=mk.ticker, event_type=kind, **fields), mk.ticker)
        return Emit("market_lifecycle_v2", m.MarketLifecycle,
                    m.MarketLifecyclePayload(market_ticker=mk.ticker, event_type=kind, **fields), mk.ticker)

    # ------------------------------------------------------------------ driver

    def step(self) -> list[Emit]:
        """One random action; returns the messages it caused, in causal order."""
        ts = self.now_ms()
        r = self.rng.random()
        if not self.tickers:
            return self._lifecycle(ts) if r < 0.5 else []
        mk = self.markets[self.rng.choice(self.tickers)]
        if mk.status != "active":
            # A deactivated (paused) market neither trades nor changes its book; the exchange may reactivate it.
            return self._lifecycle(ts) if r < 0.02 else []
        if r < 0.02:
            return self._lifecycle(ts)
        if r < 0.03:
            return self._order_group(ts)
        if r < 0.04:
            return self._communications(ts)
        if r < 0.07:
            return self._account_place(mk, ts)
        if r < 0.08:
            return self._account_cancel(ts)
        if r < 0.10:  # the fair value drifts
            mk.mid_index = max(3, min(len(mk.prices) - 4, mk.mid_index + self.rng.choice((-1, 1))))
            return []
        if r < 0.55:
            side = "yes" if self.rng.random() < 0.5 else "no"
            if len(mk.yes) < 5 and len(mk.yes) <= len(mk.no):
                side = "yes"
            elif len(mk.no) < 5:
                side = "no"
            return self._place_random(mk, side, ts)
        if r < 0.80:
            return self._cancel_random(mk, ts)
        return self._trade(mk, ts)


def _depth(rows: list[list[str]], depth: int) -> list[list[str]]:
    return rows[-depth:] if depth > 0 else rows


def market_json(mk: Market, model: MarketModel) -> dict[str, Any]:
    """REST ``Market`` object."""
    by, bys, bn, bns = mk.top()
    ev = model.events.get(mk.event_ticker)
    status = mk.status
    return {
        "ticker": mk.ticker, "event_ticker": mk.event_ticker, "market_type": "binary", "status": status,
        "yes_sub_title": mk.yes_sub_title, "no_sub_title": "No",
        "created_time": rfc3339(mk.created_ms), "updated_time": rfc3339(mk.updated_ms),
        "open_time": rfc3339(mk.open_ts * 1000), "close_time": rfc3339(mk.close_ts * 1000),
        "expected_expiration_time": rfc3339(mk.close_ts * 1000),
        "latest_expiration_time": rfc3339(mk.close_ts * 1000), "settlement_timer_seconds": 300,
        "yes_bid_dollars": f"{by or ZERO:.4f}", "yes_ask_dollars": f"{(ONE - bn) if bn is not None else ONE:.4f}",
        "no_bid_dollars": f"{bn or ZERO:.4f}", "no_ask_dollars": f"{(ONE - by) if by is not None else ONE:.4f}",
        "yes_bid_size_fp": f"{bys:.2f}", "yes_ask_size_fp": f"{bns:.2f}",
        "last_price_dollars": f"{mk.last_price or ZERO:.4f}", "previous_yes_bid_dollars": f"{by or ZERO:.4f}",
        "previous_yes_ask_dollars": f"{(ONE - bn) if bn is not None else ONE:.4f}",
        "previous_price_dollars": f"{mk.last_price or ZERO:.4f}",
        "volume_fp": f"{mk.volume:.2f}", "volume_24h_fp": f"{mk.volume:.2f}",
        "open_interest_fp": f"{mk.open_interest:.2f}", "notional_value_dollars": "1.0000",
        "result": mk.result,
        "settlement_value_dollars": f"{mk.settlement_value:.4f}" if mk.settlement_value is not None else None,
        "settlement_ts": rfc3339(mk.settled_ts * 1000) if mk.settled_ts else None,
        "can_close_early": mk.mve, "strike_type": mk.strike_type,
        "floor_strike": float(mk.floor_strike) if mk.floor_strike is not None else None,
        "rules_primary": "Simulated market.", "rules_secondary": "",
        "price_level_structure": mk.structure,
        "price_ranges": [{"start": f"{a:.4f}", "end": f"{b:.4f}", "step": f"{c:.4f}"} for a, b, c in mk.ranges],
        "exchange_index": mk.exchange_index,
        "mve_collection_ticker": "KXMVESIMCOMBO-R" if mk.mve else None,
        "is_provisional": False, "series_ticker": ev.series_ticker if ev else None,
    }


def status_filter_matches(mk: Market, status: str) -> bool:
    return {
        "unopened": mk.status == "initialized",
        "open": mk.status == "active",
        "paused": mk.status == "inactive",
        "closed": mk.status == "closed",
        "settled": mk.status in ("determined", "finalized"),
    }[status]


_numbers = msgspec.json.Encoder(decimal_format="number")


def encode_numbers(frame: Any) -> bytes:
    """The frame with decimals as JSON numbers instead of strings (a fault variant)."""
    return _numbers.encode(frame)
