"""OrderBook / BookSet: book math in both price conventions, checks, and a long random history compared with an
independently maintained dict."""

from __future__ import annotations

import random
from decimal import Decimal as D

import pytest

from kalshi_ws import messages
from kalshi_ws.orderbook import BookSet, OrderBook, key_price, price_key

# Spec 10.3 (T0.3): best YES bid 0.41 (200), best YES ask 1 - 0.57 = 0.43 (75.25).
YES = [(D("0.3800"), D("1250.00")), (D("0.3900"), D("640.00")), (D("0.4000"), D("315.50")), (D("0.4100"), D("200.00"))]
NO = [(D("0.5400"), D("900.00")), (D("0.5500"), D("410.00")), (D("0.5600"), D("150.00")), (D("0.5700"), D("75.25"))]


def as_yes_prices(levels: list[tuple[D, D]]) -> list[tuple[D, D]]:
    return [(1 - price, size) for price, size in levels]


@pytest.fixture(params=[False, True], ids=["no-leg-prices", "use_yes_price"])
def book(request: pytest.FixtureRequest) -> OrderBook:
    use_yes_price: bool = request.param
    book = OrderBook("KXCPI-26NOV-T0.3", use_yes_price=use_yes_price)
    assert book.apply_snapshot(YES, as_yes_prices(NO) if use_yes_price else NO) == []
    return book


def no_price(book: OrderBook, no_leg: str) -> D:
    """A NO level's price as the wire gives it in the book's convention."""
    return 1 - D(no_leg) if book._yes_priced else D(no_leg)


def test_snapshot_metrics(book: OrderBook) -> None:
    assert book.best_yes_bid == D("0.41")
    assert book.best_no_bid == D("0.57")
    assert book.best_yes_ask == D("0.43")
    assert book.best_no_ask == D("0.59")
    assert book.spread == D("0.02")
    assert book.mid == D("0.42")
    ladders = book.levels()
    assert ladders.yes == sorted(YES, reverse=True)
    assert ladders.no == sorted(NO, reverse=True)
    assert [str(p) for p, _ in ladders.yes] == ["0.4100", "0.4000", "0.3900", "0.3800"]
    assert book.yes_asks()[0] == (D("0.43"), D("75.25"))
    assert book.size("no", D("0.57")) == D("75.25")
    assert book.check() == []


def test_depth_and_imbalance(book: OrderBook) -> None:
    assert book.depth_top(1) == (D("200.00"), D("75.25"))
    assert book.depth_top(2) == (D("515.50"), D("225.25"))
    assert book.depth_top(10) == (sum(s for _, s in YES), sum(s for _, s in NO))
    assert book.depth_within(0) == (D("200.00"), D("75.25"))
    assert book.depth_within(1) == (D("515.50"), D("225.25"))
    assert book.depth_within(D("1.5")) == (D("515.50"), D("225.25"))
    assert book.depth_within(2) == (D("1155.50"), D("635.25"))
    assert book.imbalance() == (D("200") - D("75.25")) / (D("200") + D("75.25"))
    assert OrderBook("EMPTY").imbalance() is None


def test_delta_is_a_signed_change_and_removes_at_zero(book: OrderBook) -> None:
    # Spec 10.5: a cancel removes the 0.41 YES level.
    assert book.apply_delta("yes", D("0.4100"), D("-200.00")) is None
    assert book.best_yes_bid == D("0.40")
    assert book.size("yes", D("0.41")) == 0
    # Spec 10.6: the taker lifts the NO bid at 0.57.
    assert book.apply_delta("no", no_price(book, "0.5700"), D("-75.25")) is None
    assert book.best_yes_ask == D("0.44")
    # Spec 10.8: a new NO bid of 100 at 0.56 adds to the level.
    assert book.apply_delta("no", no_price(book, "0.5600"), D("100.00")) is None
    assert book.size("no", D("0.56")) == D("250.00")
    assert book.spread == D("0.04")


def test_fractional_sizes_accumulate_exactly(book: OrderBook) -> None:
    for _ in range(3):
        book.apply_delta("yes", D("0.3900"), D("0.01"))
    book.apply_delta("yes", D("0.3900"), D("-640.02"))
    assert book.size("yes", D("0.39")) == D("0.01")
    book.apply_delta("yes", D("0.3900"), D("-0.01"))
    assert D("0.39") not in dict(book.levels().yes)


