"""Ground truth of a simulated fleet: owner features and tags, derived from what the vehicles sent.

This is an independent, plain-Python statement of the owner features that
`vehicle_ingest.tags.owner_features` computes in ClickHouse, applied to the
simulator's own record (`VehicleTruth`) instead of the store. The tag rules
are the same definitions the engine runs, evaluated with `Rule.holds`.

With `simulate --campaigns` the truth document also has `"campaigns": {campaign_id: {"uplift", "treated",
"control", "treated_outcome", "control_outcome", "treated_without_campaign", ...}}`. `uplift` is the
average effect on the exposed: the mean, over the owners the campaign reached, of their outcome minus
the outcome the same owners have when the fleet is run again without that campaign's effect (everything
else, other campaigns included, unchanged); outcomes as schemas/campaigns.toml defines them, a tag
outcome as the engine sees it at the simulation's tag cycles. simulators/campaigns.py says how.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from vehicle_ingest.cdp import moment_message_id
from vehicle_ingest.moments import MomentDefinition
from vehicle_ingest.owners import Ownership
from vehicle_ingest.simulators.fleet import DAY_MS, Fleet, TripTruth, VehicleTruth
from vehicle_ingest.tags.definitions import COCKPIT_FEATURES, TagDefinition

__all__ = ["owner_features", "seen_before", "truth_document", "truth_moments", "truth_tags"]

_D28, _D56 = 28 * DAY_MS, 56 * DAY_MS
_MAINTENANCE = {
    "service_km": ["Vehicle.Service.DistanceToService"],
    "service_s": ["Vehicle.Service.TimeToService"],
    "tyre_kpa_min": [f"Vehicle.Chassis.Axle.Row{r}.Wheel.{s}.Tire.Pressure" for r in (1, 2) for s in ("Left", "Right")],
    "battery_12v_min": ["Vehicle.LowVoltageBattery.CurrentVoltage"],
}


class _Owners:
    def __init__(self, rows: Sequence[Ownership], as_of_ms: int) -> None:
        self.by_vin: dict[str, list[Ownership]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: r.valid_from_ms):
            self.by_vin[r.vin].append(r)
        self.current = {vin: self.at(vin, as_of_ms) for vin in self.by_vin}
        self.current = {vin: o for vin, o in self.current.items() if o is not None}
        since: dict[str, int] = {}
        for vin, owner in self.current.items():
            for r in self.by_vin[vin]:
                if r.owner_id == owner and r.valid_from_ms <= as_of_ms:
                    since[owner] = min(since.get(owner, r.valid_from_ms), r.valid_from_ms)
        self.since = since

    def at(self, vin: str, ts: int) -> str | None:
        owner = None
        for r in self.by_vin.get(vin, []):
            if r.valid_from_ms <= ts:
                owner = r.owner_id
        return owner


def _local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _trip_features(trips: list[TripTruth], t: int) -> dict[str, Any]:
    w28 = [x for x in trips if x.start_ms >= t - _D28]
    prev = [x for x in trips if t - _D56 <= x.start_ms < t - _D28]
    km28 = sum(x.km for x in w28)
    night = sum((x.night_km / x.speed_km if x.speed_km > 0 else 0.0) * x.km for x in w28)
    days: dict[Any, list[bool]] = defaultdict(lambda: [False, False])
    for x in w28:
        local = _local(x.start_ms + x.offset_min * 60_000)
        if local.isoweekday() <= 5:
            days[local.date()][0] |= 6 <= local.hour <= 9
            days[local.date()][1] |= 15 <= local.hour <= 19
    return {
        "trips_28d": len(w28),
        "trips_prev_28d": len(prev),
        "km_28d": km28,
        "km_prev_28d": sum(x.km for x in prev),
        "last_end": max((x.end_ms for x in trips), default=None),
        "night_share_28d": night / km28 if km28 > 0 else 0.0,
        "long_trips_28d": sum(1 for x in w28 if x.km >= 150),
        "commute_days_28d": sum(1 for m, e in days.values() if m and e),
    }


def _usage_features(use: dict[str, set[int]], charging: dict[tuple[int, str], int], t: int) -> dict[str, Any]:
    first28 = (t - _D28) // DAY_MS
    out: dict[str, Any] = {}
    for f in COCKPIT_FEATURES:
        days = {d for d in use.get(f, set()) if d <= t // DAY_MS}
        out[f"{f}_days_28d"] = sum(1 for d in days if d >= first28)
        out[f"{f}_days_total"] = len(days)
    out["charging_28d"] = sum(n for (d, _), n in charging.items() if first28 <= d <= t // DAY_MS)
    out["dc_charging_28d"] = sum(n for (d, k), n in charging.items() if k == "dc" and first28 <= d <= t // DAY_MS)
    return out


def _value_at(vehicle: VehicleTruth, path: str, as_of_ms: int) -> float | None:
    """The vehicle's latest report of `path` at `as_of_ms` (its full history where kept, else the last one sent)."""
    history = vehicle.history.get(path)
    if history is None:
        return vehicle.latest[path][1] if path in vehicle.latest and vehicle.latest[path][0] <= as_of_ms else None
    i = bisect.bisect_right(history, (as_of_ms, math.inf))
    return history[i - 1][1] if i else None


