"""What the fleet report shows, read from the store: one function per section, values bound as parameters.

Every figure is "as of" one instant: rows after it are ignored, so a report
for a past date reads the same later. Days are UTC calendar days. Current tags
are what the CDP was told: the latest change per (owner, tag) in the outbox
`tag_history`, by transition (then by enqueue time, the store's clock, should
two rows carry the same transition), when that change is an addition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vehicle_ingest.reads import Queryable
from vehicle_ingest.tags.definitions import COCKPIT_FEATURES

__all__ = [
    "ADOPTION_STATES",
    "MAINTENANCE_TAGS",
    "Adoption",
    "Daily",
    "ReportData",
    "Summary",
    "fetch_report_data",
]

DAY_MS = 86_400_000
ADOPTION_STATES = ("adopter", "trial_only", "never_used")
MAINTENANCE_TAGS = ("maintenance_overdue", "maintenance_due", "tyre_pressure_attention", "battery_12v_attention")
_AS_OF = "fromUnixTimestamp64Milli(%(as_of)s, 'UTC')"
_START = "fromUnixTimestamp64Milli(%(start)s, 'UTC')"
_CURRENT_TAGS = f"""
    SELECT owner_id, tag FROM (
        SELECT owner_id, tag, argMax(action, (transition, enqueued_at)) AS last_action
        FROM tag_history FINAL WHERE at <= {_AS_OF} GROUP BY owner_id, tag
    ) WHERE last_action = 'added'
"""
_CURRENT_OWNERS = f"""
    SELECT vin, argMax(owner_id, valid_from) AS owner_id
    FROM ownership FINAL WHERE valid_from <= {_AS_OF} GROUP BY vin
"""


@dataclass(frozen=True, slots=True)
class Summary:
    as_of_ms: int
    vehicles: int = 0
    owners: int = 0
    messages: int = 0
    samples: int = 0
    events: int = 0
    trips: int = 0
    km: float = 0.0
    rejected: int = 0
    tagged_owners: int = 0


@dataclass(frozen=True, slots=True)
class Daily:
    """Values per UTC day over the report window; days without rows hold 0."""

    days: np.ndarray  # datetime64[D], consecutive
    series: Mapping[str, np.ndarray] = field(default_factory=dict)  # name -> float64, one value per day

    def total(self, name: str) -> float:
        return float(self.series[name].sum()) if name in self.series else 0.0

    @property
    def is_empty(self) -> bool:
        return not any(np.any(v != 0) for v in self.series.values())


@dataclass(frozen=True, slots=True)
class Adoption:
    """Current owners per cockpit feature in each adoption state (the rest are occasional users or new owners)."""

    owners: int
    counts: Mapping[str, Mapping[str, int]]  # feature -> state -> owners

    @property
    def is_empty(self) -> bool:
        return not any(n for states in self.counts.values() for n in states.values())


@dataclass(frozen=True, slots=True)
class ReportData:
    summary: Summary
    ingestion: Daily  # signal_messages, event_messages, samples
    rejected: Daily  # one series per rejection reason (by day received)
    trips: Daily  # trips, km
    adoption: Adoption
    tag_counts: Mapping[str, int]  # current owners per tag
    tags_over_time: Daily  # owners per tag at the end of each day
    cdp_sinks: tuple[str, ...] = ()  # sinks that have received tag changes (none: no CDP configured yet)
    campaigns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # vehicle_ingest.campaigns results

    def to_json(self) -> dict[str, Any]:
        """A JSON value of the whole data: what a gateway sends `vehicle-ingest report --gateway`."""
        return {
            "summary": asdict(self.summary),
            **{name: _daily_json(getattr(self, name)) for name in _DAILY_FIELDS},
            "adoption": {"owners": self.adoption.owners, "counts": self.adoption.counts},
            "tag_counts": dict(self.tag_counts),
            "cdp_sinks": list(self.cdp_sinks),
            "campaigns": {k: dict(v) for k, v in self.campaigns.items()},
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ReportData:
        adoption = value["adoption"]
        return cls(
            summary=Summary(**value["summary"]),
            adoption=Adoption(int(adoption["owners"]), adoption["counts"]),
            tag_counts={str(k): int(v) for k, v in value["tag_counts"].items()},
            cdp_sinks=tuple(value.get("cdp_sinks", ())),
            campaigns=dict(value.get("campaigns", {})),
            **{name: _daily_from_json(value[name]) for name in _DAILY_FIELDS},
        )


_DAILY_FIELDS = ("ingestion", "rejected", "trips", "tags_over_time")


def _daily_json(daily: Daily) -> dict[str, Any]:
    return {"days": [str(d) for d in daily.days], "series": {k: v.tolist() for k, v in daily.series.items()}}


def _daily_from_json(value: dict[str, Any]) -> Daily:
    days = np.array(value["days"], dtype="datetime64[D]")
    series = {str(k): np.asarray(v, dtype=np.float64) for k, v in value["series"].items()}
    if any(len(v) != len(days) for v in series.values()):
        raise ValueError("a daily series does not have one value per day")
    return Daily(days, series)


def _window(store: Queryable, as_of_ms: int, days: int) -> tuple[np.datetime64, np.datetime64]:
    """[first, last] UTC day: at most `days` days ending on the as-of day, not before the first data."""
    last = np.datetime64((as_of_ms - 1) // DAY_MS, "D")  # as of midnight: the day that just ended is the last
    earliest = last - np.timedelta64(max(days, 1) - 1, "D")
    sql = f"""
        SELECT least(
            ifNull((SELECT minOrNull(day) FROM daily_activity), toDate('2149-01-01')),
            ifNull((SELECT toDate(minOrNull(ts)) FROM events), toDate('2149-01-01')),
            ifNull((SELECT toDate(minOrNull(received_at)) FROM dead_letters), toDate('2149-01-01')),
            ifNull((SELECT toDate(minOrNull(at)) FROM tag_history WHERE at <= {_AS_OF}), toDate('2149-01-01')))
    """
    first_data = np.datetime64(store.rows(sql, {"as_of": as_of_ms})[0][0], "D")
    first = min(max(earliest, first_data), last)
    return first, last


def _daily(days: np.ndarray, rows: list[tuple[Any, ...]], names: tuple[str, ...], clamp: bool = False) -> Daily:
    """Rows of (day, value, value, ...) onto the window's days; `clamp` moves earlier/later rows to the ends."""
    first, last = days[0].tolist(), days[-1].tolist()
    index = {d: i for i, d in enumerate(days.tolist())}
    series = {name: np.zeros(len(days)) for name in names}
    for day, *values in rows:
        day = np.datetime64(day, "D").tolist()
        i = index.get(min(max(day, first), last) if clamp else day)
        if i is None:
            continue
        for name, value in zip(names, values, strict=True):
            series[name][i] += float(value or 0)
    return Daily(days, series)


