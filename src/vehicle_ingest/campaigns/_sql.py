"""The campaign measurement in ClickHouse: who is compared, from when, and each owner's outcome.

One row per compared owner: (owner_id, group, anchor_ms, exposed, complete, outcome). The rules
(schemas/campaigns.toml says them for reviewers; `tests/test_campaigns_sql.py` states them again in
plain Python and compares):

- A stint in the audience is an `added` change of the audience tag in `tag_history` up to the
  `removed` change that follows it (transition + 1), or open. Its `holdout` flag is what the CDP was told.
- treated: owners whose first exposure to the campaign falls inside a stint with holdout 0;
  anchor = that first exposure.
- control: owners with a held-out stint that overlaps the campaign's run (its first to its last first
  exposure); anchor = the later of the stint's start and the campaign's first exposure (the earliest
  moment the owner could have been reached). A held-out owner who was exposed all the same stays in
  control (intention to treat) and is marked `exposed`. An owner treated in one stint is never control.
- outside: exposed owners who are neither (their first exposure fell in no stint: not in the audience
  then); reported, not compared.
- complete: the window [anchor, anchor + window] has ended by the as-of instant; only those compare.
- outcome (window W after the anchor): a tag `lost`/`gained` = a `removed`/`added` change of it in
  (anchor, anchor + W]; `km`/`trips` = trips starting in (anchor, anchor + W] (minus the W before,
  without `at_least`); `<feature>_days` = UTC days of use after the anchor's day, up to W days (minus the
  W days before it). Facts belong to whoever owned the vehicle at the time (ASOF on ownership).

Every value is bound server-side ({name:Type}); only the SQL fragments chosen here are formatted in.
"""

from __future__ import annotations

from typing import Any

from vehicle_ingest.campaigns.definitions import CampaignDefinition

__all__ = ["campaign_rows_sql", "campaign_sql_parameters"]

_DAY_MS = 86_400_000
_NEVER = 9_223_372_036_854_775_807  # Int64 max: a stint still open
_AS_OF = "fromUnixTimestamp64Milli({T:Int64}, 'UTC')"
_MS = "toInt64(toUnixTimestamp64Milli({}))"

_UNITS = f"""
changes AS (
    SELECT owner_id, action, transition, holdout, {_MS.format("at")} AS t
    FROM tag_history FINAL WHERE tag = {{aud:String}} AND at <= {_AS_OF}
),
stints AS (
    SELECT a.owner_id AS owner_id, a.t AS entered, a.holdout AS holdout, if(r.owner_id = '', {_NEVER}, r.t) AS left
    FROM (SELECT * FROM changes WHERE action = 'added') AS a
    LEFT JOIN (SELECT * FROM changes WHERE action = 'removed') AS r
        ON r.owner_id = a.owner_id AND r.transition = a.transition + 1
),
exposed AS (
    SELECT owner_id, min({_MS.format("exposed_at")}) AS first FROM exposures FINAL
    WHERE campaign_id = {{cid:String}} AND exposed_at <= {_AS_OF} GROUP BY owner_id
),
exposed_in AS (
    SELECT e.owner_id AS owner_id, e.first AS first,
           max(if(s.owner_id != '' AND e.first >= s.entered AND e.first < s.left, toInt8(s.holdout), toInt8(-1)))
               AS holdout
    FROM exposed AS e LEFT JOIN stints AS s ON s.owner_id = e.owner_id
    GROUP BY e.owner_id, e.first
),
span AS (SELECT min(first) AS start, max(first) AS stop FROM exposed),
control AS (
    SELECT s.owner_id AS owner_id, min(greatest(s.entered, sp.start)) AS anchor
    FROM stints AS s CROSS JOIN span AS sp
    WHERE s.holdout = 1 AND s.entered <= sp.stop AND s.left > sp.start
      AND s.owner_id NOT IN (SELECT owner_id FROM exposed_in WHERE holdout = 0)
    GROUP BY s.owner_id
),
units AS (
    SELECT owner_id, if(holdout = 0, 'treated', 'outside') AS grp, first AS anchor, toUInt8(1) AS exposed
    FROM exposed_in WHERE holdout = 0 OR (holdout = -1 AND owner_id NOT IN (SELECT owner_id FROM control))
    UNION ALL
    SELECT owner_id, 'control', anchor, toUInt8(owner_id IN (SELECT owner_id FROM exposed_in)) FROM control
)"""

