"""Names people read: tag ids and cockpit features as they appear in the report."""

from __future__ import annotations

__all__ = ["feature_label", "number", "tag_label"]

_FEATURES = {
    "navigation": "Navigation",
    "voice": "Voice assistant",
    "media": "Media",
    "projection": "Phone projection",
    "seat_heating": "Seat heating",
    "climate": "Climate control",
    "cruise_control": "Cruise control",
    "lane_keeping": "Lane keeping",
    "ota": "OTA updates",
    "app": "Apps",
}
_TAGS = {
    "maintenance_overdue": "Maintenance overdue",
    "maintenance_due": "Maintenance due",
    "tyre_pressure_attention": "Tyre pressure low",
    "battery_12v_attention": "12 V battery low",
    "ev_fast_charging_heavy": "EV fast-charging heavy",
    "long_distance_traveller": "Long-distance traveller",
}
_STATES = {"adopter": "adopter", "trial_only": "trial only", "never_used": "never used"}


def feature_label(feature: str) -> str:
    return _FEATURES.get(feature, feature.replace("_", " ").capitalize())


def tag_label(tag: str) -> str:
    """`adoption.voice.trial_only` -> `Voice assistant: trial only`; other ids from the table or capitalised."""
    parts = tag.split(".")
    if len(parts) == 3 and parts[0] == "adoption":
        return f"{feature_label(parts[1])}: {_STATES.get(parts[2], parts[2].replace('_', ' '))}"
    return _TAGS.get(tag, tag.replace("_", " ").capitalize())


def number(value: float, decimals: int = 0) -> str:
    """Thousands separators, no trailing noise: 1234567 -> '1,234,567'."""
    return f"{value:,.{decimals}f}"
