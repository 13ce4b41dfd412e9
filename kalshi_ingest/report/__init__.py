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
  (what the ingest flow calls after a session); :mod:`.times`: the ``--from``/``--to``/``--bar`` arguments.

The command line itself is ``kalshi_ingest.cli`` (``kalshi-ingest report``).
"""

from kalshi_ingest.report.command import main
from kalshi_ingest.report.data import ReportData, ReportError, choose_bar, collect
from kalshi_ingest.report.files import SessionReport, build_report, report_path, session_report, write_html
from kalshi_ingest.report.markdown import report_markdown
from kalshi_ingest.report.page import MAX_CHARTS, render_html
from kalshi_ingest.report.terminal import print_report
from kalshi_ingest.report.times import parse_bar, parse_time

__all__ = [
    "MAX_CHARTS",
    "main",
    "ReportData",
    "ReportError",
    "SessionReport",
    "build_report",
    "choose_bar",
    "collect",
    "parse_bar",
    "parse_time",
    "print_report",
    "render_html",
    "report_markdown",
    "report_path",
    "session_report",
    "write_html",
]
