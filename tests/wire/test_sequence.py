"""SequenceTracker: spec 5.1/5.2 (first seen accepted, next accepted, stale dropped, gaps reported once)."""

from __future__ import annotations

from kalshi_ws.sequence import ACCEPT, GAP, STALE, SequenceTracker


def test_first_seen_is_accepted_whatever_its_number() -> None:
    tracker = SequenceTracker(sid=7)
    assert tracker.observe(845) == ACCEPT
    assert tracker.last == 845
    assert tracker.observe(846) == ACCEPT


def test_in_order_duplicates_and_reorders() -> None:
    tracker = SequenceTracker(1)
    verdicts = [tracker.observe(seq) for seq in (1, 2, 3, 3, 2, 4, 1, 5)]
    assert verdicts == [ACCEPT, ACCEPT, ACCEPT, STALE, STALE, ACCEPT, STALE, ACCEPT]
    assert tracker.last == 5
    assert tracker.stale == 3
    assert tracker.gaps == 0


def test_gap_is_reported_once_and_the_stream_continues_from_the_new_number() -> None:
    tracker = SequenceTracker(1)
    tracker.observe(1)
    tracker.observe(2)
    assert tracker.observe(5) == GAP
    assert tracker.expected_before_gap == 3
    assert tracker.last == 5
    assert tracker.observe(6) == ACCEPT
    assert tracker.observe(4) == STALE  # the late frame of the hole is older than what was accepted
    assert tracker.gaps == 1


def test_control_replies_advance_only_when_next_and_never_gap() -> None:
    # Reading 1: ok/unsubscribed consume a number.
    tracker = SequenceTracker(1)
    tracker.observe(1)
    tracker.observe_control(2)
    assert tracker.last == 2
    assert tracker.observe(3) == ACCEPT
    # Reading 2: the ok echoes the current position (does not consume a number).
    tracker = SequenceTracker(1)
    tracker.observe(1)
    tracker.observe(2)
    tracker.observe_control(2)
    assert tracker.last == 2
    assert tracker.observe(3) == ACCEPT
    # A control reply far ahead or behind never creates a gap nor moves the stream.
    tracker.observe_control(50)
    tracker.observe_control(1)
    assert tracker.last == 3 and tracker.gaps == 0
    assert tracker.observe(4) == ACCEPT


def test_control_before_any_data_is_ignored() -> None:
    tracker = SequenceTracker(1)
    tracker.observe_control(4)
    assert tracker.last is None
    assert tracker.observe(1) == ACCEPT


def test_trackers_are_independent_per_sid() -> None:
    a, b = SequenceTracker(1), SequenceTracker(2)
    order = [(a, 1), (b, 1), (a, 2), (b, 2), (b, 3), (a, 3)]
    assert [t.observe(s) for t, s in order] == [ACCEPT] * 6
