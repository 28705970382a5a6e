"""Owner features: one row per current owner, computed in ClickHouse from trips, cockpit usage and latest signals.

Usage belongs to whoever owned the vehicle when it happened (ASOF join on
`ownership.valid_from`). An owner is evaluated while they own at least one
vehicle. Every column here is a name the tag rules may use
(`definitions.OWNER_FEATURES`); `tests/test_tags.py` checks the two agree.
"""

from __future__ import annotations

from typing import Any

from vehicle_ingest.catalog import SignalCatalog
from vehicle_ingest.tags.definitions import COCKPIT_FEATURES

__all__ = ["owner_feature_parameters", "owner_features_sql"]

_DAY = 86_400_000
_MAINTENANCE = {
    "svc_km": "Vehicle.Service.DistanceToService",
    "svc_s": "Vehicle.Service.TimeToService",
    "tyre_fl": "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure",
    "tyre_fr": "Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.Pressure",
    "tyre_rl": "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.Pressure",
    "tyre_rr": "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.Pressure",
    "battery": "Vehicle.LowVoltageBattery.CurrentVoltage",
}


def owner_feature_parameters(signals: SignalCatalog, as_of_ms: int) -> dict[str, Any]:
    ids = {k: signals.by_path(p).id for k, p in _MAINTENANCE.items()}
    return {**ids, "maintenance_ids": sorted(ids.values()), "T": as_of_ms}


def _usage_columns() -> str:
    cols = []
    for f in COCKPIT_FEATURES:
        cols.append(
            f"uniqExactIf(day, feature = '{f}' AND day >= toDate(fromUnixTimestamp64Milli(%(T)s - "
            f"{28 * _DAY}, 'UTC'))) AS {f}_days_28d"
        )
        cols.append(f"uniqExactIf(day, feature = '{f}') AS {f}_days_total")
    return ",\n           ".join(cols)


def _usage_select() -> str:
    return ",\n       ".join(
        f"coalesce(u.{f}_days_{w}, 0) AS {f}_days_{w}" for f in COCKPIT_FEATURES for w in ("28d", "total")
    )


