"""Outbox: batches on their way to being durable, and the one replay loop of spilled batches.

A batch taken from memory waits in the :class:`Outbox` until it is durable: written to the database (in order,
after every batch spilled before it), or else appended to the local :class:`~kalshi_store.spill.SpillBuffer`. When
the spill cannot take it (its size limit, an I/O error, the disk full) it stays in memory and the outbox says why
(:attr:`Outbox.spill_full`, :attr:`Outbox.spill_error`); the recorder then pauses reading.

:func:`replay_folder` is the replay loop: every segment of a spill folder, in order, into the database it belongs
to, through a ``write`` callable; stored segments are deleted (or quarantined when they held unreadable bytes).
:func:`replay_folders` runs it over a spill root's folders that no live process owns. The recorder uses both (its
own folder, then folders left by ended processes) and so does :func:`kalshi_store.spill.replay_spill`
(``kalshi-ingest db replay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from .batch import Batch
from .spill import (
    ReplayResult,
    SpillBuffer,
    SpillDiskFull,
    SpillFull,
    SpillLocked,
    SpillTarget,
    WriteBatch,
    _spill_folders,
    read_header,
    read_segment,
    target_mismatch,
)

__all__ = ["ORPHAN_CHECK_INTERVAL", "Outbox", "replay_folder", "replay_folders"]

log = logging.getLogger("kalshi_store.recorder")

#: Seconds between looks for spill folders left by recorders that have ended (also at connect and at stop):
#: a recorder that ends while the database is away leaves its batches for the next one running.
ORPHAN_CHECK_INTERVAL: Final = 5.0


async def _replay_segments(spill: SpillBuffer, segments: Sequence[Path], here: SpillTarget, write: WriteBatch,
                           result: ReplayResult, after_batch: Callable[[], Awaitable[None]] | None) -> bool:
    for path in segments:
        problem = target_mismatch(await asyncio.to_thread(read_header, path), here)
        if problem is not None:
            result.left.append(str(path))
            line = f"spill folder {spill.directory}: {problem}"
            if line not in result.skipped:
                result.skipped.append(line)
            continue
        read = await asyncio.to_thread(read_segment, path)
        for batch in read.batches:
            written = await write(batch)
            if written is None:
                return False
            result.batches += 1
            result.rows += batch.row_count
            result.inserted += written.total_inserted
            if after_batch is not None:
                await after_batch()
        result.torn_records += read.torn
        if read.unreadable:
            moved = spill.quarantine(path)
            log.error("spill: %s held %d unreadable bytes (%s); its %d readable batches are stored and the file "
                      "was moved to %s", path, read.unreadable_bytes,
                      ", ".join(f"{a}-{b}" for a, b in read.unreadable), len(read.batches), moved)
            result.quarantined.append(str(moved))
        else:
            spill.remove(path)
        result.segments += 1
    return True


async def replay_folder(spill: SpillBuffer, here: SpillTarget, write: WriteBatch, result: ReplayResult, *,
                        after_batch: Callable[[], Awaitable[None]] | None = None) -> bool:
    """Replay every segment of ``spill`` into the database ``here`` (through ``write``), in order, until none is
    left but those that belong elsewhere or have no header (noted in ``result.skipped``, one line per folder and
    reason). Segments appended meanwhile (``after_batch`` may spill) are replayed too. False if a write failed."""
    spill.seal()
    while True:
        segments = [p for p in spill.segments() if str(p) not in result.left]
        if not segments:
            return True
        if not await _replay_segments(spill, segments, here, write, result, after_batch):
            return False


async def replay_folders(root: Path, here: SpillTarget, write: WriteBatch, result: ReplayResult, *,
                         skip: Path | None = None, remove_emptied: bool = False) -> bool:
    """:func:`replay_folder` over every spill folder under ``root`` (``root`` itself included) but ``skip``; folders
    a live process owns are listed in ``result.locked_folders``. ``remove_emptied`` deletes a folder left empty.
    False if a write failed (the replay stops there)."""
    for folder in _spill_folders(root):
        if folder == skip:
            continue
        try:
            spill = SpillBuffer(folder)
        except SpillLocked:
            result.locked_folders.append(str(folder))
            continue
        batches, rows = result.batches, result.rows
        with spill:
            result.folders += 1
            done = await replay_folder(spill, here, write, result)
            left = spill.segments()
        if result.batches > batches:
            log.info("spill: replayed %d batches (%d rows) left in %s by an earlier process", result.batches - batches,
                     result.rows - rows, folder)
        if not done:
            return False
        if remove_emptied and not left:
            with contextlib.suppress(OSError):
                (folder / ".lock").unlink()
                folder.rmdir()
    return True


class Outbox:
    """Batches waiting to be durable (see the module docstring), for one recorder whose spill folders live under
    ``root`` (where folders of ended recorders are looked for too). :meth:`open` gives it its spill folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._spill: SpillBuffer | None = None
        self._batches: deque[Batch] = deque()
        #: Rows in the batches waiting here.
        self.rows = 0
        #: The highest batch id that is durable (stored or spilled).
        self.durable_through = 0
        #: Neither the database nor the spill took the last batch offered.
        self.stuck = False
        #: Why the spill refuses batches because its disk is full, while it does.
        self.spill_full: str | None = None
        #: How many times the disk filled up (a fill after the spill took batches again counts anew).
        self.disk_fills = 0
        #: The spill's last other failure (logged once), until it takes a batch again.
        self.spill_error: str | None = None
        #: The spill's last failure of any kind (kept for stats).
        self.spill_failure: str | None = None
        self._reported: set[str] = set()
        self._orphans_checked = 0.0

    def __bool__(self) -> bool:
        return bool(self._batches)

    @property
    def spill(self) -> SpillBuffer:
        if self._spill is None:
            raise RuntimeError("the outbox has no spill folder: open() it first")
        return self._spill

    @property
    def is_open(self) -> bool:
        return self._spill is not None

    def open(self, spill: SpillBuffer) -> None:
        self._spill = spill

    def close(self) -> None:
        """Release the spill folder: removed when empty, else left (with a warning) for the next replay."""
        spill, self._spill = self._spill, None
        if spill is None:
            return
        folder, empty = spill.directory, spill.is_empty
        spill.close()
        if empty:
            with contextlib.suppress(OSError):
                (folder / ".lock").unlink()
                folder.rmdir()
        else:
            log.warning("recorder: %s still holds spilled batches; run `kalshi-ingest db replay`", folder)

    def put(self, batch: Batch) -> None:
        self._batches.append(batch)
        self.rows += batch.row_count

    def _done(self, batch: Batch) -> None:
        self._batches.popleft()
        self.rows -= batch.row_count
        self.durable_through = max(self.durable_through, batch.batch_id)
        self.stuck = False

    @property
    def left_unstored(self) -> bool:
        """Batches still in the spill folder or in memory."""
        return bool(self._batches) or self._spill is not None and not self._spill.is_empty

    # -- to the database ------------------------------------------------------------------------------

    async def write(self, write: Callable[[Batch], Awaitable[bool]]) -> bool:
        """Write the waiting batches in order; False at the first that could not be written."""
        while self._batches:
            batch = self._batches[0]
            if not await write(batch):
                return False
            self._done(batch)
        self.spill_full = None  # nothing waits for the spill any more
        return True

    # -- to the spill -----------------------------------------------------------------------------------

    async def to_spill(self, held: int) -> SpillFull | OSError | None:
        """Append the waiting batches to the spill; the error that stopped it (batches stay here), else ``None``.

        ``held`` is the rows waiting in memory besides the outbox's (for the log line). The first failure of a
        kind is logged; a full disk sets :attr:`spill_full` until the spill takes a batch or the database is back.
        """
        while self._batches:
            batch = self._batches[0]
            try:
                await asyncio.to_thread(self.spill.append, batch)
            except (SpillFull, OSError) as exc:
                self.stuck = True
                text = str(exc)
                if isinstance(exc, SpillDiskFull):
                    if self.spill_full is None:
                        self.disk_fills += 1
                        log.error("recorder: cannot spill (%s); %d rows held in memory", exc, self.rows + held)
                    self.spill_full = text
                elif self.spill_error != text:  # once per error, not at every retry
                    log.error("recorder: cannot spill (%s); %d rows held in memory", exc, self.rows + held)
                    self.spill_error = text
                self.spill_failure = text
                return exc
            if self.spill_full is not None or self.spill_error is not None:
                log.info("recorder: the spill takes batches again")
                self.spill_full = self.spill_error = None
            self._done(batch)
        return None

    # -- replay -----------------------------------------------------------------------------------------

    async def replay(self, here: SpillTarget, write: WriteBatch, *, stopping: bool,
                     after_batch: Callable[[], Awaitable[None]] | None = None) -> tuple[bool, list[str]]:
        """Replay this recorder's spill, then (every :data:`ORPHAN_CHECK_INTERVAL`, and when ``stopping``) the
        folders of ended recorders under ``root``. Returns whether everything was stored (False: a write failed)
        and the segments of this recorder's own spill that were quarantined."""
        own = ReplayResult()
        if not self.spill.is_empty:
            done = await replay_folder(self.spill, here, write, own, after_batch=after_batch)
            self._report(own)
            if not done:
                return False, own.quarantined
            if own.batches:
                log.info("recorder: spilled batches replayed")
        if time.monotonic() - self._orphans_checked < ORPHAN_CHECK_INTERVAL and not stopping:
            return True, own.quarantined
        orphans = ReplayResult()
        done = await replay_folders(self.root, here, write, orphans, skip=self.spill.directory, remove_emptied=True)
        self._report(orphans)
        if done:
            self._orphans_checked = time.monotonic()
        return done, own.quarantined

    def look_for_orphans(self) -> None:
        """Look for folders of ended recorders at the next replay (the database is back)."""
        self._orphans_checked = 0.0

    def _report(self, result: ReplayResult) -> None:
        """Log each spill left in place once per recorder (orphans are looked at every few seconds)."""
        for line in result.skipped:
            if line not in self._reported:
                self._reported.add(line)
                log.warning("recorder: %s", line)
