"""SpillBuffer: durable, append-only local files holding batches while the database is away.

Layout: a spill folder holds segment files ``<ns>.spill`` (named by creation time, so sorting the names gives the
write order, across process restarts too) and a ``.lock`` file. A segment is

    b"KSPILL\\x00\\x01" (file magic + format version) | header record | batch record | batch record | ...

and a record is

    marker b"\\xc1SPR" | length (uint32 LE) | crc32 of the payload (uint32 LE) | payload

The header record's payload is a :class:`SegmentHeader` (msgpack): the database the segment belongs to
(:class:`SpillTarget`: ``current_database()``, ``system_identifier`` of ``pg_control_system()`` and the URL it was
written for, host, port and database name only). A batch record's payload is the msgpack of a :class:`~kalshi_store.batch.Batch`.

Every append is flushed and ``fsync``-ed before :meth:`SpillBuffer.append` returns, so a batch that was spilled
survives the process being killed. An append that fails (a short write then ENOSPC, a failed ``fsync``) is cut off
again: the segment is truncated back to the end of its last good record and closed, and the next append starts a
new segment, so good records never follow a torn one in the same file. Readers still expect torn records (a
process killed mid-append, a truncation that failed): a record whose marker, length or checksum does not hold is
skipped by scanning for the next marker whose record does, so every intact record of a segment is read whatever
precedes it.

A folder belongs to one live :class:`SpillBuffer` at a time (an exclusive ``flock`` on ``.lock``), so a running
recorder's files are never replayed by someone else; folders left by a dead process are free and
:func:`replay_spill` (``kalshi-ingest db replay``) writes them to the database in order, through the replay loop of
:mod:`kalshi_store.outbox` (the one the recorder uses). A segment is replayed only
into the database it belongs to (:func:`target_mismatch`); one that belongs elsewhere, or has no header, is left
in place and reported. A segment whose batches are all stored is deleted; one that also held unreadable bytes is
renamed ``<ns>.quarantine`` (kept for inspection, never replayed again, never deleted). Replaying twice is
harmless: batches are idempotent (see :mod:`kalshi_store.batch`).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .batch import Batch, LedgerOp, SessionManifest, SessionProgress
from .rows import TABLES

if TYPE_CHECKING:
    import psycopg

    from .writer import WriteResult

__all__ = [
    "ReplayResult", "SegmentHeader", "SpillBuffer", "SpillDiskFull", "SpillFull", "SpillLocked", "SpillTarget",
    "database_identity", "read_header", "read_segment", "replay_spill", "replay_spill_async", "target_mismatch",
    "url_target",
]

log = logging.getLogger(__name__)

_FILE_MAGIC: Final = b"KSPILL\x00\x01"
_MARKER: Final = b"\xc1SPR"
_RECORD: Final = struct.Struct("<4sII")
_SUFFIX: Final = ".spill"
_QUARANTINE: Final = ".quarantine"
_LOCK: Final = ".lock"
#: Bytes read to find a segment's header (the header record is a few hundred bytes).
_HEADER_READ: Final = 64 * 1024
#: errno values that mean "the disk (or the user's quota) is full".
_DISK_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


class SpillFull(RuntimeError):
    """The spill cannot take the batch (the folder's size limit, or the disk); the batch was not written."""


class SpillDiskFull(SpillFull):
    """The disk (or quota) under the spill folder is full (ENOSPC / EDQUOT); the batch was not written."""


class SpillLocked(RuntimeError):
    """Another live process owns this spill folder."""


class SpillTarget(msgspec.Struct, frozen=True, kw_only=True):
    """The database a spill belongs to.

    ``database`` and ``system_identifier`` are what the database said (``current_database()``,
    ``pg_control_system().system_identifier``); they are ``None`` when the writer never reached it (or, for the
    identifier, when its role may not read it). ``url`` is the URL the spill was written for, reduced to
    ``postgresql://host:port/dbname`` (:func:`url_target`).
    """

    url: str
    database: str | None = None
    system_identifier: str | None = None

    def describe(self) -> str:
        if self.database is None:
            return f"the database at {self.url} (never reached while spilling)"
        system = f"system {self.system_identifier}, " if self.system_identifier else ""
        return f"database {self.database!r} ({system}{self.url})"


class SegmentHeader(msgspec.Struct, kw_only=True):
    """The first record of every segment."""

    target: SpillTarget
    created_ns: int
    host: str
    pid: int


def url_target(url: str) -> SpillTarget:
    """The target as far as ``url`` tells: ``postgresql://host:port/dbname`` (not the user, which does not change
    the database, nor the password)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:  # malformed: connecting will say so (DatabaseConfigError), without the password
        return SpillTarget(url="(a malformed DATABASE_URL)")
    host = params.get("host") or ""
    port = params.get("port") or 5432
    dbname = params.get("dbname") or ""
    return SpillTarget(url=f"postgresql://{host}:{port}/{dbname}")


async def database_identity(conn: psycopg.AsyncConnection[Any], url: str) -> SpillTarget:
    """Who ``conn`` (opened on ``url``) is connected to: ``current_database()`` and the cluster's
    ``system_identifier`` (``None`` when the role may not call ``pg_control_system()``)."""
    import psycopg

    async with conn.transaction():
        cur = await conn.execute("select current_database()")
        row = await cur.fetchone()
    database = str(row[0]) if row else ""
    system: str | None = None
    try:
        async with conn.transaction():
            cur = await conn.execute("select system_identifier from pg_control_system()")
            row = await cur.fetchone()
        system = str(row[0]) if row and row[0] is not None else None
    except psycopg.errors.InsufficientPrivilege:
        log.info("spill: this role may not read pg_control_system(); spills are tied to the database name and URL")
    return SpillTarget(url=url_target(url).url, database=database, system_identifier=system)


def same_database(spilled: SpillTarget, here: SpillTarget) -> bool:
    """Whether a spill written for ``spilled`` belongs to the database ``here``.

    Both known: the database names and system identifiers must match. A spill written before its recorder reached
    the database, or an identifier one side could not read: the database name (when known) and the URL must match.
    """
    if spilled.database is not None and here.database is not None:
        if spilled.database != here.database:
            return False
        if spilled.system_identifier is not None and here.system_identifier is not None:
            return spilled.system_identifier == here.system_identifier
    return spilled.url == here.url


def target_mismatch(header: SegmentHeader | None, here: SpillTarget) -> str | None:
    """``None`` when a segment with ``header`` may be replayed into ``here``, else why not (one line)."""
    if header is None:
        return "has no spill header (not written by this version); not replayed"
    if not same_database(header.target, here):
        return f"belongs to {header.target.describe()}, not to {here.describe()}; not replayed"
    return None


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


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(payload: bytes) -> Batch:
    """Decode a spilled batch back to exactly the tuples that were spilled (Decimal, bytes, dates typed)."""
    outer = _outer_decoder.decode(payload)
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for name, raw in outer.tables.items():
        decoder = _row_decoders.get(name)
        if decoder is None:
            raise ValueError(f"spilled batch {outer.batch_id} has rows for unknown table {name!r}")
        tables[name] = decoder.decode(raw)
    return Batch(batch_id=outer.batch_id, session=outer.session, session_id=outer.session_id,
                 session_date=outer.session_date, tables=tables, ledger=outer.ledger, progress=outer.progress)


_header_decoder: Final = msgspec.msgpack.Decoder(SegmentHeader)


def _record(payload: bytes) -> bytes:
    return _RECORD.pack(_MARKER, len(payload), zlib.crc32(payload)) + payload


def _record_at(data: bytes | memoryview, offset: int) -> tuple[bytes, int] | None:
    """The payload of the intact record at ``offset`` and the offset after it, or ``None``."""
    end_of_header = offset + _RECORD.size
    if end_of_header > len(data):
        return None
    marker, length, crc = _RECORD.unpack_from(data, offset)
    end = end_of_header + length
    if marker != _MARKER or end > len(data):
        return None
    payload = bytes(data[end_of_header:end])
    if zlib.crc32(payload) != crc:
        return None
    return payload, end


def _next_record(data: bytes, offset: int) -> int:
    """The offset of the first intact record after ``offset`` (``len(data)`` if none)."""
    candidate = data.find(_MARKER, offset + 1)
    while candidate != -1:
        if _record_at(data, candidate) is not None:
            return candidate
        candidate = data.find(_MARKER, candidate + 1)
    return len(data)


def _parse_header(data: bytes) -> tuple[SegmentHeader | None, int]:
    """The segment header and the offset of the first batch record; ``(None, 0)`` without a readable header."""
    if not data.startswith(_FILE_MAGIC):
        return None, 0
    found = _record_at(data, len(_FILE_MAGIC))
    if found is None:
        return None, 0
    payload, end = found
    try:
        return _header_decoder.decode(payload), end
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, 0


def read_header(path: Path) -> SegmentHeader | None:
    """The header of the segment at ``path`` (``None`` if it has none: not written by this version, or torn)."""
    with path.open("rb") as handle:
        head = handle.read(_HEADER_READ)
    return _parse_header(head)[0]


@dataclass
class SegmentRead:
    """What :func:`read_segment` found: the header, every intact batch in order, and the byte ranges it could
    not read (torn or corrupt records, a record that does not decode)."""

    path: Path
    header: SegmentHeader | None = None
    batches: list[Batch] = field(default_factory=list)
    unreadable: list[tuple[int, int]] = field(default_factory=list)

    @property
    def torn(self) -> int:
        """Number of unreadable stretches."""
        return len(self.unreadable)

    @property
    def unreadable_bytes(self) -> int:
        return sum(end - start for start, end in self.unreadable)


class SpillBuffer:
    """Append-only durable batches in ``directory`` (see the module docstring).

    ``target`` is the database the batches belong to, written in every segment's header (required to append;
    :meth:`set_target` updates it once the database has been reached). ``max_bytes`` bounds the folder:
    :meth:`append` raises :class:`SpillFull` beyond it, and :class:`SpillDiskFull` when the disk is full (the
    caller keeps the batch and stops reading). ``segment_bytes`` is the size at which a new segment file is
    started; smaller segments free disk sooner during replay.
    """

    def __init__(self, directory: Path | str, *, target: SpillTarget | None = None,
                 max_bytes: int = 8 * 1024**3, segment_bytes: int = 64 * 1024**2) -> None:
        self.directory = Path(directory)
        self.target = target
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
        #: Appends refused because the disk was full (ENOSPC / EDQUOT).
        self.disk_full_count = 0

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

    def set_target(self, target: SpillTarget) -> None:
        """Batches appended from now on belong to ``target``: the current segment (if its header says otherwise)
        is finished, so the next append starts a segment whose header says so."""
        if target != self.target:
            self.target = target
            self._close_active()

    # -- writing ----------------------------------------------------------------------------------------

    def append(self, batch: Batch) -> None:
        """Durably append ``batch`` (fsync-ed on return).

        Raises :class:`SpillFull` past ``max_bytes``, :class:`SpillDiskFull` when the disk is full, ``OSError`` on
        other I/O errors; in every case nothing of the batch stays in the segment (or, if even the truncation
        failed, the segment is closed so nothing good follows the torn record).
        """
        if self.target is None:
            raise RuntimeError("SpillBuffer(target=...) is required to append: a spill must say its database")
        record = _record(encode_batch(batch))
        if self._bytes + len(record) > self.max_bytes:
            raise SpillFull(f"spill folder {self.directory} would exceed {self.max_bytes} bytes")
        if self._active_fd is None or self._active_size + len(record) > self.segment_bytes:
            self._start_segment()
        assert self._active_fd is not None
        try:
            _write_all(self._active_fd, record)
            os.fsync(self._active_fd)
        except OSError as exc:
            self._cut_back()
            raise self._failure(exc) from exc
        self._active_size += len(record)
        self._bytes += len(record)
        self.batches_appended += 1
        self.rows_appended += batch.row_count

    def _failure(self, exc: OSError) -> OSError | SpillFull:
        if exc.errno in _DISK_FULL:
            self.disk_full_count += 1
            return SpillDiskFull(f"no space left for the spill in {self.directory} ({exc.strerror})")
        return exc

    def _cut_back(self) -> None:
        """After a failed append: truncate the segment to its last good record, then close it (its next append
        goes to a new segment; after a failed ``fsync`` the file's unsynced state is not to be trusted)."""
        fd, path, good = self._active_fd, self._active, self._active_size
        if fd is None:
            return
        try:
            os.ftruncate(fd, good)
            os.fsync(fd)
        except OSError as exc:
            log.error("spill: could not cut %s back to its last good record at byte %d (%s); readers skip the torn "
                      "record after it", path, good, exc)
        self._close_active()

    def _start_segment(self) -> None:
        self._close_active()
        assert self.target is not None
        name = max(time.time_ns(), self._last_name + 1)
        self._last_name = name
        path = self.directory / f"{name:020d}{_SUFFIX}"
        head = _FILE_MAGIC + _record(_encoder.encode(SegmentHeader(
            target=self.target, created_ns=name, host=socket.gethostname(), pid=os.getpid())))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            _write_all(fd, head)
            os.fsync(fd)
            _fsync_dir(self.directory)
        except OSError as exc:
            os.close(fd)
            try:
                path.unlink()
            except OSError as unlink_error:  # pragma: no cover - the folder became unwritable meanwhile
                log.error("spill: could not remove the unfinished segment %s (%s)", path, unlink_error)
            raise self._failure(exc) from exc
        self._active, self._active_fd, self._active_size = path, fd, len(head)
        self._bytes += len(head)

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
        """Delete a segment whose batches are all stored and which held nothing unreadable."""
        if self._active == path:
            self._close_active()
        size = path.stat().st_size
        path.unlink()
        self._bytes = max(0, self._bytes - size)

    def quarantine(self, path: Path) -> Path:
        """Move a segment whose readable batches are all stored, but which also held unreadable bytes, aside to
        ``<name>.quarantine`` (kept for inspection; never replayed or deleted by this module)."""
        if self._active == path:
            self._close_active()
        size = path.stat().st_size
        moved = path.with_suffix(_QUARANTINE)
        path.rename(moved)
        _fsync_dir(self.directory)
        self._bytes = max(0, self._bytes - size)
        return moved

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_segment(path: Path) -> SegmentRead:
    """Every intact batch of a segment, in order, whatever torn or corrupt records lie between them (their byte
    ranges are in ``unreadable``). A file without a segment header yields no batches (``header`` is ``None``)."""
    data = path.read_bytes()
    header, offset = _parse_header(data)
    result = SegmentRead(path, header=header)
    if header is None:
        return result
    while offset < len(data):
        found = _record_at(data, offset)
        if found is None:
            resume = _next_record(data, offset)
            log.warning("%s: bytes %d-%d are not an intact record (torn or corrupt); skipped to the next one",
                        path, offset, resume)
            result.unreadable.append((offset, resume))
            offset = resume
            continue
        payload, end = found
        try:
            result.batches.append(decode_batch(payload))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.error("%s: the record at byte %d cannot be decoded (%s); skipped", path, offset, exc)
            result.unreadable.append((offset, end))
        offset = end
    return result


@dataclass
class ReplayResult:
    """What :func:`replay_spill` (or a recorder's replay) did."""

    folders: int = 0
    segments: int = 0
    batches: int = 0
    rows: int = 0
    inserted: int = 0
    torn_records: int = 0
    locked_folders: list[str] = field(default_factory=list)
    #: One line per folder (and reason) whose segments were left in place: another database's, no header.
    skipped: list[str] = field(default_factory=list)
    #: The segments left in place.
    left: list[str] = field(default_factory=list)
    #: Segments renamed ``*.quarantine`` after their readable batches were stored (they held unreadable bytes).
    quarantined: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.batches} batches ({self.rows} rows, {self.inserted} new) from {self.segments} segments in "
                f"{self.folders} folders")