def owner_features_sql() -> str:
    """SELECT producing `owner_id` and every owner feature, as of %(T)s (ms)."""
    d28, d56 = 28 * _DAY, 56 * _DAY
    return f"""
WITH
own AS (SELECT vin, owner_id, valid_from FROM ownership FINAL),
cur AS (
    SELECT vin, argMax(owner_id, valid_from) AS owner_id
    FROM own WHERE toUnixTimestamp64Milli(valid_from) <= %(T)s GROUP BY vin
),
owners AS (
    SELECT c.owner_id AS owner_id, min(toUnixTimestamp64Milli(o.valid_from)) AS since_ms
    FROM cur AS c INNER JOIN own AS o ON o.vin = c.vin AND o.owner_id = c.owner_id
    WHERE toUnixTimestamp64Milli(o.valid_from) <= %(T)s
    GROUP BY c.owner_id
),
tr AS (
    SELECT o.owner_id AS owner_id, toUnixTimestamp64Milli(t.trip_start) AS s, toUnixTimestamp64Milli(t.trip_end) AS e,
           t.distance_km AS km, t.night_share AS ns, t.tz_offset_min AS off
    FROM (SELECT * FROM trips FINAL WHERE is_deleted = 0
          AND toUnixTimestamp64Milli(trip_start) < %(T)s) AS t
    ASOF INNER JOIN own AS o ON t.vin = o.vin AND t.trip_start >= o.valid_from
),
trip_f AS (
    SELECT owner_id,
           countIf(s >= %(T)s - {d28}) AS trips_28d,
           countIf(s >= %(T)s - {d56} AND s < %(T)s - {d28}) AS trips_prev_28d,
           sumIf(km, s >= %(T)s - {d28}) AS km_28d,
           sumIf(km, s >= %(T)s - {d56} AND s < %(T)s - {d28}) AS km_prev_28d,
           max(e) AS last_end,
           sumIf(ns * km, s >= %(T)s - {d28}) AS night_km_28d,
           countIf(s >= %(T)s - {d28} AND km >= 150) AS long_trips_28d
    FROM tr GROUP BY owner_id
),
commute AS (
    SELECT owner_id, countIf(morning AND evening) AS commute_days_28d
    FROM (
        SELECT owner_id, toDate(fromUnixTimestamp64Milli(s + off * 60000, 'UTC')) AS local_day,
               max(toHour(fromUnixTimestamp64Milli(s + off * 60000, 'UTC')) BETWEEN 6 AND 9) AS morning,
               max(toHour(fromUnixTimestamp64Milli(s + off * 60000, 'UTC')) BETWEEN 15 AND 19) AS evening
        FROM tr
        WHERE s >= %(T)s - {d28} AND toDayOfWeek(fromUnixTimestamp64Milli(s + off * 60000, 'UTC')) <= 5
        GROUP BY owner_id, local_day
    ) GROUP BY owner_id
),
us AS (
    SELECT o.owner_id AS owner_id, u.feature AS feature, u.detail AS detail, u.day AS day, u.sessions AS sessions
    FROM (SELECT * FROM cockpit_usage FINAL WHERE is_deleted = 0 AND sessions > 0
          AND day <= toDate(fromUnixTimestamp64Milli(%(T)s, 'UTC'))) AS u
    ASOF INNER JOIN own AS o ON u.vin = o.vin AND toDateTime64(u.day, 3, 'UTC') >= o.valid_from
),
usage_f AS (
    SELECT owner_id,
           {_usage_columns()},
           sumIf(sessions, feature = 'charging' AND day >= toDate(fromUnixTimestamp64Milli(%(T)s - {d28}, 'UTC')))
               AS charging_28d,
           sumIf(sessions, feature = 'charging' AND detail = 'dc'
                 AND day >= toDate(fromUnixTimestamp64Milli(%(T)s - {d28}, 'UTC'))) AS dc_charging_28d
    FROM us GROUP BY owner_id
),
latest AS (
    SELECT vin, signal_id, argMaxMerge(last_value) AS v FROM latest_signals
    WHERE signal_id IN %(maintenance_ids)s GROUP BY vin, signal_id
),
maint AS (
    SELECT c.owner_id AS owner_id,
           minIf(toNullable(l.v), l.signal_id = %(svc_km)s) AS service_km,
           minIf(toNullable(l.v), l.signal_id = %(svc_s)s) / 86400 AS service_days,
           minIf(toNullable(l.v), l.signal_id IN (%(tyre_fl)s, %(tyre_fr)s, %(tyre_rl)s, %(tyre_rr)s)) AS tyre_kpa_min,
           minIf(toNullable(l.v), l.signal_id = %(battery)s) AS battery_12v_min
    FROM latest AS l INNER JOIN cur AS c ON l.vin = c.vin GROUP BY c.owner_id
)
SELECT ow.owner_id AS owner_id,
       (%(T)s - ow.since_ms) / {_DAY} AS owned_days,
       coalesce(tf.trips_28d, 0) AS trips_28d,
       coalesce(tf.trips_prev_28d, 0) AS trips_prev_28d,
       coalesce(tf.km_28d, 0) AS km_28d,
       coalesce(tf.km_prev_28d, 0) AS km_prev_28d,
       if(tf.last_end IS NULL, owned_days, (%(T)s - tf.last_end) / {_DAY}) AS days_since_last_trip,
       if(coalesce(tf.km_28d, 0) > 0, tf.night_km_28d / tf.km_28d, 0) AS night_share_28d,
       coalesce(tf.long_trips_28d, 0) AS long_trips_28d,
       coalesce(cm.commute_days_28d, 0) AS commute_days_28d,
       coalesce(u.charging_28d, 0) AS charging_28d,
       coalesce(u.dc_charging_28d, 0) AS dc_charging_28d,
       m.service_km AS service_km,
       m.service_days AS service_days,
       m.tyre_kpa_min AS tyre_kpa_min,
       m.battery_12v_min AS battery_12v_min,
       {_usage_select()}
FROM owners AS ow
LEFT JOIN trip_f AS tf ON tf.owner_id = ow.owner_id
LEFT JOIN commute AS cm ON cm.owner_id = ow.owner_id
LEFT JOIN usage_f AS u ON u.owner_id = ow.owner_id
LEFT JOIN maint AS m ON m.owner_id = ow.owner_id
SETTINGS join_use_nulls = 1
"""
