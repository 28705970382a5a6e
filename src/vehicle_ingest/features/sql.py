"""SQL of the feature jobs. Every statement reads a `ranges` set of (vin, from_ms).

Trips look a day back from `from_ms` so a trip that began before it is
recomputed whole; cockpit usage gets `from_ms` at a day boundary and also
reads the day before, so sessions crossing midnight pair up (the job keeps
only the days from `from_ms` on).

Signal ids are bound as parameters from the catalog, never spelled here, and
all message-derived values arrive through parameter binding.
"""

from __future__ import annotations

__all__ = ["COCKPIT_EVENTS_SQL", "COCKPIT_SIGNALS_SQL", "TRIPS_SQL"]

# (vin, from_ms) pairs to recompute, and all samples of the job's signals from
# a day before `from_ms` (a trip that began before it is recomputed whole).
_RANGES = """
ranges AS (
    SELECT tupleElement(pair, 1) AS vin, tupleElement(pair, 2) AS from_ms
    FROM (SELECT arrayJoin(arrayZip(%(vins)s, %(froms)s)) AS pair)
)"""

TRIPS_SQL = (
    "WITH"
    + _RANGES
    + """,
sig AS (
    SELECT s.vin AS vin, s.signal_id AS signal_id, toUnixTimestamp64Milli(s.ts) AS t, s.value AS value
    FROM signals AS s INNER JOIN ranges AS r ON s.vin = r.vin
    WHERE s.vin IN %(vins)s AND s.signal_id IN %(signal_ids)s
      AND toUnixTimestamp64Milli(s.ts) >= r.from_ms - 86400000
),
ign AS (
    SELECT vin, t, toUInt8(value IN (4, 5)) AS on_,
           lagInFrame(toUInt8(value IN (4, 5)), 1, 0) OVER w AS prev_on
    FROM sig WHERE signal_id = %(ignition)s
    WINDOW w AS (PARTITION BY vin ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
),
edges AS (
    SELECT vin, t, on_,
           leadInFrame(t, 1, 0) OVER w AS next_t,
           leadInFrame(on_, 1, 1) OVER w AS next_on
    FROM ign WHERE on_ != prev_on
    WINDOW w AS (PARTITION BY vin ORDER BY t ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
),
ignition_trips AS (
    SELECT vin, t AS trip_start, next_t AS trip_end, 'ignition' AS segmented_by
    FROM edges WHERE on_ = 1 AND next_on = 0
),
gap_rows AS (
    SELECT vin, t, value, toUInt8(t - lagInFrame(t, 1, 0) OVER w > %(gap_ms)s) AS new_trip
    FROM sig
    WHERE signal_id = %(speed)s AND vin NOT IN (SELECT DISTINCT vin FROM sig WHERE signal_id = %(ignition)s)
    WINDOW w AS (PARTITION BY vin ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
),
gap_numbered AS (
    SELECT vin, t, value, sum(new_trip) OVER (PARTITION BY vin ORDER BY t ROWS UNBOUNDED PRECEDING) AS n
    FROM gap_rows
),
gap_trips AS (
    SELECT vin, min(t) AS trip_start, max(t) AS trip_end, 'gap' AS segmented_by
    FROM gap_numbered GROUP BY vin, n
    HAVING max(value) > 0 AND max(t) > min(t) AND max(t) < %(now_ms)s - %(gap_ms)s
),
all_trips AS (
    SELECT u.vin AS vin, u.trip_start AS trip_start, u.trip_end AS trip_end, u.segmented_by AS segmented_by
    FROM (SELECT * FROM ignition_trips UNION ALL SELECT * FROM gap_trips) AS u
    INNER JOIN ranges AS rg ON u.vin = rg.vin
    WHERE u.trip_start >= rg.from_ms - 43200000
),
assigned AS (
    SELECT s.vin AS vin, s.signal_id AS signal_id, s.t AS t, s.value AS value,
           tr.trip_start AS trip_start, tr.trip_end AS trip_end, tr.segmented_by AS segmented_by
    FROM sig AS s ASOF INNER JOIN all_trips AS tr ON s.vin = tr.vin AND s.t >= tr.trip_start
    WHERE s.t <= tr.trip_end
),
per_trip AS (
    SELECT vin, trip_start, any(trip_end) AS trip_end, any(segmented_by) AS segmented_by,
           maxIf(value, signal_id = %(odometer)s) - minIf(value, signal_id = %(odometer)s) AS odo_m,
           maxIf(value, signal_id = %(speed)s) AS vmax,
           argMinIf(value, t, signal_id = %(lat)s) AS lat0, argMinIf(value, t, signal_id = %(lon)s) AS lon0,
           argMaxIf(value, t, signal_id = %(lat)s) AS lat1, argMaxIf(value, t, signal_id = %(lon)s) AS lon1,
           countIf(signal_id = %(lon)s) > 0 AS has_position,
           toInt32(if(has_position, round(lon0 * 4), 0)) AS offset_min,
           countIf(signal_id = %(soc)s) > 0 AS electric,
           argMinIf(value, t, signal_id = %(fuel)s) - argMaxIf(value, t, signal_id = %(fuel)s) AS fuel_used,
           argMinIf(value, t, signal_id = %(soc)s) - argMaxIf(value, t, signal_id = %(soc)s) AS soc_used
    FROM assigned GROUP BY vin, trip_start
),
speed_pairs AS (
    SELECT a.vin AS vin, a.trip_start AS trip_start, a.t AS t, a.value AS v,
           lagInFrame(a.t, 1, 0) OVER w AS pt, lagInFrame(a.value, 1, 0.) OVER w AS pv
    FROM assigned AS a WHERE a.signal_id = %(speed)s
    WINDOW w AS (PARTITION BY a.vin, a.trip_start ORDER BY a.t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
),
speed_terms AS (
    SELECT p.vin AS vin, p.trip_start AS trip_start,
           sumIf((p.v + p.pv) / 2 * (p.t - p.pt) / 3600000, p.pt > 0) AS speed_km,
           sumIf((p.v + p.pv) / 2 * (p.t - p.pt) / 3600000,
                 p.pt > 0 AND (modulo(intDiv(p.t + p.pt, 2) + q.offset_min * 60000, 86400000) < 5 * 3600000
                 OR modulo(intDiv(p.t + p.pt, 2) + q.offset_min * 60000, 86400000) >= 22 * 3600000)) AS night_km
    FROM speed_pairs AS p INNER JOIN per_trip AS q ON p.vin = q.vin AND p.trip_start = q.trip_start
    GROUP BY p.vin, p.trip_start
),
accel AS (
    SELECT vin, trip_start, value AS a, lagInFrame(value, 1, 0.) OVER w AS pa
    FROM assigned WHERE signal_id = %(accel)s
    WINDOW w AS (PARTITION BY vin, trip_start ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
),
harsh AS (
    SELECT vin, trip_start,
           countIf(a > %(harsh_accel)s AND pa <= %(harsh_accel)s) AS harsh_accel,
           countIf(a < -%(harsh_brake)s AND pa >= -%(harsh_brake)s) AS harsh_brake
    FROM accel GROUP BY vin, trip_start
)
SELECT q.vin AS vin,
       fromUnixTimestamp64Milli(q.trip_start, 'UTC') AS trip_start,
       fromUnixTimestamp64Milli(q.trip_end, 'UTC') AS trip_end,
       (q.trip_end - q.trip_start) / 1000 AS duration_s,
       q.odo_m / 1000 AS distance_km,
       s.speed_km AS distance_speed_km,
       if(duration_s > 0, distance_km / (duration_s / 3600), 0) AS avg_speed_kmh,
       q.vmax AS max_speed_kmh,
       h.harsh_accel AS harsh_accel, h.harsh_brake AS harsh_brake,
       if(q.electric, q.soc_used, q.fuel_used) AS energy_used_pct,
       if(q.electric, 'battery', 'fuel') AS energy_kind,
       if(s.speed_km > 0, s.night_km / s.speed_km, 0) AS night_share,
       if(q.has_position, geohashEncode(q.lon0, q.lat0, 5), '') AS start_geohash,
       if(q.has_position, geohashEncode(q.lon1, q.lat1, 5), '') AS end_geohash,
       q.offset_min AS tz_offset_min,
       q.segmented_by AS segmented_by,
       fromUnixTimestamp64Milli(%(version_ms)s, 'UTC') AS computed_at,
       0 AS is_deleted
FROM per_trip AS q
LEFT JOIN speed_terms AS s ON q.vin = s.vin AND q.trip_start = s.trip_start
LEFT JOIN harsh AS h ON q.vin = h.vin AND q.trip_start = h.trip_start
"""
)

