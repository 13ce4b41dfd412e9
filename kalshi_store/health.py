"""SessionHealth: the one owner of a session's counters, its open incidents and its final verdict.

The recorder feeds it (session events, backpressure pauses, a full spill disk, quarantined spill segments, rows it
could not store); the product layer reads it (progress lines, the session summary) and reports what only it knows
(a failed REST backfill, a SIGTERM) with :meth:`SessionHealth.report`. At close, :meth:`SessionHealth.verdict`
decides the status written to ``kalshi.sessions`` and lists every problem once: ``completed`` becomes
``degraded`` when anything damaged the record.

Pure: no I/O and no clock (times come with the events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from kalshi_ws import events as ev

__all__ = [
    "DEAD_LETTER_DEGRADES_AT",
    "DEAD_LETTER_DEGRADES_PERCENT",
    "STATUSES",
    "SessionHealth",
    "SessionStatus",
    "Verdict",
]

SessionStatus = Literal["running", "completed", "cancelled", "failed", "degraded"]
STATUSES: Final = frozenset({"running", "completed", "cancelled", "failed", "degraded"})

#: A session with at least this many dead letters, making up at least this percentage of the rows it received,
#: ends ``degraded`` rather than ``completed`` (a stream of mostly garbage is not a good recording).
DEAD_LETTER_DEGRADES_AT: Final = 100
DEAD_LETTER_DEGRADES_PERCENT: Final = 1


@dataclass(frozen=True)
class Verdict:
    """A session's final status, the problems that decided it, and notes (what the caller says, how it stopped)."""

    status: SessionStatus
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def message(self) -> str | None:
        """The ``status_message``: the problems, then the notes (``None`` when there is nothing to say)."""
        return "; ".join((*self.problems, *self.notes)) or None


