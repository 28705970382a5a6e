"""The marketing side of a simulated fleet: campaigns sent on chosen days, owners who respond, and the truth.

A campaign is sent at midnight UTC of its day, right after a tag cycle: its audience is the owners the
tag engine holds in the audience tag then (this module evaluates the same rule on what the vehicles had
sent by then: `simulators.truth`), minus the held-out ones (`TagDefinition.held_out`, the engine's own
function). Each exposed owner is reached 2 to 6 hours later (an exposure, posted to the gateway as a
CDP would). A share of them responds with a known effect on their vehicles (`fleet.Effect`): voice
sessions on later trips, or a workshop visit within days. The world may act too, exposed or not (a
share of overdue cars is serviced anyway), which sets the control group's rate.

The vehicles' own random streams are never touched by an effect, so the fleet can be run again
without one campaign's effects and differ by those alone. That gives the truth exactly:

    uplift = mean over the exposed owners of
             (their outcome with the campaign) - (their outcome without it, all else unchanged)

the average effect on the exposed (treated) population, with outcomes as schemas/campaigns.toml
defines them; a tag outcome is read at the simulation's tag cycles (`CampaignFleet.cycles`), as the
engine sees it. Campaigns are applied in send order, each audience chosen from the fleet as the
earlier campaigns left it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from vehicle_ingest.campaigns.definitions import CampaignDefinition
from vehicle_ingest.catalog import EventCatalog, SignalCatalog
from vehicle_ingest.errors import ConfigError
from vehicle_ingest.simulators.fleet import (
    DAY_MS,
    Effect,
    Fleet,
    FleetSpec,
    SimMessage,
    simulate_fleet,
    simulate_vehicle,
)
from vehicle_ingest.simulators.truth import owner_features, seen_before
from vehicle_ingest.tags.definitions import TagDefinition

__all__ = ["CYCLE_DAYS", "DEFAULT_PLAN", "EXPOSURE_EVENT", "CampaignFleet", "Sent", "SimCampaign"]

HOUR_MS = 3_600_000
# From the first send until the last window closes, the tag engine runs every CYCLE_DAYS simulated days and on
# every send day: a tag outcome is seen at that resolution, by the engine as by the truth.
CYCLE_DAYS = 8
EXPOSURE_EVENT = "Campaign Exposed"
_NO_END = 2**62
_NAMESPACE = uuid.UUID("5b0d3e51-6c41-4bb0-9c1f-4f3a2d9e7a11")  # the simulated CDP's message ids


@dataclass(frozen=True, slots=True)
class SimCampaign:
    id: str  # a campaign of schemas/campaigns.toml
    days_before_end: int  # sent at midnight UTC this many days before the fleet's last midnight
    effect: str  # "voice" | "service" | "none"
    respond: float = 0.0  # share of exposed owners who respond
    strength: float = 0.0  # voice: chance per trip of a voice session; service: the visit within 1 to N days
    natural: float = 0.0  # service: share of the whole audience serviced anyway within the window


DEFAULT_PLAN = (
    SimCampaign("service_reminder", 35, "service", respond=0.6, strength=10, natural=0.15),
    SimCampaign("voice_tutorial", 31, "voice", respond=0.5, strength=0.35),
    SimCampaign("playlist_promo", 27, "none"),
)


@dataclass
class Sent:
    """One campaign as it went out."""

    campaign: SimCampaign
    definition: CampaignDefinition
    at_ms: int  # the send day's midnight (a tag cycle runs as of it first)
    exposed: dict[str, int] = field(default_factory=dict)  # owner -> exposure instant (ms)
    control: list[str] = field(default_factory=list)  # held-out audience owners
    responses: dict[int, list[Effect]] = field(default_factory=dict)  # vehicle index -> this campaign's effects

    def segment_batch(self) -> dict[str, Any]:
        """The exposures as a Segment-compatible CDP would post them: one `track` per exposed owner."""
        return {
            "batch": [
                {
                    "type": "track",
                    "messageId": str(uuid.uuid5(_NAMESPACE, f"{self.definition.id}|{owner}")),
                    "userId": owner,
                    "event": EXPOSURE_EVENT,
                    "timestamp": _iso(at),
                    "properties": {"campaign_id": self.definition.id, "variant": "treatment"},
                }
                for owner, at in sorted(self.exposed.items())
            ]
        }


def _iso(ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


class CampaignFleet:
    """A fleet that lived through `plan`: its messages, its campaigns as sent, and their true uplift."""

    def __init__(
        self,
        spec: FleetSpec,
        signals: SignalCatalog,
        events: EventCatalog,
        tags: Sequence[TagDefinition],
        campaigns: Sequence[CampaignDefinition],
        plan: Sequence[SimCampaign] = DEFAULT_PLAN,
    ) -> None:
        self.spec, self._signals, self._events = spec, signals, events
        self._tags = {t.id: t for t in tags}
        self._definitions = {c.id: c for c in campaigns}
        last_midnight = spec.end_ms - spec.end_ms % DAY_MS
        self._plan = sorted(plan, key=lambda c: -c.days_before_end)
        self._send_at = {c.id: last_midnight - c.days_before_end * DAY_MS for c in self._plan}
        self._check(plan, last_midnight)
        self.fleet = simulate_fleet(spec, signals, events)
        self._effects: dict[int, list[Effect]] = defaultdict(list)
        self.sent = [self._send(k, c) for k, c in enumerate(self._plan)]
        first = min(self._send_at.values())
        last = max(max(s.exposed.values(), default=s.at_ms) + s.definition.window_ms for s in self.sent)
        self.cycles = sorted({*self._send_at.values(), *range(first, last + 1, CYCLE_DAYS * DAY_MS)})

    def _check(self, plan: Sequence[SimCampaign], last_midnight: int) -> None:
        for c in plan:
            if c.id not in self._definitions:
                raise ConfigError("campaigns", f"simulated campaign {c.id!r} is not in schemas/campaigns.toml")
            window_end = self._send_at[c.id] + self._definitions[c.id].window_ms + DAY_MS
            if self._send_at[c.id] < self.spec.start_ms + 7 * DAY_MS or window_end > last_midnight:
                days = max(p.days_before_end for p in plan) + 8
                raise ConfigError("duration", f"--campaigns needs a fleet of at least {days} days ({c.id})")

    # -- sending -------------------------------------------------------------------------------------

    def _vehicles_of(self, owner: str, at_ms: int) -> list[tuple[int, int]]:
        """(vehicle index, until when the owner keeps it) for the vehicles `owner` holds at `at_ms`."""
        index = {v.vin: i for i, v in enumerate(self.fleet.vehicles)}
        rows: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for r in self.fleet.ownership:
            rows[r.vin].append((r.valid_from_ms, r.owner_id))
        held = []
        for vin, history in rows.items():
            history.sort()
            current = [o for since, o in history if since <= at_ms]
            if current and current[-1] == owner:
                later = [since for since, _ in history if since > at_ms]
                held.append((index[vin], min(later, default=_NO_END)))
        return held

    def _send(self, k: int, campaign: SimCampaign) -> Sent:
        definition = self._definitions[campaign.id]
        tag, t = self._tags[definition.audience], self._send_at[campaign.id]
        sent = Sent(campaign, definition, t)
        features = owner_features(seen_before(self.fleet, t), t)  # what the store holds at the cycle
        audience = sorted(o for o, f in features.items() if tag.rule.holds(f))
        rng = np.random.default_rng([self.spec.seed, 7919, k])
        world: dict[int, list[Effect]] = defaultdict(list)
        responses: dict[int, list[Effect]] = defaultdict(list)
        for owner in audience:
            # Every draw is made for every audience owner, held out or not: groups never shift the stream.
            respond, delay, natural, natural_day, hour = rng.random(5)
            vehicles = self._vehicles_of(owner, t)
            if campaign.natural and natural < campaign.natural:
                for i, _ in vehicles:
                    world[i].append(Effect("service", t + int(natural_day * definition.window_ms)))
            if tag.held_out(owner):
                sent.control.append(owner)
                continue
            at = t + 2 * HOUR_MS + int(hour * 4 * HOUR_MS)
            sent.exposed[owner] = at
            if respond < campaign.respond:
                for i, until in vehicles:
                    responses[i].append(self._response(campaign, k, i, at, until, delay))
        sent.responses = dict(responses)
        for i, effects in [*world.items(), *responses.items()]:
            self._effects[i].extend(effects)
        self._rerun({*world, *responses}, self._effects)
        return sent

    def _response(self, campaign: SimCampaign, k: int, vehicle: int, at: int, until: int, delay: float) -> Effect:
        if campaign.effect == "voice":
            seed = (self.spec.seed * 1_000_003 + k) * 100_003 + vehicle
            return Effect("voice", at, until, probability=campaign.strength, seed=seed)
        if campaign.effect == "service":
            return Effect("service", at + int((1 + delay * (campaign.strength - 1)) * DAY_MS))
        raise ConfigError("campaigns", f"{campaign.id}: effect {campaign.effect!r} has no response")

    def _rerun(self, indices: set[int], effects: Mapping[int, Sequence[Effect]]) -> None:
        """Vehicles `indices` again, with `effects`, in place of their earlier run."""
        fresh: list[SimMessage] = []
        for i in sorted(indices):
            truth, messages = simulate_vehicle(self.spec, i, self._signals, self._events, effects.get(i, ()))
            self.fleet.vehicles[i] = truth
            fresh += messages
        topics = tuple(f"vi/v1/{self.fleet.vehicles[i].vin}/" for i in indices)
        kept = [m for m in self.fleet.messages if not m.topic.startswith(topics)]
        self.fleet.messages = sorted(kept + fresh, key=lambda m: m.sim_ts)

    # -- truth ---------------------------------------------------------------------------------------

    def messages(self) -> list[SimMessage]:
        return self.fleet.messages

    def send_instants(self) -> dict[int, list[Sent]]:
        by_time: dict[int, list[Sent]] = defaultdict(list)
        for s in self.sent:
            by_time[s.at_ms].append(s)
        return dict(by_time)

    def _without(self, sent: Sent) -> Fleet:
        """The same fleet had `sent` had no effect (its responses removed; everything else as it was)."""
        effects = {i: [e for e in self._effects[i] if e not in sent.responses.get(i, ())] for i in sent.responses}
        vehicles = list(self.fleet.vehicles)
        for i, kept in effects.items():
            vehicles[i] = simulate_vehicle(self.spec, i, self._signals, self._events, kept)[0]
        return Fleet(self.spec, [], vehicles, self.fleet.ownership)

    def truth(self) -> dict[str, dict[str, Any]]:
        """{campaign_id: {"uplift": the true effect on the exposed, ...}} (see the module docstring)."""
        return {s.definition.id: self._campaign_truth(s) for s in self.sent}

    def _campaign_truth(self, sent: Sent) -> dict[str, Any]:
        anchors = {o: at for o, at in sent.exposed.items()}
        start = min(anchors.values(), default=sent.at_ms)
        actual = _Outcomes(self.fleet, sent.definition, self._tags, self.cycles)
        without = _Outcomes(self._without(sent), sent.definition, self._tags, self.cycles)
        treated = [actual(o, a) for o, a in sorted(anchors.items())]
        untreated = [without(o, a) for o, a in sorted(anchors.items())]
        control = [actual(o, start) for o in sent.control]
        return {
            "uplift": _mean([a - b for a, b in zip(treated, untreated, strict=True)]),
            "treated": len(treated),
            "control": len(control),
            "treated_outcome": _mean(treated),
            "control_outcome": _mean(control),
            "treated_without_campaign": _mean(untreated),
            "audience": sent.definition.audience,
            "sent_ms": sent.at_ms,
            "effect": _describe(sent.campaign),
        }


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _describe(c: SimCampaign) -> str:
    if c.effect == "voice":
        return f"{c.respond:.0%} of the exposed use voice on {c.strength:.0%} of their trips from exposure on"
    if c.effect == "service":
        return (
            f"{c.respond:.0%} of the exposed are serviced within 1-{c.strength:g} days; {c.natural:.0%} of the"
            " audience is serviced anyway within the window"
        )
    return "no effect"


class _Outcomes:
    """Each owner's outcome from the simulator's own record, stated independently of the store's SQL."""

    def __init__(
        self, fleet: Fleet, campaign: CampaignDefinition, tags: Mapping[str, TagDefinition], cycles: list[int]
    ) -> None:
        self._fleet, self._campaign, self._cycles = fleet, campaign, cycles
        self._tag = tags.get(campaign.outcome.name)
        self._features: dict[int, dict[str, dict[str, Any]]] = {}
        owner_at = _owner_lookup(fleet)
        # Each trip and each day of use with the owner it belongs to (whoever owned the vehicle then).
        self._trips: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._days: dict[tuple[str, str], set[int]] = defaultdict(set)
        for v in fleet.vehicles:
            for x in v.trips:
                if (o := owner_at(v.vin, x.start_ms)) is not None:
                    self._trips[o].append((x.start_ms, x.km))
            for feature, days in v.use_days.items():
                for d in days:
                    if (o := owner_at(v.vin, d * DAY_MS)) is not None:
                        self._days[(o, feature)].add(d)

    def __call__(self, owner: str, anchor: int) -> float:
        outcome, w = self._campaign.outcome, self._campaign.window_ms
        if outcome.kind in ("lost", "gained"):
            return float(self._changed(owner, anchor, w, outcome.kind))
        after, before = self._measure(owner, anchor, w, outcome.name)
        return float(after >= outcome.at_least) if outcome.at_least is not None else after - before

    def _held(self, owner: str, cycle: int) -> bool:
        if cycle not in self._features:
            self._features[cycle] = owner_features(seen_before(self._fleet, cycle), cycle)
        assert self._tag is not None
        return self._tag.rule.holds(self._features[cycle].get(owner, {}))

    def _changed(self, owner: str, anchor: int, w: int, kind: str) -> bool:
        """A change of the tag in (anchor, anchor + w] at the engine's cycles: from the state before the window."""
        before = [c for c in self._cycles if c <= anchor]
        present = self._held(owner, before[-1]) if before else False
        for c in (c for c in self._cycles if anchor < c <= anchor + w):
            now = self._held(owner, c)
            if (kind == "lost" and present and not now) or (kind == "gained" and not present and now):
                return True
            present = now
        return False

    def _measure(self, owner: str, anchor: int, w: int, name: str) -> tuple[float, float]:
        if name in ("km", "trips"):
            trips = [(start, km if name == "km" else 1.0) for start, km in self._trips.get(owner, ())]
            after = sum(value for start, value in trips if anchor < start <= anchor + w)
            return after, sum(value for start, value in trips if anchor - w < start <= anchor)
        day, days = anchor // DAY_MS, w // DAY_MS
        used = self._days.get((owner, name.removesuffix("_days")), set())
        return float(sum(day < d <= day + days for d in used)), float(sum(day - days <= d < day for d in used))


def _owner_lookup(fleet: Fleet) -> Callable[[str, int], str | None]:
    rows: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in fleet.ownership:
        rows[r.vin].append((r.valid_from_ms, r.owner_id))
    for history in rows.values():
        history.sort()

    def owner_at(vin: str, ms: int) -> str | None:
        current = [o for since, o in rows.get(vin, ()) if since <= ms]
        return current[-1] if current else None

    return owner_at
