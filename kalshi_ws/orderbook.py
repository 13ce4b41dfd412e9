"""Local order books built from ``orderbook_snapshot`` + ``orderbook_delta`` (spec section 4.1).

Kalshi's book is **bids only** on both sides: the YES ladder holds bids to buy YES, the NO ladder bids to
buy NO. A NO bid at ``q`` is economically a YES ask at ``1 - q``. Both ladders are kept here in their own
leg's prices (the NO ladder in no-leg prices), whatever the wire convention: with ``use_yes_price`` the
server reports NO levels in yes prices and :class:`OrderBook` converts them on the way in
(``no_price = 1 - yes_price``), so metrics never depend on the subscription flag.

Sizes are exact :class:`~decimal.Decimal` (fractional contracts exist on every market); a delta is a
**signed change** of the resting size and a level disappears when its size reaches zero or below.

:meth:`OrderBook.apply_delta` is on the hot path of the whole product, so it does the dict update, keeps
the best bid of each side up to date and runs the cheap checks only when something unusual happens (a new
price level, a level emptied, the touch moved). It returns ``None`` normally and a ``(kind, detail)``
problem when a check fails; the kinds are those of :class:`kalshi_ws.events.BookInconsistency`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Final, Literal, NamedTuple

__all__ = ["BookSet", "Depth", "Ladders", "OrderBook", "Problem"]

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_CENT: Final = Decimal("0.01")

#: Book keys are prices in micro-dollars (``int``). Hashing a fresh ``Decimal`` costs about 0.5 µs, more
#: than everything else a delta does, so prices are mapped to exact integer keys through a cache indexed
#: by their text. Kalshi prices have at most 4 decimals; finer than 1e-6 is rejected as off the grid.
SCALE: Final = 1_000_000
_SCALE_DEC: Final = Decimal(SCALE)
_OFF_GRID: Final = -1
_KEY_CACHE_LIMIT: Final = 200_000
_keys: dict[str, int] = {}
_text = Decimal.to_eng_string


def price_key(price: Decimal) -> int:
    """The exact integer key (micro-dollars) of a price; :data:`_OFF_GRID` (-1) if it is finer than 1e-6."""
    text = _text(price)
    key = _keys.get(text)
    if key is None:
        scaled = price * _SCALE_DEC
        key = int(scaled) if scaled == scaled.to_integral_value() else _OFF_GRID
        if len(_keys) >= _KEY_CACHE_LIMIT:
            _keys.clear()
        _keys[text] = key
    return key


def key_price(key: int) -> Decimal:
    """The price of a key, with Kalshi's 4 decimals when exact (``390000`` -> ``Decimal("0.3900")``)."""
    if key % 100 == 0:
        return Decimal(key // 100).scaleb(-4)
    return Decimal(key).scaleb(-6)


ProblemKind = Literal["crossed", "negative_size", "price_out_of_range"]
Problem = tuple[ProblemKind, str]
"""``(kind, detail)``: what a check found, ready for a :class:`~kalshi_ws.events.BookInconsistency`."""


class Ladders(NamedTuple):
    """Both bid ladders, best (highest) price first; the NO ladder in no-leg prices."""

    yes: list[tuple[Decimal, Decimal]]
    no: list[tuple[Decimal, Decimal]]


class Depth(NamedTuple):
    """Resting contracts on each side (YES bids, NO bids)."""

    yes: Decimal
    no: Decimal


class OrderBook:
    """The book of one market.

    ``use_yes_price`` says how the *wire* prices NO levels (it must match the subscription's flag);
    storage is always in leg prices. ``trusted`` is managed by the session: a book is trusted from its
    snapshot until a gap, a disconnect or a failed subscription makes it doubtful.
    """

    __slots__ = ("_yes_priced", "best_no_key", "best_yes_key", "crossed", "generation", "market", "no",
                 "trusted", "yes")

    def __init__(self, market: str, *, use_yes_price: bool = False) -> None:
        self.market = market
        self._yes_priced = use_yes_price
        #: YES bids: price key (micro-dollars) -> size.
        self.yes: dict[int, Decimal] = {}
        #: NO bids in no-leg prices: price key (micro-dollars) -> size.
        self.no: dict[int, Decimal] = {}
        self.best_yes_key: int | None = None
        self.best_no_key: int | None = None
        #: The book was crossed at the last touch change (reported once per crossing, not per delta).
        self.crossed = False
        self.trusted = False
        #: Connection generation of the last snapshot applied (0: never).
        self.generation = 0

    # ------------------------------------------------------------------------------------------ updates

    def apply_snapshot(self, yes: Iterable[Sequence[Decimal]], no: Iterable[Sequence[Decimal]]) -> list[Problem]:
        """Replace the whole book (a missing array on the wire means an empty side)."""
        problems: list[Problem] = []
        self.yes = self._ladder("yes", yes, problems)
        self.no = self._ladder("no", no, problems)
        self.best_yes_key = max(self.yes) if self.yes else None
        self.best_no_key = max(self.no) if self.no else None
        self.crossed = False
        crossed = self._touch_changed()
        if crossed is not None:
            problems.append(crossed)
        return problems

    def _ladder(self, side: str, levels: Iterable[Sequence[Decimal]], problems: list[Problem]) -> dict[int, Decimal]:
        ladder: dict[int, Decimal] = {}
        convert = side == "no" and self._yes_priced
        for price, size in levels:
            key = price_key(price)
            if not 0 <= key <= SCALE:
                problems.append(("price_out_of_range", f"snapshot {side} level at {price} is outside [0, 1] "
                                 "or off the price grid; ignored"))
                continue
            if convert:
                key = SCALE - key
            if size < _ZERO:
                problems.append(("negative_size", f"snapshot {side} level at {price} has size {size}; ignored"))
                continue
            if size > _ZERO:
                # Levels are aggregated on the wire; a repeated price is added rather than lost.
                ladder[key] = ladder.get(key, _ZERO) + size
        return ladder

    def apply_delta(self, side: str, price: Decimal, delta: Decimal) -> Problem | None:
        """Apply one signed size change; ``None`` when nothing is wrong."""
        key = _keys.get(_text(price))
        if key is None:
            key = price_key(price)
        if side == "yes":
            ladder = self.yes
            best = self.best_yes_key
        else:
            if self._yes_priced:
                key = SCALE - key
            ladder = self.no
            best = self.best_no_key
        old = ladder.get(key)
        if old is None:
            if not 0 <= key <= SCALE:  # off-grid keys (-1) land outside too, in both conventions
                return ("price_out_of_range", f"{side} delta at {price} is outside [0, 1] or off the price grid; "
                        "ignored")
            size = delta
        else:
            size = old + delta
        if size > _ZERO:
            ladder[key] = size
            if best is None or key > best:
                if side == "yes":
                    self.best_yes_key = key
                else:
                    self.best_no_key = key
                return self._touch_changed()
            return None
        if old is not None:
            del ladder[key]
        if key == best:
            if side == "yes":
                self.best_yes_key = max(ladder) if ladder else None
            else:
                self.best_no_key = max(ladder) if ladder else None
            self.crossed = False  # a best bid moved down: the book cannot have become crossed
        if size < _ZERO:
            return ("negative_size",
                    f"{side} level at {price} went to {size} (was {old if old is not None else 0}, "
                    f"delta {delta}); the level was removed")
        return None

    def _touch_changed(self) -> Problem | None:
        """Crossed-book check, run only when a best bid moved up."""
        by = self.best_yes_key
        bn = self.best_no_key
        if by is not None and bn is not None and by + bn >= SCALE:
            if self.crossed:
                return None
            self.crossed = True
            return ("crossed", f"best YES bid {key_price(by)} >= best YES ask {key_price(SCALE - bn)} "
                    f"(best NO bid {key_price(bn)})")
        self.crossed = False
        return None

    def clear(self) -> None:
        self.yes = {}
        self.no = {}
        self.best_yes_key = self.best_no_key = None
        self.crossed = False

    # ------------------------------------------------------------------------------------------ metrics

    def size(self, side: str, price: Decimal) -> Decimal:
        """Resting size at a price (``side`` ``"no"`` in no-leg prices); zero when there is no level."""
        ladder = self.yes if side == "yes" else self.no
        return ladder.get(price_key(price), _ZERO)

    @property
    def best_yes_bid(self) -> Decimal | None:
        return None if self.best_yes_key is None else key_price(self.best_yes_key)

    @property
    def best_no_bid(self) -> Decimal | None:
        return None if self.best_no_key is None else key_price(self.best_no_key)

    @property
    def best_yes_ask(self) -> Decimal | None:
        """``1 - best NO bid``: buying YES means selling to the best NO bidder."""
        return None if self.best_no_key is None else key_price(SCALE - self.best_no_key)

    @property
    def best_no_ask(self) -> Decimal | None:
        return None if self.best_yes_key is None else key_price(SCALE - self.best_yes_key)

    @property
    def spread(self) -> Decimal | None:
        """YES ask - YES bid (``None`` when a side is empty; negative when crossed)."""
        if self.best_yes_key is None or self.best_no_key is None:
            return None
        return key_price(SCALE - self.best_no_key - self.best_yes_key)

    @property
    def mid(self) -> Decimal | None:
        """Mid YES price (``None`` when a side is empty)."""
        if self.best_yes_key is None or self.best_no_key is None:
            return None
        return (key_price(self.best_yes_key) + key_price(SCALE - self.best_no_key)) / 2

    def levels(self) -> Ladders:
        """Both ladders, best first (NO in no-leg prices)."""
        return Ladders([(key_price(k), s) for k, s in sorted(self.yes.items(), reverse=True)],
                       [(key_price(k), s) for k, s in sorted(self.no.items(), reverse=True)])

    def yes_asks(self) -> list[tuple[Decimal, Decimal]]:
        """The NO ladder seen as YES asks (``1 - no_price``), best (lowest) first."""
        return [(key_price(SCALE - k), s) for k, s in sorted(self.no.items(), reverse=True)]

    def depth_within(self, cents: int | Decimal) -> Depth:
        """Contracts resting within ``cents`` of each side's best bid (the touch included)."""
        window = price_key(Decimal(cents) * _CENT)

        def side(ladder: dict[int, Decimal], best: int | None) -> Decimal:
            if best is None:
                return _ZERO
            return sum((s for k, s in ladder.items() if k >= best - window), _ZERO)

        return Depth(side(self.yes, self.best_yes_key), side(self.no, self.best_no_key))

    def depth_top(self, levels: int) -> Depth:
        """Contracts resting in the best ``levels`` price levels of each side."""
        yes = sorted(self.yes.items(), reverse=True)[:levels]
        no = sorted(self.no.items(), reverse=True)[:levels]
        return Depth(sum((s for _, s in yes), _ZERO), sum((s for _, s in no), _ZERO))

    def imbalance(self, levels: int = 1) -> Decimal | None:
        """``(yes - no) / (yes + no)`` over the top ``levels``: +1 all YES bids, -1 all NO bids."""
        yes, no = self.depth_top(levels)
        total = yes + no
        return None if total == _ZERO else (yes - no) / total

    def check(self) -> list[Problem]:
        """Full consistency scan (all levels): what :meth:`apply_delta` checks incrementally, and more."""
        problems: list[Problem] = []
        for side, ladder in (("yes", self.yes), ("no", self.no)):
            for key, size in ladder.items():
                if not 0 <= key <= SCALE:
                    problems.append(("price_out_of_range", f"{side} level at {key_price(key)} is outside [0, 1]"))
                if size <= _ZERO:
                    problems.append(("negative_size", f"{side} level at {key_price(key)} has size {size}"))
        by = max(self.yes) if self.yes else None
        bn = max(self.no) if self.no else None
        if by is not None and bn is not None and by + bn >= SCALE:
            problems.append(("crossed", f"best YES bid {key_price(by)} >= best YES ask {key_price(SCALE - bn)}"))
        return problems

    def __repr__(self) -> str:
        return (f"OrderBook({self.market!r}, yes_bid={self.best_yes_bid}, yes_ask={self.best_yes_ask}, "
                f"levels={len(self.yes)}/{len(self.no)}, trusted={self.trusted})")


class BookSet:
    """The books of every market of a session, each with its ``trusted`` flag."""

    def __init__(self, *, use_yes_price: bool = False) -> None:
        self.use_yes_price = use_yes_price
        self._books: dict[str, OrderBook] = {}

    def book(self, market: str) -> OrderBook:
        """The book of ``market``, created empty and untrusted if it does not exist."""
        book = self._books.get(market)
        if book is None:
            book = self._books[market] = OrderBook(market, use_yes_price=self.use_yes_price)
        return book

    def get(self, market: str) -> OrderBook | None:
        return self._books.get(market)

    def __getitem__(self, market: str) -> OrderBook:
        return self._books[market]

    def __contains__(self, market: object) -> bool:
        return market in self._books

    def __iter__(self) -> Iterator[str]:
        return iter(self._books)

    def __len__(self) -> int:
        return len(self._books)

    def is_trusted(self, market: str) -> bool:
        book = self._books.get(market)
        return book is not None and book.trusted

    def trusted_markets(self) -> list[str]:
        return [market for market, book in self._books.items() if book.trusted]

    def mark_untrusted(self, markets: Iterable[str] | None = None) -> None:
        """Distrust some markets (all when ``markets`` is ``None``) until their next snapshot."""
        if markets is None:
            for book in self._books.values():
                book.trusted = False
            return
        for market in markets:
            known = self._books.get(market)
            if known is not None:
                known.trusted = False

    def discard(self, market: str) -> None:
        self._books.pop(market, None)