COCKPIT_EVENTS_SQL = (
    "WITH"
    + _RANGES
    + """,
mapped AS (
    SELECT e.vin AS vin, toUnixTimestamp64Milli(e.ts) AS t,
           transform(e.event_id, %(event_ids)s, %(event_features)s, '') AS feature,
           transform(e.event_id, %(event_ids)s, %(event_roles)s, '') AS role,
           if(transform(e.event_id, %(event_ids)s, %(event_detailed)s, 0) = 1, e.text, '') AS detail
    FROM events AS e INNER JOIN ranges AS r ON e.vin = r.vin
    WHERE e.vin IN %(vins)s AND e.event_id IN %(event_ids)s AND toUnixTimestamp64Milli(e.ts) >= r.from_ms - 86400000
),
paired AS (
    SELECT vin, feature, detail, t, role,
           lagInFrame(role, 1, '') OVER w AS prev_role, lagInFrame(t, 1, 0) OVER w AS pt
    FROM mapped
    WINDOW w AS (PARTITION BY vin, feature, detail ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
SELECT vin, toDate(fromUnixTimestamp64Milli(if(role = 'end' AND prev_role = 'start', pt, t), 'UTC')) AS day,
       feature, detail,
       toUInt32(countIf(role IN ('start', 'point'))) AS sessions,
       sumIf((t - pt) / 1000, role = 'end' AND prev_role = 'start') AS duration_s
FROM paired
GROUP BY vin, day, feature, detail
"""
)

COCKPIT_SIGNALS_SQL = (
    "WITH"
    + _RANGES
    + """,
states AS (
    SELECT s.vin AS vin, s.signal_id AS signal_id, toUnixTimestamp64Milli(s.ts) AS t,
           transform(s.signal_id, %(state_ids)s, %(state_features)s, '') AS feature,
           toUInt8(s.value != 0) AS active
    FROM signals AS s INNER JOIN ranges AS r ON s.vin = r.vin
    WHERE s.vin IN %(vins)s AND s.signal_id IN %(state_ids)s AND toUnixTimestamp64Milli(s.ts) >= r.from_ms - 86400000
),
edges AS (
    SELECT vin, feature, t, active,
           lagInFrame(active, 1, 0) OVER w AS prev_active, lagInFrame(t, 1, 0) OVER w AS pt
    FROM states
    WINDOW w AS (PARTITION BY vin, signal_id ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
SELECT vin, toDate(fromUnixTimestamp64Milli(t, 'UTC')) AS day, feature, '' AS detail,
       toUInt32(countIf(active = 1 AND prev_active = 0)) AS sessions,
       sumIf(least(t - pt, %(max_state_gap_ms)s) / 1000, prev_active = 1 AND pt > 0) AS duration_s
FROM edges
GROUP BY vin, day, feature, detail
"""
)
