"""Which markets a session records, kept current while it runs.

A market set names markets by ``tickers``, ``series`` and ``events``. At the start of a session they are resolved
through REST to the markets open now (possibly none: the session then records the lifecycle channel and waits).
While the session runs, :class:`MarketFollower` keeps the subscriptions current:

* a ``market_lifecycle_v2`` ``created`` or ``activated`` message for a market of the set's series or events adds it
  to every market-filtered channel (``update_subscription`` ``add_markets``; the order book sends its snapshot
  first); ``deactivated``, ``determined`` and ``settled`` remove it (``delete_markets``);
* every ``discovery_seconds`` a REST poll of the set's open markets does the same, for messages that were missed
  (a reconnect) and for exchanges that do not announce markets.

It also writes the coverage record (``kalshi.coverage`` through :class:`~kalshi_store.continuity.SessionLink`): a
market is recorded from its first order book snapshot (from its subscription on sets without an order book) until
it is removed or the session ends. A market that opened during the session also has its opening time on record,
so the time between its opening and its snapshot counts as uncovered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from kalshi_ingest.config import MarketSet
from kalshi_store.continuity import CoverageChange, EndReason, SessionLink
from kalshi_ws import messages
from kalshi_ws.protocol import UNFILTERED_CHANNELS, Subscription

log = logging.getLogger(__name__)

BOOK_CHANNEL = "orderbook_delta"
LIFECYCLE_CHANNEL = "market_lifecycle_v2"
#: Lifecycle kinds that open a market, and those that end its trading.
OPENING = frozenset({"created", "activated"})
CLOSING = {"deactivated": "inactive", "determined": "inactive", "settled": "inactive"}


class _Client(Protocol):
    def update_markets(self, channel: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None: ...


def follows(market_set: MarketSet) -> bool:
    """A set named by series or events changes while it is recorded; explicit tickers do not."""
    return bool(market_set.series or market_set.events)


def channels_for(market_set: MarketSet) -> list[str]:
    """The set's channels, plus the lifecycle channel when the set is followed live (it announces new markets)."""
    channels = list(market_set.channels)
    if follows(market_set) and LIFECYCLE_CHANNEL not in channels:
        channels.append(LIFECYCLE_CHANNEL)
    return channels


def storable(ticker: str) -> bool:
    """A ticker PostgreSQL can store and the exchange could mean: no NUL or other control character."""
    return bool(ticker) and all(ch >= " " and ch != "\x7f" for ch in ticker)


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


