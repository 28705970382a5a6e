"""The fleet report: an HTML page with SVG charts for marketing and service analysts.

`build_report(store, out_dir, as_of_ms)` reads the store (`queries`), draws the
charts (`charts`) and writes the page (`html`). The page is static: no script,
no web fonts, no network; open `index.html` from disk or serve the folder.
"""

from __future__ import annotations

from pathlib import Path

from vehicle_ingest.reads import Queryable
from vehicle_ingest.report.charts import Chart, render_charts
from vehicle_ingest.report.html import render_html
from vehicle_ingest.report.queries import ReportData, fetch_report_data

__all__ = ["Chart", "ReportData", "build_report", "fetch_report_data", "write_report"]


def build_report(store: Queryable, out_dir: Path, as_of_ms: int, *, days: int = 90) -> Path:
    """Write `out_dir/index.html` and its charts for the fleet as of `as_of_ms`; returns the page's path.

    Daily charts cover at most the last `days` days (fewer when the data starts later).
    """
    return write_report(fetch_report_data(store, as_of_ms, days), Path(out_dir))


def write_report(data: ReportData, out_dir: Path) -> Path:
    """The page and its charts for `data` (from a store, or from a running gateway's /api/report)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = render_charts(data, out_dir)
    index = out_dir / "index.html"
    index.write_text(render_html(data, charts), encoding="utf-8")
    return index
