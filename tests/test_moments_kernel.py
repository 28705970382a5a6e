"""The moment state machine's numba kernel against its plain twin; conditions; definitions; CDP payloads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.cdp import TagChange, moment_message_id, redact
from vehicle_ingest.cdp._segment import segment_messages
from vehicle_ingest.cdp._sensors import sensors_record
from vehicle_ingest.errors import CatalogError
from vehicle_ingest.moments import condition_mask, crossings_numba, crossings_reference, load_moment_definitions
from vehicle_ingest.tags.rules import parse_rule

SIGNALS, EVENTS = load_signal_catalog(), load_event_catalog()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), max_size=200), st.data())
def test_numba_kernel_equals_the_reference(rows, data):
    rows.sort(key=lambda r: r[0])  # grouped, as the engine sorts them
    group = np.array([r[0] for r in rows], dtype=np.int64)
    fire = np.array([r[1] for r in rows], dtype=bool)
    rearm = np.array([r[2] for r in rows], dtype=bool)
    armed = np.array(data.draw(st.lists(st.booleans(), min_size=6, max_size=6)), dtype=bool)
    a, b = armed.copy(), armed.copy()
    assert crossings_numba(group, fire, rearm, a).tolist() == crossings_reference(group, fire, rearm, b).tolist()
    assert a.tolist() == b.tolist()


def test_hysteresis_fires_once_per_crossing():
    values = np.array([12.5, 11.7, 11.9, 11.6, 12.1, 12.3, 11.7])
    fire = condition_mask(parse_rule("value < 11.8", {"value"}, "t"), values)
    rearm = condition_mask(parse_rule("value >= 12.2", {"value"}, "t"), values)
    armed = np.array([True])
    fired = crossings_numba(np.zeros(len(values), np.int64), fire, rearm, armed)
    assert np.flatnonzero(fired).tolist() == [1, 6]
    assert armed.tolist() == [False]


@pytest.mark.parametrize(
    "rule",
    [
        "value < 11.8",
        "value / 2 > 3 or not value == 4",
        "1 < value <= 5",
        "-value * 2 + 1 != 3",
        "value / 0 > 1",
        # A term without `value` is one truth value for the whole column (raised ValueError before).
        "value > 3 and 2 > 1",
        "value > 11 or 1 > 2",
        "2 > 1 < value",
    ],
)
def test_condition_mask_agrees_with_the_rule_language(rule):
    parsed = parse_rule(rule, {"value"}, "t")
    values = np.array([-3.0, 0.0, 1.0, 4.0, 5.0, 11.7, 12.0])
    assert condition_mask(parsed, values).tolist() == [parsed.holds({"value": v}) for v in values.tolist()]


def test_shipped_moments_load_and_have_descriptions():
    moments = load_moment_definitions(SIGNALS, EVENTS)
    assert len(moments) >= 5
    assert all(m.id.startswith("moment.") and len(m.description) > 40 for m in moments)


def test_a_bad_moment_is_refused_by_name(tmp_path):
    bad = tmp_path / "tags.toml"
    bad.write_text(
        '[[moment]]\nid = "moment.x"\ndescription = "d"\nsignals = ["Vehicle.Nope"]\nfire = "value < 1"\n'
        'rearm = "value > 2"\ncooldown_h = 1\n'
    )
    with pytest.raises(CatalogError, match=r"Vehicle\.Nope"):
        load_moment_definitions(SIGNALS, EVENTS, bad)
    bad.write_text(
        '[[moment]]\nid = "moment.x"\ndescription = "d"\nsignals = ["Vehicle.Speed"]\nfire = "speed < 1"\n'
        'rearm = "never"\ncooldown_h = 1\n'
    )
    with pytest.raises(CatalogError, match="unknown feature"):
        load_moment_definitions(SIGNALS, EVENTS, bad)


def test_moment_payloads_are_tracks_without_vin_or_location():
    vin = "SMX1234567890ABCD"
    mid = moment_message_id("owner-1", "moment.battery_12v_low", vin, 7)
    assert (
        mid
        == moment_message_id("owner-1", "moment.battery_12v_low", vin, 7)
        != moment_message_id("owner-1", "moment.battery_12v_low", vin, 8)
    )
    change = TagChange(
        mid,
        "owner-1",
        "moment.battery_12v_low",
        "fired",
        {"signal": "Vehicle.LowVoltageBattery.CurrentVoltage", "value": 11.7, "vin": vin, "latitude": 48.1},
        {},
        1_700_000_000_000,
    )
    clean = redact(change, allow_vin=False)
    [track] = [json.loads(m) for m in segment_messages(clean)]
    assert track["type"] == "track" and track["event"] == "Moment Fired" and track["messageId"] == mid
    assert track["properties"] == {
        "signal": "Vehicle.LowVoltageBattery.CurrentVoltage",
        "value": 11.7,
        "moment": "moment.battery_12v_low",
    }
    record = sensors_record(clean, "default")
    assert record["type"] == "track" and record["event"] == "moment_fired" and record["distinct_id"] == "owner-1"
    assert "vin" not in json.dumps(record) and "latitude" not in json.dumps(record)