_TAG_FACTS = f"""
facts AS (
    SELECT owner_id, {_MS.format("at")} AS t, 1.0 AS v FROM tag_history FINAL
    WHERE tag = {{otag:String}} AND action = {{oaction:String}} AND at <= {_AS_OF}
)"""
_OWNER_AT = "(SELECT vin, owner_id, valid_from FROM ownership FINAL) AS o"
_TRIP_FACTS = f"""
facts AS (
    SELECT o.owner_id AS owner_id, {_MS.format("tr.trip_start")} AS t, {{value}} AS v
    FROM (SELECT vin, trip_start, distance_km FROM trips FINAL WHERE is_deleted = 0 AND trip_start <= {_AS_OF}) AS tr
    ASOF INNER JOIN {_OWNER_AT} ON tr.vin = o.vin AND tr.trip_start >= o.valid_from
)"""
_DAY_FACTS = f"""
facts AS (
    SELECT o.owner_id AS owner_id, {_MS.format("toDateTime64(cu.day, 3, 'UTC')")} AS t, 1.0 AS v
    FROM (SELECT vin, day FROM cockpit_usage FINAL WHERE is_deleted = 0 AND sessions > 0
          AND feature = {{feature:String}} AND day <= toDate({_AS_OF})) AS cu
    ASOF INNER JOIN {_OWNER_AT} ON cu.vin = o.vin AND toDateTime64(cu.day, 3, 'UTC') >= o.valid_from
)"""

# Windows: instants in (anchor, anchor + W]; whole days after the anchor's day (days are stored as their start).
_AFTER = "f.owner_id != '' AND f.t > u.anchor AND f.t <= u.anchor + {w:Int64}"
_BEFORE = "f.owner_id != '' AND f.t > u.anchor - {w:Int64} AND f.t <= u.anchor"
_DAY = f"intDiv(u.anchor, {_DAY_MS}) * {_DAY_MS}"
_DAY_AFTER = f"f.owner_id != '' AND f.t > {_DAY} AND f.t <= {_DAY} + {{w:Int64}}"
_DAY_BEFORE = f"f.owner_id != '' AND f.t >= {_DAY} - {{w:Int64}} AND f.t < {_DAY}"


def _facts_and_measure(campaign: CampaignDefinition) -> tuple[str, str, str]:
    """(facts CTE, the measure after the anchor, the same measure before it)."""
    outcome = campaign.outcome
    if outcome.kind in ("lost", "gained"):
        return _TAG_FACTS, f"countIf({_AFTER})", "0"
    if outcome.name in ("km", "trips"):
        facts = _TRIP_FACTS.replace("{value}", "tr.distance_km" if outcome.name == "km" else "1.0")
        return facts, f"sumIf(f.v, {_AFTER})", f"sumIf(f.v, {_BEFORE})"
    return _DAY_FACTS, f"uniqExactIf(f.t, {_DAY_AFTER})", f"uniqExactIf(f.t, {_DAY_BEFORE})"


def _outcome_expression(campaign: CampaignDefinition, after: str, before: str) -> str:
    outcome = campaign.outcome
    if outcome.kind in ("lost", "gained"):
        return f"toFloat64({after} > 0)"
    if outcome.at_least is not None:
        return f"toFloat64({after} >= {{at_least:Float64}})"
    return f"toFloat64({after}) - toFloat64({before})"


def campaign_rows_sql(campaign: CampaignDefinition) -> str:
    """SELECT owner_id, grp, anchor, exposed, complete, outcome, uplift: one row per compared (or outside) owner.

    `uplift` (the same on every row) is the comparison itself: the mean outcome of the treated minus that of
    the control, over complete windows (nan when a group is empty).
    """
    facts, after, before = _facts_and_measure(campaign)
    return f"""
WITH {_UNITS},
{facts}
SELECT *, avgIf(outcome, grp = 'treated' AND complete = 1) OVER ()
          - avgIf(outcome, grp = 'control' AND complete = 1) OVER () AS uplift
FROM (
    SELECT u.owner_id AS owner_id, u.grp AS grp, u.anchor AS anchor, u.exposed AS exposed,
           toUInt8(u.anchor + {{w:Int64}} <= {{T:Int64}}) AS complete,
           {_outcome_expression(campaign, after, before)} AS outcome
    FROM units AS u
    LEFT JOIN (SELECT * FROM facts WHERE owner_id IN (SELECT owner_id FROM units)) AS f ON f.owner_id = u.owner_id
    GROUP BY u.owner_id, u.grp, u.anchor, u.exposed
)
ORDER BY grp, owner_id
"""


def campaign_sql_parameters(campaign: CampaignDefinition, as_of_ms: int) -> dict[str, Any]:
    outcome = campaign.outcome
    parameters: dict[str, Any] = {
        "aud": campaign.audience,
        "cid": campaign.id,
        "w": campaign.window_ms,
        "T": as_of_ms,
    }
    if outcome.kind in ("lost", "gained"):
        parameters.update(otag=outcome.name, oaction="removed" if outcome.kind == "lost" else "added")
    elif outcome.name.endswith("_days"):
        parameters["feature"] = outcome.name.removesuffix("_days")
    if outcome.at_least is not None:
        parameters["at_least"] = outcome.at_least
    return parameters