def _summary(store: Queryable, as_of_ms: int) -> Summary:
    sql = f"""
        SELECT
          (SELECT uniqExact(vin) FROM daily_activity WHERE day <= toDate({_AS_OF})),
          (SELECT uniqExact(owner_id) FROM ({_CURRENT_OWNERS})),
          (SELECT count() FROM (SELECT vin, seq FROM signals GROUP BY vin, seq HAVING min(ts) <= {_AS_OF}))
          + (SELECT count() FROM (SELECT vin, seq FROM events GROUP BY vin, seq HAVING min(ts) <= {_AS_OF})),
          (SELECT count() FROM signals WHERE ts <= {_AS_OF}),
          (SELECT count() FROM events WHERE ts <= {_AS_OF}),
          (SELECT count() FROM trips FINAL WHERE is_deleted = 0 AND trip_start <= {_AS_OF}),
          (SELECT sum(distance_km) FROM trips FINAL WHERE is_deleted = 0 AND trip_start <= {_AS_OF}),
          (SELECT count() FROM dead_letters FINAL WHERE received_at <= {_AS_OF}),
          (SELECT uniqExact(owner_id) FROM ({_CURRENT_TAGS}))
    """
    row = store.rows(sql, {"as_of": as_of_ms})[0]
    vehicles, owners, messages, samples, events, trips, _, rejected, tagged_owners = (int(v or 0) for v in row)
    km = float(row[6] or 0.0)
    return Summary(as_of_ms, vehicles, owners, messages, samples, events, trips, km, rejected, tagged_owners)


def _ingestion(store: Queryable, params: dict[str, int], days: np.ndarray) -> Daily:
    # Per day of the data's own time (ts): the fleet's activity, not the gateway's catch-up after an outage.
    # A message spanning midnight counts on both days; the summary counts each message once.
    sql = f"""
        SELECT day, sum(sm), sum(em), sum(n) FROM (
            SELECT toDate(ts) AS day, uniqExact(vin, seq) AS sm, 0 AS em, count() AS n FROM signals
            WHERE ts >= {_START} AND ts <= {_AS_OF} GROUP BY day
            UNION ALL
            SELECT toDate(ts) AS day, 0 AS sm, uniqExact(vin, seq) AS em, 0 AS n FROM events
            WHERE ts >= {_START} AND ts <= {_AS_OF} GROUP BY day
        ) GROUP BY day ORDER BY day
    """
    return _daily(days, store.rows(sql, params), ("signal_messages", "event_messages", "samples"))


