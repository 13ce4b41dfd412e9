"""The Kalshi WebSocket session, without I/O.

:class:`SessionProtocol` takes text frames in (:meth:`~SessionProtocol.receive`), and gives back the
messages to record, the command frames to send (:meth:`~SessionProtocol.take_commands`) and the session
events that say what happened (:meth:`~SessionProtocol.take_events`). It owns everything that is protocol:
subscriptions and their acks, ``sid``/``seq`` tracking, the local order books and the recovery decisions.
It never touches a socket, a clock it was not given, or asyncio; ``kalshi_ws.client`` is the thin driver
that moves bytes between it and a WebSocket. So every path below is unit-tested with lists of frames.

Driver loop (what ``client.py`` does)::

    proto.connection_opened(url)             # after the upgrade returned 101
    send(proto.take_commands())              # the subscribes
    for frame in socket:
        message = proto.receive(frame, time.time_ns())
        if message is not None: sink.on_message(message, proto.generation, received_ns)
        if proto.has_output: send(proto.take_commands()); emit(proto.take_events())
        if proto.reconnect_requested: close and reconnect (connection_lost + connection_opened)
    # and every ~0.5 s: proto.poll() (timeouts), then the same output handling.

Recovery (spec 5.3). A gap on an ``orderbook_delta`` sid cannot be pinned to one market (all markets of a
sid share one ``seq`` stream), so every market of the sid becomes untrusted, a ``SequenceGap`` opens an
incident and the ladder below runs until every market has a fresh snapshot, which closes it with
``Recovered(outcome=...)`` naming the step that worked:

1. ``update_subscription get_snapshot`` for all the sid's markets (``SnapshotRequested``, attempt 1), then
   again for the markets still missing each time ``snapshot_timeout`` passes, ``snapshot_attempts`` requests
   in all -> outcome ``"snapshot"``;
2. ``unsubscribe`` + ``subscribe`` (new sid, fresh snapshots; ``Resubscribed``), at most
   ``resubscribe_attempts`` times -> ``"resubscribed"``;
3. :attr:`~SessionProtocol.reconnect_requested` is set; the driver reconnects, every subscription is
   re-sent with the current market lists -> ``"reconnected"``.

Another gap during a recovery joins it (new ``SequenceGap``, all markets pending again) and moves it one
step up the ladder at once, so recurring gaps escalate to a reconnect.

Deltas that arrive for an untrusted market are still returned by :meth:`~SessionProtocol.receive` (they
are real exchange events; the gap ledger says the book was untrusted then) but not applied to its book.

Gaps on the other sequenced channels (``trade``, lifecycle, ``communications``, ``order_group_updates``,
reference data) cannot be repaired over the WebSocket: Kalshi does not re-send and these channels have no
snapshot. The gap is reported (``SequenceGap``) and closed at once with ``Recovered(outcome="abandoned")``:
the stream continues from the new ``seq``; the storage layer backfills trades over REST.

Other decisions, each tested:

* a ``orderbook_delta``/``orderbook_snapshot`` frame on a live book sid that cannot be decoded (malformed or
  in the removed integer shape) is lost data for the books: recovered like a gap whose missing frame is
  that one (``SequenceGap`` with ``expected == received``);
* terminal errors (10, 25, 17) with a sid, an unsolicited ``unsubscribed`` and error 7 for a sid we believe
  live all mean the subscription is dead: it is re-created at once (``Resubscribed``; for the book channel
  under a new incident closed by ``Recovered(outcome="resubscribed")``), outside the recovery budget;
* ``add_markets``/``delete_markets`` answered with 13 on a channel other than ``orderbook_delta`` (spec 12.15)
  re-creates the subscription with the new list; other errors on ``add_markets`` drop those markets from
  the remembered list (except 18/27, which are transient);
* a ``subscribe`` or ``add/delete_markets`` without any reply within ``command_timeout`` requests a
  reconnect (the server's view of the subscription is unknown);
* what ``seq`` counts is a setting, ``seq_scope`` (spec 12.4), never inferred: ``"sid"`` (the default: the
  spec's examples and every serious client) checks one stream per sid; ``"connection"`` checks one stream for
  the whole connection, and a gap in it may have hit any sequenced sid, so every live one reports it (books
  recover, other channels abandon). When the exchange contradicts the setting (per sid: a "gap" whose missing
  number is another sid's last and a sid that did not start at 1; per connection: a number new on its sid but
  already used on the connection) :class:`~kalshi_ws.events.SeqScopeContradicted` says so, once per connection,
  and the setting still rules; control replies carrying ``seq`` never open a gap (12.5).

Subscription state: one :class:`SubscriptionState` per channel, changed only by ``_Channel.move``, which checks
each transition against :data:`TRANSITIONS`::

    UNSUBSCRIBED -> SUBSCRIBING          subscribe sent (connection opened, first market of a followed list)
    SUBSCRIBING  -> LIVE                 ``subscribed``: the sid is live
    SUBSCRIBING  -> SUBSCRIBING          refused with a terminal error, retried (``resubscribe_attempts``)
    SUBSCRIBING  -> FAILED               refused, not retried on this connection
    LIVE         -> SUBSCRIBING          re-created: recovery ladder, terminal error, error 7, unsolicited end
    LIVE         -> LIVE                 a second ``subscribed`` for the channel: its sid replaces the old one
    any          -> UNSUBSCRIBED         the connection opened again or ended

A disconnect (:meth:`~SessionProtocol.connection_lost`) opens an incident (``Disconnected``); the next
connection's ``Connected`` names it and it is closed with ``Recovered(outcome="reconnected")`` when no
subscription is ``SUBSCRIBING`` any more and every book has its new snapshot.

Recovery step: a channel's running recovery is on one :class:`RecoveryStep` of the ladder, changed only by
``_Recovery.move``, which sets the step and its deadline together (``postpone_timeouts`` only shifts a running
deadline); the step is the ``Recovered`` outcome. Any step may follow any other (a new connection or a re-created
subscription starts the ladder again)::

    -> SNAPSHOT      ``get_snapshot`` sent on the live sid             due in snapshot_timeout
    -> RESUBSCRIBED  subscription re-created on this connection        due in command_timeout + snapshot_timeout
                     (ladder step 2, or the server ended the sid)
    -> RECONNECTED   the ladder's last step, or the connection ended   no deadline: the driver reconnects
    -> RECONNECTED   the next connection subscribed the books again    due in command_timeout + snapshot_timeout
    RESUBSCRIBED and RECONNECTED, on ``subscribed`` (new sid live)     due in snapshot_timeout (same step)
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, cast, get_args

from kalshi_ws import events, messages
from kalshi_ws.commands import RESERVED_PARAMS, CommandTracker, Reply
from kalshi_ws.errors import describe_error
from kalshi_ws.orderbook import BookSet, Problem
from kalshi_ws.sequence import ACCEPT, STALE, SequenceTracker

__all__ = ["BOOK_CHANNEL", "TRANSITIONS", "RecoveryStep", "SeqScope", "SessionProtocol", "Subscription",
           "SubscriptionState"]

#: What one ``seq`` stream covers (spec 12.4): each subscription, or the whole connection.
SeqScope = Literal["sid", "connection"]

BOOK_CHANNEL: Final = "orderbook_delta"

#: Channels without a market filter (the server ignores or rejects ``market_tickers``).
UNFILTERED_CHANNELS: Final = frozenset({
    "market_lifecycle_v2", "multivariate_market_lifecycle", "communications", "order_group_updates",
    "cfbenchmarks_value", "cfbenchmarks_value_5hz", "pyth_value",
})

#: Data messages that carry ``seq`` (spec 4.0), i.e. whose sid is gap-checked.
_SEQUENCED: Final = frozenset({
    messages.Trade, messages.MarketLifecycle, messages.MultivariateMarketLifecycle, messages.EventLifecycle,
    messages.EventFeeUpdate, messages.RfqCreated, messages.RfqDeleted, messages.QuoteCreated,
    messages.QuoteAccepted, messages.QuoteExecuted, messages.OrderGroupUpdate, messages.CfbenchmarksValue,
    messages.CfbenchmarksValue5hz, messages.PythValue, messages.CfbenchmarksIndexList,
    messages.CfbenchmarksIndexList5hz, messages.PythUnderlyingList,
})
_CONTROL: Final = frozenset({messages.Subscribed, messages.Unsubscribed, messages.Ok, messages.Error})
_UNTYPED: Final = frozenset({messages.UnknownMessage, messages.LegacyMessage, messages.MalformedFrame})
_BOOK_TYPES: Final = frozenset(messages.CHANNEL_MESSAGE_TYPES[BOOK_CHANNEL])


@dataclass(frozen=True)
class Subscription:
    """What the caller wants recorded: one channel, optionally limited to some markets.

    Several :class:`Subscription` objects of the same channel are merged into one server subscription
    (Kalshi's advice: one subscription per channel per connection, grown with ``add_markets``).
    """

    #: A name from :data:`kalshi_ws.messages.CHANNELS`.
    channel: str
    #: ``()`` = every market, where the channel allows it (``orderbook_delta`` requires tickers).
    market_tickers: tuple[str, ...] = ()
    #: Extra subscribe params: ``send_initial_snapshot``, ``skip_ticker_ack``, ``user_filter``,
    #: ``shard_factor``, ``shard_key``, ``index_ids``, ``underlying_tickers`` ...
    params: Mapping[str, Any] = field(default_factory=dict)
    #: ``market_tickers`` is the exact list even when it is empty: an empty list means no server subscription
    #: (yet), not every market. A session that follows a market set live uses this: markets come and go
    #: through :meth:`SessionProtocol.update_markets`, and the subscription is made with the first one.
    explicit: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.market_tickers, str):
            raise ValueError(f"market_tickers must be a sequence of tickers, not the string "
                             f"{self.market_tickers!r}")
        object.__setattr__(self, "market_tickers", tuple(dict.fromkeys(self.market_tickers)))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        channel = self.channel
        if channel in messages.REMOVED_CHANNELS:
            replacement = {"ticker_v2": "ticker", "multivariate": "multivariate_market_lifecycle and "
                           "communications"}.get(channel, "another channel")
            raise ValueError(f"channel {channel!r} was {messages.REMOVED_CHANNELS[channel]} by Kalshi "
                             f"(subscribing yields error 8); use {replacement}")
        if channel not in messages.CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; known channels: {', '.join(sorted(messages.CHANNELS))}")
        if channel in UNFILTERED_CHANNELS and self.explicit:
            raise ValueError(f"channel {channel!r} has no market filter; it cannot follow an explicit market list")
        if channel in messages.MARKET_REQUIRED_CHANNELS and not self.market_tickers and not self.explicit:
            raise ValueError(f"channel {channel!r} needs market_tickers (Kalshi answers error 14 without them)")
        if channel in UNFILTERED_CHANNELS and self.market_tickers:
            raise ValueError(f"channel {channel!r} has no market filter (it always covers every market); "
                             "drop market_tickers")
        bad = RESERVED_PARAMS.intersection(self.params)
        if bad:
            hint = (" (the session pins use_yes_price: pass SessionProtocol(use_yes_price=...))"
                    if "use_yes_price" in bad else " (use Subscription.channel / market_tickers)")
            raise ValueError(f"params may not set {', '.join(sorted(bad))}{hint}")


class SubscriptionState(enum.Enum):
    """Where one channel's server subscription is, on the current connection."""

    #: No server subscription: not connected yet, disconnected, or an explicit market list that is empty.
    UNSUBSCRIBED = "unsubscribed"
    #: A ``subscribe`` is in flight (``_Channel.subscribe_id``); no sid yet.
    SUBSCRIBING = "subscribing"
    #: Acknowledged: ``_Channel.sid`` is live on this connection.
    LIVE = "live"
    #: The ``subscribe`` was refused and is not retried on this connection (a user error would fail again).
    FAILED = "failed"


_S = SubscriptionState

#: Every allowed transition. ``UNSUBSCRIBED`` is reachable from every state (a connection opens or ends).
TRANSITIONS: Final[Mapping[SubscriptionState, frozenset[SubscriptionState]]] = MappingProxyType({
    _S.UNSUBSCRIBED: frozenset({_S.UNSUBSCRIBED, _S.SUBSCRIBING}),
    # refused: retried (SUBSCRIBING again) or given up (FAILED); acknowledged: LIVE
    _S.SUBSCRIBING: frozenset({_S.UNSUBSCRIBED, _S.SUBSCRIBING, _S.LIVE, _S.FAILED}),
    # re-created (recovery ladder, terminal error, unsolicited end); a second ``subscribed`` replaces the sid
    _S.LIVE: frozenset({_S.UNSUBSCRIBED, _S.SUBSCRIBING, _S.LIVE}),
    _S.FAILED: frozenset({_S.UNSUBSCRIBED}),
})


class _Channel:
    """One server subscription (per channel) and what the caller wants it to cover."""

    __slots__ = ("explicit", "failed_subscribes", "markets", "name", "params", "recovery", "sid", "state",
                 "subscribe_id")

    def __init__(self, name: str, markets: Iterable[str], params: Mapping[str, Any], explicit: bool = False) -> None:
        self.name = name
        #: Desired markets, in order (a dict used as an ordered set); empty = all markets, unless ``explicit``.
        self.markets: dict[str, None] = dict.fromkeys(markets)
        #: The list is exact: while it is empty the channel has no server subscription.
        self.explicit = explicit
        self.params = dict(params)
        self.state = SubscriptionState.UNSUBSCRIBED
        #: The live sid: set in ``LIVE`` only.
        self.sid: int | None = None
        #: The ``subscribe`` command in flight: set in ``SUBSCRIBING`` only.
        self.subscribe_id: int | None = None
        self.failed_subscribes = 0
        self.recovery: _Recovery | None = None

    def move(self, new: SubscriptionState, *, sid: int | None = None, command_id: int | None = None) -> None:
        """The only place the subscription state changes; ``sid`` for ``LIVE``, ``command_id`` for ``SUBSCRIBING``."""
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self.name}: no transition from {self.state.name} to {new.name}")
        if (new is _S.LIVE) != (sid is not None) or (new is _S.SUBSCRIBING) != (command_id is not None):
            raise RuntimeError(f"{self.name}: {new.name} takes {'a sid' if new is _S.LIVE else 'a command id'}")
        self.state = new
        self.sid = sid
        self.subscribe_id = command_id

    @property
    def dormant(self) -> bool:
        """An explicit list that is empty: nothing to subscribe to until a market is added."""
        return self.explicit and not self.markets