def _spill_folders(directory: Path) -> list[Path]:
    if not directory.exists():
        return []
    folders = [directory] if any(directory.glob(f"*{_SUFFIX}")) else []
    folders += sorted(p for p in directory.iterdir() if p.is_dir() and any(p.glob(f"*{_SUFFIX}")))
    return folders


#: Writes one batch; ``None`` when it could not (the replay stops there, to be resumed later).
WriteBatch = Callable[[Batch], Awaitable["WriteResult | None"]]


async def replay_spill_async(url: str, directory: Path | str) -> ReplayResult:
    """:func:`replay_spill` in a running event loop."""
    from .outbox import replay_folders
    from .writer import CopyWriter

    result = ReplayResult()
    if not _spill_folders(Path(directory)):
        return result
    writer = await CopyWriter.connect(url)
    try:
        here = await database_identity(writer.conn, url)
        await replay_folders(Path(directory), here, writer.write, result)
    finally:
        await writer.close()
    for line in result.skipped:
        log.warning("%s", line)
    return result


def replay_spill(url: str, directory: Path | str) -> ReplayResult:
    """Write every batch spilled under ``directory`` (and its sub-folders) for the database at ``url`` to it, in
    order; delete what is stored.

    Folders owned by a running recorder are skipped (listed in ``locked_folders``); segments of another database,
    or without a header, are left in place (``skipped``). Safe to run repeatedly.
    """
    return asyncio.run(replay_spill_async(url, directory))
