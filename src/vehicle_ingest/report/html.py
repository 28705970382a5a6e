"""The report page: one self-contained HTML file (inline CSS, no script, no network) next to its charts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape

from vehicle_ingest.report.charts import Chart
from vehicle_ingest.report.labels import number
from vehicle_ingest.report.queries import ReportData, Summary

__all__ = ["render_html"]

_CSS = """
:root { color-scheme: light; --ink: #111827; --muted: #4b5563; --line: #e5e7eb; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 24px 40px; }
header h1 { margin: 0 0 2px; font-size: 26px; }
header p { margin: 0 0 16px; color: var(--muted); }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px 20px; margin: 0 0 16px; }
h2 { margin: 0 0 4px; font-size: 18px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin: 0 0 16px; }
.grid section { margin: 0; }
figure { margin: 0; }
figure img { display: block; width: 100%; height: auto; }
.how { margin: 4px 0 8px; color: var(--muted); font-size: 14px; }
.how strong { color: var(--ink); font-weight: 600; }
table.summary { width: 100%; border-collapse: collapse; table-layout: fixed; }
table.summary th { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em;
                   color: var(--muted); text-align: left; padding: 0 8px 2px 0; }
table.summary td { font-size: 22px; font-weight: 700; padding: 0 8px 0 0; white-space: nowrap;
                   font-variant-numeric: tabular-nums; }
table.summary td small { display: block; font-size: 12px; font-weight: 400; color: var(--muted); }
footer { color: var(--muted); font-size: 13px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
"""

_HOW_TO_READ = {
    "ingestion": "Messages and signal samples stored per day, by the time the vehicles recorded them. A dip means"
    " vehicles were parked or offline; a gap across the whole fleet points at the pipeline.",
    "rejected": "Messages the gateway refused and kept in the dead-letter table, by the day they arrived and the"
    " reason. Any bar needs a look: a new reason or a spike usually means a head-unit software change.",
    "trips": "Trips started per day and the kilometres they covered (odometer). Weekly rhythm is normal;"
    " a falling trend across weeks is what the churn-risk tag catches per owner.",
    "maintenance": "Owners whose vehicles report service overdue or due within 1,500 km or 30 days, a tyre"
    " under 200 kPa or a 12 V battery under 11.8 V. Each bar is a call or reminder list for the service team.",
    "adoption": "For each cockpit feature, current owners who use it regularly (adopter), tried it once or"
    " twice and stopped (trial only: a nudge audience) or never used it (education audience)."
    " Grey owners use it now and then, or have had the vehicle for under 21 days.",
    "tags": "How many owners held each segment tag at the end of each day (adoption tags are in the chart"
    " above). Steps show when the tag engine added or removed owners; the number in the legend is today's count.",
}
_TITLES = {
    "ingestion": "Ingestion volume",
    "rejected": "Rejected messages",
    "trips": "Trips and distance",
    "maintenance": "Maintenance due and overdue",
    "adoption": "Cockpit feature adoption",
    "tags": "Owners per tag over time",
}


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _summary_table(s: Summary) -> str:
    cells = [
        ("Vehicles", number(s.vehicles), "reporting"),
        ("Owners", number(s.owners), f"{number(s.tagged_owners)} with tags"),
        ("Messages", number(s.messages), f"{number(s.events)} events"),
        ("Samples", number(s.samples), "signal values"),
        ("Trips", number(s.trips), "completed"),
        ("Distance, km", number(s.km), f"{number(s.km / s.trips, 1)} km per trip" if s.trips else "—"),
        ("Rejected", number(s.rejected), "dead letters"),
        ("As of", _when(s.as_of_ms)[:10], _when(s.as_of_ms)[11:]),
    ]
    head = "".join(f'<th scope="col">{escape(name)}</th>' for name, _, _ in cells)
    body = "".join(f"<td>{escape(value)}<small>{escape(note)}</small></td>" for _, value, note in cells)
    return (
        '<section aria-labelledby="summary-title"><h2 id="summary-title">Fleet at a glance</h2>'
        f'<table class="summary"><thead><tr>{head}</tr></thead><tbody><tr>{body}</tr></tbody></table></section>'
    )


def _section(key: str, chart: Chart) -> str:
    return (
        f'<section aria-labelledby="{key}-title"><h2 id="{key}-title">{escape(_TITLES[key])}</h2>'
        f'<p class="how"><strong>How to read this:</strong> {escape(_HOW_TO_READ[key])}</p>'
        f'<figure><img src="{escape(chart.file)}" alt="{escape(chart.alt)}"></figure></section>'
    )


def _owner_source(sinks: tuple[str, ...]) -> str:
    """Where owner figures come from, as this deployment is configured."""
    computed = "Owner figures are the owners' current tags, as the tag engine last computed them"
    if sinks:
        return f"{computed} and sent them to {', '.join(sinks)}."
    return f"{computed}; no CDP has received them yet."


def render_html(data: ReportData, charts: Mapping[str, Chart]) -> str:
    """The whole page; chart images are referenced by file name, relative to the page."""
    s = data.summary
    days = data.ingestion.days
    window = f"{days[0]} to {days[-1]}" if len(days) else "no data yet"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fleet report {escape(_when(s.as_of_ms))}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header><h1>Fleet report</h1>
<p>Connected-car data as of {escape(_when(s.as_of_ms))}; daily charts cover {escape(window)} (UTC days).
{escape(_owner_source(data.cdp_sinks))}</p></header>
{_summary_table(s)}
<div class="grid">
{_section("ingestion", charts["ingestion"])}
{_section("rejected", charts["rejected"])}
</div>
<div class="grid">
{_section("trips", charts["trips"])}
{_section("maintenance", charts["maintenance"])}
</div>
{_section("adoption", charts["adoption"])}
{_section("tags", charts["tags"])}
<footer>Generated by vehicle-ingest from the trips, cockpit usage, dead-letter and tag-history tables.
Definitions of every tag: schemas/tags.toml.</footer>
</main>
</body>
</html>
"""