class _Sid:
    """A live sid: its channel and its sequence (with ``seq_scope="connection"``, ``seq`` only records what this
    sid carried, to notice a number used twice; the stream is checked on the connection's tracker)."""

    __slots__ = ("channel", "seq", "sid")

    def __init__(self, sid: int, channel: _Channel) -> None:
        self.sid = sid
        self.channel = channel
        self.seq = SequenceTracker(sid)


class RecoveryStep(enum.Enum):
    """The step of the recovery ladder a channel's books are on; it is the outcome when they recover."""

    #: ``get_snapshot`` requested for the pending markets on the live sid.
    SNAPSHOT = "snapshot"
    #: A new subscription on this connection brings fresh snapshots.
    RESUBSCRIBED = "resubscribed"
    #: A new connection brings fresh snapshots (requested by the ladder, or the connection ended).
    RECONNECTED = "reconnected"

    @property
    def outcome(self) -> events.RecoveryOutcome:
        """The ``Recovered.outcome`` that names this step."""
        return cast("events.RecoveryOutcome", self.value)


#: The steps that wait for a new subscription's ``subscribed`` before the snapshots are due.
_NEW_SUBSCRIPTION: Final = frozenset({RecoveryStep.RESUBSCRIBED, RecoveryStep.RECONNECTED})


