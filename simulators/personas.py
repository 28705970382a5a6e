"""Owner personas: how a simulated owner drives and uses the cockpit.

Personas shape behaviour only. The simulator's truth never assumes a persona
produces a tag: it records what was actually sent and evaluates the tag
rules on that (see `simulators/truth.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DRIVING", "Persona", "assign_persona"]

# driving pattern -> what a day of trips looks like
DRIVING = (
    "commuter",
    "casual",
    "weekend_driver",
    "night_driver",
    "heavy_driver",
    "light_driver",
    "long_distance",
    "dormant",
    "churner",
)

# per-trip probability that a cockpit feature is used
_BASE_USE = {
    "navigation": 0.25,
    "voice": 0.12,
    "media": 0.6,
    "projection": 0.3,
    "seat_heating": 0.25,
    "climate": 0.5,
    "cruise_control": 0.08,
    "lane_keeping": 0.08,
    "app": 0.12,
}


@dataclass(frozen=True, slots=True)
class Persona:
    driving: str
    traits: frozenset[str] = frozenset()
    use: dict[str, float] = field(default_factory=dict)  # per-trip feature use probability
    electric: bool = False
    fast_charger: bool = False
    service_km: float = 20_000.0
    service_days: float = 200.0
    tyre_kpa: float = 240.0
    battery_v: float = 12.6

    @property
    def names(self) -> list[str]:
        return [self.driving, *sorted(self.traits)]


def _use(traits: set[str], rng: np.random.Generator) -> dict[str, float]:
    use = {k: v * rng.uniform(0.6, 1.4) for k, v in _BASE_USE.items()}
    if "heavy_navigation" in traits:
        use["navigation"] = 0.9
    if "never_voice" in traits:
        use["voice"] = 0.0
    if "adas_adopter" in traits:
        use["cruise_control"], use["lane_keeping"] = 0.8, 0.9
    if "no_projection" in traits:
        use["projection"] = 0.0
    return use


def _maintenance(traits: set[str], rng: np.random.Generator) -> dict[str, float]:
    values = {
        "service_km": rng.uniform(4_000, 25_000),
        "service_days": rng.uniform(60, 330),
        "tyre_kpa": rng.uniform(225, 255),
        "battery_v": rng.uniform(12.3, 12.8),
    }
    if "service_soon" in traits:
        values["service_km"], values["service_days"] = rng.uniform(200, 1_000), rng.uniform(60, 200)
    if "service_overdue" in traits:
        values["service_km"] = -rng.uniform(100, 2_000)
    if "tyre_low" in traits:
        values["tyre_kpa"] = rng.uniform(150, 185)
    if "battery_weak" in traits:
        values["battery_v"] = rng.uniform(11.0, 11.5)
    return values


def assign_persona(index: int, rng: np.random.Generator) -> Persona:
    """Deterministic by (index, rng): every driving pattern and trait appears in a fleet of a dozen or more."""
    driving = DRIVING[index % len(DRIVING)]
    traits: set[str] = set()
    for trait, every in (
        ("heavy_navigation", 4),
        ("never_voice", 3),
        ("adas_adopter", 5),
        ("service_soon", 6),
        ("service_overdue", 10),
        ("tyre_low", 8),
        ("battery_weak", 9),
        ("no_projection", 7),
    ):
        if (index + every // 2) % every == 0:
            traits.add(trait)
    electric = index % 3 == 1
    fast_charger = electric and index % 2 == 1
    if fast_charger:
        traits.add("ev_fast_charger")
    return Persona(driving, frozenset(traits), _use(traits, rng), electric, fast_charger, **_maintenance(traits, rng))