@dataclass
class SessionHealth:
    """Counters and open incidents of one session (see the module docstring)."""

    #: Connections re-established after a loss, and sequence gaps seen.
    reconnects: int = 0
    gaps: int = 0
    #: Incidents still open: gaps on channels repaired by a snapshot (trades are repaired from REST by the session),
    #: and connections lost (incident id -> when) and not re-established.
    open_gaps: set[int] = field(default_factory=set)
    open_disconnects: dict[int, int] = field(default_factory=dict)
    #: Why the client stopped (``Stopped.reason``) and its detail; ``None`` until it did.
    stop_reason: str | None = None
    stop_detail: str = ""
    #: Backpressure: times reading paused and for how long in all.
    paused_count: int = 0
    paused_seconds: float = 0.0
    #: Times the disk under the spill was full, and its last error.
    spill_full_count: int = 0
    spill_full_error: str | None = None
    #: Spill segments moved aside as ``*.quarantine`` (they held unreadable bytes).
    quarantined: list[str] = field(default_factory=list)
    #: Rows of this session the database refused (moved to ``dead_letter``).
    unstorable: int = 0
    #: Problems the product layer reported (in order).
    reported: list[str] = field(default_factory=list)
    #: The exchange numbered seq differently from the seq_scope setting: (setting, evidence) of the first time.
    seq_scope_contradicted: tuple[str, str] | None = None

    # -- what happened -------------------------------------------------------------------------------

    def on_event(self, event: ev.SessionEvent) -> None:
        if isinstance(event, ev.Connected):
            if event.incident_id is not None:
                self.reconnects += 1
                self.open_disconnects.pop(event.incident_id, None)
        elif isinstance(event, ev.Disconnected):
            if event.will_reconnect:
                self.open_disconnects[event.incident_id] = event.at_ns
        elif isinstance(event, ev.SequenceGap):
            self.gaps += 1
            if event.channel != "trade":  # trades have no snapshot: the session repairs them from REST
                self.open_gaps.add(event.incident_id)
        elif isinstance(event, ev.Recovered):
            if event.outcome != "abandoned":
                self.open_gaps.discard(event.incident_id)
        elif isinstance(event, ev.SeqScopeContradicted):
            if self.seq_scope_contradicted is None:
                self.seq_scope_contradicted = (event.seq_scope, event.evidence)
        elif isinstance(event, ev.Stopped):
            self.stop_reason, self.stop_detail = event.reason, event.detail

    def on_pause(self) -> None:
        self.paused_count += 1

    def on_resume(self, seconds: float) -> None:
        self.paused_seconds += seconds

    def on_spill_full(self, error: str) -> None:
        """The disk under the spill is full (once per episode)."""
        self.spill_full_count += 1
        self.spill_full_error = error

    def on_quarantined(self, paths: list[str]) -> None:
        self.quarantined += [p for p in paths if p not in self.quarantined]

    def report(self, problem: str) -> None:
        """A problem only the caller knows (a ``completed`` session with one ends ``degraded``)."""
        self.reported.append(problem)

    @property
    def unrecovered(self) -> int:
        """Incidents never closed: gaps never repaired plus connections never re-established."""
        return len(self.open_gaps) + len(self.open_disconnects)

    @property
    def stop_line(self) -> str | None:
        if self.stop_reason is None:
            return None
        return f"client stopped: {self.stop_reason}" + (f" ({self.stop_detail})" if self.stop_detail else "")

    # -- the verdict ----------------------------------------------------------------------------------

    def verdict(self, requested: SessionStatus, *, received: dict[str, int], rows_spilled: int, spill_dir: str,
                left_unstored: bool, notes: tuple[str, ...] = ()) -> Verdict:
        """The status ``kalshi.sessions`` gets when the caller asks for ``requested``, and why.

        ``received`` counts rows per table (``dead_letter`` included); ``rows_spilled`` rows went to the local spill
        in ``spill_dir``; ``left_unstored`` says batches are still in the spill or in memory (the database is away).
        """
        if requested not in STATUSES:
            raise ValueError(f"unknown session status {requested!r}; expected one of {sorted(STATUSES)}")
        problems = list(self.reported)
        if rows_spilled:
            problems.append(f"{rows_spilled} rows went to the local spill ({spill_dir}) while the database was "
                            "unavailable")
        if left_unstored:
            problems.append("some batches are still in the local spill (database unavailable at close); run "
                            "`kalshi-ingest db replay`")
        if self.unstorable:
            problems.append(f"{self.unstorable} rows could not be stored (see kalshi.dead_letter)")
        problems += self._garbage(received)
        if self.seq_scope_contradicted is not None:
            setting, evidence = self.seq_scope_contradicted
            other = "connection" if setting == "sid" else "sid"
            problems.append(f"the exchange does not number seq per {setting} ({evidence}): set "
                            f"KALSHI_SEQ_SCOPE={other} (the gaps this session saw may come from the wrong setting)")
        if self.open_gaps:
            problems.append(f"{len(self.open_gaps)} sequence gaps were never repaired")
        for lost in self.open_disconnects.values():
            problems.append(f"the connection was lost at {datetime.fromtimestamp(lost / 1e9, tz=UTC):%H:%M:%S} UTC "
                            "and not re-established before the session ended")
        if self.spill_full_count:
            times = "once" if self.spill_full_count == 1 else f"{self.spill_full_count} times"
            problems.append(f"the disk under the local spill was full {times} (last: {self.spill_full_error}); "
                            "reading stopped until space came back or the database returned")
        if self.paused_count:
            times = "once" if self.paused_count == 1 else f"{self.paused_count} times"
            problems.append(f"reading paused {times} ({self.paused_seconds:.1f} s) by backpressure")
        if self.quarantined:
            problems.append(f"{len(self.quarantined)} spill segments held unreadable bytes; their readable batches "
                            f"are stored and the files kept as {', '.join(self.quarantined)}")
        status: SessionStatus = "degraded" if requested == "completed" and problems else requested
        stop = self.stop_line
        return Verdict(status, tuple(problems), (*notes, *([stop] if stop else [])))

    @staticmethod
    def _garbage(received: dict[str, int]) -> list[str]:
        """A session that received much that could not be decoded is not ``completed`` (say how much)."""
        dead = received.get("dead_letter", 0)
        total = sum(received.values())
        if dead < DEAD_LETTER_DEGRADES_AT or dead * 100 < total * DEAD_LETTER_DEGRADES_PERCENT:
            return []
        return [f"{dead} of {total} rows received were frames that could not be decoded or stored (see dead_letter)"]
