"""SpillBuffer: durable, append-only local files holding batches while the database is away.

Layout: a spill folder holds segment files ``<ns>.spill`` (named by creation time, so sorting the names gives the
write order, across process restarts too) and a ``.lock`` file. A record is

    length (uint32 LE) | crc32 of the payload (uint32 LE) | payload (msgpack of a Batch)

and every append is flushed and ``fsync``-ed before :meth:`SpillBuffer.append` returns, so a batch that was
spilled survives the process being killed. A process killed in the middle of an append leaves a torn last record:
readers detect it (short header, short payload or checksum mismatch), skip it with a warning and carry on; a
torn record was never acknowledged, and its rows are still in the rows that follow in memory or were lost
with the process (nothing after it in that segment exists because each process appends to a new segment).

A folder belongs to one live :class:`SpillBuffer` at a time (an exclusive ``flock`` on ``.lock``), so a running
recorder's files are never replayed by someone else; folders left by a dead process are free and
:func:`replay_spill` (``kalshi-ingest db replay``) writes them to the database in order and deletes each segment
once all its batches are stored. Replaying twice is harmless: batches are idempotent (see
:mod:`kalshi_store.batch`).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import msgspec

from .batch import Batch, LedgerOp, SessionManifest, SessionProgress
from .rows import TABLES

__all__ = ["ReplayResult", "SpillBuffer", "SpillFull", "SpillLocked", "replay_spill"]

log = logging.getLogger(__name__)

_HEADER: Final = struct.Struct("<II")
_SUFFIX: Final = ".spill"
_LOCK: Final = ".lock"


class SpillFull(RuntimeError):
    """The spill folder reached its size limit; the batch was not written."""


class SpillLocked(RuntimeError):
    """Another live process owns this spill folder."""


class _SpilledBatch(msgspec.Struct, kw_only=True):
    batch_id: int
    session: SessionManifest | None = None
    session_id: str | None = None
    session_date: date | None = None
    tables: dict[str, msgspec.Raw] = {}
    ledger: list[LedgerOp] = []
    progress: SessionProgress | None = None


_encoder: Final = msgspec.msgpack.Encoder(decimal_format="string")
_outer_decoder: Final = msgspec.msgpack.Decoder(_SpilledBatch)
_row_decoders: Final[dict[str, msgspec.msgpack.Decoder[Any]]] = {
    name: msgspec.msgpack.Decoder(list[spec.row_type]) for name, spec in TABLES.items()  # type: ignore[name-defined]
}
#: Rows of tables whose per-session columns moved into the batch (``TableSpec.constants``), as older versions
#: spilled them: ``(session_id, session_date, *row)``.
_legacy_row_decoders: Final[dict[str, msgspec.msgpack.Decoder[Any]]] = {
    name: msgspec.msgpack.Decoder(list[spec.legacy_row_type])  # type: ignore[name-defined]
    for name, spec in TABLES.items() if spec.legacy_columns
}


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(payload: bytes) -> Batch:
    """Decode a spilled batch back to exactly the tuples that were spilled (Decimal, bytes, dates typed)."""
    outer = _outer_decoder.decode(payload)
    tables: dict[str, list[tuple[Any, ...]]] = {}
    session_id, session_date = outer.session_id, outer.session_date
    older_layout = session_id is None  # spilled before the session's id and day moved out of the rows
    for name, raw in outer.tables.items():
        decoder = _row_decoders.get(name)
        if decoder is None:
            raise ValueError(f"spilled batch {outer.batch_id} has rows for unknown table {name!r}")
        legacy = _legacy_row_decoders.get(name)
        if legacy is not None and older_layout:
            # Spilled by an older version: the session's id and day are in every row (one session per batch).
            rows = legacy.decode(raw)
            if rows:
                session_id, session_date = rows[0][0], rows[0][1]
            tables[name] = [row[2:] for row in rows]
        else:
            tables[name] = decoder.decode(raw)
    return Batch(batch_id=outer.batch_id, session=outer.session, session_id=session_id,
                 session_date=session_date, tables=tables, ledger=outer.ledger, progress=outer.progress)


@dataclass
class SegmentRead:
    path: Path
    batches: list[Batch] = field(default_factory=list)
    torn: int = 0


class SpillBuffer:
    """Append-only durable batches in ``directory`` (see the module docstring).

    ``max_bytes`` bounds the folder: :meth:`append` raises :class:`SpillFull` beyond it (the caller then keeps
    rows in memory and, when that is full too, stops reading). ``segment_bytes`` is the size at which a new
    segment file is started; smaller segments free disk sooner during replay.
    """

    def __init__(self, directory: Path | str, *, max_bytes: int = 8 * 1024**3,
                 segment_bytes: int = 64 * 1024**2) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise SpillLocked(f"{self.directory} is in use by another process") from exc
        self._active: Path | None = None
        self._active_fd: int | None = None
        self._active_size = 0
        self._last_name = 0
        self._bytes = sum(p.stat().st_size for p in self.segments())
        self.batches_appended = 0
        self.rows_appended = 0

    # -- state ------------------------------------------------------------------------------------------

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted(self.directory.glob(f"*{_SUFFIX}"))

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def is_empty(self) -> bool:
        return self._bytes == 0 and not self.segments()

    # -- writing ----------------------------------------------------------------------------------------

    def append(self, batch: Batch) -> None:
        """Durably append ``batch`` (fsync-ed on return). Raises :class:`SpillFull` past ``max_bytes``."""
        payload = encode_batch(batch)
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        if self._bytes + len(record) > self.max_bytes:
            raise SpillFull(f"spill folder {self.directory} would exceed {self.max_bytes} bytes")
        if self._active_fd is None or self._active_size + len(record) > self.segment_bytes:
            self._start_segment()
        assert self._active_fd is not None
        written = 0
        while written < len(record):
            written += os.write(self._active_fd, record[written:])
        os.fsync(self._active_fd)
        self._active_size += len(record)
        self._bytes += len(record)
        self.batches_appended += 1
        self.rows_appended += batch.row_count

    def _start_segment(self) -> None:
        self._close_active()
        name = max(time.time_ns(), self._last_name + 1)
        self._last_name = name
        self._active = self.directory / f"{name:020d}{_SUFFIX}"
        self._active_fd = os.open(self._active, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._active_size = 0
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _close_active(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
        self._active_fd = None
        self._active = None
        self._active_size = 0

    def seal(self) -> None:
        """Finish the current segment; later appends go to a new one (call before replaying)."""
        self._close_active()

    # -- reading ----------------------------------------------------------------------------------------

    def read_segment(self, path: Path) -> SegmentRead:
        return read_segment(path)

    def remove(self, path: Path) -> None:
        """Delete a segment whose batches are all stored."""
        if self._active == path:
            self._close_active()
        size = path.stat().st_size
        path.unlink()
        self._bytes = max(0, self._bytes - size)

    def close(self) -> None:
        self._close_active()
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> SpillBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_segment(path: Path) -> SegmentRead:
    """Every intact batch of a segment, in order; a torn or corrupt record ends the segment (counted in ``torn``)."""
    result = SegmentRead(path)
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            log.warning("%s: torn record header at byte %d (process died mid-append); skipped", path, offset)
            result.torn += 1
            break
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start:start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            log.warning("%s: torn or corrupt record at byte %d (%d of %d bytes); skipped", path, offset,
                        len(payload), length)
            result.torn += 1
            break
        try:
            result.batches.append(decode_batch(payload))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.error("%s: record at byte %d cannot be decoded (%s); skipped", path, offset, exc)
            result.torn += 1
        offset = start + length
    return result


def iter_batches(spill: SpillBuffer) -> Iterator[tuple[Path, SegmentRead]]:
    for path in spill.segments():
        yield path, spill.read_segment(path)


@dataclass
class ReplayResult:
    """What :func:`replay_spill` did."""

    folders: int = 0
    segments: int = 0
    batches: int = 0
    rows: int = 0
    inserted: int = 0
    torn_records: int = 0
    locked_folders: list[str] = field(default_factory=list)


def _spill_folders(directory: Path) -> list[Path]:
    if not directory.exists():
        return []
    folders = [directory] if any(directory.glob(f"*{_SUFFIX}")) else []
    folders += sorted(p for p in directory.iterdir() if p.is_dir() and any(p.glob(f"*{_SUFFIX}")))
    return folders


async def replay_spill_async(url: str, directory: Path | str) -> ReplayResult:
    from .writer import CopyWriter

    result = ReplayResult()
    folders = _spill_folders(Path(directory))
    if not folders:
        return result
    writer = await CopyWriter.connect(url)
    try:
        for folder in folders:
            try:
                spill = SpillBuffer(folder)
            except SpillLocked:
                result.locked_folders.append(str(folder))
                continue
            with spill:
                result.folders += 1
                for path, read in iter_batches(spill):
                    for batch in read.batches:
                        written = await writer.write(batch)
                        result.batches += 1
                        result.rows += batch.row_count
                        result.inserted += written.total_inserted
                    result.torn_records += read.torn
                    spill.remove(path)
                    result.segments += 1
    finally:
        await writer.close()
    return result


def replay_spill(url: str, directory: Path | str) -> ReplayResult:
    """Write every batch spilled under ``directory`` (and its sub-folders) to ``url``, in order; delete what is stored.

    Folders owned by a running recorder are skipped (listed in ``locked_folders``). Safe to run repeatedly.
    """
    return asyncio.run(replay_spill_async(url, directory))
