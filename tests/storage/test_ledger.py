"""Session events -> gap-ledger operations (kalshi_store.ledger): pure, no database, no clock."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from kalshi_store.batch import LedgerOp
from kalshi_store.ledger import event_op, pause_op, resume_op
from kalshi_ws import events as ev

SESSION = "5b0c7a62-5a35-4d1b-9c39-6c1f7a0e2d11"
AT = 1_764_000_000_123_456_789


def op_for(event: ev.SessionEvent) -> LedgerOp | None:
    counter = itertools.count(1)
    return event_op(event, SESSION, new_id=lambda: f"e{next(counter)}")


def test_a_gap_opens_an_incident_row_with_its_seqs() -> None:
    op = op_for(ev.SequenceGap(generation=2, at_ns=AT, incident_id=7, sid=3, channel="orderbook_delta",
                               markets=("A", "B"), expected=10, received=13))
    assert op is not None
    assert (op.op, op.event_id, op.kind, op.incident_id, op.sid, op.channel, op.markets) == (
        "open", "e1", "gap", 7, 3, "orderbook_delta", ["A", "B"])
    assert (op.expected_seq, op.received_seq, op.ended_ns, op.generation, op.at_ns) == (10, 13, None, 2, AT)


def test_recovered_closes_the_incident() -> None:
    op = op_for(ev.Recovered(generation=2, at_ns=AT, incident_id=7, outcome="snapshot", sid=3, markets=("A",)))
    assert op is not None
    assert (op.op, op.incident_id, op.outcome, op.kind, op.markets) == ("close_incident", 7, "snapshot", "recovery",
                                                                        ["A"])


def test_a_disconnect_that_is_followed_by_a_reconnect_stays_open_the_last_one_is_closed() -> None:
    lost = op_for(ev.Disconnected(generation=1, at_ns=AT, incident_id=4, reason="1006", will_reconnect=True))
    end = op_for(ev.Disconnected(generation=3, at_ns=AT, incident_id=5, reason="deadline", will_reconnect=False))
    assert lost is not None and end is not None
    assert (lost.kind, lost.ended_ns, lost.outcome) == ("disconnect", None, None)
    assert (end.kind, end.ended_ns, end.outcome) == ("disconnect", AT, "session_end")


def test_a_reconnect_annotates_the_disconnect_it_ends_with_its_exact_time() -> None:
    op = op_for(ev.Connected(generation=2, at_ns=AT, url="ws://x", incident_id=4))
    assert op is not None
    assert (op.op, op.incident_id) == ("annotate_incident", 4)
    assert op.detail == {"reconnected_at": "2025-11-24T16:00:00.123456+00:00", "new_generation": 2}


@pytest.mark.parametrize("event", [
    ev.Connected(generation=1, at_ns=AT, url="ws://x"),
    ev.Stopped(generation=1, at_ns=AT, reason="deadline"),
])
def test_events_the_ledger_does_not_record(event: ev.SessionEvent) -> None:
    assert op_for(event) is None


def test_a_stale_stream_row_starts_when_the_silence_began() -> None:
    op = op_for(ev.StaleStream(generation=1, at_ns=AT, silent_for=2.5))
    assert op is not None
    assert (op.kind, op.at_ns, op.ended_ns) == ("stale", AT - 2_500_000_000, AT)


def test_events_that_are_over_when_reported_open_a_closed_row() -> None:
    over: list[ev.SessionEvent] = [
        ev.ConnectFailed(generation=1, at_ns=AT, attempt=2, reason="refused", retry_in=0.4),
        ev.AuthRejected(generation=1, at_ns=AT, status=401, detail="bad key"),
        ev.SnapshotRequested(generation=1, at_ns=AT, incident_id=1, sid=1, markets=("A",), attempt=1),
        ev.Resubscribed(generation=1, at_ns=AT, channel="ticker", old_sid=2, reason="error 10"),
        ev.SubscriptionFailed(generation=1, at_ns=AT, code=10, meaning="m", message="x", terminal=True),
        ev.BookInconsistency(generation=1, at_ns=AT, market="A", kind="crossed", detail="d"),
    ]
    kinds = []
    for event in over:
        op = op_for(event)
        assert op is not None and op.op == "open" and op.ended_ns == AT, event
        kinds.append(op.kind)
    assert kinds == ["connect_failed", "auth_rejected", "recovery", "resubscribe", "subscription_error",
                     "book_inconsistency"]


def test_a_pause_row_is_closed_by_its_resume() -> None:
    opened = pause_op(SESSION, AT, event_id="p1", generation=0, cause="spill_full", rows_in_memory=9,
                      last_error="disk full")
    closed = resume_op(SESSION, AT + 5, pause_event_id="p1", new_id=lambda: "r1")
    assert (opened.op, opened.kind, opened.generation, opened.detail["cause"]) == ("open", "backpressure", None,
                                                                                     "spill_full")
    assert (closed.op, closed.target_event_id, closed.outcome, closed.event_id) == ("close_event", "p1", "resumed",
                                                                                    "r1")


def test_an_event_type_without_a_mapping_is_an_error() -> None:
    class Unknown(msgspec.Struct, frozen=True, kw_only=True):
        generation: int
        at_ns: int

    with pytest.raises(TypeError, match="Unknown"):
        event_op(Unknown(generation=1, at_ns=AT), SESSION)  # type: ignore[arg-type]
