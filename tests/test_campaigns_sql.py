"""The campaign measurement in ClickHouse equals an independent plain-Python statement of it on the same rows.

Random stores (audience stints with and without holdout, repeated and duplicated exposures, exposures
outside the audience or of held-out owners, vehicles changing hands, replaced and deleted trips and
usage rows) are read back raw, without FINAL, and measured again in Python from the rules written in
schemas/campaigns.toml; every owner's group, anchor and outcome and the uplift must agree. Then:
exposures delivered again change nothing, usage follows the vehicle's owner at the time, and an erased
owner leaves the measurement.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime

import pytest

from vehicle_ingest.campaigns import CampaignDefinition, Exposure, Outcome, measure_campaign, save_exposures
from vehicle_ingest.owners import Ownership, save_registry
from vehicle_ingest.privacy import ERASE_PLAN, ErasureTarget, erase
from vehicle_ingest.storage import Store

DAY = 86_400_000
T0 = 1_767_225_600_000 - 60 * DAY  # 2025-11-02, a fixed clock
AS_OF = T0 + 50 * DAY
AUDIENCE, TARGET, CAMPAIGN = "aud.test", "out.test", "c_test"


def _campaign(outcome: Outcome, window_days: int = 7) -> CampaignDefinition:
    return CampaignDefinition(CAMPAIGN, "test", AUDIENCE, outcome, window_days)


CAMPAIGNS = [
    _campaign(Outcome("lost", TARGET)),
    _campaign(Outcome("gained", TARGET), 10),
    _campaign(Outcome("feature", "voice_days", 1.0)),
    _campaign(Outcome("feature", "voice_days")),
    _campaign(Outcome("feature", "km"), 5),
    _campaign(Outcome("feature", "trips", 2.0)),
]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _truncate(store: Store) -> None:
    for table in ERASE_PLAN:
        store.command(f"TRUNCATE TABLE {table}")


# -- a random store ------------------------------------------------------------------------------------


def _tag_rows(rng: random.Random, owner: str, tag: str, held: bool) -> list[tuple]:
    rows, t, action = [], T0 + rng.randrange(0, 20 * DAY), "added"
    for transition in range(rng.randrange(0, 5)):
        flag = int(held) if rng.random() > 0.05 else int(not held)  # now and then a share changed between stints
        rows.append((f"{tag}|{owner}|{transition}", owner, tag, action, "{}", "{}", _dt(t), transition, flag))
        t += rng.randrange(DAY // 2, 15 * DAY)
        action = "removed" if action == "added" else "added"
    return rows


def load_random_store(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    _truncate(store)
    vins = [f"SMXTEST{seed:02d}{i:08d}" for i in range(24)]
    owners = [f"o-{i:03d}" for i in range(30)]
    registry = [Ownership(v, owners[i % 20], T0 - 90 * DAY) for i, v in enumerate(vins)]
    registry += [Ownership(v, owners[20 + i], T0 + rng.randrange(10, 40) * DAY) for i, v in enumerate(vins[:8])]
    save_registry(store, registry)
    tags = []
    for owner in owners:
        tags += _tag_rows(rng, owner, AUDIENCE, rng.random() < 0.35)
        tags += _tag_rows(rng, owner, TARGET, False)
    columns = ["message_id", "owner_id", "tag", "action", "evidence", "traits", "at", "transition", "holdout"]
    store.insert_rows("tag_history", columns, tags)
    exposures = []
    for k, owner in enumerate(rng.sample(owners, 22)):
        for n in range(rng.randrange(1, 4)):
            at = T0 + rng.randrange(15 * DAY, 52 * DAY)  # some after the as-of instant
            campaign = CAMPAIGN if rng.random() < 0.85 else "c_other"
            exposures.append((f"m-{k}-{n}", owner, campaign, "a", "Campaign Exposed", "segment", _dt(at)))
    exposure_columns = ["message_id", "owner_id", "campaign_id", "variant", "event", "source", "exposed_at"]
    store.insert_rows("exposures", exposure_columns, exposures + exposures[:5])  # a raw duplicate block, past dedup
    trips, usage = [], []
    for vin in vins:
        for _ in range(rng.randrange(10, 40)):
            start = T0 + rng.randrange(0, 55 * DAY)
            version, deleted = _dt(T0 + DAY), int(rng.random() < 0.1)
            trips.append((vin, _dt(start), _dt(start + 1800_000), rng.uniform(1, 80), _dt(T0), 0))
            if rng.random() < 0.2:  # recomputed: a newer version replaces it, or a tombstone deletes it
                trips.append((vin, _dt(start), _dt(start + 1800_000), rng.uniform(1, 80), version, deleted))
        for day in rng.sample(range(55), 12):
            d = date.fromtimestamp((T0 + day * DAY) / 1000)
            for feature in ("voice", "media"):
                usage.append((vin, d, feature, "", rng.choice([0, 1, 2]), 10.0, _dt(T0), 0))
                if rng.random() < 0.1:
                    usage.append((vin, d, feature, "", 1, 10.0, _dt(T0 + DAY), 1))
    trip_columns = ["vin", "trip_start", "trip_end", "distance_km", "computed_at", "is_deleted"]
    store.insert_rows("trips", trip_columns, trips)
    usage_columns = ["vin", "day", "feature", "detail", "sessions", "duration_s", "computed_at", "is_deleted"]
    store.insert_rows("cockpit_usage", usage_columns, usage)


# -- the same measurement in plain Python, from the raw rows ---------------------------------------------


def _ms(value: datetime | date) -> int:
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp() * 1000)
    return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)


def _latest(rows: list[tuple], key: slice) -> list[tuple]:
    """ReplacingMergeTree(version, is_deleted) by hand: per key the row of the highest version, unless deleted."""
    best: dict[tuple, tuple] = {}
    for row in rows:
        k = row[key]
        if k not in best or row[-2] >= best[k][-2]:
            best[k] = row
    return [r for r in best.values() if not r[-1]]


class Raw:
    def __init__(self, store: Store) -> None:
        history = store.rows("SELECT message_id, owner_id, tag, action, at, transition, holdout FROM tag_history")
        self.history = list({r[0]: r for r in history}.values())  # the table replaces on message_id
        self.exposures = store.rows("SELECT owner_id, campaign_id, exposed_at FROM exposures")
        self.ownership = store.rows("SELECT vin, owner_id, valid_from FROM ownership")
        trips = store.rows("SELECT vin, trip_start, distance_km, computed_at, is_deleted FROM trips")
        usage = store.rows("SELECT vin, day, feature, detail, sessions, computed_at, is_deleted FROM cockpit_usage")
        self.trips = _latest(trips, slice(0, 2))
        self.usage = [u for u in _latest(usage, slice(0, 4)) if u[4] > 0]

    def owner_at(self, vin: str, ms: int) -> str | None:
        rows = sorted((_ms(v), o) for w, o, v in self.ownership if w == vin and _ms(v) <= ms)
        return rows[-1][1] if rows else None


def python_rows(raw: Raw, c: CampaignDefinition, as_of: int) -> dict[str, tuple]:
    changes = [r for r in raw.history if r[2] == c.audience and _ms(r[4]) <= as_of]
    removed = {(r[1], r[5]): _ms(r[4]) for r in changes if r[3] == "removed"}
    stints = [(r[1], _ms(r[4]), removed.get((r[1], r[5] + 1), 2**63 - 1), r[6]) for r in changes if r[3] == "added"]
    first: dict[str, int] = {}
    for owner, campaign, at in raw.exposures:
        if campaign == c.id and _ms(at) <= as_of:
            first[owner] = min(first.get(owner, 2**63), _ms(at))
    units: dict[str, list] = {}
    for owner, at in first.items():  # treated: first exposure inside a stint not held out
        if [h for o, s, e, h in stints if o == owner and s <= at < e] == [0]:
            units[owner] = ["treated", at, 1]
    if first:
        start, stop = min(first.values()), max(first.values())
        for owner, s, e, h in stints:  # control: held out while the campaign ran, from when they could be reached
            if h == 1 and s <= stop and e > start and units.get(owner, ["control"])[0] == "control":
                anchor = min(max(s, start), units[owner][1] if owner in units else 2**63)
                units[owner] = ["control", anchor, int(owner in first)]
    for owner, at in first.items():  # outside: exposed, yet neither
        units.setdefault(owner, ["outside", at, 1])
    return {
        o: (g, a, x, int(a + c.window_ms <= as_of), _outcome(raw, c, o, a, as_of)) for o, (g, a, x) in units.items()
    }


def _outcome(raw: Raw, c: CampaignDefinition, owner: str, anchor: int, as_of: int) -> float:
    w, kind, name = c.window_ms, c.outcome.kind, c.outcome.name
    if kind in ("lost", "gained"):
        action = "removed" if kind == "lost" else "added"
        hits = [r for r in raw.history if (r[1], r[2], r[3]) == (owner, name, action) and _ms(r[4]) <= as_of]
        return float(any(anchor < _ms(r[4]) <= anchor + w for r in hits))
    if name in ("km", "trips"):
        mine = [
            (_ms(t), km if name == "km" else 1.0)
            for vin, t, km, _, _ in raw.trips
            if raw.owner_at(vin, _ms(t)) == owner and _ms(t) <= as_of
        ]
        after = sum(v for t, v in mine if anchor < t <= anchor + w)
        before = sum(v for t, v in mine if anchor - w < t <= anchor)
    else:
        feature = name.removesuffix("_days")
        days = {
            _ms(d)
            for vin, d, f, *_ in raw.usage
            if f == feature and raw.owner_at(vin, _ms(d)) == owner and _ms(d) <= as_of
        }
        day = anchor // DAY * DAY
        after = float(sum(day < d <= day + w for d in days))
        before = float(sum(day - w <= d < day for d in days))
    return float(after >= c.outcome.at_least) if c.outcome.at_least is not None else after - before


def _engine_rows(store: Store, c: CampaignDefinition, as_of: int) -> dict[str, tuple]:
    rows = measure_campaign(store, c, as_of).rows
    return {r.owner_id: (r.group, r.anchor_ms, int(r.exposed), int(r.complete), r.outcome) for r in rows}


def _uplift(rows: dict[str, tuple]) -> float | None:
    groups = defaultdict(list)
    for group, _, _, complete, y in rows.values():
        if complete:
            groups[group].append(y)
    if not groups["treated"] or not groups["control"]:
        return None
    return sum(groups["treated"]) / len(groups["treated"]) - sum(groups["control"]) / len(groups["control"])


# -- tests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_the_store_measures_what_the_python_statement_says(store, seed):
    load_random_store(store, seed)
    raw = Raw(store)
    groups = set()
    # Every outcome as of the end; two of them also mid-way, with windows still open and exposures yet to come.
    midway = T0 + 30 * DAY
    for campaign, as_of in [*((c, AS_OF) for c in CAMPAIGNS), (CAMPAIGNS[0], midway), (CAMPAIGNS[4], midway)]:
        measured = measure_campaign(store, campaign, as_of)
        want = python_rows(raw, campaign, as_of)
        got = {r.owner_id: (r.group, r.anchor_ms, int(r.exposed), int(r.complete), r.outcome) for r in measured.rows}
        assert len(measured.rows) == len(got) and got.keys() == want.keys(), campaign.outcome
        for owner in want:
            assert got[owner][:4] == want[owner][:4], (campaign.outcome, owner)
            assert got[owner][4] == pytest.approx(want[owner][4], abs=1e-9), (campaign.outcome, owner)
        if (expected := _uplift(want)) is None:
            assert measured.uplift is None
        else:
            assert measured.uplift == pytest.approx(expected, abs=1e-9)
        groups |= {g for g, *_ in want.values()}
    assert groups == {"treated", "control", "outside"}  # every kind of owner occurred


def test_exposures_delivered_again_change_nothing(store):
    load_random_store(store, 4)
    before = {c.outcome: _engine_rows(store, c, AS_OF) for c in CAMPAIGNS[::3]}
    stored = [
        Exposure(m, o, c, v, e, s, _ms(at))
        for m, o, c, v, e, s, at in store.rows(
            "SELECT message_id, owner_id, campaign_id, variant, event, source, exposed_at FROM exposures FINAL"
        )
    ]
    again = stored + list(reversed(stored))  # a CDP's retry of everything, twice, out of order
    saved = save_exposures(store, again)
    assert (saved.stored, saved.duplicates) == (0, len(again))
    assert {c.outcome: _engine_rows(store, c, AS_OF) for c in CAMPAIGNS[::3]} == before


def test_usage_belongs_to_whoever_owned_the_vehicle_then_and_an_erased_owner_leaves(store):
    _truncate(store)
    sold = T0 + 20 * DAY
    save_registry(
        store,
        [
            Ownership("SMXSOLD0000000001", "seller", T0 - 90 * DAY),
            Ownership("SMXSOLD0000000001", "buyer", sold),
            Ownership("SMXNEWCAR00000001", "seller", sold),
            Ownership("SMXHELD0000000001", "held", T0 - 90 * DAY),
        ],
    )
    columns = ["message_id", "owner_id", "tag", "action", "evidence", "traits", "at", "transition", "holdout"]
    store.insert_rows(
        "tag_history",
        columns,
        [
            ("a1", "seller", AUDIENCE, "added", "{}", "{}", _dt(T0 + 10 * DAY), 0, 0),
            ("a2", "held", AUDIENCE, "added", "{}", "{}", _dt(T0 + 10 * DAY), 0, 1),
        ],
    )
    exposed = T0 + 18 * DAY
    save_exposures(store, [Exposure("e1", "seller", CAMPAIGN, "", "", "file", exposed)])
    usage_columns = ["vin", "day", "feature", "detail", "sessions", "duration_s", "computed_at", "is_deleted"]
    days = [date.fromtimestamp((T0 + d * DAY) / 1000) for d in (21, 22, 23)]
    store.insert_rows(
        "cockpit_usage",
        usage_columns,
        [("SMXSOLD0000000001", d, "voice", "", 1, 5.0, _dt(T0), 0) for d in days]  # the buyer's, after the sale
        + [("SMXNEWCAR00000001", days[0], "voice", "", 1, 5.0, _dt(T0), 0)],  # the seller's new car
    )
    campaign = _campaign(Outcome("feature", "voice_days"))
    rows = _engine_rows(store, campaign, AS_OF)
    assert rows == {
        "seller": ("treated", exposed, 1, 1, 1.0),  # one day on the new car, none of the buyer's three
        "held": ("control", exposed, 0, 1, 0.0),  # anchored at the campaign's first exposure
    }
    erase(store, ErasureTarget(owner="seller"))
    assert _engine_rows(store, campaign, AS_OF) == {}  # no exposure left: the campaign never ran
    assert store.rows("SELECT count() FROM exposures") == [(0,)]
