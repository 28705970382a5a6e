"""The report's charts: one SVG per section, drawn with matplotlib (Agg, no pyplot state, text as paths).

Text is stored as outlines (`svg.fonttype = path`), so a chart looks the same
on a machine without the font and the page needs nothing from the network.
Each function writes one file and returns the alt text describing it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: the report is built on servers and in tests

import numpy as np
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vehicle_ingest.report.campaign_chart import campaign_chart
from vehicle_ingest.report.labels import feature_label, number, tag_label
from vehicle_ingest.report.queries import ADOPTION_STATES, MAINTENANCE_TAGS, Adoption, Daily, ReportData

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["NO_DATA", "Chart", "render_charts"]

NO_DATA = "No data yet"
TOP_TAGS = 10
_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "path",
    "svg.hashsalt": "vehicle-ingest-report",  # stable element ids: the same data gives the same file
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": "#374151",
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "text.color": "#111827",
    "legend.frameon": False,
}
_BLUE, _TEAL, _SLATE = "#2563eb", "#0d9488", "#64748b"
_STATE_COLOURS = {"adopter": "#16a34a", "trial_only": "#f59e0b", "never_used": "#dc2626", "other": "#d1d5db"}
_MAINTENANCE_COLOURS = ("#dc2626", "#f59e0b", "#0ea5e9", "#6366f1")
_REASON_COLOURS = ("#dc2626", "#f59e0b", "#7c3aed", "#0ea5e9", "#64748b", "#db2777", "#65a30d", "#0f766e")
_HALF, _FULL, _ADOPTION = (6.0, 3.3), (11.0, 3.6), (11.0, 4.0)


@dataclass(frozen=True, slots=True)
class Chart:
    file: str  # name inside the report directory
    alt: str


def _human(value: float, _pos: object = None) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _span(days: np.ndarray) -> str:
    return f"from {days[0]} to {days[-1]}" if len(days) else ""


def _peak(daily: Daily, name: str, unit: str) -> str:
    values = daily.series[name]
    i = int(np.argmax(values))
    return f"the busiest day was {daily.days[i]} with {number(values[i])} {unit}"


def _date_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(_human))
    ax.grid(axis="x", visible=False)


def _placeholder(path: Path, size: tuple[float, float], text: str) -> None:
    """A chart-sized box that says why there is no chart, so the page keeps its layout."""
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, color="#6b7280", transform=ax.transAxes)
    _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="svg", metadata={"Date": None})


def _daily_bars(ax: Axes, daily: Daily, names: list[str], colours: list[str], labels: list[str]) -> None:
    bottom = np.zeros(len(daily.days))
    for name, colour, label in zip(names, colours, labels, strict=True):
        ax.bar(daily.days, daily.series[name], width=0.85, bottom=bottom, color=colour, label=label, linewidth=0)
        bottom = bottom + daily.series[name]
    _date_axis(ax)


def ingestion_chart(daily: Daily, path: Path) -> str:
    if daily.is_empty:
        _placeholder(path, _HALF, NO_DATA)
        return "Ingestion volume per day: no data yet."
    fig = Figure(figsize=_HALF, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    _daily_bars(
        top, daily, ["signal_messages", "event_messages"], [_BLUE, _TEAL], ["signal messages", "event messages"]
    )
    top.set_title("Messages per day")
    top.legend(loc="upper left", ncols=2, fontsize=9)
    top.set_ylim(0, top.get_ylim()[1] * 1.25)  # room for the legend
    _daily_bars(bottom, daily, ["samples"], [_SLATE], ["samples"])
    bottom.set_title("Signal samples per day")
    _save(fig, path)
    messages = daily.total("signal_messages") + daily.total("event_messages")
    return (
        f"Bar charts of ingestion per day {_span(daily.days)}: {number(messages)} messages in the window"
        f" ({number(daily.total('event_messages'))} of them events) and {number(daily.total('samples'))}"
        f" signal samples; {_peak(daily, 'samples', 'samples')}."
    )


def rejected_chart(daily: Daily, path: Path, empty_text: str) -> str:
    if daily.is_empty:
        _placeholder(path, _HALF, empty_text)
        return f"Rejected messages per day: {empty_text.lower()}."
    fig = Figure(figsize=_HALF, layout="constrained")
    ax = fig.subplots()
    reasons = sorted(daily.series, key=lambda r: -daily.total(r))
    colours = [_REASON_COLOURS[i % len(_REASON_COLOURS)] for i in range(len(reasons))]
    labels = [f"{r} ({number(daily.total(r))})" for r in reasons]
    _daily_bars(ax, daily, reasons, colours, labels)
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_title("Rejected messages per day, by reason")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend
    ax.legend(loc="upper left", ncols=min(len(reasons), 3), fontsize=9)
    _save(fig, path)
    parts = ", ".join(f"{number(daily.total(r))} {r}" for r in reasons)
    return f"Stacked bar chart of rejected messages per day {_span(daily.days)}, by reason: {parts}."


def trips_chart(daily: Daily, path: Path) -> str:
    if daily.is_empty:
        _placeholder(path, _HALF, NO_DATA)
        return "Trips and kilometres per day: no data yet."
    fig = Figure(figsize=_HALF, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    _daily_bars(top, daily, ["trips"], [_BLUE], ["trips"])
    top.set_title("Trips per day")
    _daily_bars(bottom, daily, ["km"], [_TEAL], ["km"])
    bottom.set_title("Kilometres driven per day")
    _save(fig, path)
    return (
        f"Bar charts of trips and kilometres per day {_span(daily.days)}: {number(daily.total('trips'))} trips,"
        f" {number(daily.total('km'))} km; {_peak(daily, 'trips', 'trips')}."
    )


def _adoption_rows(adoption: Adoption) -> list[tuple[str, dict[str, int]]]:
    rows = []
    for feature, states in adoption.counts.items():
        counted = {s: int(states.get(s, 0)) for s in ADOPTION_STATES}
        rows.append((feature, {**counted, "other": max(adoption.owners - sum(counted.values()), 0)}))
    rows.sort(key=lambda r: (r[1]["adopter"], -r[1]["never_used"]))  # barh draws bottom-up: best on top
    return rows


def adoption_chart(adoption: Adoption, path: Path) -> str:
    if adoption.is_empty or adoption.owners == 0:
        _placeholder(path, _ADOPTION, NO_DATA)
        return "Feature adoption per cockpit feature: no data yet."
    fig = Figure(figsize=_ADOPTION, layout="constrained")
    ax = fig.subplots()
    rows = _adoption_rows(adoption)
    names = [feature_label(f) for f, _ in rows]
    left = np.zeros(len(rows))
    legend = {
        "adopter": "adopter (4+ days of the last 28)",
        "trial_only": "trial only (1-2 days ever)",
        "never_used": "never used (owner 21+ days)",
        "other": "occasional user or new owner",
    }
    for state in (*ADOPTION_STATES, "other"):
        share = np.array([100.0 * c[state] / adoption.owners for _, c in rows])
        bars = ax.barh(names, share, left=left, color=_STATE_COLOURS[state], label=legend[state], height=0.7)
        labels = [number(c[state]) if s >= 4.0 else "" for (_, c), s in zip(rows, share, strict=True)]
        ax.bar_label(
            bars,
            labels=labels,
            label_type="center",
            fontsize=8,
            color="#111827" if state in ("trial_only", "other") else "white",
        )
        left += share
    ax.set_xlim(0, 100)
    ax.xaxis.set_major_formatter(ticker.PercentFormatter())
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(f"share of the {number(adoption.owners)} current owners (numbers in the bars are owners)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=4, fontsize=9)
    _save(fig, path)
    best, worst = rows[-1], rows[0]
    return (
        f"Stacked horizontal bar chart of cockpit feature adoption among {number(adoption.owners)} current owners."
        f" Most adopted: {feature_label(best[0])} ({number(best[1]['adopter'])} adopters);"
        f" least: {feature_label(worst[0])} ({number(worst[1]['adopter'])} adopters,"
        f" {number(worst[1]['never_used'])} never used)."
    )


def _top_tags(daily: Daily, counts: Mapping[str, int]) -> list[str]:
    candidates = [t for t in daily.series if not t.startswith("adoption.")]
    candidates.sort(key=lambda t: (-counts.get(t, 0), -float(daily.series[t].max()), t))
    return [t for t in candidates if daily.series[t].max() > 0][:TOP_TAGS]


def tags_over_time_chart(daily: Daily, counts: Mapping[str, int], path: Path) -> str:
    tags = _top_tags(daily, counts)
    if not tags:
        _placeholder(path, _FULL, NO_DATA)
        return "Owners per tag over time: no data yet."
    fig = Figure(figsize=_FULL, layout="constrained")
    ax = fig.subplots()
    colours = matplotlib.color_sequences["tab10"]  # the tab10 colormap's colours, as a typed list
    for i, tag in enumerate(tags):
        label = f"{tag_label(tag)} ({number(counts.get(tag, 0))})"
        ax.step(daily.days, daily.series[tag], where="post", color=colours[i % 10], linewidth=2, label=label)
    _date_axis(ax)
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("owners with the tag")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="tag (owners now)")
    _save(fig, path)
    parts = ", ".join(f"{tag_label(t)} {number(counts.get(t, 0))}" for t in tags)
    span = _span(daily.days)
    return f"Line chart of owners holding each of the {len(tags)} largest tags per day {span}; now: {parts}."


def maintenance_chart(counts: Mapping[str, int], owners: int, path: Path) -> str:
    values = [int(counts.get(t, 0)) for t in MAINTENANCE_TAGS]
    if owners == 0 and not any(values):
        _placeholder(path, _HALF, NO_DATA)
        return "Maintenance due and overdue: no data yet."
    fig = Figure(figsize=_HALF, layout="constrained")
    ax = fig.subplots()
    names = [tag_label(t) for t in MAINTENANCE_TAGS]
    bars = ax.barh(names[::-1], values[::-1], color=_MAINTENANCE_COLOURS[::-1], height=0.6)
    share = [f"{number(v)}  ({100.0 * v / owners:.0f} %)" if owners else number(v) for v in values[::-1]]
    ax.bar_label(bars, labels=share, padding=4, fontsize=9)
    ax.set_xlim(0, max(max(values), 1) * 1.35)  # room for the labels
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(axis="y", visible=False)
    ax.set_title("Owners needing service attention now")
    ax.set_xlabel("owners")
    _save(fig, path)
    parts = ", ".join(f"{n} {number(v)}" for n, v in zip(names, values, strict=True))
    return f"Horizontal bar chart of owners needing service attention now: {parts}."


def render_charts(data: ReportData, out_dir: Path) -> dict[str, Chart]:
    """Draw every chart into `out_dir`; {section: Chart}."""
    has_data = data.summary.messages > 0
    rejected_empty = "No rejected messages" if has_data else NO_DATA
    draw: dict[str, tuple[str, Callable[[Path], str]]] = {
        "ingestion": ("ingestion.svg", lambda p: ingestion_chart(data.ingestion, p)),
        "rejected": ("rejected.svg", lambda p: rejected_chart(data.rejected, p, rejected_empty)),
        "trips": ("trips.svg", lambda p: trips_chart(data.trips, p)),
        "adoption": ("adoption.svg", lambda p: adoption_chart(data.adoption, p)),
        "tags": ("tags.svg", lambda p: tags_over_time_chart(data.tags_over_time, data.tag_counts, p)),
        "maintenance": ("maintenance.svg", lambda p: maintenance_chart(data.tag_counts, data.summary.owners, p)),
        "campaigns": ("campaigns.svg", lambda p: campaign_chart(data.campaigns, p)),
    }
    charts = {}
    with matplotlib.rc_context(_STYLE):
        for section, (file, fn) in draw.items():
            charts[section] = Chart(file, fn(out_dir / file))
    return charts
