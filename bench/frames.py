"""Deterministic, pre-encoded Kalshi frames for the benchmark (spec sections 4.1, 4.2, 4.4).

The generator keeps a real two-sided book per market (bids only, YES and NO ladders; prices as integer
1/10000 dollars, sizes as integer 1/100 contracts), so every
``orderbook_delta`` is consistent with the ``orderbook_snapshot`` sent first for its market: sizes never go
negative, a level reaching zero disappears, and the book is never crossed (YES bids stay below the mid,
NO bids stay below ``1 - mid``). Tickers quote that book (best bid/ask and their sizes); trades print at
the touch. Frames are built from bytes templates (about 2 µs each), not through ``msgspec``, so a paced
source can generate them on the fly; ``tests/bench`` decodes them with :func:`kalshi_ws.messages.decode`.

Sequencing (per sid, as Kalshi does): sid 1 ``orderbook_delta`` (snapshots then deltas, seq 1, 2, ...),
sid 2 ``ticker`` (no seq), sid 3 ``trade`` (seq 1, 2, ...). Exchange times advance 1 ms per frame from
``start_ms``; ``run`` changes the trade ids, so two runs into the same database never collide on a natural key
(as long as their exchange-time windows do not overlap, which ``bench.run`` ensures).
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

StreamKind = Literal["mixed", "trades"]

#: sid per channel (fixed, so frames can be pre-encoded before the client subscribes).
SIDS: Final[dict[str, int]] = {"orderbook_delta": 1, "ticker": 2, "trade": 3}
#: Channels each stream needs.
STREAM_CHANNELS: Final[dict[str, tuple[str, ...]]] = {
    "mixed": ("orderbook_delta", "ticker", "trade"),
    "trades": ("trade",),
}
#: Mix of the ``mixed`` stream after the snapshots: (delta, ticker, trade) cumulative thresholds.
MIX: Final = (0.70, 0.90)
_BASE_TS_MS: Final = 1_795_000_000_000
_RUN_SPAN_MS: Final = 10_000_000_000  # each run gets its own ~115-day window of exchange time


def _price(p: int) -> bytes:
    """1/10000 dollars -> exactly 4 decimals (``4300`` -> ``0.4300``)."""
    return b"%d.%04d" % divmod(p, 10_000)


def _count(c: int) -> bytes:
    """1/100 contracts -> exactly 2 decimals, signed (``-1250`` -> ``-12.50``)."""
    if c < 0:
        return b"-%d.%02d" % divmod(-c, 100)
    return b"%d.%02d" % divmod(c, 100)


_PRICES: Final = [_price(p) for p in range(10_001)]


def market_tickers(n: int) -> list[str]:
    """``n`` realistic tickers (some with a dot, as real strike tickers have)."""
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(f"KXBTCD-26NOV2517-T{100_000 + 250 * i}.99")
        elif i % 3 == 1:
            out.append(f"KXHIGHNY-26NOV25-B{40 + i // 3}.5")
        else:
            out.append(f"KXBENCH-26NOV25-M{i:04d}")
    return out


def market_id(i: int) -> str:
    return f"{0xBE7C0000 + i:08x}-0000-4000-8000-{i:012x}"


@dataclass
class _Book:
    ticker: bytes
    mid: int  # cents
    yes: dict[int, int] = field(default_factory=dict)  # price (1/10000) -> size (1/100)
    no: dict[int, int] = field(default_factory=dict)
    volume: int = 0
    open_interest: int = 0
    last_price: int = 0
    last_size: int = 0
    market_id: bytes = b""


_SNAPSHOT: Final = (b'{"type":"orderbook_snapshot","sid":%d,"seq":%d,"msg":{"market_ticker":"%s",'
                    b'"market_id":"%s","yes_dollars_fp":[%s],"no_dollars_fp":[%s]}}')
_DELTA: Final = (b'{"type":"orderbook_delta","sid":%d,"seq":%d,"msg":{"market_ticker":"%s","market_id":"%s",'
                 b'"price_dollars":"%s","delta_fp":"%s","side":"%s","ts_ms":%d}}')
_TICKER: Final = (b'{"type":"ticker","sid":%d,"msg":{"market_ticker":"%s","market_id":"%s",'
                  b'"price_dollars":"%s","yes_bid_dollars":"%s","yes_ask_dollars":"%s","volume_fp":"%s",'
                  b'"open_interest_fp":"%s","dollar_volume":%d,"dollar_open_interest":%d,'
                  b'"yes_bid_size_fp":"%s","yes_ask_size_fp":"%s","last_trade_size_fp":"%s",'
                  b'"ts_ms":%d,"ts":%d,"time":"%s"}}')
_TRADE: Final = (b'{"type":"trade","sid":%d,"seq":%d,"msg":{"trade_id":"%s","market_ticker":"%s",'
                 b'"yes_price_dollars":"%s","no_price_dollars":"%s","count_fp":"%s",'
                 b'"taker_outcome_side":"%s","taker_book_side":"%s","taker_side":"%s",'
                 b'"is_block_trade":false,"ts_ms":%d,"ts":%d}}')


@dataclass
class StreamSpec:
    """What to generate. Same spec -> same bytes."""

    kind: StreamKind = "mixed"
    markets: int = 300
    seed: int = 20261125
    run: int = 0
    #: Exchange time (ms) of the first frame; 0 = a fixed base shifted by ``run``. The orchestrator passes
    #: "now", so rows land in the daily partitions a live session would use.
    start_ms: int = 0

    @property
    def channels(self) -> tuple[str, ...]:
        return STREAM_CHANNELS[self.kind]

    @property
    def tickers(self) -> list[str]:
        return market_tickers(self.markets)


class FrameGenerator:
    """An endless, deterministic stream of Kalshi frames (``bytes`` payloads of text frames).

    ``counts`` tracks what was produced (per message type), ``seq`` the last seq per sid, and
    ``last_trade_id`` the newest trade id, so a consumer can tell when everything has been stored.
    """

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self._rng = random.Random(f"{spec.seed}/{spec.kind}/{spec.markets}")
        self._ts = spec.start_ms or _BASE_TS_MS + spec.run * _RUN_SPAN_MS
        self._trade_no = 0
        self.counts: dict[str, int] = {"orderbook_snapshot": 0, "orderbook_delta": 0, "ticker": 0, "trade": 0}
        self.seq: dict[int, int] = {sid: 0 for sid in SIDS.values()}
        self.last_trade_id: str | None = None
        self.books: list[_Book] = []
        for i, ticker in enumerate(spec.tickers):
            book = _Book(ticker.encode(), mid=self._rng.randint(20, 80), market_id=market_id(i).encode())
            if spec.kind == "mixed":
                for _ in range(self._rng.randint(6, 12)):
                    book.yes[self._yes_price(book)] = self._rng.randint(100, 50_000)
                    book.no[self._no_price(book)] = self._rng.randint(100, 50_000)
            book.volume = self._rng.randint(0, 10_000_000)
            book.open_interest = self._rng.randint(0, 5_000_000)
            self.books.append(book)
        self._pending_snapshots = list(range(len(self.books))) if spec.kind == "mixed" else []
        self._pending_snapshots.reverse()
        self.produced = 0

    # -- book helpers -------------------------------------------------------------------------------
    def _yes_price(self, book: _Book) -> int:
        """A YES bid strictly below the mid (in 1/10000; cents, with a half-cent now and then)."""
        cents = book.mid - self._rng.randint(1, 15)
        half = 50 if self._rng.random() < 0.1 else 0
        return max(100, cents * 100 - half)

    def _no_price(self, book: _Book) -> int:
        """A NO bid (no-leg price) strictly below ``1 - mid``, so YES ask = 1 - no > mid: never crossed."""
        cents = (100 - book.mid) - self._rng.randint(1, 15)
        half = 50 if self._rng.random() < 0.1 else 0
        return max(100, cents * 100 - half)

    def _next_ts(self) -> int:
        self._ts += 1  # strictly increasing: every ticker frame is distinct (content-derived keys)
        return self._ts

    # -- frames -------------------------------------------------------------------------------------
    def _snapshot(self, i: int) -> bytes:
        book = self.books[i]
        self.seq[1] += 1
        self.counts["orderbook_snapshot"] += 1
        yes = b",".join(b'["%s","%s"]' % (_PRICES[p], _count(s)) for p, s in sorted(book.yes.items()))
        no = b",".join(b'["%s","%s"]' % (_PRICES[p], _count(s)) for p, s in sorted(book.no.items()))
        return _SNAPSHOT % (1, self.seq[1], book.ticker, book.market_id, yes, no)

    def _delta(self) -> bytes:
        rng = self._rng
        book = self.books[rng.randrange(len(self.books))]
        side_is_yes = rng.random() < 0.5
        levels = book.yes if side_is_yes else book.no
        if levels and rng.random() < 0.6:
            price = rng.choice(list(levels))
            size = levels[price]
            if rng.random() < 0.55:
                # Take size away; the whole level only if another one remains (keeps a two-sided book).
                if len(levels) > 1 and rng.random() < 0.25:
                    delta = -size
                else:
                    delta = -rng.randint(1, max(1, size - 1)) if size > 1 else 1
            else:
                delta = rng.randint(1, 20_000)
        else:
            price = self._yes_price(book) if side_is_yes else self._no_price(book)
            delta = rng.randint(1, 20_000)
        new = levels.get(price, 0) + delta
        if new <= 0:
            levels.pop(price, None)
        else:
            levels[price] = new
        self.seq[1] += 1
        self.counts["orderbook_delta"] += 1
        return _DELTA % (1, self.seq[1], book.ticker, book.market_id, _PRICES[price], _count(delta),
                         b"yes" if side_is_yes else b"no", self._next_ts())

    def _ticker(self) -> bytes:
        book = self.books[self._rng.randrange(len(self.books))]
        bid = max(book.yes) if book.yes else 0
        best_no = max(book.no) if book.no else 0
        ask = 10_000 - best_no if book.no else 10_000
        ts = self._next_ts()
        when = _dt.datetime.fromtimestamp(ts / 1000, _dt.UTC).isoformat(timespec="microseconds")
        self.counts["ticker"] += 1
        return _TICKER % (
            2, book.ticker, book.market_id, _PRICES[book.last_price or bid], _PRICES[bid], _PRICES[ask],
            _count(book.volume), _count(book.open_interest), book.volume // 200, book.open_interest // 200,
            _count(book.yes.get(bid, 0)), _count(book.no.get(best_no, 0)), _count(book.last_size),
            ts, ts // 1000, when.replace("+00:00", "Z").encode(),
        )

    def _trade(self) -> bytes:
        rng = self._rng
        book = self.books[rng.randrange(len(self.books))]
        taker_yes = rng.random() < 0.5
        if self.spec.kind == "mixed":
            if taker_yes:  # buys YES at the ask
                yes_price = 10_000 - max(book.no) if book.no else book.mid * 100
            else:  # sells YES at the bid
                yes_price = max(book.yes) if book.yes else book.mid * 100
        else:
            yes_price = book.mid * 100 + rng.randint(-5, 5) * 100
        count = rng.randint(1, 50_000)
        book.volume += count
        book.last_price, book.last_size = yes_price, count
        ts = self._next_ts()
        self._trade_no += 1
        trade_id = b"%08x-%04x-4000-8000-%012x" % (self.spec.seed & 0xFFFFFFFF, self.spec.run & 0xFFFF,
                                                  self._trade_no)
        self.last_trade_id = trade_id.decode()
        self.seq[3] += 1
        self.counts["trade"] += 1
        side = b"yes" if taker_yes else b"no"
        return _TRADE % (3, self.seq[3], trade_id, book.ticker, _PRICES[yes_price], _PRICES[10_000 - yes_price],
                         _count(count), side, b"bid" if taker_yes else b"ask", side, ts, ts // 1000)

    def next_frame(self) -> bytes:
        self.produced += 1
        if self._pending_snapshots:
            return self._snapshot(self._pending_snapshots.pop())
        if self.spec.kind == "trades":
            return self._trade()
        r = self._rng.random()
        if r < MIX[0]:
            return self._delta()
        if r < MIX[1]:
            return self._ticker()
        return self._trade()

    def take(self, n: int) -> list[bytes]:
        return [self.next_frame() for _ in range(n)]

    def take_ending_with_trade(self, n: int) -> list[bytes]:
        """``n`` frames whose last one is a trade (its id marks "everything is stored")."""
        frames = self.take(n - 1)
        frames.append(self._trade_counted())
        return frames

    def _trade_counted(self) -> bytes:
        self.produced += 1
        return self._trade()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield self.next_frame()


# ---------------------------------------------------------------------------------------------------
# WebSocket framing (RFC 6455): server frames are unmasked.


def ws_text_frame(payload: bytes, compressed: bool = False) -> bytes:
    """One unfragmented text frame; ``compressed`` sets RSV1 (a permessage-deflate message)."""
    n = len(payload)
    b0 = b"\xc1" if compressed else b"\x81"
    if n < 126:
        return b0 + bytes((n,)) + payload
    if n < 65_536:
        return b0 + b"\x7e" + n.to_bytes(2, "big") + payload
    return b0 + b"\x7f" + n.to_bytes(8, "big") + payload


class DeflateFramer:
    """permessage-deflate (RFC 7692) for server frames, with context takeover (the default both ends agree on
    when the server answers a plain ``permessage-deflate``): one compressor for the whole connection, so frames
    must be sent in the order they were framed."""

    def __init__(self, level: int = 6) -> None:
        import zlib

        self._c = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._flush = zlib.Z_SYNC_FLUSH

    def __call__(self, payload: bytes) -> bytes:
        data = self._c.compress(payload) + self._c.flush(self._flush)
        return ws_text_frame(data[:-4], compressed=True)  # minus the 00 00 ff ff tail (RFC 7692 7.2.1)


def ws_chunks(payloads: list[bytes], chunk_bytes: int = 1 << 20,
              framer: Callable[[bytes], bytes] = ws_text_frame) -> list[bytes]:
    """Pre-framed payloads joined into ~``chunk_bytes`` writes."""
    chunks: list[bytes] = []
    part: list[bytes] = []
    size = 0
    for p in payloads:
        f = framer(p)
        part.append(f)
        size += len(f)
        if size >= chunk_bytes:
            chunks.append(b"".join(part))
            part, size = [], 0
    if part:
        chunks.append(b"".join(part))
    return chunks
