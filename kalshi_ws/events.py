"""Session events: what happened to the connection and the data, for the caller to record.

The client emits these next to the data so that nothing that damages the record happens only in a
log. The storage layer writes them to the gap ledger (one row per gap, reconnect or recovery, closed
with its outcome), so a report can tell a trustworthy window from a damaged one.

Every event carries the connection ``generation`` (1 for the first connection of a client, +1 on every
reconnect) and ``at_ns`` (``time.time_ns()`` when it happened). Incidents that are opened and later
closed (a gap and its recovery, a disconnect and its reconnect) share an ``incident_id`` that is unique
within one client.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    generation: int
    at_ns: int


class Connected(_Event, frozen=True, kw_only=True):
    """A connection was established and authenticated (the upgrade returned 101)."""

    url: str
    #: The disconnect this connection ends, if any (``None`` for the first connection).
    incident_id: int | None = None


class Disconnected(_Event, frozen=True, kw_only=True):
    """The connection ended. Every sid is void; all books become untrusted until re-snapshotted."""

    incident_id: int
    reason: str
    #: ``True`` when the client will try again, ``False`` on shutdown or a fatal error.
    will_reconnect: bool


class ConnectFailed(_Event, frozen=True, kw_only=True):
    """A connection attempt failed (network error, HTTP status other than 101)."""

    attempt: int
    reason: str
    status: int | None = None
    #: Seconds until the next attempt (``None`` if the client gives up).
    retry_in: float | None = None


class AuthRejected(_Event, frozen=True, kw_only=True):
    """The handshake was rejected with 401/403: the key id, key or clock is wrong. Not retried in a storm."""

    status: int
    detail: str


class StaleStream(_Event, frozen=True, kw_only=True):
    """No frame (data or ping) arrived for ``silent_for`` seconds; the client forces a reconnect."""

    silent_for: float


class SequenceGap(_Event, frozen=True, kw_only=True):
    """A sequenced subscription skipped numbers. Every book on the sid is untrusted until recovered."""

    incident_id: int
    sid: int
    channel: str
    markets: tuple[str, ...]
    expected: int
    received: int


class SeqScopeContradicted(_Event, frozen=True, kw_only=True):
    """The exchange numbers ``seq`` differently from the session's ``seq_scope`` setting (spec 12.4).

    Emitted once per connection, on the first clear evidence; the setting still rules (a "gap" it sees is
    recovered as one), so gaps that follow may be artefacts of the wrong setting: fix ``seq_scope``.
    """

    seq_scope: Literal["sid", "connection"]
    sid: int
    channel: str
    evidence: str


class SnapshotRequested(_Event, frozen=True, kw_only=True):
    """Fresh snapshots were requested on the live connection (``get_snapshot``) to repair a gap."""

    incident_id: int
    sid: int
    markets: tuple[str, ...]
    attempt: int


RecoveryOutcome = Literal["snapshot", "resubscribed", "reconnected", "abandoned"]


class Recovered(_Event, frozen=True, kw_only=True):
    """An incident (gap or disconnect) is closed: every affected book is trusted again (or never will be)."""

    incident_id: int
    outcome: RecoveryOutcome
    sid: int | None = None
    markets: tuple[str, ...] = ()


class Resubscribed(_Event, frozen=True, kw_only=True):
    """A subscription was re-created (after a terminal error, or as a recovery fallback)."""

    channel: str
    old_sid: int | None
    reason: str
    incident_id: int | None = None


class SubscriptionFailed(_Event, frozen=True, kw_only=True):
    """The server answered a command or a subscription with an ``error``."""

    code: int
    meaning: str
    message: str
    sid: int | None = None
    command_id: int | None = None
    #: Terminal errors (10, 25; 17 in older specs) killed the subscription; the client resubscribes.
    terminal: bool = False
    markets: tuple[str, ...] = ()


class BookInconsistency(_Event, frozen=True, kw_only=True):
    """A local book failed a check after an update (crossed, negative size, price outside 0-1)."""

    market: str
    kind: Literal["crossed", "negative_size", "price_out_of_range", "delta_before_snapshot"]
    detail: str


class Stopped(_Event, frozen=True, kw_only=True):
    """The client stopped: at its deadline, on request, or on a fatal error."""

    reason: Literal["deadline", "requested", "auth_rejected", "fatal"]
    detail: str = ""


SessionEvent = (
    Connected
    | Disconnected
    | ConnectFailed
    | AuthRejected
    | StaleStream
    | SequenceGap
    | SeqScopeContradicted
    | SnapshotRequested
    | Recovered
    | Resubscribed
    | SubscriptionFailed
    | BookInconsistency
    | Stopped
)
