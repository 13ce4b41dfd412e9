"""Report files: the HTML report of a range (``kalshi-ingest report``) or of one session (the ingest flow)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from kalshi_ingest.report.data import ReportData, ReportError, collect, session_data
from kalshi_ingest.report.markdown import report_markdown
from kalshi_ingest.report.options import MAX_CHARTS
from kalshi_ingest.report.page import render_html

__all__ = ["SessionReport", "build_report", "report_path", "session_report", "write_html"]


@dataclass(frozen=True)
class SessionReport:
    """What :func:`session_report` made: the HTML file and a markdown summary for a Prefect artifact."""

    path: Path
    markdown: str


def report_path(out_dir: Path, market_set: str, suffix: str) -> Path:
    """``out_dir/report-<market set>-<suffix>.html``, always inside ``out_dir``: the market set (a name from a
    config file or the database) is reduced to letters, digits, ``_`` and ``-``, so ``../../x`` cannot
    write elsewhere."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in market_set)[:64] or "set"
    path = Path(out_dir) / f"report-{safe}-{suffix}.html"
    if path.resolve().parent != Path(out_dir).resolve():
        raise ReportError(f"report file name for market set {market_set!r} would leave {out_dir}")
    return path


def write_html(data: ReportData, out: Path, *, max_charts: int = MAX_CHARTS) -> Path:
    """Write the HTML report of ``data`` to ``out`` (its folder created if needed); returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data, max_charts=max_charts), encoding="utf-8")
    return out


def build_report(url: str, market_set: str | None = None, start: datetime | None = None,
                 end: datetime | None = None, out: Path = Path("kalshi-report.html"), *,
                 bar: timedelta | None = None, max_charts: int = MAX_CHARTS) -> Path:
    """Write the HTML report of ``market_set`` over [start, end) to ``out``; returns the path written.

    See :func:`~kalshi_ingest.report.data.collect` for the defaults of the range. Raises :class:`ReportError`
    when there is nothing to report.
    """
    return write_html(collect(url, market_set, start, end, bar=bar), out, max_charts=max_charts)


def session_report(url: str, session_id: str, out_dir: Path) -> SessionReport:
    """Build the report of one recording session (its market set, its window) into ``out_dir``.

    This is what the ingest flow calls after a session; publish ``markdown`` with
    ``prefect.artifacts.create_markdown_artifact`` (it names ``path``).
    """
    data = session_data(url, session_id)
    path = report_path(out_dir, data.market_set or "", f"{data.start:%Y%m%dT%H%M%S}-{str(session_id)[:8]}")
    write_html(data, path)
    return SessionReport(path=path, markdown=report_markdown(data, path))