def test_price_normalisation(book: OrderBook) -> None:
    book.apply_delta("yes", D("0.39"), D("10"))
    assert book.size("yes", D("0.3900")) == D("650.00")
    assert len(book.levels().yes) == 4


def test_sub_penny_levels(book: OrderBook) -> None:
    book.apply_delta("yes", D("0.4105"), D("3.50"))
    assert book.best_yes_bid == D("0.4105")
    assert str(book.best_yes_bid) == "0.4105"
    book.apply_delta("no", no_price(book, "0.5701"), D("1"))
    assert book.best_yes_ask == D("0.4299")
    assert book.spread == D("0.0194")


def test_crossed_book_is_reported_once_per_crossing(book: OrderBook) -> None:
    problem = book.apply_delta("yes", D("0.4300"), D("5"))  # bid == ask 0.43: crossed (locked)
    assert problem is not None and problem[0] == "crossed"
    assert book.apply_delta("yes", D("0.4400"), D("5")) is None  # still crossed: not repeated
    assert [k for k, _ in book.check()] == ["crossed"]
    book.apply_delta("yes", D("0.4400"), D("-5"))
    book.apply_delta("yes", D("0.4300"), D("-5"))
    assert not book.crossed and book.check() == []
    problem = book.apply_delta("no", no_price(book, "0.5900"), D("1"))  # NO bid 0.59 = YES ask 0.41 = bid
    assert problem is not None and problem[0] == "crossed"


def test_negative_size_and_out_of_range(book: OrderBook) -> None:
    problem = book.apply_delta("yes", D("0.4100"), D("-250"))
    assert problem is not None and problem[0] == "negative_size"
    assert book.size("yes", D("0.41")) == 0
    problem = book.apply_delta("yes", D("0.2000"), D("-1"))  # removing from a level that does not exist
    assert problem is not None and problem[0] == "negative_size"
    assert book.apply_delta("yes", D("0.2000"), D("0")) is None  # a zero delta on nothing is harmless
    for price in (D("1.5"), D("-0.01"), D("0.41000001")):
        problem = book.apply_delta("yes", price, D("1"))
        assert problem is not None and problem[0] == "price_out_of_range", price
        problem = book.apply_delta("no", price, D("1"))
        assert problem is not None and problem[0] == "price_out_of_range", price
    assert book.check() == []


def test_snapshot_problems_and_replacement() -> None:
    book = OrderBook("X")
    problems = book.apply_snapshot([(D("1.2"), D("1")), (D("0.3"), D("-1")), (D("0.2"), D("0")), (D("0.25"), D("2"))],
                                   [(D("0.8"), D("5"))])
    assert sorted(k for k, _ in problems) == ["crossed", "negative_size", "price_out_of_range"]
    assert book.levels().yes == [(D("0.25"), D("2"))]
    assert book.apply_snapshot([(D("0.1"), D("1"))], []) == []
    assert book.levels() == ([(D("0.1"), D("1"))], [])
    assert book.best_no_bid is None and book.best_yes_ask is None and book.spread is None and book.mid is None


def test_price_keys() -> None:
    assert price_key(D("0.43")) == price_key(D("0.4300")) == 430000
    assert price_key(D("0.0001")) == 100
    assert price_key(D("0.00000001")) == -1
    assert key_price(430000) == D("0.43") and str(key_price(430000)) == "0.4300"
    assert str(key_price(1)) == "0.000001"


def test_bookset_trust() -> None:
    books = BookSet(use_yes_price=True)
    a = books.book("A")
    assert books.book("A") is a and "A" in books and len(books) == 1 and list(books) == ["A"]
    assert a._yes_priced
    assert not books.is_trusted("A") and books.trusted_markets() == []
    a.trusted = True
    books.book("B").trusted = True
    assert books.trusted_markets() == ["A", "B"]
    books.mark_untrusted(["A", "unknown"])
    assert books.trusted_markets() == ["B"]
    books.mark_untrusted()
    assert books.trusted_markets() == []
    books.discard("A")
    assert books.get("A") is None and books["B"].market == "B"


