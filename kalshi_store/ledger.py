"""Session events -> gap-ledger operations (``kalshi.gap_ledger``), without I/O.

Each function maps what happened to the :class:`~kalshi_store.batch.LedgerOp` the writer applies: an incident row
opened (a gap, a disconnect), an incident closed (``Recovered``), a row closed (the end of a backpressure pause) or
annotated (the reconnect that followed a disconnect). Events that are over when reported (a failed connect, a
resubscription, a subscription error ...) open a row that is already closed. A close the client will not follow
with a reconnect (the deadline, a stop) is the end of the recording, not a hole in it: its row is closed at once,
so the ledger has no incident left open.

Nothing here reads a clock or the database; event ids come from ``new_id`` (random UUIDs unless given), so the
translation is tested without either (tests/storage/test_ledger.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from kalshi_ws import events as ev

from .batch import LedgerOp

__all__ = ["event_op", "pause_op", "resume_op"]

IdFactory = Callable[[], str]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _uuid() -> str:
    return str(uuid.uuid4())


def _iso(at_ns: int) -> str:
    """Nanoseconds since the epoch -> ISO text, exact to the microsecond (as the writer converts times)."""
    return (_EPOCH + timedelta(microseconds=at_ns // 1000)).isoformat()


def event_op(event: ev.SessionEvent, session_id: str, *, new_id: IdFactory = _uuid) -> LedgerOp | None:
    """The ledger operation ``event`` makes, or ``None`` for an event the ledger does not record (a first
    connect, a stop)."""
    at = event.at_ns
    gen = event.generation
    if isinstance(event, ev.Connected):
        if event.incident_id is None:
            return None
        return LedgerOp(op="annotate_incident", event_id=new_id(), session_id=session_id, at_ns=at,
                        incident_id=event.incident_id, detail={"reconnected_at": _iso(at), "new_generation": gen})
    if isinstance(event, ev.Disconnected):
        final = not event.will_reconnect
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        incident_id=event.incident_id, kind="disconnect",
                        ended_ns=at if final else None, outcome="session_end" if final else None,
                        detail={"reason": event.reason, "will_reconnect": event.will_reconnect})
    if isinstance(event, ev.ConnectFailed):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        kind="connect_failed", ended_ns=at,
                        detail={"attempt": event.attempt, "reason": event.reason, "status": event.status,
                                "retry_in": event.retry_in})
    if isinstance(event, ev.AuthRejected):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        kind="auth_rejected", ended_ns=at, detail={"status": event.status, "detail": event.detail})
    if isinstance(event, ev.StaleStream):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at - int(event.silent_for * 1e9),
                        generation=gen, kind="stale", ended_ns=at, detail={"silent_for": event.silent_for})
    if isinstance(event, ev.SequenceGap):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        incident_id=event.incident_id, kind="gap", sid=event.sid, channel=event.channel,
                        markets=list(event.markets), expected_seq=event.expected, received_seq=event.received)
    if isinstance(event, ev.SnapshotRequested):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        incident_id=event.incident_id, kind="recovery", sid=event.sid, markets=list(event.markets),
                        ended_ns=at, outcome="snapshot_requested", detail={"attempt": event.attempt})
    if isinstance(event, ev.Recovered):
        return LedgerOp(op="close_incident", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        incident_id=event.incident_id, kind="recovery", sid=event.sid, markets=list(event.markets),
                        outcome=event.outcome)
    if isinstance(event, ev.Resubscribed):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        incident_id=event.incident_id, kind="resubscribe", sid=event.old_sid, channel=event.channel,
                        ended_ns=at, detail={"reason": event.reason})
    if isinstance(event, ev.SubscriptionFailed):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        kind="subscription_error", sid=event.sid, markets=list(event.markets), ended_ns=at,
                        detail={"code": event.code, "meaning": event.meaning, "message": event.message,
                                "terminal": event.terminal, "command_id": event.command_id})
    if isinstance(event, ev.BookInconsistency):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        kind="book_inconsistency", markets=[event.market], ended_ns=at,
                        detail={"kind": event.kind, "detail": event.detail})
    if isinstance(event, ev.SeqScopeContradicted):
        return LedgerOp(op="open", event_id=new_id(), session_id=session_id, at_ns=at, generation=gen,
                        kind="seq_scope", sid=event.sid, channel=event.channel, ended_ns=at,
                        detail={"seq_scope": event.seq_scope, "evidence": event.evidence})
    if isinstance(event, ev.Stopped):
        return None
    raise TypeError(f"no gap-ledger mapping for session event {type(event).__name__}")


def pause_op(session_id: str, at_ns: int, *, event_id: str, generation: int | None,
             cause: Literal["memory_full", "spill_full"], rows_in_memory: int, last_error: str | None) -> LedgerOp:
    """Reading stopped (backpressure): a ``backpressure`` row, open until :func:`resume_op` closes it."""
    return LedgerOp(op="open", event_id=event_id, session_id=session_id, at_ns=at_ns, generation=generation or None,
                    kind="backpressure",
                    detail={"cause": cause, "rows_in_memory": rows_in_memory, "last_error": last_error})


def resume_op(session_id: str, at_ns: int, *, pause_event_id: str, new_id: IdFactory = _uuid) -> LedgerOp:
    """Reading resumed: close the pause's row."""
    return LedgerOp(op="close_event", event_id=new_id(), session_id=session_id, at_ns=at_ns,
                    target_event_id=pause_event_id, outcome="resumed")
