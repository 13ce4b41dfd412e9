"""Sequence tracking (spec sections 5.1 and 5.2): one ``seq`` stream, 1, 2, 3 ... with no holes.

``seq`` counts per ``sid`` (spec 5.1), so one :class:`SequenceTracker` follows one sid on one connection; with
``SessionProtocol(seq_scope="connection")`` (the other reading of spec 12.4) one tracker follows the whole
connection instead (``SessionProtocol._in_sequence`` is the one place that judges data frames). A tracker is
created with its sid (or connection) and thrown away with it; it is **never** reset by a snapshot: with several
markets on one sid, resetting on a snapshot of market A would hide a gap that hit market B.

Whether ``ok`` / ``unsubscribed`` / ``error`` replies consume a number of the stream is undocumented
(spec section 12, question 5). :meth:`SequenceTracker.observe_control` handles both readings: a control
reply advances the stream only when it carries exactly the next number and never reports a gap, so the
next data frame is judged correctly either way.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACCEPT", "GAP", "STALE", "SequenceTracker"]

#: The frame is the next one (or the first one seen on the sid): use it.
ACCEPT: Final = 0
#: ``seq`` is not greater than the last one seen: a duplicate or a stale reorder; drop it.
STALE: Final = 1
#: Numbers were skipped. The frame itself is real and newer than anything seen, so the tracker moves on
#: to it (the gap is reported once, not on every later frame); whatever the sid feeds is now suspect.
GAP: Final = 2


class SequenceTracker:
    """Follows the ``seq`` of one subscription.

    Plain ints on purpose: :meth:`observe` is on the hot path of every sequenced frame.
    """

    __slots__ = ("expected_before_gap", "first", "gaps", "last", "sid", "stale")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        #: Last accepted ``seq`` (``None`` until the first sequenced frame).
        self.last: int | None = None
        #: First ``seq`` seen (per-sid numbering starts at 1; see spec section 12, question 4).
        self.first: int | None = None
        #: Frames dropped as duplicates or stale reorders.
        self.stale = 0
        #: Gaps seen on this sid.
        self.gaps = 0
        #: The ``seq`` that was due when the last gap was seen (``None`` before any gap).
        self.expected_before_gap: int | None = None

    def observe(self, seq: int) -> int:
        """Judge a data frame: :data:`ACCEPT`, :data:`STALE` or :data:`GAP` (then :attr:`expected_before_gap` is
        the number that was due)."""
        last = self.last
        if last is None:
            self.first = self.last = seq
            return ACCEPT
        if seq == last + 1:
            self.last = seq
            return ACCEPT
        if seq <= last:
            self.stale += 1
            return STALE
        self.expected_before_gap = last + 1
        self.last = seq
        self.gaps += 1
        return GAP

    def observe_control(self, seq: int) -> None:
        """A control reply (``ok``, ``unsubscribed``, ``error``) carrying ``seq``: never a gap, never dropped.

        If it carries the next number the stream advances (the "control replies consume a number" reading);
        otherwise it is ignored (the "they echo the current position" reading).
        """
        if self.last is not None and seq == self.last + 1:
            self.last = seq

    def __repr__(self) -> str:
        return f"SequenceTracker(sid={self.sid}, last={self.last}, gaps={self.gaps}, stale={self.stale})"