def _at(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


class MarketFollower:
    """The live market list of one session (module docstring)."""

    def __init__(self, market_set: MarketSet, markets: Iterable[str], link: SessionLink | None) -> None:
        self.market_set = market_set
        self.link = link
        self.channels = channels_for(market_set)
        #: Channels with a market list (the others cover every market).
        self.filtered = [c for c in self.channels if c not in UNFILTERED_CHANNELS]
        self.has_book = BOOK_CHANNEL in self.channels
        #: The markets recorded now, in the order they were added (mutated in place: REST backfills read it).
        self.markets: list[str] = list(dict.fromkeys(markets))[: market_set.max_markets]
        #: Markets subscribed whose snapshot has not come yet -> when they opened (None: at session start).
        self.awaiting: dict[str, datetime | None] = {}
        self.added: list[str] = []
        self.removed: list[str] = []
        #: Markets recorded at some point in this session (the session's market list at its end).
        self.ever: dict[str, None] = dict.fromkeys(self.markets)
        self._client: _Client | None = None
        self._inactive: set[str] = set()
        #: Called with the earliest opening time of markets added live (REST backfills their trades since then).
        self.on_added: Callable[[datetime], None] | None = None

    # ------------------------------------------------------------------------------------------ set-up

    def subscriptions(self, *, explicit: bool) -> list[Subscription]:
        """One subscription per channel. ``explicit``: market lists are exact (possibly empty), so they can grow
        from nothing; otherwise an empty list is not allowed (a fixed set always has markets)."""
        return [Subscription(c) if c in UNFILTERED_CHANNELS
                else Subscription(c, tuple(self.markets), explicit=explicit) for c in self.channels]

    def start(self, client: _Client, at_ns: int) -> None:
        """The client is about to connect: the initial markets are awaited (or covered from now, without a book)."""
        self._client = client
        for market in self.markets:
            self._begin(market, at_ns, opened_at=None)

    @property
    def books_ready(self) -> bool:
        """Every market subscribed at the start has its order book snapshot (or there is no order book channel)."""
        return not any(opened is None for opened in self.awaiting.values())

    @property
    def recording(self) -> list[str]:
        """The markets recorded now (their book is in, or there is no order book channel)."""
        return [m for m in self.markets if m not in self.awaiting]

    # ------------------------------------------------------------------------------------------ messages

    def on_snapshot(self, market: str, received_ns: int) -> None:
        if market in self.awaiting:
            opened = self.awaiting.pop(market)
            self._note(CoverageChange(market, _at(received_ns), opened_at=opened))

    def on_lifecycle(self, payload: messages.MarketLifecyclePayload, received_ns: int) -> None:
        market = payload.market_ticker
        kind = payload.event_type
        if kind in OPENING:
            self._inactive.discard(market)
            if market not in self.markets and self._belongs(market, payload.additional_metadata):
                log.info("[%s] market %s %s: recording it", self.market_set.name, market, kind)
                self.add([market], opened_at=_at(received_ns))
        elif kind in CLOSING and market in self.markets:
            log.info("[%s] market %s %s: no longer recording it", self.market_set.name, market, kind)
            self._inactive.add(market)
            self.remove([market], reason="inactive", at_ns=received_ns)

    def reconcile(self, open_markets: Iterable[str], at_ns: int) -> None:
        """A REST poll's answer: the set's open markets now. Adds the missing ones and removes those that closed
        (explicit tickers stay: the user asked for them)."""
        found = list(dict.fromkeys(open_markets))
        missing = [m for m in found if m not in self.markets and m not in self._inactive]
        if missing:
            log.info("[%s] discovery found %d new market(s): %s", self.market_set.name, len(missing),
                     ", ".join(missing[:10]))
            self.add(missing, opened_at=None, at_ns=at_ns)
        still = set(found) | set(self.market_set.tickers)
        gone = [m for m in self.markets if m not in still]
        if gone:
            self.remove(gone, reason="removed", at_ns=at_ns)

    # ------------------------------------------------------------------------------------------ changes

    def add(self, markets: Iterable[str], *, opened_at: datetime | None, at_ns: int | None = None,
            inherited: bool = False) -> list[str]:
        """Record ``markets`` from now on. ``opened_at``: when they opened (None: unknown, then the time of this call
        stands for it, so the wait for the snapshot counts as uncovered); ``inherited``: a previous session records
        them until the handover, so nothing is uncovered and the handover waits for their snapshots."""
        room = self.market_set.max_markets - len(self.markets)
        wanted = list(dict.fromkeys(markets))
        bad = [m for m in wanted if not storable(m)]
        if bad:
            log.warning("[%s] ignoring market tickers with control characters: %s", self.market_set.name,
                        ", ".join(repr(m) for m in bad))
        # An inherited market this session saw close is not taken back: the predecessor's coverage of it is open
        # only until its next heartbeat writes the same close.
        new = [m for m in wanted if m not in self.markets and storable(m) and not (inherited and m in self._inactive)]
        if len(new) > room:
            log.warning("[%s] %d new market(s) over max_markets=%d are not recorded: %s", self.market_set.name,
                        len(new) - max(room, 0), self.market_set.max_markets, ", ".join(new[max(room, 0):][:10]))
            new = new[:max(room, 0)]
        if not new:
            return []
        now_ns = at_ns if at_ns is not None else _ns(datetime.now(UTC))
        self.markets.extend(new)
        self.added.extend(new)
        for market in new:
            self.ever[market] = None
            # A market found by discovery opened at an unknown time: from now on its coverage starts at its snapshot
            # (the REST poll's time stands for its opening, so the wait for the snapshot counts as uncovered).
            self._begin(market, now_ns, opened_at=None if inherited
                        else opened_at if opened_at is not None else _at(now_ns))
        if self._client is not None:
            for channel in self.filtered:
                self._client.update_markets(channel, add=new)
        if self.on_added is not None and not inherited:
            self.on_added(opened_at if opened_at is not None else _at(now_ns))
        return new

    def remove(self, markets: Iterable[str], *, reason: EndReason, at_ns: int) -> list[str]:
        gone = [m for m in dict.fromkeys(markets) if m in self.markets]
        # A live subscription keeps at least one market: the last one stays (it costs nothing once it is closed).
        if gone and len(gone) >= len(self.markets):
            gone = gone[:len(self.markets) - 1]
        if not gone:
            return []
        for market in gone:
            self.markets.remove(market)
            self.removed.append(market)
            if market in self.awaiting:
                del self.awaiting[market]  # never covered: nothing to close
            else:
                self._note(CoverageChange(market, _at(at_ns), ended=reason))
        if self._client is not None:
            for channel in self.filtered:
                self._client.update_markets(channel, remove=gone)
        return gone

    def finish(self, reason: EndReason, at_ns: int) -> None:
        """The session ends: every market still recorded stops being covered now."""
        for market in self.markets:
            if market not in self.awaiting:
                self._note(CoverageChange(market, _at(at_ns), ended=reason))
        self.awaiting.clear()

    def _begin(self, market: str, at_ns: int, *, opened_at: datetime | None) -> None:
        if self.has_book:
            self.awaiting[market] = opened_at
        else:
            self._note(CoverageChange(market, _at(at_ns), opened_at=opened_at))

    def _note(self, change: CoverageChange) -> None:
        if self.link is not None:
            self.link.note(change)

    def _belongs(self, market: str, metadata: dict[str, object] | None) -> bool:
        """Whether a market announced on the lifecycle channel is one of the set's (its event, or its series)."""
        ms = self.market_set
        if market in ms.tickers:
            return True
        event = metadata.get("event_ticker") if metadata else None
        if not isinstance(event, str) or not event:
            event = market.rsplit("-", 1)[0] if "-" in market else market
        series = event.split("-", 1)[0]
        return event in ms.events or series in ms.series
