"""Sampling profiles of a pipeline process (py-spy), folded into per-stage shares and µs per frame.

``python -m bench.run --short --py-spy production`` runs one extra, profiled run of each named pipeline:
``py-spy record --pid <pipeline process> --format raw --rate 1000 --nonblocking`` (the target is never
paused), then :func:`classify` attributes every sample to the innermost stage it is in (leaf first: a
sample inside ``Decimal`` construction called from ``messages.decode`` counts as *decode*; a sample in
``psycopg``'s ``write_row`` called from the writer counts as *COPY formatting*). Shares times the CPU per
frame of the same run give µs per frame per stage.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: (stage, regex on "function (file:line)"), checked from the innermost frame outwards; first match wins.
RULES: list[tuple[str, re.Pattern[str]]] = [
    ("COPY formatting (psycopg write_row)", re.compile(r"write_row|format_row|_copy_base|copy\.pyx|Formatter")),
    ("psycopg execute/commit/wait", re.compile(r"[(/\\]psycopg[/\\]|psycopg_binary")),
    ("row building (kalshi_store.rows)", re.compile(r"kalshi_store[/\\]rows\.py")),
    ("recorder (on_message, batching, bookkeeping)", re.compile(r"kalshi_store[/\\](recorder|batch|spill)\.py")),
    ("writer (CopyWriter, other)", re.compile(r"kalshi_store[/\\]writer\.py")),
    ("decode (messages.decode, msgspec)", re.compile(r"kalshi_ws[/\\]messages\.py")),
    ("books (orderbook.py)", re.compile(r"kalshi_ws[/\\]orderbook\.py")),
    ("seq tracking (sequence.py)", re.compile(r"kalshi_ws[/\\]sequence\.py")),
    ("protocol (other)", re.compile(r"kalshi_ws[/\\](protocol|commands|events)\.py")),
    ("client read loop (client.py)", re.compile(r"kalshi_ws[/\\]client\.py")),
    ("bench pipeline code", re.compile(r"bench[/\\](pipelines|production)\.py")),
    ("signing / key loading (one-off)", re.compile(r"kalshi_ws[/\\]auth\.py|cryptography")),
    ("websockets (frames, recv)", re.compile(r"[(/\\]websockets[/\\]")),
    ("asyncio event loop + socket I/O", re.compile(r"asyncio[/\\]|selectors\.py|_run_once|ssl\.py|socket\.py")),
]

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")


def classify(raw_path: Path) -> dict[str, float]:
    """Share of samples per stage (0..1), from a py-spy ``--format raw`` file (folded stacks)."""
    counts: Counter[str] = Counter()
    for line in raw_path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        stage = "other"
        for frame in reversed(frames):
            hit = next((name for name, rx in RULES if rx.search(frame)), None)
            if hit is not None:
                stage = hit
                break
        counts[stage] += int(n)
    total = sum(counts.values()) or 1
    return {stage: round(c / total, 4) for stage, c in counts.most_common()}


def top_functions(raw_path: Path, limit: int = 25) -> list[tuple[str, float]]:
    """Self-time share of the innermost frames (the hottest leaves)."""
    counts: Counter[str] = Counter()
    for line in raw_path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stack.split(";")[-1]] += int(n)
    total = sum(counts.values()) or 1
    return [(f, round(c / total, 4)) for f, c in counts.most_common(limit)]


def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, rate: int = 1000) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                             "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
