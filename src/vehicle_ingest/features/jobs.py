"""Periodic feature jobs: trips and cockpit usage for the vehicles that received data.

Each run finds the vehicles with rows received since the job's watermark,
recomputes their trips and daily cockpit usage from the earliest new sample
on (so late and out-of-order data are folded in), writes the new rows, and
tombstones rows that the recomputation no longer produces. Running it twice
writes the same rows again: ReplacingMergeTree keeps one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.features.sql import COCKPIT_EVENTS_SQL, COCKPIT_SIGNALS_SQL, TRIPS_SQL
from vehicle_ingest.storage import Store

__all__ = ["COCKPIT_EVENT_FEATURES", "COCKPIT_STATE_FEATURES", "FeatureJobs", "FeatureReport", "TripRules"]

DAY_MS = 86_400_000
_JOB = "features"
_OVERLAP_MS = 60_000
_VIN_CHUNK = 1000  # re-read a minute of arrivals: a batch stamped earlier may commit later

# event name -> (feature, role, detail taken from the event text)
COCKPIT_EVENT_FEATURES: dict[str, tuple[str, str, bool]] = {
    "navigation_started": ("navigation", "start", False),
    "navigation_ended": ("navigation", "end", False),
    "voice_session_started": ("voice", "start", False),
    "voice_session_ended": ("voice", "end", False),
    "app_launched": ("app", "start", True),
    "app_closed": ("app", "end", True),
    "projection_connected": ("projection", "start", True),
    "projection_disconnected": ("projection", "end", True),
    "media_source_changed": ("media", "point", True),
    "ota_accepted": ("ota", "point", False),
    "charging_session_started": ("charging", "start", True),
    "charging_session_ended": ("charging", "end", True),
}
# state signal -> feature; a session is a run of non-zero values
COCKPIT_STATE_FEATURES: dict[str, str] = {
    "Vehicle.Cabin.Seat.Row1.DriverSide.HeatingCooling": "seat_heating",
    "Vehicle.Cabin.Seat.Row1.PassengerSide.HeatingCooling": "seat_heating",
    "Vehicle.Cabin.HVAC.IsAirConditioningActive": "climate",
    "Vehicle.ADAS.CruiseControl.IsActive": "cruise_control",
    "Vehicle.ADAS.LaneDepartureDetection.IsEnabled": "lane_keeping",
}


_USAGE_COLUMNS = ("vin", "day", "feature", "detail", "sessions", "duration_s")  # as both cockpit queries select


@dataclass(frozen=True, slots=True)
class TripRules:
    gap_ms: int = 300_000  # vehicles without ignition state: a pause this long ends a trip
    harsh_accel_ms2: float = 3.0
    harsh_brake_ms2: float = 3.5
    max_state_gap_ms: int = 3_600_000  # a cockpit state without an "off" sample counts at most this long


@dataclass(frozen=True, slots=True)
class FeatureReport:
    vehicles: int = 0
    trips_written: int = 0
    trips_deleted: int = 0
    usage_written: int = 0
    usage_deleted: int = 0


def _signal_parameters(signals: SignalCatalog) -> dict[str, Any]:
    def sid(path: str) -> int:
        return signals.by_path(path).id

    ids = {
        "speed": sid("Vehicle.Speed"),
        "odometer": sid("Vehicle.TraveledDistance"),
        "ignition": sid("Vehicle.LowVoltageSystemState"),
        "accel": sid("Vehicle.Acceleration.Longitudinal"),
        "lat": sid("Vehicle.CurrentLocation.Latitude"),
        "lon": sid("Vehicle.CurrentLocation.Longitude"),
        "fuel": sid("Vehicle.Powertrain.FuelSystem.RelativeLevel"),
        "soc": sid("Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"),
    }
    return {**ids, "signal_ids": sorted(ids.values())}


def _cockpit_parameters(signals: SignalCatalog, events: EventCatalog) -> dict[str, Any]:
    names = sorted(COCKPIT_EVENT_FEATURES)
    state_paths = sorted(COCKPIT_STATE_FEATURES)
    return {
        "event_ids": [events.by_name(n).id for n in names],
        "event_features": [COCKPIT_EVENT_FEATURES[n][0] for n in names],
        "event_roles": [COCKPIT_EVENT_FEATURES[n][1] for n in names],
        "event_detailed": [int(COCKPIT_EVENT_FEATURES[n][2]) for n in names],
        "state_ids": [signals.by_path(p).id for p in state_paths],
        "state_features": [COCKPIT_STATE_FEATURES[p] for p in state_paths],
    }


class FeatureJobs:
    def __init__(
        self, store: Store, signals: SignalCatalog, events: EventCatalog, rules: TripRules | None = None
    ) -> None:
        self._store = store
        self._rules = rules or TripRules()
        self._trip_params = _signal_parameters(signals)
        self._cockpit_params = _cockpit_parameters(signals, events)

    def run(self, now_ms: int) -> FeatureReport:
        watermark = self._watermark()
        changed = self._store.rows(
            "SELECT vin, min(t), max(r) FROM ("
            " SELECT vin, toUnixTimestamp64Milli(ts) AS t, toUnixTimestamp64Milli(received_at) AS r FROM signals"
            "  WHERE received_at > fromUnixTimestamp64Milli(%(w)s, 'UTC')"
            " UNION ALL"
            " SELECT vin, toUnixTimestamp64Milli(ts), toUnixTimestamp64Milli(received_at) FROM events"
            "  WHERE received_at > fromUnixTimestamp64Milli(%(w)s, 'UTC')"
            ") GROUP BY vin ORDER BY vin",
            {"w": watermark},
        )
        if not changed:
            return FeatureReport()
        # Row versions come from the wall clock, never from the caller's `now_ms`:
        # a run "as of" an earlier instant must not lose to the rows it replaces.
        version_ms = max(time.time_ns() // 1_000_000, now_ms)
        counts = [0, 0, 0, 0]
        for lo in range(0, len(changed), _VIN_CHUNK):  # the vehicle list travels in the query text
            part = changed[lo : lo + _VIN_CHUNK]
            vins = [str(v) for v, _, _ in part]
            froms = [int(t) for _, t, _ in part]
            trips = self._recompute_trips(vins, froms, now_ms, version_ms)
            usage = self._recompute_usage(vins, [f - f % DAY_MS for f in froms], version_ms)
            counts = [a + b for a, b in zip(counts, (*trips, *usage), strict=True)]
        self._set_watermark(max(int(r) for _, _, r in changed) - _OVERLAP_MS)
        return FeatureReport(len(changed), *counts)

    def rebuild(self, now_ms: int) -> FeatureReport:
        """Forget the watermark and recompute everything (after a rules change)."""
        self._set_watermark(0)
        return self.run(now_ms)

    # -- trips -------------------------------------------------------------

    def _recompute_trips(self, vins: list[str], froms: list[int], now_ms: int, version_ms: int) -> tuple[int, int]:
        r = self._rules
        params = {
            **self._trip_params,
            "vins": vins,
            "froms": froms,
            "now_ms": now_ms,
            "version_ms": version_ms,
            "gap_ms": r.gap_ms,
            "harsh_accel": r.harsh_accel_ms2,
            "harsh_brake": r.harsh_brake_ms2,
        }
        names, rows = self._store.query(TRIPS_SQL, params)
        existing = self._store.rows(
            "SELECT vin, trip_start FROM trips FINAL WHERE (vin, toUnixTimestamp64Milli(trip_start)) IN ("
            " SELECT t.vin, t.s FROM (SELECT vin, toUnixTimestamp64Milli(trip_start) AS s FROM trips FINAL"
            "  WHERE vin IN %(vins)s) AS t"
            " INNER JOIN (SELECT tupleElement(x, 1) AS vin, tupleElement(x, 2) AS f"
            "  FROM (SELECT arrayJoin(arrayZip(%(vins)s, %(froms)s)) AS x)) AS r ON t.vin = r.vin"
            " WHERE t.s >= r.f - 43200000)",
            {"vins": vins, "froms": froms},
        )
        return self._replace("trips", names, rows, existing, ("vin", "trip_start"), version_ms)

    # -- cockpit usage -------------------------------------------------------

    def _recompute_usage(self, vins: list[str], day_froms: list[int], version_ms: int) -> tuple[int, int]:
        """Rewrite usage from each vehicle's first changed day, reading a day before it.

        The extra day lets a session that began before midnight pair with its
        end (and a state that was already on not count as a new session).
        """
        params = {
            **self._cockpit_params,
            "vins": vins,
            "froms": day_froms,
            "max_state_gap_ms": self._rules.max_state_gap_ms,
        }
        names, rows = self._store.query(COCKPIT_EVENTS_SQL, params)
        _, state_rows = self._store.query(COCKPIT_SIGNALS_SQL, params)
        first_day = {v: _date(f) for v, f in zip(vins, day_froms, strict=True)}
        rows = [(*row, now_ms_dt(version_ms), 0) for row in rows + state_rows if row[1] >= first_day[row[0]]]
        names = [*_USAGE_COLUMNS, "computed_at", "is_deleted"]
        existing = self._store.rows(
            "SELECT u.vin, u.day, u.feature, u.detail"
            " FROM (SELECT * FROM cockpit_usage FINAL WHERE vin IN %(vins)s) AS u"
            " INNER JOIN (SELECT tupleElement(x, 1) AS vin, tupleElement(x, 2) AS f"
            "  FROM (SELECT arrayJoin(arrayZip(%(vins)s, %(froms)s)) AS x)) AS r ON u.vin = r.vin"
            " WHERE toUnixTimestamp64Milli(toDateTime64(u.day, 3, 'UTC')) >= r.f",
            {"vins": vins, "froms": day_froms},
        )
        return self._replace("cockpit_usage", names, rows, existing, ("vin", "day", "feature", "detail"), version_ms)

    # -- shared --------------------------------------------------------------

    def _replace(
        self,
        table: str,
        names: Sequence[str],
        rows: list[tuple[Any, ...]],
        existing: list[tuple[Any, ...]],
        key: tuple[str, ...],
        now_ms: int,
    ) -> tuple[int, int]:
        """Write `rows`; tombstone the `existing` keys that `rows` no longer contains."""
        positions = [list(names).index(k) for k in key] if rows else []
        fresh = {tuple(row[p] for p in positions) for row in rows}
        gone = [k for k in existing if tuple(k) not in fresh]
        if rows:
            self._store.insert_rows(table, list(names), rows)
        if gone:
            tomb_names = [*key, "computed_at", "is_deleted"]
            self._store.insert_rows(table, tomb_names, [(*k, now_ms_dt(now_ms), 1) for k in gone])
        return len(rows), len(gone)

    def _watermark(self) -> int:
        rows = self._store.rows(
            "SELECT toUnixTimestamp64Milli(watermark) FROM job_state FINAL WHERE job = %(j)s", {"j": _JOB}
        )
        return int(rows[0][0]) if rows else 0

    def _set_watermark(self, ms: int) -> None:
        self._store.command(
            "INSERT INTO job_state (job, watermark) VALUES (%(j)s, fromUnixTimestamp64Milli(%(w)s, 'UTC'))",
            {"j": _JOB, "w": max(ms, 0)},
        )


def _date(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def now_ms_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