def _rejected(store: Queryable, params: dict[str, int], days: np.ndarray) -> Daily:
    sql = f"""
        SELECT toDate(received_at) AS day, reason, count() FROM dead_letters FINAL
        WHERE received_at >= {_START} AND received_at <= {_AS_OF} GROUP BY day, reason ORDER BY day, reason
    """
    by_reason: dict[str, list[tuple[Any, ...]]] = {}
    for day, reason, n in store.rows(sql, params):
        by_reason.setdefault(str(reason), []).append((day, n))
    return Daily(days, {r: _daily(days, rows, ("n",)).series["n"] for r, rows in sorted(by_reason.items())})


def _trips(store: Queryable, params: dict[str, int], days: np.ndarray) -> Daily:
    sql = f"""
        SELECT toDate(trip_start) AS day, count(), sum(distance_km) FROM trips FINAL
        WHERE is_deleted = 0 AND trip_start >= {_START} AND trip_start <= {_AS_OF} GROUP BY day ORDER BY day
    """
    return _daily(days, store.rows(sql, params), ("trips", "km"))


def _tag_counts(store: Queryable, as_of_ms: int) -> dict[str, int]:
    rows = store.rows(f"SELECT tag, count() FROM ({_CURRENT_TAGS}) GROUP BY tag ORDER BY tag", {"as_of": as_of_ms})
    return {str(tag): int(n) for tag, n in rows}


def _adoption(owners: int, tag_counts: Mapping[str, int]) -> Adoption:
    found = {t.split(".")[1] for t in tag_counts if t.startswith("adoption.") and t.count(".") == 2}
    features = list(COCKPIT_FEATURES) + sorted(found - set(COCKPIT_FEATURES))
    counts = {f: {s: tag_counts.get(f"adoption.{f}.{s}", 0) for s in ADOPTION_STATES} for f in features}
    return Adoption(owners, counts)


def _tags_over_time(store: Queryable, as_of_ms: int, days: np.ndarray) -> Daily:
    """Owners holding each tag at the end of each day.

    Each change counts by how it moves its (owner, tag) pair between "has it" and "has it not", compared with
    the pair's previous change (in the order that defines the current tags), so the running total ends at the
    current count even if the outbox holds two additions in a row.
    """
    sql = f"""
        SELECT tag, toDate(at) AS day, sum(delta) FROM (
            SELECT tag, at, toInt8(action = 'added') - lagInFrame(toInt8(action = 'added'), 1, toInt8(0)) OVER (
                PARTITION BY owner_id, tag ORDER BY transition, enqueued_at
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS delta
            FROM tag_history FINAL WHERE at <= {_AS_OF} AND action IN ('added', 'removed')  -- not moments ('fired')
        ) GROUP BY tag, day ORDER BY tag, day
    """
    deltas: dict[str, list[tuple[Any, ...]]] = {}
    for tag, day, delta in store.rows(sql, {"as_of": as_of_ms}):
        deltas.setdefault(str(tag), []).append((day, delta))
    # Changes before the window make up its first day's count; a run exactly at the as-of instant, its last.
    series = {
        tag: np.cumsum(_daily(days, rows, ("d",), clamp=True).series["d"]) for tag, rows in sorted(deltas.items())
    }
    return Daily(days, series)


def fetch_report_data(store: Queryable, as_of_ms: int, days: int = 90) -> ReportData:
    """Everything the report shows, as of `as_of_ms`, daily charts over at most the last `days` days."""
    first, last = _window(store, as_of_ms, days)
    window = np.arange(first, last + np.timedelta64(1, "D"), dtype="datetime64[D]")
    start_ms = int(first.astype("datetime64[ms]").astype(np.int64))
    params = {"as_of": as_of_ms, "start": start_ms}
    summary = _summary(store, as_of_ms)
    tag_counts = _tag_counts(store, as_of_ms)
    return ReportData(
        summary=summary,
        ingestion=_ingestion(store, params, window),
        rejected=_rejected(store, params, window),
        trips=_trips(store, params, window),
        adoption=_adoption(summary.owners, tag_counts),
        tag_counts=tag_counts,
        tags_over_time=_tags_over_time(store, as_of_ms, window),
        cdp_sinks=tuple(r[0] for r in store.rows("SELECT DISTINCT sink FROM cdp_deliveries ORDER BY sink")),
        campaigns=_campaigns(store, as_of_ms),
    )


def _campaigns(store: Queryable, as_of_ms: int) -> dict[str, dict[str, Any]]:
    """Each campaign of schemas/campaigns.toml, measured as of the report's instant."""
    from vehicle_ingest.campaigns import campaign_results, load_campaign_definitions
    from vehicle_ingest.tags.definitions import load_tag_definitions

    return campaign_results(store, load_campaign_definitions(load_tag_definitions()), as_of_ms)