class _Recovery:
    """Books of one channel being re-synchronised, with the incidents that close when they are."""

    __slots__ = ("deadline", "gap_incidents", "markets", "pending", "reconnect_incident", "resubscribes",
                 "snapshot_requests", "step")

    def __init__(self, markets: tuple[str, ...]) -> None:
        self.markets = markets
        #: Markets still waiting for a fresh snapshot.
        self.pending: set[str] = set(markets)
        self.gap_incidents: list[int] = []
        #: The disconnect incident whose reconnect this recovery completes, if any.
        self.reconnect_incident: int | None = None
        self.step = RecoveryStep.SNAPSHOT
        self.snapshot_requests = 0
        self.resubscribes = 0
        #: When the step has failed (monotonic seconds); ``None``: no deadline (waiting for a connection).
        self.deadline: float | None = None

    def move(self, step: RecoveryStep, deadline: float | None) -> None:
        """The only place the step changes, always with its deadline (see the module docstring)."""
        if deadline is None and step is not RecoveryStep.RECONNECTED:
            raise RuntimeError(f"recovery step {step.name} needs a deadline")
        self.step = step
        self.deadline = deadline

    @property
    def incident(self) -> int | None:
        """The incident to name in ``SnapshotRequested`` / ``Resubscribed``."""
        return self.gap_incidents[-1] if self.gap_incidents else self.reconnect_incident


