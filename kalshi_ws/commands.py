"""Command frames (spec section 3) and matching the server's replies to them.

:class:`CommandTracker` belongs to one connection: it numbers commands 1, 2, 3 ... (``id`` 0 means
"no id" to the server, so it is never used), encodes them as JSON text frames and remembers each one until
its replies arrived:

* ``subscribe`` (one channel per command, so the reply is exactly one ``subscribed`` or one ``error``);
* ``unsubscribe`` (one ``unsubscribed`` per sid);
* ``update_subscription`` ``add_markets`` / ``delete_markets`` (one ``ok``), ``get_snapshot`` (one
  ``orderbook_snapshot`` per market, each carrying the command's ``id``; an ``ok``, if the server sends
  one, is accepted too);
* ``list_subscriptions`` (one ``ok`` with an array ``msg``).

Replies are correlated by ``id`` only, never by waiting: every frame goes through the normal dispatcher
(spec section 9, pitfall 12).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from kalshi_ws import messages

__all__ = [
    "Command",
    "CommandTracker",
    "Reply",
    "list_subscriptions_frame",
    "subscribe_frame",
    "unsubscribe_frame",
    "update_subscription_frame",
]

CommandName = Literal["subscribe", "unsubscribe", "update_subscription", "list_subscriptions"]
UpdateAction = Literal["add_markets", "delete_markets", "get_snapshot"]

_encoder: Final = msgspec.json.Encoder()

#: Parameters the command builders set themselves; passing them in ``params`` would be ambiguous.
RESERVED_PARAMS: Final = frozenset({"channels", "market_ticker", "market_tickers", "sid", "sids", "action",
                                    "use_yes_price"})


def _frame(command_id: int, cmd: str, params: Mapping[str, Any] | None) -> bytes:
    body: dict[str, Any] = {"id": command_id, "cmd": cmd}
    if params is not None:
        body["params"] = params
    return _encoder.encode(body)


def subscribe_frame(command_id: int, channels: Iterable[str], market_tickers: Iterable[str] = (), *,
                    use_yes_price: bool | None = None, params: Mapping[str, Any] | None = None) -> bytes:
    """A ``subscribe`` frame. ``use_yes_price`` is written whenever it is not ``None`` (pin it: the server's
    default will flip). ``params`` adds channel options (``send_initial_snapshot``, ``skip_ticker_ack``,
    ``user_filter``, ``shard_factor``, ``shard_key``, ``index_ids`` ...)."""
    body: dict[str, Any] = {"channels": list(channels)}
    tickers = list(market_tickers)
    if tickers:
        body["market_tickers"] = tickers
    if use_yes_price is not None:
        body["use_yes_price"] = use_yes_price
    if params:
        body.update(params)
    return _frame(command_id, "subscribe", body)


def unsubscribe_frame(command_id: int, sids: Iterable[int]) -> bytes:
    return _frame(command_id, "unsubscribe", {"sids": list(sids)})


def update_subscription_frame(command_id: int, sid: int, action: str, market_tickers: Iterable[str] = (), *,
                              params: Mapping[str, Any] | None = None) -> bytes:
    """An ``update_subscription`` frame (``sid`` form; ``get_snapshot`` accepts only ``market_tickers``)."""
    body: dict[str, Any] = {"sid": sid, "action": action}
    tickers = list(market_tickers)
    if tickers:
        body["market_tickers"] = tickers
    if params:
        body.update(params)
    return _frame(command_id, "update_subscription", body)


def list_subscriptions_frame(command_id: int) -> bytes:
    return _frame(command_id, "list_subscriptions", None)


@dataclass(eq=False)
class Command:
    """A command sent on this connection and not yet fully answered."""

    id: int
    cmd: CommandName
    frame: bytes
    issued_at: float
    #: ``subscribe``: the channel; ``update_subscription`` / ``unsubscribe``: the channel of the sid if known.
    channel: str | None = None
    #: ``update_subscription``: the sid it changes.
    sid: int | None = None
    action: UpdateAction | None = None
    #: The markets the command names (subscribe list, markets added/removed/snapshotted).
    markets: tuple[str, ...] = ()
    #: ``unsubscribe``: sids still waiting for their ``unsubscribed``; ``get_snapshot``: markets still
    #: waiting for their snapshot.
    outstanding: set[Any] = field(default_factory=set)
    #: Whether any reply arrived yet.
    acknowledged: bool = False


@dataclass(frozen=True)
class Reply:
    """A reply matched to its command. ``done`` is ``True`` when the command expects nothing more."""

    command: Command
    message: messages.AnyMessage
    done: bool


class CommandTracker:
    """Builds this connection's commands with increasing ids and matches replies to them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._next_id = 1
        self.pending: dict[int, Command] = {}

    def _register(self, cmd: CommandName, frame_of: Callable[[int], bytes], **fields: Any) -> Command:
        command_id = self._next_id
        self._next_id += 1
        command = Command(command_id, cmd, frame_of(command_id), self._clock(), **fields)
        self.pending[command_id] = command
        return command

    def subscribe(self, channel: str, market_tickers: Iterable[str] = (), *, use_yes_price: bool | None = None,
                  params: Mapping[str, Any] | None = None) -> Command:
        tickers = tuple(market_tickers)
        return self._register(
            "subscribe",
            lambda i: subscribe_frame(i, (channel,), tickers, use_yes_price=use_yes_price, params=params),
            channel=channel, markets=tickers)

    def unsubscribe(self, sids: Iterable[int], *, channel: str | None = None) -> Command:
        sid_list = tuple(sids)
        return self._register("unsubscribe", lambda i: unsubscribe_frame(i, sid_list), channel=channel,
                              outstanding=set(sid_list))

    def update_subscription(self, sid: int, action: UpdateAction, market_tickers: Iterable[str] = (), *,
                            channel: str | None = None, params: Mapping[str, Any] | None = None) -> Command:
        tickers = tuple(market_tickers)
        return self._register(
            "update_subscription",
            lambda i: update_subscription_frame(i, sid, action, tickers, params=params),
            channel=channel, sid=sid, action=action, markets=tickers,
            outstanding=set(tickers) if action == "get_snapshot" else set())

    def list_subscriptions(self) -> Command:
        return self._register("list_subscriptions", list_subscriptions_frame)

    def match(self, message: messages.AnyMessage) -> Reply | None:
        """Match a reply (``subscribed``, ``unsubscribed``, ``ok``, ``error``, or a snapshot answering
        ``get_snapshot``) to its pending command by ``id``; ``None`` when no pending command has that id."""
        command_id = getattr(message, "id", None)
        if not command_id:
            return None
        command = self.pending.get(command_id)
        if command is None:
            return None
        command.acknowledged = True
        done = True
        if isinstance(message, messages.Unsubscribed) and command.cmd == "unsubscribe":
            command.outstanding.discard(message.sid)
            done = not command.outstanding
        elif isinstance(message, messages.OrderbookSnapshot):
            command.outstanding.discard(message.msg.market_ticker)
            done = not command.outstanding
        elif isinstance(message, messages.Ok) and command.action == "get_snapshot":
            done = not command.outstanding
        if done:
            del self.pending[command_id]
        return Reply(command, message, done)

    def expired(self, now: float, timeout: float) -> list[Command]:
        """Commands without any reply for ``timeout`` seconds; they are forgotten (returned once)."""
        late = [c for c in self.pending.values() if not c.acknowledged and now - c.issued_at >= timeout]
        for command in late:
            del self.pending[command.id]
        return late

    def forget(self, command_id: int) -> None:
        self.pending.pop(command_id, None)
