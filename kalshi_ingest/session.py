"""One recording session: claim the market set, record the WebSocket into PostgreSQL for its slot, hand over, close.

:func:`run_recording_session` is everything a flow run does to the socket and the database, in one
coroutine, so the socket, the REST client and the recorder share one event loop (Prefect tasks started
with ``.submit()`` would each get another loop):

1. resolve the market set's markets (explicit tickers, then the open markets of its events and series; possibly
   none: a followed set then records its lifecycle channel and waits for markets);
2. claim the market set (:class:`~kalshi_store.continuity.SessionLink`): a session that would only duplicate one
   already recording does not start (:class:`DuplicateSession`); live sessions it extends become its predecessors;
3. open the session row and record until the :class:`Slot`'s deadline: a scheduled session owns its slot, from its
   scheduled start to the next scheduled start, plus up to ``handover_seconds`` for the next session to take over;
   an ad-hoc one records ``duration`` seconds from now. Once this session's order book snapshots are stored it
   takes over from its predecessors, which stop at their next heartbeat (about a second later); it stops itself the
   same way when its successor takes over;
4. follow the set live (:class:`~kalshi_ingest.following.MarketFollower`): markets that open are added to the live
   subscriptions, closed ones removed, and the coverage record says from when to when each market was recorded;
5. backfill trades (and the account's fills, when the market set records ``fill``) from REST since the last trade
   stored by a previous session, and again after every reconnect (each backfill starts once the live stream is
   flowing again, so REST and WebSocket overlap; duplicates are skipped by ``trade_id``);
6. flush, and close the session row with a status that tells the truth: ``completed``; ``cancelled``
   (SIGTERM / flow cancellation, after a flush); ``degraded`` when rows were spilled to local files or a
   gap was never repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kalshi_ingest.config import MarketSet, unmatched_tickers
from kalshi_ingest.following import MarketFollower, follows, storable
from kalshi_ingest.settings import Settings
from kalshi_store.continuity import Claim, LiveSession, SessionLink
from kalshi_store.recorder import Recorder, SessionStatus
from kalshi_ws import events, messages
from kalshi_ws.auth import Signer
from kalshi_ws.client import KalshiWebSocketClient
from kalshi_ws.protocol import SessionProtocol
from kalshi_ws.rest import KalshiRestClient

log = logging.getLogger(__name__)

#: Trade frames remembered per subscription to find where a gap started (about an hour of a busy market).
RECENT_TRADES = 4096
#: A REST trade window overlaps the last stored trade by this much (REST filters have 1-second resolution).
BACKFILL_OVERLAP = timedelta(seconds=2)
#: Above this many markets, backfill asks for every trade of the exchange and keeps ours (one paginated
#: query) instead of one query per market.
PER_MARKET_BACKFILL_LIMIT = 20


#: Seconds between heartbeats (and coverage writes); a predecessor stops within about this long of a handover.
HEARTBEAT_SECONDS = 1.0
#: Before a handover, how long to wait for the books of markets taken over from the predecessor (the ones it
#: records that this session did not know of).
INHERITED_BOOKS_SECONDS = 15.0


class NoMarketsError(RuntimeError):
    """The market set names only explicit tickers and none is left to record."""


class SessionNotStarted(RuntimeError):
    """The session did not start because there is nothing for it to do (not an error of the run)."""


class DuplicateSession(SessionNotStarted):
    """Another live session already records the market set at least as long as this one would."""

    def __init__(self, market_set: str, other: LiveSession) -> None:
        super().__init__(f"market set {market_set!r} is already being recorded by {other.describe()}; "
                         "not starting a duplicate session")
        self.other = other


class SlotOver(SessionNotStarted):
    """The schedule slot of this run ended before it could start (the run started too late)."""


@dataclass(frozen=True)
class Slot:
    """When a session records.

    ``end`` is the end of the slot the session owns: for a scheduled run the next scheduled start of its deployment
    (or its scheduled start + ``session_seconds`` when that comes first), for an ad-hoc run ``duration`` seconds after
    it starts. ``deadline`` is when it stops at the latest: ``end``, plus ``handover_seconds`` when a next session
    is expected to take over (it stops as soon as that session's books are stored).
    """

    #: The planned start: the scheduled start, or when an ad-hoc run asked to record.
    begins: datetime
    end: datetime
    deadline: datetime
    #: The scheduled start (None: an ad-hoc run).
    start: datetime | None = None
    successor_expected: bool = False

    @classmethod
    def adhoc(cls, seconds: float, now: datetime | None = None) -> Slot:
        begins = now or datetime.now(UTC)
        end = begins + timedelta(seconds=seconds)
        return cls(begins=begins, end=end, deadline=end)

    @classmethod
    def scheduled(cls, start: datetime, end: datetime, *, successor_expected: bool, handover_seconds: float) -> Slot:
        grace = timedelta(seconds=handover_seconds if successor_expected else 0)
        return cls(begins=start, end=end, deadline=end + grace, start=start, successor_expected=successor_expected)

    def describe(self) -> str:
        if self.start is None:
            return f"ad hoc, until {self.end:%H:%M:%S} UTC"
        handover = f" (+ handover until {self.deadline:%H:%M:%S})" if self.successor_expected else ""
        return f"slot {self.start:%H:%M:%S}-{self.end:%H:%M:%S} UTC{handover}"


@dataclass(frozen=True)
class Progress:
    """A periodic snapshot of a running session (for log lines, the progress artifact, the live display)."""

    market_set: str
    session_id: str
    elapsed: float
    duration: float
    #: Messages received per channel since the session started, and per second over the last interval.
    messages: dict[str, int]
    rates: dict[str, float]
    rows_written: int
    rows_spilled: int
    #: Rows received but not yet durable (in memory or being written).
    pending_rows: int
    #: Seconds between the exchange time of the newest message and its receipt (None: no timed message yet).
    lag: float | None
    reconnects: int
    gaps: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.elapsed / self.duration) if self.duration > 0 else 1.0

    def line(self) -> str:
        rates = ", ".join(f"{channel} {rate:.1f}/s" for channel, rate in sorted(self.rates.items())) or "no messages"
        lag = "n/a" if self.lag is None else f"{self.lag * 1000:.0f} ms"
        return (f"[{self.market_set}] {self.elapsed:.0f}/{self.duration:.0f} s: {rates}; rows written "
                f"{self.rows_written}, pending {self.pending_rows}, spilled {self.rows_spilled}; lag {lag}; reconnects {self.reconnects}, "
                f"gaps {self.gaps}")


ProgressCallback = Callable[[Progress], Awaitable[None] | None]

#: Process-wide progress listeners (the ``demo`` command's live display watches a flow run in this process).
_listeners: list[ProgressCallback] = []


@contextlib.contextmanager
def progress_listener(callback: ProgressCallback) -> Iterator[None]:
    """Call ``callback`` with the progress of every session recorded in this process while inside."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


@dataclass
class SessionSummary:
    """What a session did. ``status`` is the session row's final status."""

    session_id: str
    market_set: str
    environment: str
    markets: list[str]
    channels: list[str]
    started_at: datetime
    ended_at: datetime
    status: str
    status_message: str
    messages: dict[str, int] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    rows_spilled: int = 0
    reconnects: int = 0
    gaps: int = 0
    unrecovered_gaps: int = 0
    rest_backfilled: int = 0
    stop_reason: str = ""
    #: Handover: the sessions this one took over from, and the one that took over from it (if any).
    took_over_from: list[str] = field(default_factory=list)
    handed_over_to: str | None = None
    markets_added: list[str] = field(default_factory=list)
    markets_removed: list[str] = field(default_factory=list)
    #: The markets still recorded when the session ended (those that closed during it are in ``markets`` only).
    markets_at_end: list[str] = field(default_factory=list)
    planned_end: datetime | None = None

    @property
    def markets_closed(self) -> list[str]:
        """Markets recorded during the session that were no longer open at its end."""
        still = set(self.markets_at_end)
        return [market for market in self.markets if market not in still]

    @property
    def healthy(self) -> bool:
        return self.status == "completed"

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["started_at"] = self.started_at.isoformat()
        out["ended_at"] = self.ended_at.isoformat()
        out["planned_end"] = self.planned_end.isoformat() if self.planned_end else None
        return out


#: Message struct -> the channel that delivers it (for per-channel counts); undecodable frames count as
#: ``dead_letter`` (where storage puts them).
_CHANNEL_OF: dict[type, str] = {
    messages.MESSAGE_TYPES[kind]: channel
    for channel, kinds in reversed(messages.CHANNEL_MESSAGE_TYPES.items()) for kind in kinds
}


class _SessionSink:
    """Forwards to the recorder, counting what passes and scheduling REST backfills.

    A backfill (trades, and fills when recorded, since a time) becomes due at the start of a session that follows an earlier one
    (since its last stored trade), when the connection is lost, after a gap on the trade stream and when
    the trade subscription is re-created (since the exchange time of the last trade received). It is fired
    on the first live ``trade`` message after it became due, so the REST answer is certain to overlap the
    live stream (a REST query made before the trade subscription is live could miss the trades in
    between), or at the end of the session if no trade arrives. A market set recording ``fill`` without
    ``trade`` uses the same windows, keyed on the fills it receives instead (``trigger``).
    """

    def __init__(self, recorder: Recorder, *, backfill: Callable[[datetime], None] | None,
                 since: datetime | None, trigger: type[messages.Trade | messages.Fill] = messages.Trade,
                 follower: MarketFollower | None = None) -> None:
        self._recorder = recorder
        self._on_message = recorder.on_message
        #: Messages the market follower watches: snapshots (coverage starts) and market lifecycle (new markets).
        self._hooks: dict[type, Callable[[Any, int], None]] = {}
        if follower is not None:
            self._hooks[messages.OrderbookSnapshot] = lambda m, ns: follower.on_snapshot(m.msg.market_ticker, ns)
            self._hooks[messages.MarketLifecycle] = lambda m, ns: follower.on_lifecycle(m.msg, ns)
        self._backfill = backfill
        self._trigger = trigger
        self._trigger_channel = "trade" if trigger is messages.Trade else "fill"
        self._due: datetime | None = since if backfill is not None else None
        self._last_trade_ms: int | None = None
        #: Recent (seq, exchange ms) of trade frames per sid: a gap's backfill starts at the trade just before
        #: the missing ones, even when the gap event is handled after a burst of later frames.
        self._recent_trades: dict[int, deque[tuple[int, int]]] = {}
        self.counts: Counter[str] = Counter()
        self.last_lag: float | None = None

    def on_message(self, message: messages.AnyMessage, generation: int, received_ns: int) -> None:
        self.counts[_CHANNEL_OF.get(type(message), "dead_letter")] += 1
        ts_ms = getattr(getattr(message, "msg", None), "ts_ms", None)
        if ts_ms:
            self.last_lag = received_ns / 1e9 - ts_ms / 1000
        self._on_message(message, generation, received_ns)
        hook = self._hooks.get(type(message))
        if hook is not None:
            hook(message, received_ns)
        if type(message) is self._trigger:
            if ts_ms:
                if self._last_trade_ms is None or ts_ms > self._last_trade_ms:
                    self._last_trade_ms = ts_ms
                if message.seq is not None:
                    recent = self._recent_trades.get(message.sid)
                    if recent is None:
                        recent = self._recent_trades[message.sid] = deque(maxlen=RECENT_TRADES)
                    recent.append((message.seq, ts_ms))
            if self._due is not None:
                self.fire_backfill()

    def fire_backfill(self) -> None:
        """Start the due backfill now (called on the first live trade after it became due)."""
        if self._due is not None and self._backfill is not None:
            since, self._due = self._due, None
            self._backfill(since)

    def final_backfill(self, session_start: datetime) -> None:
        """At the end: backfill since the last trade received (or the session start if none came).

        A trade frame lost after the last one received cannot show up as a sequence gap (no later frame
        arrives to reveal it), so the tail of every session is checked against REST.
        """
        if self._backfill is None:
            return
        tail = (datetime.fromtimestamp(self._last_trade_ms / 1000, tz=UTC) if self._last_trade_ms is not None
                else session_start)
        self._due = tail if self._due is None else min(self._due, tail)
        self.fire_backfill()

    def backfill_from(self, since: datetime) -> None:
        """Trades may be missing since ``since`` (a market was added to the live subscriptions after it opened)."""
        if self._backfill is not None:
            self._due = since if self._due is None else min(self._due, since)

    def _trades_missed_since(self, at_ns: int, since_ms: int | None = None) -> None:
        """Trades may be missing from ``since_ms`` (default: the last trade received, else ``at_ns``) on."""
        if self._backfill is None:
            return
        if since_ms is None:
            since_ms = self._last_trade_ms if self._last_trade_ms is not None else at_ns // 1_000_000
        since = datetime.fromtimestamp(since_ms / 1000, tz=UTC)
        self._due = since if self._due is None else min(self._due, since)

    def _before_gap(self, sid: int, expected: int) -> int | None:
        """Exchange ms of the last trade received on ``sid`` before seq ``expected`` (the first missing)."""
        recent = self._recent_trades.get(sid)
        if not recent:
            return None
        before = [ts for seq, ts in recent if seq < expected]
        return max(before) if before else min(ts for _, ts in recent)

    def on_event(self, event: events.SessionEvent) -> None:
        """Schedule the REST backfills an event calls for; the recorder counts it (its ``health``)."""
        if isinstance(event, events.Disconnected):
            if event.will_reconnect:
                self._trades_missed_since(event.at_ns)
        elif isinstance(event, events.SequenceGap):
            if event.channel == "trade":  # trades have no snapshot: REST repairs the stream
                self._trades_missed_since(event.at_ns, self._before_gap(event.sid, event.expected))
        elif isinstance(event, events.Resubscribed) and event.channel in ("trade", self._trigger_channel):
            self._trades_missed_since(event.at_ns)
        self._recorder.on_event(event)

    @property
    def paused(self) -> bool:
        return bool(self._recorder.paused)

    async def wait_resumed(self) -> None:
        await self._recorder.wait_resumed()


async def resolve_markets(rest: KalshiRestClient, market_set: MarketSet) -> list[str]:
    """The set's markets open now (explicit tickers as given). A followed set (series/events) may resolve to none
    and waits for markets; a set of explicit tickers always has its tickers."""
    markets = await rest.resolve_markets(series=market_set.series, events=market_set.events,
                                         tickers=market_set.tickers)
    if market_set.tickers:  # a typo or a closed market would otherwise just record nothing for it
        try:
            known = [m.ticker for m in await rest.get_markets(tickers=market_set.tickers, status="open")]
        except Exception as exc:  # the check is advice: a REST hiccup must not stop the session
            log.debug("could not check the set's tickers (%s)", exc)
        else:
            for line in unmatched_tickers(market_set, known):
                log.warning(line)
    bad = [m for m in markets if not storable(m)]
    if bad:  # a value the database cannot store (NUL) from REST: named and left out, never recorded
        log.warning("market set %r: ignoring market tickers with control characters from the exchange: %s",
                    market_set.name, ", ".join(repr(m) for m in bad))
        markets = [m for m in markets if storable(m)]
    if not markets and not follows(market_set):
        raise NoMarketsError(f"market set {market_set.name!r} resolved to no market (tickers={market_set.tickers})")
    if len(markets) > market_set.max_markets:
        log.warning("market set %r resolved to %d markets; recording the first %d (max_markets)",
                    market_set.name, len(markets), market_set.max_markets)
    return markets[: market_set.max_markets]


async def fetch_trades(rest: KalshiRestClient, markets: Sequence[str], since: datetime) -> list[messages.TradePayload]:
    """Trades of ``markets`` since ``since`` (minus the overlap), oldest first."""
    min_ts = int((since - BACKFILL_OVERLAP).timestamp())
    if len(markets) <= PER_MARKET_BACKFILL_LIMIT:
        found: list[messages.TradePayload] = []
        for market in markets:
            found += await rest.get_trades(ticker=market, min_ts=min_ts)
    else:
        wanted = set(markets)
        found = [t for t in await rest.get_trades(min_ts=min_ts) if t.market_ticker in wanted]
    return sorted(found, key=lambda t: (t.ts_ms or 0, t.trade_id))


async def fetch_fills(rest: KalshiRestClient, markets: Sequence[str], since: datetime) -> list[messages.FillPayload]:
    """The account's fills in ``markets`` since ``since`` (minus the overlap), oldest first (one query: an
    account's fills are few)."""
    wanted = set(markets)
    fills = await rest.get_fills(min_ts=int((since - BACKFILL_OVERLAP).timestamp()))
    return [f for f in fills if f.market_ticker in wanted]


async def run_recording_session(
    settings: Settings,
    market_set: MarketSet,
    database_url: str,
    *,
    duration: float | None = None,
    slot: Slot | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval: float = 10.0,
    flow_run_id: str | None = None,
    signer: Signer | None = None,
) -> SessionSummary:
    """Record ``market_set`` for its ``slot`` (default: ad hoc, ``duration`` seconds, default its
    ``session_seconds``); see the module doc. Raises :class:`SessionNotStarted` when there is nothing to do."""
    slot = slot or Slot.adhoc(float(duration if duration is not None else market_set.session_seconds))
    if slot.start is not None and slot.deadline <= datetime.now(UTC) + timedelta(seconds=1):
        raise SlotOver(f"the slot of market set {market_set.name!r} ({slot.describe()}) is already over")
    environment = settings.environment()
    signer = signer if signer is not None else await settings.signer()
    session_id = str(uuid.uuid4())
    link = SessionLink(database_url, session_id, market_set.name)
    async with KalshiRestClient(environment.rest_url, signer) as rest, \
            Recorder(database_url, spill_dir=settings.data_dir / "spill") as recorder:
        try:
            return await _record(settings, market_set, database_url, slot, environment.name, environment.ws_url,
                                 signer, rest, recorder, link, on_progress, progress_interval, flow_run_id)
        finally:
            await link.close()


async def _record(settings: Settings, market_set: MarketSet, database_url: str, slot: Slot, environment: str,
                  ws_url: str, signer: Signer, rest: KalshiRestClient, recorder: Recorder, link: SessionLink,
                  on_progress: ProgressCallback | None, progress_interval: float,
                  flow_run_id: str | None) -> SessionSummary:
    markets = await resolve_markets(rest, market_set)
    follower = MarketFollower(market_set, markets, link)
    started = datetime.now(UTC)
    claim = await link.claim(environment=environment, markets=follower.markets, channels=follower.channels,
                             use_yes_price=market_set.use_yes_price, planned_start=slot.begins,
                             planned_end=slot.deadline, slot_start=slot.start,
                             slot_end=slot.end, flow_run_id=flow_run_id)
    if claim.duplicate_of is not None:
        raise DuplicateSession(market_set.name, claim.duplicate_of)
    session_id = await recorder.open_session(
        market_set.name, environment, follower.markets, follower.channels, planned_start=slot.begins,
        planned_end=slot.deadline, flow_run_id=flow_run_id, use_yes_price=market_set.use_yes_price,
        session_id=link.session_id)
    if not follower.markets:
        log.info("[%s] no open market right now: recording the lifecycle channel and waiting for markets",
                 market_set.name)
    log.info("[%s] session %s: %s, %d markets%s", market_set.name, session_id, slot.describe(), len(follower.markets),
             f"; taking over from {', '.join(p.session_id for p in claim.predecessors)}" if claim.predecessors else "")
    backfills: list[asyncio.Task[int]] = []
    records_trades = "trade" in market_set.channels
    records_fills = "fill" in market_set.channels

    async def backfill(since: datetime) -> int:
        """Everything the live stream may have missed since ``since``: trades, and fills when recorded."""
        added = 0
        current = list(follower.markets)
        if records_trades and current:
            trades = await fetch_trades(rest, current, since)
            added += recorder.add_rest_trades(trades) if trades else 0
        if records_fills and current:
            fills = await fetch_fills(rest, current, since)
            added += recorder.add_rest_fills(fills) if fills else 0
        return added

    def start_backfill(since: datetime) -> None:
        backfills.append(asyncio.create_task(backfill(since), name="kalshi-rest-backfill"))

    previous = await link.last_trade_time(follower.markets) if records_trades and follower.markets else None
    sink = _SessionSink(recorder, backfill=start_backfill if records_trades or records_fills else None,
                        since=previous, trigger=messages.Trade if records_trades else messages.Fill,
                        follower=follower)
    follower.on_added = sink.backfill_from  # a market added late: its trades since it opened come from REST
    protocol = SessionProtocol(follower.subscriptions(explicit=follows(market_set)),
                               use_yes_price=market_set.use_yes_price, seq_scope=settings.kalshi_seq_scope)
    client = KalshiWebSocketClient(ws_url, sink, protocol=protocol, signer=signer)
    follower.start(client, time.time_ns())
    outcome = _Outcome()
    handover = _Handover(slot=slot)
    helpers = [
        asyncio.create_task(_report_progress(sink, recorder, market_set.name, session_id,
                                             (slot.deadline - started).total_seconds(), progress_interval,
                                             on_progress), name="kalshi-progress"),
        asyncio.create_task(_keep_alive(link, client, follower, handover), name="kalshi-heartbeat"),
        asyncio.create_task(_take_over(link, claim, follower, recorder, handover), name="kalshi-handover"),
    ]
    if follows(market_set):
        helpers.append(asyncio.create_task(_discover(rest, market_set, follower, market_set.discovery_seconds),
                                           name="kalshi-discovery"))
    def on_sigterm() -> None:
        outcome.status = "cancelled"
        recorder.health.report(f"stopped by SIGTERM at {datetime.now(UTC):%H:%M:%S} UTC, before the deadline (the "
                                "flow run was cancelled or its process asked to stop); data flushed")
        client.stop()

    try:
        with _stop_on_sigterm(on_sigterm):
            await client.run(deadline=slot.deadline)
            sink.final_backfill(started)
            backfilled = await asyncio.gather(*backfills, return_exceptions=True)
        for done in backfilled:
            if isinstance(done, BaseException):
                # trades/fills missed while disconnected may be missing: the session ends degraded
                recorder.health.report(f"REST backfill failed: {type(done).__name__}: {done}")
            else:
                outcome.backfilled += done
    except asyncio.CancelledError:
        outcome.status = "cancelled"
        recorder.health.report("cancelled before the deadline (flow cancelled or SIGTERM); data flushed")
        raise
    except Exception as exc:
        outcome.status = "failed"
        recorder.health.report(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for helper in helpers:
            helper.cancel()
        for pending in backfills:
            pending.cancel()
        follower.finish("handover" if handover.successor else "failed" if outcome.status == "failed"
                        else "session_end", time.time_ns())
        summary = await _close(recorder, sink, outcome, session_id=session_id, market_set=market_set,
                               environment=environment, follower=follower, started=started, handover=handover,
                               link=link)
    return summary


@dataclass
class _Handover:
    """What this session knows of the sessions before and after it."""

    slot: Slot
    #: Sessions this one took over from, once its books were stored.
    took_over_from: list[str] = field(default_factory=list)
    took_over_at: datetime | None = None
    #: The session that took over from this one, and when.
    successor: str | None = None
    superseded_at: datetime | None = None


async def _keep_alive(link: SessionLink, client: KalshiWebSocketClient, follower: MarketFollower,
                      handover: _Handover) -> None:
    """Heartbeat and coverage every :data:`HEARTBEAT_SECONDS`; stop the client once the next session took over
    and records every market this one records.

    The successor took over once its own books were stored; a market that opened meanwhile (this session
    subscribed it, the successor picks it up from this session's coverage) would have a short hole if this session
    stopped at once. So it records on until the successor's coverage names each of its markets, for at most
    :data:`INHERITED_BOOKS_SECONDS` (then whatever is left over is on record as uncovered)."""
    loop = asyncio.get_running_loop()
    stop_by: float | None = None
    while True:
        superseded = await link.beat()
        if superseded is not None and handover.successor is None:
            handover.successor, handover.superseded_at = superseded
            stop_by = loop.time() + INHERITED_BOOKS_SECONDS
        if stop_by is not None and handover.successor is not None:
            missing = await link.not_recorded_by(handover.successor, follower.recording)
            if missing and loop.time() < stop_by:
                await asyncio.sleep(HEARTBEAT_SECONDS / 4)
                continue
            log.info("session %s: session %s took over at %s UTC; stopping%s", link.session_id,
                     handover.successor, f"{handover.superseded_at:%H:%M:%S.%f}"[:-3],
                     f" (it does not record {', '.join(missing)})" if missing else "")
            client.stop()
            stop_by = None  # beat on until the session is closed
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _take_over(link: SessionLink, claim: Claim, follower: MarketFollower, recorder: Recorder,
                     handover: _Handover) -> None:
    """Once every order book snapshot of this session is stored, tell the predecessors to stop."""
    if not claim.predecessors:
        return
    # Everything the predecessors record now is recorded here first: a market that opened while this session was
    # starting (after its REST lookup, before its lifecycle subscription) would otherwise be lost in the handover.
    while not follower.books_ready:
        await asyncio.sleep(0.02)
    inherited = await link.markets_covered_by(claim.predecessors)
    if follower.add(inherited, opened_at=None, inherited=True):
        # A market the exchange no longer serves (closed meanwhile) must not hold the handover up forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(INHERITED_BOOKS_SECONDS):
                while not follower.books_ready:
                    await asyncio.sleep(0.02)
    await recorder.flush()
    await link.beat()  # the coverage of this session is on record before the predecessors' ends
    at = await link.hand_over(claim.predecessors)
    if at is None:
        return
    handover.took_over_from = [p.session_id for p in claim.predecessors]
    handover.took_over_at = at
    log.info("session %s took over from %s at %s UTC", link.session_id,
             ", ".join(handover.took_over_from), f"{at:%H:%M:%S.%f}"[:-3])
    # A market the predecessor added in its last second (its coverage is written with its next heartbeat) is on
    # record once it has stopped: record whatever it still had and this session has not (a short hole at most,
    # and on record as one).
    loop = asyncio.get_running_loop()
    until = loop.time() + INHERITED_BOOKS_SECONDS
    while loop.time() < until:
        await asyncio.sleep(HEARTBEAT_SECONDS / 4)
        ended = await link.ended(claim.predecessors)
        late = follower.add(await link.markets_covered_by(claim.predecessors), opened_at=None, inherited=True)
        if late:
            log.info("session %s: also recording %s, which the previous session added as it handed over",
                     link.session_id, ", ".join(late))
        if ended:
            break


async def _discover(rest: KalshiRestClient, market_set: MarketSet, follower: MarketFollower, interval: float) -> None:
    """Poll REST for the set's open markets every ``interval`` seconds (a fallback for the lifecycle channel)."""
    while True:
        await asyncio.sleep(interval)
        try:
            found = await rest.resolve_markets(series=market_set.series, events=market_set.events,
                                               tickers=market_set.tickers)
        except Exception as exc:  # discovery is a fallback: a failed poll is retried at the next interval
            log.warning("[%s] market discovery failed (%s: %s); retrying in %.0f s", market_set.name,
                        type(exc).__name__, exc, interval)
            continue
        follower.reconcile(found, time.time_ns())


@contextlib.contextmanager
def _stop_on_sigterm(stop: Callable[[], None]) -> Iterator[None]:
    """While recording, SIGTERM (a Prefect worker cancelling the run, a container or service stopping) calls ``stop``:
    the session ends as at its deadline, flushes and closes as ``cancelled``, and returns its summary, so the flow
    still publishes what was recorded and ends **Cancelled** (not Crashed). A second SIGTERM gets the previous
    handler (Prefect's, which ends the run at once).

    Only in the main thread (where signals are delivered); elsewhere the caller owns signal handling.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    installed = True

    def restore() -> None:
        nonlocal installed
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)
            installed = False

    def on_sigterm() -> None:
        log.warning("SIGTERM: ending the session before its deadline (flushing first)")
        restore()
        stop()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        restore()


@dataclass
class _Outcome:
    #: The status asked for (``completed``, ``cancelled``, ``failed``); the recorder's verdict may degrade it.
    status: SessionStatus = "completed"
    backfilled: int = 0


async def _close(recorder: Recorder, sink: _SessionSink, outcome: _Outcome, *, session_id: str,
                 market_set: MarketSet, environment: str, follower: MarketFollower, started: datetime,
                 handover: _Handover, link: SessionLink) -> SessionSummary:
    """Flush and close the session row with an honest status, shielded so a cancellation cannot cut it short."""

    async def close() -> SessionSummary:
        await recorder.flush()
        status = recorder.verdict(outcome.status).status  # what the record is worth (the recorder's health decides)
        notes = []
        if handover.took_over_from:
            notes.append(f"took over from session {', '.join(handover.took_over_from)}")
        if follower.added or follower.removed:
            notes.append(f"markets followed live: {len(follower.added)} added, {len(follower.removed)} removed")
        if handover.successor:
            ended = f"handed over to session {handover.successor}"
        elif status != "completed":
            ended = ""
        elif handover.slot.successor_expected:
            ended = ("recorded until the deadline: no next session took over within handover_seconds (did the "
                     "next scheduled run start?)")
        else:
            ended = "recorded until the deadline"
        verdict = await recorder.close_session(outcome.status, "; ".join([*filter(None, [ended]), *notes]) or None)
        assert verdict is not None  # the session was open
        health = recorder.health
        await link.finish(list(follower.ever))
        stats = recorder.stats()
        return SessionSummary(
            session_id=session_id, market_set=market_set.name, environment=environment, markets=list(follower.ever),
            channels=list(follower.channels), started_at=started, ended_at=datetime.now(UTC),
            status=verdict.status, status_message=verdict.message or "", messages=dict(sink.counts),
            rows_written=dict(stats.written), rows_spilled=stats.rows_spilled, reconnects=health.reconnects,
            gaps=health.gaps, unrecovered_gaps=health.unrecovered, rest_backfilled=outcome.backfilled,
            stop_reason=health.stop_reason or "", took_over_from=handover.took_over_from, handed_over_to=handover.successor,
            markets_added=list(follower.added), markets_removed=list(follower.removed),
            markets_at_end=list(follower.markets), planned_end=handover.slot.deadline)

    task = asyncio.ensure_future(close())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):
            await task  # finish closing even when cancelled again, then let the cancellation through
        raise


async def _report_progress(sink: _SessionSink, recorder: Recorder, market_set: str, session_id: str, duration: float,
                           interval: float, callback: ProgressCallback | None) -> None:
    start = time.monotonic()
    previous: Counter[str] = Counter()
    last = start
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        counts = Counter(sink.counts)
        span = max(now - last, 1e-9)
        rates = {kind: (counts[kind] - previous[kind]) / span for kind in counts}
        previous, last = counts, now
        stats = recorder.stats()
        progress = Progress(
            market_set=market_set, session_id=session_id, elapsed=now - start, duration=duration,
            messages=dict(counts), rates=rates, rows_written=sum(stats.written.values()),
            rows_spilled=stats.rows_spilled, pending_rows=stats.pending_rows, lag=sink.last_lag,
            reconnects=recorder.health.reconnects, gaps=recorder.health.gaps)
        log.info(progress.line())
        for listener in [*_listeners, *([callback] if callback is not None else [])]:
            try:
                result = listener(progress)
                if result is not None:
                    await result
            except Exception:  # a broken display must not end the recording
                log.exception("progress callback failed")