class SessionProtocol:
    """Sans-I/O Kalshi WebSocket session: frames in; messages, commands and events out.

    ``use_yes_price`` is pinned explicitly on every ``orderbook_delta`` subscription (the server default
    will flip); the books convert so their metrics are the same either way.
    ``snapshot_timeout`` is how long a requested snapshot may take before the next recovery step;
    ``snapshot_attempts`` is the number of ``get_snapshot`` requests per incident (the first included)
    before falling back to ``resubscribe_attempts`` unsubscribe+subscribe cycles, and then to a reconnect.
    ``command_timeout``: a ``subscribe`` or ``add/delete_markets`` without any reply for this long leaves the
    subscription state unknown, so a reconnect is requested.
    ``seq_scope`` says what one ``seq`` stream covers (spec 12.4): ``"sid"`` (the default, per the spec's examples
    and every serious client: a gap is pinned to one subscription and only its books recover) or
    ``"connection"`` (one counter for the whole connection: a gap may have hit any sequenced sid, so all of them
    report it and every book recovers). It is never inferred; evidence against it is reported as
    :class:`~kalshi_ws.events.SeqScopeContradicted`.
    ``clock`` (monotonic seconds) drives the timeouts; ``wall_ns`` stamps events not caused by a frame.
    """

    def __init__(self, subscriptions: Sequence[Subscription], *, use_yes_price: bool = False,
                 snapshot_timeout: float = 5.0, snapshot_attempts: int = 3, resubscribe_attempts: int = 2,
                 command_timeout: float = 10.0, seq_scope: SeqScope = "sid",
                 clock: Callable[[], float] = time.monotonic, wall_ns: Callable[[], int] = time.time_ns) -> None:
        if seq_scope not in get_args(SeqScope):
            raise ValueError(f"seq_scope must be one of {', '.join(map(repr, get_args(SeqScope)))}, not {seq_scope!r}")
        if snapshot_attempts < 1:
            raise ValueError("snapshot_attempts must be at least 1")
        if resubscribe_attempts < 0:
            raise ValueError("resubscribe_attempts must be >= 0")
        self.use_yes_price = use_yes_price
        self.snapshot_timeout = snapshot_timeout
        self.snapshot_attempts = snapshot_attempts
        self.resubscribe_attempts = resubscribe_attempts
        self.command_timeout = command_timeout
        self.seq_scope: SeqScope = seq_scope
        self._clock = clock
        self._wall_ns = wall_ns

        self._channels: dict[str, _Channel] = {}
        for sub in subscriptions:
            self._add_subscription(sub)
        self.generation = 0
        self.books = BookSet(use_yes_price=use_yes_price)
        for market in self._book_markets():
            self.books.book(market)
        self.has_output = False
        self.reconnect_requested: str | None = None

        self._tracker = CommandTracker(clock)
        self._sids: dict[int, _Sid] = {}
        self._sid_channels: dict[int, str] = {}
        #: ``seq_scope="connection"``: the connection's one stream (``None`` with per-sid streams).
        self._connection_seq: SequenceTracker | None = None
        #: ``SeqScopeContradicted`` was emitted on this connection (once is enough).
        self._scope_contradicted = False
        self._commands: list[bytes] = []
        self._events: list[events.SessionEvent] = []
        self._incidents = 0
        #: The incident a disconnect opened; closed (``Recovered(outcome="reconnected")``) once the next connection
        #: has every subscription acknowledged (none ``SUBSCRIBING``) and every book re-snapshotted.
        self._reconnect_incident: int | None = None
        #: Between ``connection_opened`` and ``connection_lost``.
        self._connected = False
        #: Markets already reported as ``delta_before_snapshot`` in the current incident/connection.
        self._warned: set[str] = set()
        # Hot-path shortcut: the BookSet's dict (BookSet never rebinds it).
        self._books_get = self.books._books.get

    def _add_subscription(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.channel)
        if channel is None:
            self._channels[sub.channel] = _Channel(sub.channel, sub.market_tickers, sub.params, sub.explicit)
            return
        if channel.explicit != sub.explicit:
            raise ValueError(f"two subscriptions to {sub.channel!r} disagree on whether their market list is explicit")
        for key, value in sub.params.items():
            if key in channel.params and channel.params[key] != value:
                raise ValueError(f"two subscriptions to {sub.channel!r} disagree on {key!r} "
                                 f"({channel.params[key]!r} vs {value!r}); they share one server subscription")
            channel.params[key] = value
        if not channel.markets or not sub.market_tickers:
            channel.markets.clear()  # one of them wants every market
        else:
            channel.markets.update(dict.fromkeys(sub.market_tickers))

    def _book_markets(self) -> list[str]:
        channel = self._channels.get(BOOK_CHANNEL)
        return list(channel.markets) if channel is not None else []

    # ------------------------------------------------------------------------------------------ output

    def _send(self, frame: bytes) -> None:
        self._commands.append(frame)
        self.has_output = True

    def _emit(self, event: events.SessionEvent) -> None:
        self._events.append(event)
        self.has_output = True

    def take_commands(self) -> list[bytes]:
        """Command frames to send now, in order (drained)."""
        out = self._commands
        self._commands = []
        self.has_output = bool(self._events)
        return out

    def take_events(self) -> list[events.SessionEvent]:
        """Session events for the sink, in order (drained)."""
        out = self._events
        self._events = []
        self.has_output = bool(self._commands)
        return out

    def sid_channel(self, sid: int) -> str | None:
        """The channel of a sid seen on the current connection (also after it was unsubscribed)."""
        return self._sid_channels.get(sid)

    def subscription_state(self, channel: str) -> tuple[SubscriptionState, int | None]:
        """Where ``channel``'s server subscription is on this connection, and its sid while ``LIVE``."""
        state = self._channels[channel]
        return state.state, state.sid

    def _new_incident(self) -> int:
        self._incidents += 1
        return self._incidents

    # ------------------------------------------------------------------------------------ connection

    def connection_opened(self, url: str = "") -> None:
        """A new connection is up: subscribe everything again with the current market lists."""
        self.generation += 1
        self._connected = True
        self._reset_connection_state()
        self.books.mark_untrusted()
        self._warned.clear()
        incident = self._reconnect_incident
        self._emit(events.Connected(generation=self.generation, at_ns=self._wall_ns(), url=url,
                                    incident_id=incident))
        for channel in self._channels.values():
            channel.failed_subscribes = 0
            if not channel.dormant:
                self._subscribe(channel)
        book = self._channels.get(BOOK_CHANNEL)
        if book is not None and book.markets and (incident is not None or book.recovery is not None):
            recovery = self._restart_recovery(book, RecoveryStep.RECONNECTED)
            recovery.reconnect_incident = incident
            recovery.snapshot_requests = 0
            recovery.resubscribes = 0
        if incident is not None:
            self._check_reconnect_closed()

    def _reset_connection_state(self) -> None:
        """Nothing of a connection survives it: sids, their streams, commands in flight, subscriptions."""
        self._tracker = CommandTracker(self._clock)
        self._sids = {}
        self._sid_channels = {}
        self._connection_seq = SequenceTracker(0) if self.seq_scope == "connection" else None
        self._scope_contradicted = False
        self._commands = []
        self.reconnect_requested = None
        for channel in self._channels.values():
            channel.move(SubscriptionState.UNSUBSCRIBED)

    def connection_lost(self, reason: str, will_reconnect: bool) -> None:
        """The connection ended: every sid is void and every book untrusted until re-snapshotted."""
        self._connected = False
        if self._reconnect_incident is None:
            self._reconnect_incident = self._new_incident()
        at_ns = self._wall_ns()
        self._emit(events.Disconnected(generation=self.generation, at_ns=at_ns,
                                       incident_id=self._reconnect_incident, reason=reason,
                                       will_reconnect=will_reconnect))
        self.books.mark_untrusted()
        sid_channels = self._sid_channels
        self._reset_connection_state()
        self._sid_channels = sid_channels  # sid_channel() still answers for the connection that ended
        for channel in self._channels.values():
            recovery = channel.recovery
            if recovery is None:
                continue
            recovery.move(RecoveryStep.RECONNECTED, None)
            if not will_reconnect:
                channel.recovery = None
                for incident in recovery.gap_incidents:
                    self._emit(events.Recovered(generation=self.generation, at_ns=at_ns, incident_id=incident,
                                                outcome="abandoned", markets=recovery.markets))

    def _check_reconnect_closed(self) -> None:
        incident = self._reconnect_incident
        if incident is None or any(c.state is SubscriptionState.SUBSCRIBING for c in self._channels.values()):
            return
        book = self._channels.get(BOOK_CHANNEL)
        if book is not None and book.recovery is not None and book.recovery.reconnect_incident == incident:
            return
        self._reconnect_incident = None
        self._emit(events.Recovered(generation=self.generation, at_ns=self._wall_ns(), incident_id=incident,
                                    outcome="reconnected", markets=tuple(self._book_markets())))

    # ------------------------------------------------------------------------------------ commands

    def _subscribe(self, channel: _Channel) -> None:
        command = self._tracker.subscribe(
            channel.name, channel.markets,
            use_yes_price=self.use_yes_price if channel.name == BOOK_CHANNEL else None,
            params=channel.params)
        channel.move(SubscriptionState.SUBSCRIBING, command_id=command.id)
        self._send(command.frame)

    def _update(self, channel: _Channel, action: Any, markets: Sequence[str]) -> None:
        assert channel.sid is not None
        params = None
        if action == "add_markets" and "send_initial_snapshot" in channel.params:
            params = {"send_initial_snapshot": channel.params["send_initial_snapshot"]}
        command = self._tracker.update_subscription(channel.sid, action, markets, channel=channel.name,
                                                    params=params)
        self._send(command.frame)

    def update_markets(self, channel: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Grow or shrink a channel's market list on the live subscription (``add_markets`` /
        ``delete_markets``). The new list is remembered: resubscribes and reconnects use it."""
        state = self._channels.get(channel)
        if state is None:
            raise ValueError(f"channel {channel!r} is not part of this session's subscriptions")
        if channel in UNFILTERED_CHANNELS:
            raise ValueError(f"channel {channel!r} has no market filter; it always covers every market")
        if isinstance(add, str) or isinstance(remove, str):
            raise ValueError("add/remove take sequences of tickers, not a single string")
        if not state.markets and channel != BOOK_CHANNEL and not state.explicit:
            raise ValueError(f"channel {channel!r} is subscribed to every market; there is no list to change")
        added = [m for m in dict.fromkeys(add) if m not in state.markets]
        removed = [m for m in dict.fromkeys(remove) if m in state.markets and m not in added]
        if len(state.markets) + len(added) - len(removed) <= 0 and (channel == BOOK_CHANNEL or state.explicit):
            raise ValueError(f"{channel} needs at least one market: a live subscription keeps at least one "
                             "(end the session, or keep the last market)")
        was_dormant = state.dormant
        for market in added:
            state.markets[market] = None
        for market in removed:
            del state.markets[market]
        if was_dormant and added:
            if self._connected and state.state is SubscriptionState.UNSUBSCRIBED:
                self._subscribe(state)  # the first market of a followed list: subscribe now
        elif state.sid is not None:
            if added:
                self._update(state, "add_markets", added)
            if removed:
                self._update(state, "delete_markets", removed)
        if channel == BOOK_CHANNEL:
            for market in added:
                self.books.book(market)
            for market in removed:
                self.books.discard(market)
                self._warned.add(market)  # its deltas may still be in flight: not an inconsistency
            recovery = state.recovery
            if recovery is not None and removed:
                recovery.markets = tuple(m for m in recovery.markets if m in state.markets)
                recovery.pending.difference_update(removed)
                if not recovery.pending:
                    self._recovered(state, recovery, self._wall_ns())

    # ------------------------------------------------------------------------------------ receive

    def receive(self, frame: bytes, received_ns: int) -> messages.AnyMessage | None:
        """Handle one text frame. Returns the message to deliver to the sink, or ``None`` for control
        replies and for duplicate/stale sequenced frames."""
        # ``Any``: the class tests below narrow it, which mypy cannot see (and isinstance costs time here).
        message: Any = messages.decode(frame)
        cls = message.__class__
        if cls is messages.OrderbookDelta:
            state = self._sids.get(message.sid)
            seq = message.seq
            if state is None:  # a sid of an old subscription: real data, nothing to maintain
                if seq is not None and self._connection_seq is not None:  # but it took a number of the stream
                    return message if self._in_sequence(None, seq, received_ns) else None
                return message
            if seq is not None and not self._in_sequence(state, seq, received_ns):
                return None
            payload = message.msg
            book = self._books_get(payload.market_ticker)
            if book is not None and book.trusted:
                problem = book.apply_delta(payload.side, payload.price_dollars, payload.delta_fp)
                if problem is not None:
                    self._inconsistent(book.market, problem, received_ns)
            else:
                self._untrusted_delta(payload.market_ticker, received_ns)
            return message
        if cls is messages.OrderbookSnapshot:
            return self._snapshot(message, received_ns)
        if cls in _SEQUENCED:
            seq = message.seq
            if seq is not None:
                state = self._sids.get(message.sid)
                if state is None and self._connection_seq is None:
                    return message
                if not self._in_sequence(state, seq, received_ns):
                    return None
            return message
        if cls in _CONTROL:
            self._control(message, received_ns)
            return None
        if cls in _UNTYPED:
            self._untyped(message, received_ns)
        return message

    def _untyped(self, message: messages.UnknownMessage | messages.LegacyMessage | messages.MalformedFrame,
                 at_ns: int) -> None:
        """An unknown, legacy or undecodable frame: delivered (dead-lettered by storage), and accounted for."""
        sid = message.sid
        state = self._sids.get(sid) if sid is not None else None
        if state is None:
            return
        seq = message.seq
        if seq is not None:
            # It may have consumed a number of its sid's stream; never a gap by itself.
            stream = self._stream(state)
            if stream.last is not None and seq <= stream.last:
                return  # a stale copy
            self._observe_control(state, seq)
            if self._connection_seq is not None:
                state.seq.observe(seq)  # what this sid carried (see _Sid)
        if message.type in _BOOK_TYPES and state.channel.name == BOOK_CHANNEL:
            # A book update that cannot be applied is lost data for the book: recover as for a gap whose
            # missing frame is this one (expected == received == its seq, 0 when it has none).
            self._open_gap(state, seq or 0, seq or 0, at_ns)

    def _snapshot(self, message: messages.OrderbookSnapshot, at_ns: int) -> messages.AnyMessage | None:
        if message.id:
            self._tracker.match(message)
        state = self._sids.get(message.sid)
        if state is None:
            if message.seq is not None and self._connection_seq is not None:
                return message if self._in_sequence(None, message.seq, at_ns) else None
            return message
        if message.seq is not None and not self._in_sequence(state, message.seq, at_ns):
            return None
        payload = message.msg
        market = payload.market_ticker
        if state.channel.name != BOOK_CHANNEL or market not in state.channel.markets:
            return message  # e.g. in flight when the market was removed: delivered, no book kept
        book = self.books.book(market)
        for problem in book.apply_snapshot(payload.yes_dollars_fp, payload.no_dollars_fp):
            self._inconsistent(market, problem, at_ns)
        book.trusted = True
        book.generation = self.generation
        self._warned.discard(market)
        channel = state.channel
        recovery = channel.recovery
        if recovery is not None and market in recovery.pending:
            recovery.pending.discard(market)
            if not recovery.pending:
                self._recovered(channel, recovery, at_ns)
        return message

    def _inconsistent(self, market: str, problem: Problem, at_ns: int) -> None:
        kind, detail = problem
        self._emit(events.BookInconsistency(generation=self.generation, at_ns=at_ns, market=market, kind=kind,
                                            detail=detail))

    def _untrusted_delta(self, market: str, at_ns: int) -> None:
        """A delta for a market whose book is not trusted: dropped for the book (still delivered)."""
        book = self._books_get(market)
        if book is not None and book.generation == self.generation:
            return  # recovering after a gap: expected until its new snapshot arrives
        if market in self._warned:
            return
        self._warned.add(market)
        self._inconsistent(market, ("delta_before_snapshot",  # type: ignore[arg-type]
                                    "delta for a market with no snapshot on this connection yet; "
                                    "not applied until its snapshot arrives"), at_ns)

    # ------------------------------------------------------------------------------------ gaps / recovery

    def _stream(self, state: _Sid) -> SequenceTracker:
        """The ``seq`` stream ``state``'s frames belong to under ``seq_scope``."""
        connection = self._connection_seq
        return state.seq if connection is None else connection

    def _in_sequence(self, state: _Sid | None, seq: int, at_ns: int) -> bool:
        """The one ``seq`` check of a data frame: ``False`` = drop it (a duplicate or a stale reorder); a gap is
        reported (and recovered) and the frame is kept (it is real and newer than anything). ``state`` is ``None``
        for a sid that is no longer live: its frames still take numbers of a per-connection stream."""
        connection = self._connection_seq
        if connection is None:
            assert state is not None  # per sid, only live sids are checked
            verdict = state.seq.observe(seq)
            if not verdict:  # ACCEPT
                return True
            if verdict == STALE:
                return False
            expected = state.seq.expected_before_gap or 0
            self._check_sid_scope(state, seq, at_ns)
            self._open_gap(state, expected, seq, at_ns)
            return True
        verdict = connection.observe(seq)
        if verdict == STALE:
            if state is not None and (state.seq.last is None or seq > state.seq.last):
                self._contradicted(state, at_ns, f"seq {seq} arrived on sid {state.sid} after the connection's "
                                   f"stream reached {connection.last}, and sid {state.sid} never carried it: "
                                   "numbers are reused across sids, as if each sid counted on its own")
            return False
        if state is not None:
            state.seq.observe(seq)  # what this sid carried (see _Sid)
        if verdict != ACCEPT:
            # The lost number may have belonged to any sequenced sid: each one reports the gap.
            expected = connection.expected_before_gap or 0
            for other in [s for s in self._sids.values() if s.seq.last is not None]:
                self._open_gap(other, expected, seq, at_ns)
        return True

    def _observe_control(self, state: _Sid, seq: int) -> None:
        """A control reply carrying ``seq`` (spec 12.5): advances its stream when it is the next number, never a gap."""
        self._stream(state).observe_control(seq)

    def _check_sid_scope(self, state: _Sid, received: int, at_ns: int) -> None:
        """Spec 12.4: a "gap" on a per-sid stream that per-connection numbering would explain. Evidence, not a
        coincidence: the missing number is the last one of another sid *and* some sid did not start at 1 (a
        subscription's own stream starts at 1). The gap is still a gap: the setting rules, the event tells."""
        if self._scope_contradicted:
            return
        previous = received - 1
        others = [s for s in self._sids.values() if s is not state and s.seq.last is not None]
        if not any(other.seq.last == previous for other in others):
            return
        if all(s.seq.first == 1 for s in (state, *others)):
            return
        self._contradicted(state, at_ns, f"seq {received} on sid {state.sid} skipped {previous}, the last seq of "
                           "another sid, and not every sid started at 1, as if numbered per connection")

    def _contradicted(self, state: _Sid, at_ns: int, evidence: str) -> None:
        if self._scope_contradicted:
            return
        self._scope_contradicted = True
        self._emit(events.SeqScopeContradicted(generation=self.generation, at_ns=at_ns, seq_scope=self.seq_scope,
                                               sid=state.sid, channel=state.channel.name, evidence=evidence))

    def _open_gap(self, state: _Sid, expected: int, received: int, at_ns: int) -> None:
        channel = state.channel
        incident = self._new_incident()
        markets = tuple(channel.markets)
        self._emit(events.SequenceGap(generation=self.generation, at_ns=at_ns, incident_id=incident,
                                      sid=state.sid, channel=channel.name, markets=markets, expected=expected,
                                      received=received))
        if channel.name != BOOK_CHANNEL:
            self._emit(events.Recovered(generation=self.generation, at_ns=at_ns, incident_id=incident,
                                        outcome="abandoned", sid=state.sid, markets=markets))
            return
        recovery = self._restart_recovery(channel)
        recovery.gap_incidents.append(incident)
        self._escalate(channel, recovery, f"gap on sid {state.sid}: expected seq {expected}, got {received}",
                       self._clock(), at_ns)

    def _restart_recovery(self, channel: _Channel, step: RecoveryStep | None = None) -> _Recovery:
        """The one recovery reset: every market ``channel`` has now is untrusted and waits for a fresh snapshot,
        under the channel's recovery (created if none runs; its incidents are kept). With ``step``
        (``RESUBSCRIBED``/``RECONNECTED``) a new subscription is on its way: its ack and snapshots are due
        within ``command_timeout + snapshot_timeout``."""
        markets = tuple(channel.markets)
        self.books.mark_untrusted(markets)
        self._warned.difference_update(markets)
        recovery = channel.recovery
        if recovery is None:
            recovery = channel.recovery = _Recovery(markets)
        recovery.markets = markets
        recovery.pending = set(markets)
        if step is not None:
            recovery.move(step, self._clock() + self.command_timeout + self.snapshot_timeout)
        return recovery

    def _escalate(self, channel: _Channel, recovery: _Recovery, reason: str, now: float, at_ns: int) -> None:
        """Take the next step of the recovery ladder (see the module docstring)."""
        if channel.sid is not None and recovery.snapshot_requests < self.snapshot_attempts:  # LIVE
            recovery.snapshot_requests += 1
            recovery.move(RecoveryStep.SNAPSHOT, now + self.snapshot_timeout)
            markets = tuple(m for m in recovery.markets if m in recovery.pending)
            self._update(channel, "get_snapshot", markets)
            self._emit(events.SnapshotRequested(generation=self.generation, at_ns=at_ns,
                                                incident_id=recovery.incident or 0, sid=channel.sid,
                                                markets=markets, attempt=recovery.snapshot_requests))
        elif recovery.resubscribes < self.resubscribe_attempts:
            recovery.resubscribes += 1
            self._restart_recovery(channel, RecoveryStep.RESUBSCRIBED)
            self._resubscribe(channel, reason, recovery.incident, at_ns)
        else:
            recovery.move(RecoveryStep.RECONNECTED, None)
            if self.reconnect_requested is None:
                self.reconnect_requested = (f"{channel.name} books not recovered after {recovery.snapshot_requests} "
                                            f"snapshot requests and {recovery.resubscribes} resubscribes ({reason})")

    def _resubscribe(self, channel: _Channel, reason: str, incident: int | None, at_ns: int) -> None:
        """Re-create ``channel``'s subscription on this connection (unsubscribing its live sid first)."""
        old_sid = channel.sid
        if old_sid is not None:
            self._send(self._tracker.unsubscribe((old_sid,), channel=channel.name).frame)
            self._sids.pop(old_sid, None)
        self._subscribe(channel)
        self._emit(events.Resubscribed(generation=self.generation, at_ns=at_ns, channel=channel.name,
                                       old_sid=old_sid, reason=reason, incident_id=incident))

    def _recovered(self, channel: _Channel, recovery: _Recovery, at_ns: int) -> None:
        channel.recovery = None
        for incident in recovery.gap_incidents:
            self._emit(events.Recovered(generation=self.generation, at_ns=at_ns, incident_id=incident,
                                        outcome=recovery.step.outcome, sid=channel.sid, markets=recovery.markets))
        if recovery.reconnect_incident is not None:
            self._check_reconnect_closed()

    def poll(self, now: float | None = None) -> None:
        """Run the timeouts: recovery deadlines (next ladder step) and command acknowledgements."""
        if now is None:
            now = self._clock()
        for command in self._tracker.expired(now, self.command_timeout):
            if command.cmd == "subscribe" or command.action in ("add_markets", "delete_markets"):
                if self.reconnect_requested is None:
                    what = command.action or f"subscribe to {command.channel}"
                    self.reconnect_requested = (f"{what} (command {command.id}) not acknowledged within "
                                                f"{self.command_timeout:g}s")
        for channel in self._channels.values():
            recovery = channel.recovery
            if recovery is not None and recovery.deadline is not None and now >= recovery.deadline:
                if channel.state is SubscriptionState.SUBSCRIBING:
                    continue  # the subscribe is in flight; its own timeout requests a reconnect
                missing = len(recovery.pending)
                self._escalate(channel, recovery,
                               f"{missing} of {len(recovery.markets)} {channel.name} snapshots missing after "
                               f"the {recovery.step.value} step", now, self._wall_ns())

    def postpone_timeouts(self, seconds: float) -> None:
        """The driver did not read the socket for ``seconds`` (backpressure): no reply and no snapshot could
        arrive meanwhile, so every running timeout (commands, recovery steps) ends that much later."""
        if seconds <= 0:
            return
        for command in self._tracker.pending.values():
            command.issued_at += seconds
        for channel in self._channels.values():
            recovery = channel.recovery
            if recovery is not None and recovery.deadline is not None:
                recovery.deadline += seconds

    # ------------------------------------------------------------------------------------ control replies

    def _control(self, message: messages.ControlMessage, at_ns: int) -> None:
        reply = self._tracker.match(message)
        if isinstance(message, messages.Subscribed):
            self._subscribed(message, reply)
        elif isinstance(message, messages.Error):
            self._error(message, reply, at_ns)
        elif isinstance(message, messages.Unsubscribed):
            state = self._sids.get(message.sid)
            if state is not None:
                if message.seq is not None:
                    self._observe_control(state, message.seq)
                del self._sids[message.sid]
                if state.channel.sid == message.sid:
                    if reply is None:  # the server dropped a sid we still consider live: re-create it
                        self._subscription_died(state, "the server ended the subscription (unsolicited "
                                                "'unsubscribed')", at_ns)
                    else:
                        state.channel.move(SubscriptionState.UNSUBSCRIBED)
        elif message.sid is not None and message.seq is not None:  # ok
            state = self._sids.get(message.sid)
            if state is not None:
                self._observe_control(state, message.seq)

    def _subscribed(self, message: messages.Subscribed, reply: Reply | None) -> None:
        name = message.msg.channel
        sid = message.msg.sid
        channel = None
        if reply is not None and reply.command.cmd == "subscribe":
            channel = self._channels.get(reply.command.channel or "")
        if channel is None:
            channel = self._channels.get(name)
        self._sid_channels[sid] = name
        if channel is None or SubscriptionState.LIVE not in TRANSITIONS[channel.state]:
            return  # no subscribe of ours is waiting for it (the channel failed or the connection is new)
        if channel.sid is not None and channel.sid != sid:
            self._sids.pop(channel.sid, None)
        channel.move(SubscriptionState.LIVE, sid=sid)
        if sid not in self._sids:
            self._sids[sid] = _Sid(sid, channel)
        sent = reply.command.markets if reply is not None else tuple(channel.markets)
        if channel.markets:
            added = [m for m in channel.markets if m not in sent]
            removed = [m for m in sent if m not in channel.markets]
            if added:
                self._update(channel, "add_markets", added)
            if removed:
                self._update(channel, "delete_markets", removed)
        recovery = channel.recovery
        if recovery is not None and recovery.step in _NEW_SUBSCRIPTION:
            recovery.move(recovery.step, self._clock() + self.snapshot_timeout)
        self._check_reconnect_closed()

    def _error(self, message: messages.Error, reply: Reply | None, at_ns: int) -> None:
        payload = message.msg
        code = payload.code
        _, meaning, terminal = describe_error(code)
        command = reply.command if reply is not None else None
        state = self._sids.get(message.sid) if message.sid is not None else None
        if state is not None and message.seq is not None:
            self._observe_control(state, message.seq)
        if payload.market_tickers:
            markets = tuple(payload.market_tickers)
        elif payload.market_ticker:
            markets = (payload.market_ticker,)
        else:
            markets = command.markets if command is not None else ()
        sid = message.sid if message.sid is not None else (command.sid if command is not None else None)
        self._emit(events.SubscriptionFailed(generation=self.generation, at_ns=at_ns, code=code, meaning=meaning,
                                             message=payload.msg, sid=sid, command_id=message.id,
                                             terminal=terminal, markets=markets))
        if terminal and state is not None:
            self._sids.pop(state.sid, None)
            if state.channel.sid == state.sid:
                self._subscription_died(state, f"error {code}: {payload.msg or meaning}", at_ns)
            return
        if command is None:
            return
        if code == 7 and command.sid is not None:
            # "Unknown subscription ID" for a sid we consider live: the server lost it; re-create it.
            dead = self._sids.pop(command.sid, None)
            if dead is not None and dead.channel.sid == command.sid:
                self._subscription_died(dead, f"the server does not know sid {command.sid} (error 7)", at_ns)
            return
        if command.cmd == "subscribe":
            channel = self._channels.get(command.channel or "")
            if channel is None or channel.subscribe_id != command.id:
                return
            if terminal and channel.failed_subscribes < self.resubscribe_attempts:
                channel.failed_subscribes += 1
                self._resubscribe(channel, f"subscribe failed with error {code}", None, at_ns)
                return
            # Not retried on this connection (a user error such as 8 or 9 would fail again).
            channel.move(SubscriptionState.FAILED)
            self._check_reconnect_closed()
        elif (code == 13 and command.action in ("add_markets", "delete_markets") and command.channel != BOOK_CHANNEL
              and command.sid is not None):
            # Spec 12.15: whether trade/market_positions accept add/delete_markets is not stated. If not,
            # re-create the subscription with the new list (frames in between are duplicates, not gaps).
            channel = self._channels.get(command.channel or "")
            if channel is not None and channel.sid == command.sid:
                self._resubscribe(channel, f"{command.action} is not supported on {channel.name} (error 13); "
                                  "re-created with the new market list", None, at_ns)
        elif command.action == "add_markets" and code not in (18, 27):
            # The markets were not added: forget them so reconnects do not fail the same way.
            channel = self._channels.get(command.channel or "")
            if channel is None:
                return
            for market in command.markets:
                if market in channel.markets and len(channel.markets) > 1:
                    del channel.markets[market]
                    if channel.name == BOOK_CHANNEL:
                        self.books.discard(market)

    def _subscription_died(self, state: _Sid, reason: str, at_ns: int) -> None:
        """The server killed ``state``'s subscription: re-create it (outside the recovery budget)."""
        channel = state.channel
        incident = None
        if channel.name == BOOK_CHANNEL:
            incident = self._new_incident()
            self._restart_recovery(channel, RecoveryStep.RESUBSCRIBED).gap_incidents.append(incident)
        self._subscribe(channel)
        self._emit(events.Resubscribed(generation=self.generation, at_ns=at_ns, channel=channel.name,
                                       old_sid=state.sid, reason=reason, incident_id=incident))
