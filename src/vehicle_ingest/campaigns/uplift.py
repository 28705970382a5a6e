"""Per campaign: who was compared, the outcome rates or means, the uplift with its interval, as one JSON object.

The store does the measurement (campaigns._sql: groups, anchors, outcomes, and the uplift itself);
statsmodels adds the interval, p-value and minimum detectable effect (campaigns.stats). Reads only:
it runs on a gateway's read session as well as on a store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vehicle_ingest.campaigns._sql import campaign_rows_sql, campaign_sql_parameters, campaign_summary_sql
from vehicle_ingest.campaigns.definitions import CampaignDefinition
from vehicle_ingest.campaigns.stats import Uplift, mean_uplift, rate_uplift
from vehicle_ingest.reads import Queryable

__all__ = ["CampaignRow", "campaign_result", "campaign_results", "campaign_rows", "campaign_summary"]


@dataclass(frozen=True, slots=True)
class CampaignRow:
    owner_id: str
    group: str  # "treated" | "control" | "outside"
    anchor_ms: int  # when the owner's window starts
    exposed: bool
    complete: bool  # the window has ended
    outcome: float  # 1.0 / 0.0 for a rate, the number for a mean


def campaign_rows(reader: Queryable, campaign: CampaignDefinition, as_of_ms: int) -> list[CampaignRow]:
    rows = reader.rows(campaign_rows_sql(campaign), campaign_sql_parameters(campaign, as_of_ms))
    return [CampaignRow(str(o), str(g), int(a), bool(e), bool(c), float(y)) for o, g, a, e, c, y in rows]


def campaign_summary(reader: Queryable, campaign: CampaignDefinition, as_of_ms: int) -> dict[str, Any]:
    """The store's own comparison: group sizes, outcome sums and means, and the uplift (None when undefined)."""
    names, rows = reader.query(campaign_summary_sql(campaign), campaign_sql_parameters(campaign, as_of_ms))
    return {n: _number(v) for n, v in zip(names, rows[0], strict=True)}


def _number(value: Any) -> float | int | None:
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def _statistics(campaign: CampaignDefinition, summary: dict[str, Any], rows: list[CampaignRow]) -> Uplift:
    if campaign.outcome.binary:
        successes = (round(summary["treated_sum"] or 0), round(summary["control_sum"] or 0))
        return rate_uplift(successes[0], summary["treated"], successes[1], summary["control"])
    compared = [r for r in rows if r.complete]
    return mean_uplift(
        [r.outcome for r in compared if r.group == "treated"], [r.outcome for r in compared if r.group == "control"]
    )


def campaign_result(reader: Queryable, campaign: CampaignDefinition, as_of_ms: int) -> dict[str, Any]:
    rows = campaign_rows(reader, campaign, as_of_ms)
    summary = campaign_summary(reader, campaign, as_of_ms)
    stats = asdict(_statistics(campaign, summary, rows))
    stats["uplift"] = summary["uplift"]  # the store's figure; statsmodels' own agrees to the last digits
    return {
        "campaign": campaign.id,
        "audience": campaign.audience,
        "outcome": campaign.outcome.describe(campaign.window_days),
        "metric": "rate" if campaign.outcome.binary else "mean",
        "window_days": campaign.window_days,
        "treated": summary["treated"],
        "control": summary["control"],
        **stats,
        "holdout_exposed": sum(1 for r in rows if r.group == "control" and r.exposed),
        "outside_audience": sum(1 for r in rows if r.group == "outside"),
        "pending": sum(1 for r in rows if r.group != "outside" and not r.complete),
    }


def campaign_results(
    reader: Queryable, campaigns: Sequence[CampaignDefinition], as_of_ms: int
) -> dict[str, dict[str, Any]]:
    """{campaign_id: {"uplift", "ci_low", "ci_high", "treated", "control", ...}} for every defined campaign."""
    return {c.id: campaign_result(reader, c, as_of_ms) for c in campaigns}
