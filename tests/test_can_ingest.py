"""CAN messages through the ingest stage into the real embedded ClickHouse (chDB): exactly once, two tables."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.helpers import now_ms
from vehicle_ingest.can.models import CanDecoder, default_models_path
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.codec import encode_can
from vehicle_ingest.errors import StoreUnavailableError
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.simulators.can import CanFleetSpec, simulate_can_fleet
from vehicle_ingest.storage import Store

SIGNALS = load_signal_catalog()
TABLES = ("signals", "events", "can_signals", "dead_letters")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def ingestor(store: Store, registry) -> Pipeline:
    for table in TABLES:
        store.command(f"TRUNCATE TABLE {table}")
    decoder = CanDecoder.load(default_models_path(), SIGNALS)
    return Pipeline(store, SIGNALS, load_event_catalog(), Metrics.create(registry), can=decoder)


@pytest.fixture(scope="module")
def fleet():
    spec = CanFleetSpec(vehicles=2, start_ms=now_ms() - 130_000, duration_s=120, seed=4)
    return simulate_can_fleet(spec, SIGNALS)


def _ingest(ingestor: Pipeline, messages):
    return ingestor.ingest([m.topic for m in messages], [m.payload for m in messages], now_ms())


def _counts(store: Store) -> tuple[int, int, int]:
    (row,) = store.rows(
        "SELECT (SELECT count() FROM signals), (SELECT count() FROM can_signals),"
        " (SELECT count() FROM (SELECT vin, seq FROM signals GROUP BY vin, seq))"
    )
    return row


def test_simulated_can_fleet_lands_as_catalog_signals_and_dbc_named_values(ingestor, store, fleet, registry):
    messages, truth = fleet
    out = _ingest(ingestor, messages)
    assert (out.stored, out.duplicates, dict(out.rejected)) == (truth.messages, 0, {})
    assert _counts(store) == (truth.samples, truth.unmapped, truth.messages)
    (total,) = store.rows("SELECT sum(value) FROM signals")[0]
    assert total == pytest.approx(truth.value_sum, rel=1e-9)
    assert registry.get_sample_value("vehicle_ingest_can_frames_unknown_id_total") == truth.unknown_frames
    assert registry.get_sample_value("vehicle_ingest_can_frames_decoded_total") == truth.frames
    names = {r[0] for r in store.rows("SELECT DISTINCT name FROM can_signals")}
    assert "BatteryStatus.PackVoltage" in names and "Odometer.TripCounter" in names
    # the big-endian km odometer arrives in metres, the float fuel level as a percentage
    odo, fuel = (
        store.rows(f"SELECT min(value), max(value) FROM signals WHERE signal_id = {sid}")[0] for sid in (2, 100)
    )
    assert 5_000_000 <= odo[0] <= odo[1] <= 150_100_000 and 0 < fuel[0] <= fuel[1] <= 100


def test_redelivery_stores_nothing_twice(ingestor, store, fleet):
    messages, truth = fleet
    _ingest(ingestor, messages[:10])
    again = _ingest(ingestor, messages)
    assert (again.stored, again.duplicates) == (truth.messages - 10, 10)
    assert _counts(store) == (truth.samples, truth.unmapped, truth.messages)


def test_retry_after_a_partial_insert_completes_without_duplicates(ingestor, store, fleet):
    """can_signals is written, then the insert into signals fails with "too many parts" (the store cannot
    take it now, which is no refusal of the rows): the retry inserts only the mapped rows."""
    messages, truth = fleet
    store.command("ALTER TABLE signals MODIFY SETTING max_parts_in_total = 0")
    try:
        with pytest.raises(StoreUnavailableError, match="signals"):
            _ingest(ingestor, messages)
    finally:
        store.command("ALTER TABLE signals RESET SETTING max_parts_in_total")
    assert _counts(store)[:2] == (0, truth.unmapped)  # the partial state: one table written
    retry = _ingest(ingestor, messages)
    assert (retry.stored, retry.duplicates) == (truth.messages, 0)
    assert _counts(store) == (truth.samples, truth.unmapped, truth.messages)
    assert _ingest(ingestor, messages).duplicates == truth.messages


def test_a_reused_seq_with_other_frames_is_rejected(ingestor, store):
    vin, t = "SMXCANREUSE000001", now_ms() - 5_000
    first = encode_can(vin, 1, t, [t], [0x1A0], bytes([4, 141]), [2])
    other = encode_can(vin, 1, t, [t, t + 1], [0x1A0, 0x1A0], bytes([4, 141, 2, 140]), [2, 2])
    assert _ingest(ingestor, [_msg(vin, first)]).stored == 1
    assert dict(_ingest(ingestor, [_msg(vin, other)]).rejected) == {"seq_reused": 1}


def test_vin_without_a_model_is_rejected_and_unknown_ids_are_counted(ingestor, store, registry):
    t = now_ms() - 5_000
    nomodel = encode_can("WVWZZZ1JZXW000001", 1, t, [t], [0x1A0], bytes([4, 141]), [2])
    unknown = encode_can("SMXCANUNKNWN00001", 1, t, [t, t], [0x7DF, 0x1A0], bytes(8) + bytes([4, 141]), [8, 2])
    out = _ingest(ingestor, [_msg("WVWZZZ1JZXW000001", nomodel), _msg("SMXCANUNKNWN00001", unknown)])
    assert (out.stored, dict(out.rejected)) == (1, {"can_model_unknown": 1})
    assert registry.get_sample_value("vehicle_ingest_can_frames_unknown_id_total") == 1
    assert store.rows("SELECT signal_id, value FROM signals ORDER BY signal_id") == [
        (3, 4.0),
        (220, pytest.approx(14.1)),
    ]


def test_can_payload_on_a_signals_topic_is_a_kind_mismatch(ingestor, store):
    vin, t = "SMXCANKND00000001", now_ms() - 5_000
    payload = encode_can(vin, 1, t, [t], [0x1A0], bytes([4, 141]), [2])
    out = ingestor.ingest([f"vi/v1/{vin}/signals"], [payload], now_ms())
    assert dict(out.rejected) == {"kind_mismatch": 1}
    assert np.array_equal(_counts(store), (0, 0, 0))


def _msg(vin: str, payload: bytes):
    from vehicle_ingest.simulators.fleet import SimMessage

    return SimMessage(0, f"vi/v1/{vin}/can", payload, 0, 0, 0.0)


def test_a_64_bit_integer_signal_is_stored_exactly(store: Store, tmp_path):
    """Beyond 2**53 a Float64 rounds: `value_int` keeps the exact value of an integer DBC signal, NULL for others."""
    (tmp_path / "wide.dbc").write_text(
        'VERSION ""\nBS_:\nBU_: ECU\nBO_ 256 Wide: 8 ECU\n SG_ Counter64 : 0|64@1- (1,0) [0|0] "" ECU\n'
        'BO_ 257 Scaled: 2 ECU\n SG_ Temp : 0|16@1+ (0.5,-40) [0|0] "" ECU\n'
    )
    (tmp_path / "mapping.toml").write_text("")
    (tmp_path / "models.toml").write_text(
        '[[model]]\nname = "wide"\nvin_prefixes = ["SMXWDE"]\ndbc = ["wide.dbc"]\nmapping = "mapping.toml"\n'
    )
    pipeline = Pipeline(
        store,
        SIGNALS,
        load_event_catalog(),
        Metrics.create(CollectorRegistry()),
        can=CanDecoder.load(tmp_path / "models.toml", SIGNALS),
    )
    vin, t = "SMXWDE00000000001", now_ms() - 5_000
    big = 2**63 - 3
    frames = big.to_bytes(8, "little", signed=True) + (300).to_bytes(2, "little")
    payload = encode_can(vin, 1, t, [t, t], [256, 257], frames, [8, 2])
    assert _ingest(pipeline, [_msg(vin, payload)]).stored == 1
    rows = store.rows(f"SELECT name, value_int, value FROM can_signals WHERE vin = '{vin}' ORDER BY name")
    assert rows == [("Scaled.Temp", None, 110.0), ("Wide.Counter64", big, float(big))]