def _maintenance(vehicles: list[VehicleTruth], as_of_ms: int) -> dict[str, Any]:
    def lowest(paths: list[str]) -> float | None:
        values = [x for v in vehicles for p in paths if (x := _value_at(v, p, as_of_ms)) is not None]
        return min(values) if values else None

    service_s = lowest(_MAINTENANCE["service_s"])
    return {
        "service_km": lowest(_MAINTENANCE["service_km"]),
        "service_days": None if service_s is None else service_s / 86_400,
        "tyre_kpa_min": lowest(_MAINTENANCE["tyre_kpa_min"]),
        "battery_12v_min": lowest(_MAINTENANCE["battery_12v_min"]),
    }


def seen_before(fleet: Fleet, at_ms: int) -> Fleet:
    """The fleet as a store holds it when everything sent before `at_ms` (a midnight) is in, and nothing after.

    A tag cycle run as of midnight while the rest is still on its way sees that: trips, days of use and
    reports before it. (Evaluating the whole record as of the instant would count the coming day's use.)
    One approximation: a charging session counts on its start day, though its events are sent when it ends
    (up to 4 h later); a session across midnight is seen one cycle later by the store than here.
    """
    first_day = at_ms // DAY_MS

    def before(v: VehicleTruth) -> VehicleTruth:
        return dataclasses.replace(
            v,
            trips=[x for x in v.trips if x.end_ms < at_ms],
            use_days={f: {d for d in days if d < first_day} for f, days in v.use_days.items()},
            charging={k: n for k, n in v.charging.items() if k[0] < first_day},
            history={p: [h for h in values if h[0] < at_ms] for p, values in v.history.items()},
        )

    return dataclasses.replace(fleet, messages=[], vehicles=[before(v) for v in fleet.vehicles])


