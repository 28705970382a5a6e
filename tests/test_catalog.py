"""Signal and event catalogs: they load, match VSS 6.0, cover the product, and reject bad rows."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# Run from a checkout without an install: the library lives under src/.
if importlib.util.find_spec("vehicle_ingest") is None:
    sys.path.insert(0, str(REPO / "src"))

from vehicle_ingest.catalog import (  # noqa: E402
    SIGNAL_COLUMNS,
    EventCatalog,
    EventType,
    Signal,
    SignalCatalog,
    check_against_vss,
    load_event_catalog,
    load_signal_catalog,
)
from vehicle_ingest.errors import CatalogError  # noqa: E402

VSS_JSON = REPO.parent / "shared" / "vss" / "vss_release_6.0.json"

# Paths the trips / cockpit / tag features read, with their wire ids. Ids are a
# contract with head units: this table fails if one is renumbered or dropped.
PRODUCT_SIGNALS = {
    "Vehicle.Speed": 1,
    "Vehicle.TraveledDistance": 2,
    "Vehicle.LowVoltageSystemState": 3,
    "Vehicle.CurrentLocation.Latitude": 10,
    "Vehicle.CurrentLocation.Longitude": 11,
    "Vehicle.Powertrain.FuelSystem.RelativeLevel": 100,
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": 110,
    "Vehicle.Powertrain.TractionBattery.Charging.IsCharging": 120,
    "Vehicle.Powertrain.TractionBattery.Charging.ChargeCurrent.DC": 122,
    "Vehicle.Service.DistanceToService": 200,
    "Vehicle.Service.TimeToService": 201,
    "Vehicle.Service.IsServiceDue": 202,
    "Vehicle.Cabin.Seat.Row1.DriverSide.HeatingCooling": 300,
    "Vehicle.Cabin.Seat.Row1.PassengerSide.HeatingCooling": 301,
    "Vehicle.Cabin.Infotainment.Media.Played.Source": 330,
    "Vehicle.Cabin.Infotainment.SmartphoneProjection.Active": 350,
    "Vehicle.Body.Lights.Beam.Low.IsOn": 450,
}

PRODUCT_EVENTS = {
    "app_launched", "app_closed", "voice_session_started", "voice_session_ended",
    "navigation_started", "navigation_ended", "media_source_changed",
    "projection_connected", "projection_disconnected", "ota_offered", "ota_accepted",
    "ota_declined", "ota_installed", "phone_paired", "profile_switched",
    "charging_session_started", "charging_session_ended",
}  # fmt: skip


@pytest.fixture(scope="module")
def signals() -> SignalCatalog:
    return load_signal_catalog()


@pytest.fixture(scope="module")
def events() -> EventCatalog:
    return load_event_catalog()


@pytest.fixture(scope="module")
def vss_nodes() -> dict[str, dict]:
    if not VSS_JSON.is_file():
        pytest.skip(f"VSS 6.0 reference tree not found at {VSS_JSON} (shared/ must sit beside the repo)")
    out: dict[str, dict] = {}
    stack = list(json.loads(VSS_JSON.read_text()).items())
    while stack:
        path, node = stack.pop()
        out[path] = node
        stack.extend((f"{path}.{k}", v) for k, v in node.get("children", {}).items())
    return out


# ----------------------------------------------------------------- real catalogs


def test_signal_catalog_size(signals):
    assert 50 <= len(signals) <= 100


def test_every_signal_is_a_live_vss_leaf_with_same_datatype_unit_allowed(signals, vss_nodes):
    for sig in signals.signals:
        node = vss_nodes.get(sig.path)
        assert node is not None, f"{sig.path} not in VSS 6.0"
        assert node["type"] in ("sensor", "actuator"), f"{sig.path} is a {node['type']}"
        assert "deprecation" not in node, f"{sig.path} deprecated: {node['deprecation']}"
        assert sig.datatype == node["datatype"], sig.path
        assert sig.unit == node.get("unit", ""), sig.path
        assert sig.allowed == tuple(node.get("allowed", ())), sig.path
        if not sig.allowed:
            assert sig.min >= node.get("min", -np.inf), sig.path
            assert sig.max <= node.get("max", np.inf), sig.path


def test_check_against_vss_finds_nothing_on_the_real_catalog(signals, vss_nodes):
    assert check_against_vss(signals, VSS_JSON) == []


@pytest.mark.parametrize(("path", "signal_id"), PRODUCT_SIGNALS.items())
def test_product_signal_present_with_stable_id(signals, path, signal_id):
    assert signals.by_path(path).id == signal_id


def test_seat_heating_is_not_the_deprecated_leaf(signals):
    assert not [s.path for s in signals.signals if s.path.endswith(".Heating")]


def test_enums_and_booleans_follow_the_wire_rules(signals):
    for sig in signals.signals:
        if sig.is_enum:
            assert (sig.min, sig.max, sig.scale_exp) == (0, len(sig.allowed) - 1, 0), sig.path
            assert "0-based index" in sig.description, sig.path
            assert f"0={sig.allowed[0]}" in sig.description, sig.path
        if sig.datatype == "boolean":
            assert (sig.min, sig.max, sig.scale_exp) == (0, 1, 0), sig.path


def test_ignition_enum_keeps_vss_order(signals):
    assert signals.by_path("Vehicle.LowVoltageSystemState").allowed.index("ON") == 4


def test_lookup_tables_agree_with_rows(signals):
    assert signals.known.shape == (65536,) and signals.known.dtype == np.bool_
    assert signals.min_value.dtype == np.float64 and signals.scale_exp.dtype == np.int8
    assert int(signals.known.sum()) == len(signals)
    for sig in signals.signals:
        assert signals.known[sig.id]
        assert signals.min_value[sig.id] == sig.min
        assert signals.max_value[sig.id] == sig.max
        assert signals.scale_exp[sig.id] == sig.scale_exp
        assert signals.by_id(sig.id) is sig
    unknown = ~signals.known
    assert np.isnan(signals.min_value[unknown]).all() and np.isnan(signals.max_value[unknown]).all()
    ids = signals.ids()
    assert ids.dtype == np.uint16
    assert ids.tolist() == sorted(s.id for s in signals.signals)
    assert np.flatnonzero(signals.known).tolist() == ids.tolist()


def test_tables_are_read_only(signals):
    with pytest.raises(ValueError):
        signals.min_value[1] = 0.0


def test_unknown_lookups_raise_key_error(signals, events):
    with pytest.raises(KeyError, match="signal id 9999"):
        signals.by_id(9999)
    with pytest.raises(KeyError, match=r"Vehicle\.Nope"):
        signals.by_path("Vehicle.Nope")
    with pytest.raises(KeyError, match="no_such_event"):
        events.by_name("no_such_event")


def test_event_catalog(events):
    assert not PRODUCT_EVENTS - {e.name for e in events.events}
    assert int(events.known.sum()) == len(events)
    for ev in events.events:
        assert events.known[ev.id] and events.by_id(ev.id) is ev
    pairs = {(a.name, b.name) for a, b in events.session_pairs}
    assert ("navigation_started", "navigation_ended") in pairs
    assert ("app_launched", "app_closed") in pairs
    assert ("projection_connected", "projection_disconnected") in pairs
    assert events.by_name("voice_session_ended").value  # duration is documented


# --------------------------------------------------------------- broken files

HEADER = ",".join(SIGNAL_COLUMNS)
GOOD_1 = "1,Vehicle.Speed,float,km/h,-50,400,-1,,Vehicle speed."
GOOD_2 = "3,Vehicle.LowVoltageSystemState,string,,0,5,0,UNDEFINED|LOCK|OFF|ACC|ON|START,Ignition."


def _write(tmp_path: Path, *lines: str, name: str = "signals.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tmp_catalog_loads(tmp_path):
    cat = load_signal_catalog(_write(tmp_path, HEADER, GOOD_1, GOOD_2))
    assert cat.by_id(3).allowed[4] == "ON"


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ("1,Vehicle.IsMoving,boolean,,0,1,0,,Moving.", "id 1 already used on line 2"),
        ("4,Vehicle.Speed,float,km/h,0,1,0,,Again.", "path 'Vehicle.Speed' already used on line 2"),
        ("4,Vehicle.IsMoving,float32,,0,1,0,,Moving.", "unknown datatype 'float32'"),
        ("4,Vehicle.Speed2,float,km/h,10,5,0,,Speed.", "min 10 > max 5"),
        ("4,Vehicle.Mode,string,,0,2,0,,No enum.", "without allowed"),
        ("4,Vehicle.Mode,string,,0,3,0,A|B|C,Off by one.", "enum needs min 0, max 2"),
        ("4,Vehicle.Count,uint8,,0,300,0,,Too wide.", "exceeds uint8 0..255"),
        ("4,Vehicle.Speed2,float,km/h,0,1,13,,Speed.", "scale_exp 13 outside"),
        ("x,Vehicle.Speed2,float,km/h,0,1,0,,Speed.", "id 'x' is not an integer"),
        ("0,Vehicle.Speed2,float,km/h,0,1,0,,Speed.", "id 0 outside 1..65535"),
        ("4,Vehicle.Speed2,float,km/h,0,1,0", "7 fields, header has 9"),
    ],
)
def test_bad_signal_row_names_file_and_line(tmp_path, bad_row, expected):
    path = _write(tmp_path, HEADER, GOOD_1, GOOD_2, bad_row)
    with pytest.raises(CatalogError) as info:
        load_signal_catalog(path)
    message = str(info.value)
    assert f"{path}, line 4:" in message and expected in message


def test_blank_lines_do_not_shift_line_numbers(tmp_path):
    path = _write(tmp_path, HEADER, GOOD_1, "", "1,Vehicle.IsMoving,boolean,,0,1,0,,Dup.")
    with pytest.raises(CatalogError, match=r"line 4: id 1 already used on line 2"):
        load_signal_catalog(path)


def test_missing_column_is_reported_on_line_1(tmp_path):
    path = _write(tmp_path, HEADER.replace(",scale_exp", ""), "1,Vehicle.Speed,float,km/h,-50,400,,x")
    with pytest.raises(CatalogError, match=r"line 1: .*missing \['scale_exp'\]"):
        load_signal_catalog(path)


def test_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        load_signal_catalog(tmp_path / "absent.csv")


EVENT_HEADER = "id,name,value,text,description"


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ("2,app_launched,,,Again.", "name 'app_launched' already used on line 2"),
        ("2,navigation_started,,,Start.", "has no partner 'navigation_ended'"),
        ("2,App Launched,,,Bad name.", "must be snake_case"),
        ("2,thing_happened,,,", "description is empty"),
    ],
)
def test_bad_event_row_names_file_and_line(tmp_path, bad_row, expected):
    good = "1,app_launched,,app id,Start.\n3,app_closed,,app id,End."
    path = _write(tmp_path, EVENT_HEADER, good, bad_row, name="events.csv")
    with pytest.raises(CatalogError) as info:
        load_event_catalog(path)
    assert f"{path}, line 4:" in str(info.value) and expected in str(info.value)


def test_direct_construction_is_validated():
    sig = Signal(1, "Vehicle.Speed", "float", "km/h", 0, 1, -1, (), "Speed.")
    with pytest.raises(CatalogError, match="duplicate signal id 1"):
        SignalCatalog((sig, Signal(1, "Vehicle.IsMoving", "boolean", "", 0, 1, 0, (), "Moving.")))
    with pytest.raises(CatalogError, match="has no partner"):
        EventCatalog((EventType(1, "voice_session_started", "", "", "Start."),))


# ------------------------------------------------------------ VSS comparison

TINY_VSS = {
    "Vehicle": {
        "type": "branch",
        "children": {
            "Speed": {"type": "sensor", "datatype": "float", "unit": "km/h"},
            "Level": {"type": "sensor", "datatype": "uint8", "unit": "percent", "min": 0, "max": 100},
            "Mode": {"type": "sensor", "datatype": "string", "allowed": ["A", "B"]},
            "Old": {"type": "sensor", "datatype": "boolean", "deprecation": "v5.0 use New"},
            "Cabin": {"type": "branch", "children": {}},
        },
    }
}


def _problems(tmp_path: Path, *sigs: Signal) -> list[str]:
    vss = tmp_path / "vss.json"
    vss.write_text(json.dumps(TINY_VSS))
    return check_against_vss(SignalCatalog(sigs), vss)


def test_check_against_vss_accepts_matching_rows(tmp_path):
    assert _problems(tmp_path, Signal(1, "Vehicle.Speed", "float", "km/h", -50, 400, -1, (), "S.")) == []


@pytest.mark.parametrize(
    ("sig", "expected"),
    [
        (Signal(1, "Vehicle.Speed", "float", "m/s", 0, 1, 0, (), "S."), "unit 'm/s', VSS has 'km/h'"),
        (Signal(2, "Vehicle.Nowhere", "float", "", 0, 1, 0, (), "N."), "Vehicle.Nowhere: path not in VSS"),
        (Signal(3, "Vehicle.Speed", "double", "km/h", 0, 1, 0, (), "S."), "datatype 'double', VSS has"),
        (Signal(4, "Vehicle.Level", "uint8", "percent", 0, 120, 0, (), "L."), "max 120 above VSS max"),
        (Signal(5, "Vehicle.Mode", "string", "", 0, 1, 0, ("B", "A"), "M."), "allowed 'B|A', VSS has 'A|B'"),
        (Signal(6, "Vehicle.Old", "boolean", "", 0, 1, 0, (), "O."), "deprecated in VSS: v5.0"),
        (Signal(7, "Vehicle.Cabin", "boolean", "", 0, 1, 0, (), "C."), "branch, not a leaf"),
    ],
)
def test_check_against_vss_flags(tmp_path, sig, expected):
    problems = _problems(tmp_path, sig)
    assert len(problems) == 1 and expected in problems[0], problems
    assert problems[0].startswith(f"id {sig.id} {sig.path}:")