# ---------------------------------------------------------------------------------------------------------------
# Property-style: a long random history, applied through real frames, against an independent model.


def _random_history(rng: random.Random, steps: int, use_yes_price: bool) -> list[bytes]:
    """Frames of one market: a snapshot, then deltas (and an occasional fresh snapshot)."""
    grid = [D(i) / 10000 for i in range(1, 10000, 37)] + [D("0.4105"), D("0.0001"), D("0.9999")]
    model: dict[str, dict[D, D]] = {"yes": {}, "no": {}}
    frames: list[bytes] = []
    seq = 0

    def wire(side: str, price: D) -> D:
        return 1 - price if side == "no" and use_yes_price else price

    def snapshot() -> bytes:
        nonlocal seq
        seq += 1
        payload = messages.OrderbookSnapshotPayload(
            market_ticker="KXBTCD-25AUG0517-T114999.99",
            yes_dollars_fp=[(wire("yes", p), s) for p, s in model["yes"].items()],
            no_dollars_fp=[(wire("no", p), s) for p, s in model["no"].items()])
        return messages.encode(messages.OrderbookSnapshot(sid=1, seq=seq, msg=payload))

    for _ in range(rng.randrange(0, 20)):
        model[rng.choice(("yes", "no"))][rng.choice(grid)] = D(rng.randrange(1, 100000)) / 100
    frames.append(snapshot())
    for _ in range(steps):
        side = rng.choice(("yes", "no"))
        ladder = model[side]
        if ladder and rng.random() < 0.6:
            price = rng.choice(list(ladder))
            roll = rng.random()
            if roll < 0.3:
                delta = -ladder[price]  # exact cancel
            elif roll < 0.4:
                delta = -ladder[price] - D(rng.randrange(1, 500)) / 100  # overshoot: removed too
            else:
                delta = D(rng.randrange(-5000, 5000)) / 100
        else:
            price = rng.choice(grid)
            delta = D(rng.randrange(1, 100000)) / 100
        new = ladder.get(price, D(0)) + delta
        if new > 0:
            ladder[price] = new
        else:
            ladder.pop(price, None)
        seq += 1
        frames.append(messages.encode(messages.OrderbookDelta(sid=1, seq=seq, msg=messages.OrderbookDeltaPayload(
            market_ticker="KXBTCD-25AUG0517-T114999.99", price_dollars=wire(side, price), delta_fp=delta,
            side=side))))  # type: ignore[arg-type]
        if rng.random() < 0.002:
            frames.append(snapshot())
    frames.append(snapshot())  # the final state, as the model sees it
    return frames


@pytest.mark.parametrize("use_yes_price", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_random_history_matches_an_independent_model(seed: int, use_yes_price: bool) -> None:
    rng = random.Random(seed * 7919 + use_yes_price)
    frames = _random_history(rng, 20000, use_yes_price)
    book = OrderBook("KXBTCD-25AUG0517-T114999.99", use_yes_price=use_yes_price)
    expected = OrderBook("expected", use_yes_price=use_yes_price)
    last = messages.decode(frames[-1])
    assert isinstance(last, messages.OrderbookSnapshot)
    expected.apply_snapshot(last.msg.yes_dollars_fp, last.msg.no_dollars_fp)
    for frame in frames[:-1]:
        message = messages.decode(frame)
        if isinstance(message, messages.OrderbookSnapshot):
            book.apply_snapshot(message.msg.yes_dollars_fp, message.msg.no_dollars_fp)
        else:
            assert isinstance(message, messages.OrderbookDelta)
            book.apply_delta(message.msg.side, message.msg.price_dollars, message.msg.delta_fp)
        # The cached touch always equals the ladders' maxima.
        assert book.best_yes_key == (max(book.yes) if book.yes else None)
        assert book.best_no_key == (max(book.no) if book.no else None)
    assert book.levels() == expected.levels()
    assert (book.best_yes_bid, book.best_yes_ask, book.spread, book.mid) == (
        expected.best_yes_bid, expected.best_yes_ask, expected.spread, expected.mid)
    assert [k for k, _ in book.check() if k != "crossed"] == []