def owner_features(fleet: Fleet, as_of_ms: int) -> dict[str, dict[str, Any]]:
    owners = _Owners(fleet.ownership, as_of_ms)
    trips: dict[str, list[TripTruth]] = defaultdict(list)
    use: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    charging: dict[str, dict[tuple[int, str], int]] = defaultdict(lambda: defaultdict(int))
    for v in fleet.vehicles:
        for x in v.trips:
            owner = owners.at(v.vin, x.start_ms)
            if owner is not None and x.start_ms < as_of_ms:
                trips[owner].append(x)
        for feature, days in v.use_days.items():
            for d in days:
                if (owner := owners.at(v.vin, d * DAY_MS)) is not None:
                    use[owner][feature].add(d)
        for (d, kind), n in v.charging.items():
            if (owner := owners.at(v.vin, d * DAY_MS)) is not None:
                charging[owner][(d, kind)] += n
    by_vin = {v.vin: v for v in fleet.vehicles}
    result = {}
    for owner, since in owners.since.items():
        f = {"owned_days": (as_of_ms - since) / DAY_MS, **_trip_features(trips[owner], as_of_ms)}
        last_end = f.pop("last_end")
        f["days_since_last_trip"] = f["owned_days"] if last_end is None else (as_of_ms - last_end) / DAY_MS
        f.update(_usage_features(use[owner], charging[owner], as_of_ms))
        f.update(_maintenance([by_vin[vin] for vin, o in owners.current.items() if o == owner], as_of_ms))
        result[owner] = f
    return result


def truth_tags(fleet: Fleet, definitions: Sequence[TagDefinition], as_of_ms: int) -> dict[str, list[str]]:
    features = owner_features(fleet, as_of_ms)
    return {owner: sorted(d.id for d in definitions if d.rule.holds(f)) for owner, f in sorted(features.items())}


def truth_moments(fleet: Fleet, moments: Sequence[MomentDefinition]) -> list[dict[str, Any]]:
    """The moments the fleet's messages cause, one sample at a time in plain Python (the gateway's twin is
    vehicle_ingest.moments): fire when armed, re-arm by `rearm`, owner at the sample's time, then the
    owner's cool-down in time order; a message crossing on two channels is one moment."""
    owners = _Owners(fleet.ownership, fleet.spec.end_ms)
    fires = []
    for v in fleet.vehicles:
        for index, m in enumerate(moments):
            for source in m.signal_ids or (m.event_id,):
                rows = sorted(
                    (t, seq, value)
                    for seq, is_event, sid, ts, values in v.watched
                    if sid == source and is_event == (m.event_id is not None)
                    for t, value in zip(ts.tolist(), values.tolist(), strict=True)
                )
                armed = True
                for t, seq, value in rows:
                    if armed and (m.fire is None or m.fire.holds({"value": value})):
                        armed = False
                        if (owner := owners.at(v.vin, t)) is not None:
                            fires.append((t, owner, index, v.vin, seq))
                    elif not armed and m.rearm is not None and m.rearm.holds({"value": value}):
                        armed = True
    sent: dict[str, dict[str, Any]] = {}
    last: dict[tuple[str, int], list[int]] = defaultdict(list)
    for t, owner, index, vin, seq in sorted(fires):
        m = moments[index]
        message_id = moment_message_id(owner, m.id, vin, seq)
        if message_id in sent or any(t - m.cooldown_ms < at <= t for at in last[(owner, index)]):
            continue
        last[(owner, index)].append(t)
        sent[message_id] = {"message_id": message_id, "owner": owner, "moment": m.id, "at_ms": t}
    return list(sent.values())


def truth_document(
    fleet: Fleet, definitions: Sequence[TagDefinition], as_of_ms: int, moments: Sequence[MomentDefinition] = ()
) -> dict[str, Any]:
    """Per owner: personas, expected tags; per vehicle: trips with distances; the moments the fleet caused."""
    owners = _Owners(fleet.ownership, as_of_ms)
    personas: dict[str, list[str]] = defaultdict(list)
    for v in fleet.vehicles:
        if (o := owners.current.get(v.vin)) is not None:
            personas[o].extend(v.persona.names)
    return {
        "as_of_ms": as_of_ms,
        "owners": {
            o: {"personas": sorted(set(personas[o])), "tags": tags}
            for o, tags in truth_tags(fleet, definitions, as_of_ms).items()
        },
        "trips": {
            v.vin: [{"start_ms": x.start_ms, "end_ms": x.end_ms, "km": round(x.km, 3)} for x in v.trips]
            for v in fleet.vehicles
        },
        "moments": truth_moments(fleet, moments),
    }
