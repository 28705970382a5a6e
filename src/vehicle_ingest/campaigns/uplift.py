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

from vehicle_ingest.campaigns._sql import campaign_rows_sql, campaign_sql_parameters
from vehicle_ingest.campaigns.definitions import CampaignDefinition
from vehicle_ingest.campaigns.stats import Uplift, mean_uplift, rate_uplift
from vehicle_ingest.reads import Queryable

__all__ = ["CampaignRow", "Measurement", "campaign_result", "campaign_results", "measure_campaign"]


@dataclass(frozen=True, slots=True)
class CampaignRow:
    owner_id: str
    group: str  # "treated" | "control" | "outside"
    anchor_ms: int  # when the owner's window starts
    exposed: bool
    complete: bool  # the window has ended
    outcome: float  # 1.0 / 0.0 for a rate, the number for a mean


@dataclass(frozen=True, slots=True)
class Measurement:
    rows: list[CampaignRow]
    uplift: float | None  # as the store computed it: treated minus control mean outcome, complete windows

    def compared(self, group: str) -> list[float]:
        return [r.outcome for r in self.rows if r.group == group and r.complete]


def measure_campaign(reader: Queryable, campaign: CampaignDefinition, as_of_ms: int) -> Measurement:
    found = reader.rows(campaign_rows_sql(campaign), campaign_sql_parameters(campaign, as_of_ms))
    rows = [CampaignRow(str(o), str(g), int(a), bool(e), bool(c), float(y)) for o, g, a, e, c, y, _ in found]
    uplift = float(found[0][6]) if found else math.nan
    return Measurement(rows, uplift if math.isfinite(uplift) else None)


def _statistics(campaign: CampaignDefinition, m: Measurement) -> Uplift:
    treated, control = m.compared("treated"), m.compared("control")
    if campaign.outcome.binary:
        return rate_uplift(round(sum(treated)), len(treated), round(sum(control)), len(control))
    return mean_uplift(treated, control)


def campaign_result(reader: Queryable, campaign: CampaignDefinition, as_of_ms: int) -> dict[str, Any]:
    m = measure_campaign(reader, campaign, as_of_ms)
    stats = asdict(_statistics(campaign, m))
    stats["uplift"] = m.uplift  # the store's figure; statsmodels' side agrees to the last digits
    return {
        "campaign": campaign.id,
        "audience": campaign.audience,
        "outcome": campaign.outcome.describe(campaign.window_days),
        "metric": "rate" if campaign.outcome.binary else "mean",
        "unit": campaign.outcome.unit,
        "window_days": campaign.window_days,
        "treated": len(m.compared("treated")),
        "control": len(m.compared("control")),
        **stats,
        "holdout_exposed": sum(1 for r in m.rows if r.group == "control" and r.exposed),
        "outside_audience": sum(1 for r in m.rows if r.group == "outside"),
        "pending": sum(1 for r in m.rows if r.group != "outside" and not r.complete),
    }


def campaign_results(
    reader: Queryable, campaigns: Sequence[CampaignDefinition], as_of_ms: int
) -> dict[str, dict[str, Any]]:
    """{campaign_id: {"uplift", "ci_low", "ci_high", "treated", "control", ...}} for every defined campaign."""
    return {c.id: campaign_result(reader, c, as_of_ms) for c in campaigns}
