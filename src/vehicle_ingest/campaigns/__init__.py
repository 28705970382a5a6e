"""Campaign feedback: exposures from the marketing side, holdouts from the tags, uplift on in-car behaviour.

    tags (holdout flag) ──▶ CDP ──▶ marketing tool ──exposures──▶ exposures table
                                                                        │
    trips, cockpit usage, tag changes ──────────────────────▶ campaigns._sql (groups, anchors, outcomes)
                                                                        │
                                                  campaigns.stats (statsmodels) ──▶ `campaigns`, report

Definitions: schemas/campaigns.toml. Holdout membership: vehicle_ingest.tags.holdout.
"""

from vehicle_ingest.campaigns._store import SavedExposures, save_exposures
from vehicle_ingest.campaigns.definitions import (
    OUTCOME_FEATURES,
    CampaignDefinition,
    Outcome,
    default_campaigns_path,
    load_campaign_definitions,
)
from vehicle_ingest.campaigns.exposures import (
    DEFAULT_EXPOSURE_EVENTS,
    Exposure,
    ParsedExposures,
    Refusal,
    parse_exposure_body,
    parse_exposure_file,
    parse_exposure_rows,
)
from vehicle_ingest.campaigns.uplift import (
    CampaignRow,
    Measurement,
    campaign_result,
    campaign_results,
    measure_campaign,
)

__all__ = [
    "DEFAULT_EXPOSURE_EVENTS",
    "OUTCOME_FEATURES",
    "CampaignDefinition",
    "CampaignRow",
    "Exposure",
    "Measurement",
    "Outcome",
    "ParsedExposures",
    "Refusal",
    "SavedExposures",
    "campaign_result",
    "campaign_results",
    "default_campaigns_path",
    "load_campaign_definitions",
    "measure_campaign",
    "parse_exposure_body",
    "parse_exposure_file",
    "parse_exposure_rows",
    "save_exposures",
]
