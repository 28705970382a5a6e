"""The report's campaign section: each campaign's uplift with its 95 % interval, one row per campaign.

Rates are drawn in percentage points, means in the outcome's unit; each row has its own scale, since a
rate and a distance share none. Green: the whole interval is above zero (the campaign worked), red:
below (it backfired), grey: it cannot be told from zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

__all__ = ["campaign_chart", "campaign_figures"]

_GREEN, _RED, _GREY = "#16a34a", "#dc2626", "#6b7280"


def _scale(result: Mapping[str, Any]) -> tuple[float, str]:
    return (100.0, "points") if result["metric"] == "rate" else (1.0, str(result.get("unit", "")))


def campaign_figures(result: Mapping[str, Any]) -> str:
    """`+10.0 points [-39.7, +56.7]` (rates in points, means in their unit), or why there is none."""
    if result.get("uplift") is None:
        return "no comparison yet"
    factor, unit = _scale(result)
    uplift = f"{result['uplift'] * factor:+.1f}{' ' + unit if unit else ''}"
    if result.get("ci_low") is None or result.get("ci_high") is None:
        return uplift
    return f"{uplift} [{result['ci_low'] * factor:+.1f}, {result['ci_high'] * factor:+.1f}]"


def _colour(result: Mapping[str, Any]) -> str:
    low, high = result.get("ci_low"), result.get("ci_high")
    if low is None or high is None:
        return _GREY
    return _GREEN if low > 0 else _RED if high < 0 else _GREY


def campaign_chart(results: Mapping[str, Mapping[str, Any]], path: Path) -> str:
    """Write the chart (an SVG) and return its alt text."""
    rows = list(results.items())
    if not any(r["treated"] or r["control"] for _, r in rows):
        fig = Figure(figsize=(11.0, 2.0), layout="constrained")
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No data yet", ha="center", va="center", fontsize=16, color=_GREY, transform=ax.transAxes)
        fig.savefig(path, format="svg", metadata={"Date": None})
        return "Campaign uplift: no data yet (no exposure of a defined campaign has come back from the marketing side)."
    fig = Figure(figsize=(11.0, 0.9 + 1.1 * max(len(rows), 1)), layout="constrained")
    axes = fig.subplots(max(len(rows), 1), 1, squeeze=False)[:, 0]
    for ax, (campaign, r) in zip(axes, rows, strict=False):
        factor, unit = _scale(r)
        ax.axvline(0, color="#9ca3af", linewidth=1, linestyle="--")
        ax.set_yticks([])
        ax.grid(axis="y", visible=False)
        ax.set_title(f"{campaign}: {r['outcome']}", fontsize=10, loc="left")
        note = f"{r['treated']} treated, {r['control']} held out"
        ax.set_title(f"{campaign_figures(r)}   ({note})", fontsize=9, fontweight="normal", color="#374151", loc="right")
        if r.get("uplift") is not None:
            low = r["ci_low"] if r.get("ci_low") is not None else r["uplift"]
            high = r["ci_high"] if r.get("ci_high") is not None else r["uplift"]
            x = r["uplift"] * factor
            err = [[x - low * factor], [high * factor - x]]
            ax.errorbar([x], [0], xerr=err, fmt="o", color=_colour(r), capsize=6, markersize=7, linewidth=2)
            span = max(abs(low * factor), abs(high * factor), 1e-9)
            ax.set_xlim(-1.1 * span, 1.1 * span)
        ax.set_xlabel(f"uplift, {unit} (treated minus held out)" if unit else "uplift (treated minus held out)")
    fig.savefig(path, format="svg", metadata={"Date": None})
    parts = "; ".join(f"{c}: {campaign_figures(r)}" for c, r in rows)
    return f"Uplift of each campaign with its 95 % interval (dashed line: no effect). {parts or 'No campaigns.'}"
