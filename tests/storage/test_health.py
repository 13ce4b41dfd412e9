"""SessionHealth (kalshi_store.health): one owner of a session's counters, open incidents and verdict. Pure."""

from __future__ import annotations

import pytest

from kalshi_store.health import SessionHealth, Verdict
from kalshi_ws import events as ev

AT = 1_764_000_000_000_000_000


def verdict(health: SessionHealth, requested: str = "completed", **facts: object) -> Verdict:
    args: dict[str, object] = {"received": {"trades": 10}, "rows_spilled": 0, "spill_dir": "/spill",
                               "left_unstored": False}
    args.update(facts)
    return health.verdict(requested, **args)  # type: ignore[arg-type]


def test_counters_and_incidents_follow_the_events() -> None:
    health = SessionHealth()
    for event in [
        ev.Connected(generation=1, at_ns=AT, url="ws://x"),
        ev.SequenceGap(generation=1, at_ns=AT, incident_id=1, sid=1, channel="orderbook_delta", markets=("A",),
                       expected=3, received=5),
        ev.SequenceGap(generation=1, at_ns=AT, incident_id=2, sid=3, channel="trade", markets=(), expected=7,
                       received=9),
        ev.Disconnected(generation=1, at_ns=AT, incident_id=3, reason="1006", will_reconnect=True),
        ev.Connected(generation=2, at_ns=AT, url="ws://x", incident_id=3),
        ev.Disconnected(generation=2, at_ns=AT + 3_600_000_000_000, incident_id=4, reason="1006",
                        will_reconnect=True),
        ev.Stopped(generation=2, at_ns=AT, reason="deadline"),
    ]:
        health.on_event(event)
    assert (health.reconnects, health.gaps) == (1, 2)
    assert health.open_gaps == {1}  # a trade gap is repaired from REST by the session, not by a snapshot
    assert list(health.open_disconnects) == [4]
    assert health.unrecovered == 2
    health.on_event(ev.Recovered(generation=2, at_ns=AT, incident_id=1, outcome="snapshot"))
    assert health.unrecovered == 1
    result = verdict(health)
    assert result.status == "degraded"
    assert result.problems == ("the connection was lost at 17:00:00 UTC and not re-established before the session "
                               "ended",)
    assert result.notes == ("client stopped: deadline",)


def test_an_abandoned_recovery_leaves_the_gap_open() -> None:
    health = SessionHealth()
    health.on_event(ev.SequenceGap(generation=1, at_ns=AT, incident_id=1, sid=1, channel="orderbook_delta",
                                   markets=("A",), expected=3, received=5))
    health.on_event(ev.Recovered(generation=1, at_ns=AT, incident_id=1, outcome="abandoned"))
    assert verdict(health).problems == ("1 sequence gaps were never repaired",)


def test_a_clean_session_is_completed_with_the_callers_notes() -> None:
    result = verdict(SessionHealth(), notes=("recorded until the deadline",))
    assert (result.status, result.problems, result.message) == ("completed", (), "recorded until the deadline")


def test_every_problem_is_listed_once_and_degrades_a_completed_session() -> None:
    health = SessionHealth()
    health.report("REST backfill failed: boom")
    health.unstorable = 3
    health.on_pause()
    health.on_resume(1.25)
    health.on_spill_full("no space left")
    health.on_quarantined(["/spill/1.quarantine"])
    health.on_quarantined(["/spill/1.quarantine"])
    result = verdict(health, rows_spilled=500, left_unstored=True, received={"trades": 100, "dead_letter": 200})
    assert result.status == "degraded"
    assert result.problems == (
        "REST backfill failed: boom",
        "500 rows went to the local spill (/spill) while the database was unavailable",
        "some batches are still in the local spill (database unavailable at close); run `kalshi-ingest db replay`",
        "3 rows could not be stored (see kalshi.dead_letter)",
        "200 of 300 rows received were frames that could not be decoded or stored (see dead_letter)",
        "the disk under the local spill was full once (last: no space left); reading stopped until space came back "
        "or the database returned",
        "reading paused once (1.2 s) by backpressure",
        "1 spill segments held unreadable bytes; their readable batches are stored and the files kept as "
        "/spill/1.quarantine",
    )
    assert result.message is not None and result.message.count("REST backfill failed") == 1


@pytest.mark.parametrize("requested", ["cancelled", "failed"])
def test_a_requested_end_is_kept_and_its_problems_listed(requested: str) -> None:
    health = SessionHealth()
    health.report("stopped by SIGTERM")
    result = verdict(health, requested, rows_spilled=1)
    assert result.status == requested and result.problems[0] == "stopped by SIGTERM"


def test_a_little_garbage_does_not_degrade() -> None:
    assert verdict(SessionHealth(), received={"trades": 100_000, "dead_letter": 500}).status == "completed"
    assert verdict(SessionHealth(), received={"trades": 10, "dead_letter": 99}).status == "completed"


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown session status"):
        verdict(SessionHealth(), "finished")
