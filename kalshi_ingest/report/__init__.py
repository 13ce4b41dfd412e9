"""``kalshi-ingest report``: what traded, how wide and deep the book was, and when the data was incomplete.

The report covers one market set (or every recorded market) over a time range and reads only the report views of
``sql/030-035`` (the same ones users query in psql; the queries are in :mod:`kalshi_store.report_queries`), so the
numbers in the report and in a notebook agree. One module per concern:

* :mod:`.data`: :func:`collect` reads the views into :class:`ReportData` (pandas frames);
* :mod:`.formatting`: how values are written (prices, cents, counts, durations, UTC times);
* :mod:`.charts`: one matplotlib figure per market; :mod:`.page`: the self-contained HTML page, rendered from an
  autoescaping Jinja2 template (``templates/``, package data);
* :mod:`.terminal`: the same tables in the terminal (rich); :mod:`.markdown`: the summary for a Prefect artifact;
* :mod:`.files`: :func:`build_report` writes a range's report, :func:`session_report` the report of one session
  (what the ingest flow calls after a session);
* :mod:`.options`: the ``--from``/``--to``/``--bar``/``--max-charts`` arguments and their defaults.

The command line is ``kalshi_ingest.cli`` (``kalshi-ingest report``). The names below are imported on first use,
so the command line can read :mod:`.options` for its help without loading pandas or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kalshi_ingest.report.data import ReportData, ReportError, choose_bar, collect
    from kalshi_ingest.report.files import (
        SessionReport,
        build_report,
        report_path,
        session_report,
        write_html,
    )
    from kalshi_ingest.report.markdown import report_markdown
    from kalshi_ingest.report.options import MAX_CHARTS, parse_bar, parse_time
    from kalshi_ingest.report.page import render_html
    from kalshi_ingest.report.terminal import print_report

#: Each public name and the module that defines it.
_HOME = {
    "ReportData": "data", "ReportError": "data", "choose_bar": "data", "collect": "data",
    "SessionReport": "files", "build_report": "files", "report_path": "files", "session_report": "files",
    "write_html": "files", "report_markdown": "markdown", "MAX_CHARTS": "options", "parse_bar": "options",
    "parse_time": "options", "render_html": "page", "print_report": "terminal",
}

__all__ = [
    "MAX_CHARTS", "ReportData", "ReportError", "SessionReport", "build_report", "choose_bar", "collect", "parse_bar",
    "parse_time", "print_report", "render_html", "report_markdown", "report_path", "session_report", "write_html",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
