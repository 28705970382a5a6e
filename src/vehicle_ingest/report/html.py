"""The report page: one self-contained HTML file (inline CSS, no script, no network) next to its charts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from vehicle_ingest.report.campaign_chart import campaign_figures
from vehicle_ingest.report.charts import Chart
from vehicle_ingest.report.labels import number, tag_label
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
table.campaigns { width: 100%; border-collapse: collapse; margin-top: 8px; font-size: 14px; }
table.campaigns th { text-align: left; font-size: 12px; color: var(--muted); border-bottom: 1px solid var(--line); }
table.campaigns td { padding: 4px 8px 4px 0; font-variant-numeric: tabular-nums; }
table.campaigns td.warn { color: #b45309; font-size: 13px; padding-top: 0; }
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
    "campaigns": "What each campaign changed in the cars: owners it reached (treated) against audience members"
    " kept out of it on purpose (held out), over the same number of days. The dot is the difference, the bar its"
    " 95 % interval: green when all of it is above zero (it worked), red when below, grey when it cannot be told"
    " from no effect. Rates are in percentage points. A wide bar means too few owners yet: see the warning.",
}
_TITLES = {
    "ingestion": "Ingestion volume",
    "rejected": "Rejected messages",
    "trips": "Trips and distance",
    "maintenance": "Maintenance due and overdue",
    "adoption": "Cockpit feature adoption",
    "tags": "Owners per tag over time",
    "campaigns": "Campaign uplift on in-car behaviour",
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


def _campaign_rows(data: ReportData) -> str:
    head = ("Campaign", "Audience", "Treated", "Held out", "Treated outcome", "Held-out outcome", "Uplift [95 %]", "p")
    rows = []
    for cid, r in data.campaigns.items():
        cells = (
            cid,
            tag_label(str(r["audience"])),
            number(r["treated"]),
            number(r["control"]),
            _outcome(r, "treated_outcome"),
            _outcome(r, "control_outcome"),
            campaign_figures(r),
            "—" if r.get("p_value") is None else "< 0.001" if r["p_value"] < 0.001 else f"{r['p_value']:.3f}",
        )
        rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        if r.get("warning"):
            rows.append(f'<tr><td colspan="{len(head)}" class="warn">{escape(str(r["warning"]))}</td></tr>')
    header = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    return f'<table class="campaigns"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _outcome(r: Mapping[str, Any], key: str) -> str:
    value = r.get(key)
    if value is None:
        return "—"
    return f"{100 * value:.1f} %" if r["metric"] == "rate" else f"{value:.1f}"


def _campaign_section(data: ReportData, chart: Chart) -> str:
    table = _campaign_rows(data) if data.campaigns else '<p class="how">No campaigns in schemas/campaigns.toml.</p>'
    return _section("campaigns", chart).replace("</section>", f"{table}</section>")


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
{_campaign_section(data, charts["campaigns"])}
<footer>Generated by vehicle-ingest from the trips, cockpit usage, dead-letter and tag-history tables.
Definitions of every tag: schemas/tags.toml; of every campaign: schemas/campaigns.toml.</footer>
</main>
</body>
</html>
"""
