"""The numba CAN signal decoder: layouts by hand, parity with the reference twin and with cantools."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.can_parity import opendbc_files, run, write_raw
from vehicle_ingest.can import SignalValues, decode_frames, decode_frames_reference, frame_key, load_manifest
from vehicle_ingest.can.models import default_models_path
from vehicle_ingest.errors import CatalogError

DBC = default_models_path().parent / "vi_sim_powertrain.dbc"
MANIFEST = load_manifest(DBC)
NAMES = MANIFEST.qualified_names()
KEYS = MANIFEST.msg_key


def decode(keys, frames: list[bytes]) -> SignalValues:
    keys = np.asarray(keys, dtype=np.uint32)
    data = np.frombuffer(b"".join(frames), dtype=np.uint8)
    lengths = np.array([len(f) for f in frames])
    fast = decode_frames(MANIFEST, keys, data, lengths)
    ref = decode_frames_reference(MANIFEST, keys, data, lengths)
    for c in ("frame", "signal", "raw", "value", "known", "integer"):
        np.testing.assert_array_equal(getattr(fast, c), getattr(ref, c), err_msg=c)
    return fast


def named(out: SignalValues, frame: int = 0) -> dict[str, float]:
    rows = out.frame == frame
    return {NAMES[s]: v for s, v in zip(out.signal[rows].tolist(), out.value[rows].tolist(), strict=True)}


def test_big_endian_odometer():
    frame = (12_345_678).to_bytes(4, "big") + (513).to_bytes(2, "big") + b"\0\0"
    assert named(decode([0x300], [frame])) == {"Odometer.OdometerTotal": 123456.78, "Odometer.TripCounter": 513}


def test_signed_little_endian_and_float_on_an_extended_id():
    dyn = struct.pack("<HhhH", 5000, -1234, 77, 3200)
    fuel = struct.pack("<f", 42.5) + bytes([60]) + b"\0\0\0"
    key = frame_key(np.array([0x0C8, 0x18FEF100]), np.array([False, True]))
    out = decode(key, [dyn, fuel])
    assert named(out, 0) == pytest.approx(
        {
            "VehicleDynamics.VehicleSpeed": 50.0,
            "VehicleDynamics.LongitudinalAccel": -1.234,
            "VehicleDynamics.LateralAccel": 0.077,
            "VehicleDynamics.EngineSpeed": 800.0,
        }
    )
    assert named(out, 1) == {"FuelLevel.FuelLevelPercent": 42.5, "FuelLevel.FuelTemperature": 20.0}


def test_the_same_id_as_a_standard_frame_is_another_message():
    out = decode(frame_key(np.array([0x18FEF100 & 0x7FF]), np.array([False])), [bytes(8)])
    assert out.unknown_frames == 1 and len(out) == 0


def test_multiplexed_pages_emit_only_their_signals():
    page0 = bytes([0, 0x10, 0x27, 65, 0, 0, 0, 0])
    page1 = bytes([1, 0x10, 0x27, 0x9C, 0xFF, 0, 0, 0])
    page7 = bytes([7, 1, 2, 3, 4, 5, 6, 7])
    out = decode([0x2F0] * 3, [page0, page1, page7])
    assert named(out, 0) == {
        "BatteryStatus.BatteryPage": 0,
        "BatteryStatus.StateOfCharge": 100.0,
        "BatteryStatus.CellTempMax": 25.0,
    }
    assert named(out, 1) == pytest.approx(
        {"BatteryStatus.BatteryPage": 1, "BatteryStatus.PackVoltage": 1000.0, "BatteryStatus.PackCurrent": -10.0}
    )
    assert named(out, 2) == {"BatteryStatus.BatteryPage": 7}  # a page the DBC does not define: only the switch


def test_short_frames_emit_only_the_signals_they_hold():
    out = decode([0x0C8, 0x0C8, 0x2F0], [bytes([0x10, 0x27, 1]), b"", bytes([0])])
    assert named(out, 0) == {"VehicleDynamics.VehicleSpeed": 100.0}
    assert named(out, 1) == {}
    assert named(out, 2) == {"BatteryStatus.BatteryPage": 0}  # its page-0 signals are cut off
    assert out.known.tolist() == [True, True, True]


def test_unknown_ids_are_counted_not_errors():
    out = decode([0x7DF, 0x1A0, 0x123], [bytes(8), bytes([4, 141]), bytes(8)])
    assert out.known.tolist() == [False, True, False] and out.unknown_frames == 2
    assert named(out, 1) == pytest.approx(
        {"IgnitionStatus.IgnitionState": 4, "IgnitionStatus.LowVoltageBatteryVoltage": 14.1}
    )


def test_two_dbcs_defining_one_id_is_an_error(tmp_path):
    with pytest.raises(CatalogError, match="defined twice"):
        load_manifest([DBC, DBC])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([*KEYS.tolist(), 2015]), st.binary(max_size=64)), max_size=40))
def test_numba_equals_reference_on_any_frames(frames):
    decode([k for k, _ in frames], [f for _, f in frames])


def test_write_raw_is_the_inverse_of_read():
    frame = bytearray(8)
    write_raw(frame, int(MANIFEST.sig_pos[NAMES.index("Odometer.OdometerTotal")]), 32, True, 0xDEADBEEF)
    assert frame[:4] == bytes.fromhex("deadbeef")


def test_parity_with_cantools_on_a_sample_of_opendbc():
    """The fast subset of `make can-parity`: every message of a few DBCs, multiplexed ones included."""
    wanted = {"vw_pq.dbc", "tesla_model3_party.dbc", "toyota_tss2_adas.dbc", "hyundai_2015_ccan.dbc", "ESR.dbc"}
    paths = [p for p in opendbc_files() if p.name in wanted]
    assert len(paths) == len(wanted)
    report = run(paths, frames_per_message=10)
    assert report.mismatches == [] and report.reference_mismatches == 0
    assert report.multiplexed_messages > 0 and report.values > 10_000
    assert report.values_exact == report.values


def test_parity_with_cantools_on_our_dbc():
    """Our DBC adds what opendbc barely has: an IEEE float signal and a 29-bit id."""
    report = run([DBC], frames_per_message=300)
    assert report.mismatches == [] and report.reference_mismatches == 0
    assert report.messages == 5 and report.cantools_rejected_frames == 0
