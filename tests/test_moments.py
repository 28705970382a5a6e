"""Moments at ingest on the real engine (chDB): crossings, re-arm, cool-down, owners, rebuilt state.

The pipeline commits each batch, the engine evaluates it and the outbox takes its changes, as the
gateway's commit path does (gateway/ingest_loop.py); a new engine on the same store is a restart.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.helpers import SIGNALS, now_ms
from vehicle_ingest.catalog import load_event_catalog
from vehicle_ingest.cdp import Outbox, TagChange
from vehicle_ingest.codec import SignalBlock, encode_events, encode_signals
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.moments import MomentEngine, load_moment_definitions
from vehicle_ingest.pipeline import Pipeline

EVENTS = load_event_catalog()
BATTERY = SIGNALS.by_path("Vehicle.LowVoltageBattery.CurrentVoltage")
TYRE_FL = SIGNALS.by_path("Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure")
DEFINITIONS = load_moment_definitions(SIGNALS, EVENTS)
_vins = (f"MXNT{n:013d}" for n in itertools.count(1))


class Rig:
    """One store, one pipeline, one moment engine (replaceable: a restart), one outbox."""

    def __init__(self, store) -> None:
        self.store = store
        self.metrics = Metrics.create(CollectorRegistry())
        self.pipeline = Pipeline(store, SIGNALS, EVENTS, self.metrics)
        self.outbox = Outbox(store)
        self.restart()

    def restart(self) -> None:
        self.engine = MomentEngine(self.store, DEFINITIONS, self.metrics)

    def ingest(self, *messages: tuple[str, bytes], enqueue: bool = True) -> list[TagChange]:
        topics, payloads = [t for t, _ in messages], [p for _, p in messages]
        prepared = self.pipeline.prepare(topics, payloads, now_ms())
        self.pipeline.commit(prepared)
        evaluation = self.engine.evaluate(prepared.decoded, prepared.plan)
        if not enqueue:  # killed between the insert and the outbox write
            return evaluation.changes
        self.outbox.enqueue(evaluation.changes)
        self.engine.commit(evaluation)
        return evaluation.changes

    def fired(self, owner: str) -> list[TagChange]:
        return [c for c in self.outbox.history(owner) if c.action == "fired"]


@pytest.fixture(scope="module")
def rig(store) -> Rig:
    return Rig(store)


def own(store, vin: str, owner: str, since_ms: int) -> None:
    store.insert_rows(
        "ownership",
        ["vin", "owner_id", "valid_from", "drivers"],
        [(vin, owner, datetime.fromtimestamp(since_ms / 1000, tz=UTC), [])],
    )


def volts(vin: str, seq: int, start: int, values: list[float], signal=BATTERY) -> tuple[str, bytes]:
    """One message of `values` one second apart from `start`."""
    ts = start + np.arange(len(values), dtype=np.int64) * 1000
    raw = np.round(np.array(values) * 10 ** (-signal.scale_exp)).astype(np.int64)
    return f"vi/v1/{vin}/signals", encode_signals(vin, seq, start, [SignalBlock(signal.id, signal.scale_exp, ts, raw)])


def vehicle(rig: Rig) -> tuple[str, str, int]:
    vin = next(_vins)
    owner = f"owner-{vin[-4:]}"
    t0 = now_ms() - 26 * 3_600_000  # room for a cool-down of 24 h before now
    own(rig.store, vin, owner, t0 - 86_400_000)
    return vin, owner, t0


def test_fires_once_per_crossing_and_rearms_only_past_the_rearm_threshold(rig):
    vin, owner, t0 = vehicle(rig)
    # 12.5 → 11.7 fires; wobbling 11.7..12.1 (under the 12.2 re-arm) does not fire again.
    rig.ingest(volts(vin, 1, t0, [12.5, 11.7, 11.9, 11.6, 12.1, 11.7]))
    rig.ingest(volts(vin, 2, t0 + 10_000, [11.9, 11.5]))
    fired = rig.fired(owner)
    assert [(c.tag, c.at_ms, c.evidence["value"]) for c in fired] == [("moment.battery_12v_low", t0 + 1000, 11.7)]
    assert fired[0].evidence == {"signal": BATTERY.path, "value": 11.7}
    # Re-armed at 12.3, then a new crossing: blocked by the 24 h cool-down (the owner was just told).
    rig.ingest(volts(vin, 3, t0 + 20_000, [12.3, 11.6]))
    assert len(rig.fired(owner)) == 1
    # A day later the cool-down is over: the next crossing after a re-arm fires.
    later = t0 + 25 * 3_600_000
    rig.ingest(volts(vin, 4, later, [12.4, 11.5]))
    assert [c.at_ms for c in rig.fired(owner)] == [t0 + 1000, later + 1000]


def test_one_message_crossing_on_two_channels_is_one_moment(rig):
    vin, owner, t0 = vehicle(rig)
    tyres = [SIGNALS.by_path(p) for p in DEFINITIONS[1].signal_paths]
    ts = np.array([t0, t0 + 1000], dtype=np.int64)
    blocks = [SignalBlock(s.id, s.scale_exp, ts, np.array([240, 190])) for s in tyres[:2]]
    rig.ingest((f"vi/v1/{vin}/signals", encode_signals(vin, 1, t0, blocks)))
    assert [c.tag for c in rig.fired(owner)] == ["moment.tyre_pressure_low"]


def test_ownership_change_sends_the_moment_to_the_owner_at_the_samples_time(rig):
    vin, first, t0 = vehicle(rig)
    own(rig.store, vin, "owner-next", t0 + 30_000)
    rig.ingest(volts(vin, 1, t0, [12.5, 11.5]))  # first owner's time
    rig.ingest(volts(vin, 2, t0 + 40_000, [12.6, 11.4]))  # re-armed, crossing again: the new owner's
    assert [c.at_ms for c in rig.fired(first)] == [t0 + 1000]
    assert [c.at_ms for c in rig.fired("owner-next")] == [t0 + 41_000]


def test_vehicle_without_owner_sends_nothing(rig):
    vin = next(_vins)
    changes = rig.ingest(volts(vin, 1, now_ms() - 60_000, [12.5, 11.5]))
    assert changes == []


def test_restart_rebuilds_state_from_the_store_and_a_redelivery_fires_with_the_same_id(rig):
    vin, owner, t0 = vehicle(rig)
    rig.ingest(volts(vin, 1, t0, [11.5, 11.6]))  # fired, and disarmed
    rig.ingest(volts(vin, 2, t0 + 25 * 3_600_000, [12.4]))  # re-armed, a day later (past the cool-down)
    lost = rig.ingest(volts(vin, 3, t0 + 25 * 3_600_000 + 10_000, [11.6]), enqueue=False)  # killed before the outbox
    assert [c.tag for c in lost] == ["moment.battery_12v_low"]
    rig.restart()
    # The broker redelivers message 3: a duplicate to the pipeline, but its moment is decided again
    # from the state the store rebuilds (disarmed by seq 1, re-armed by seq 2), with the same id.
    again = rig.ingest(volts(vin, 3, t0 + 25 * 3_600_000 + 10_000, [11.6]))
    assert [c.message_id for c in again] == [lost[0].message_id]
    assert len(rig.fired(owner)) == 2
    rig.restart()
    assert rig.ingest(volts(vin, 4, t0 + 25 * 3_600_000 + 20_000, [11.4])) == []  # still disarmed after a restart


def test_cool_down_is_rebuilt_from_the_outbox(rig):
    vin, owner, t0 = vehicle(rig)
    rig.ingest(volts(vin, 1, t0, [11.5, 12.5]))  # fired, re-armed
    rig.restart()
    assert rig.ingest(volts(vin, 2, t0 + 10_000, [11.5])) == []  # armed, but the owner was told 10 s ago
    assert len(rig.fired(owner)) == 1


def test_redelivered_moment_already_in_the_outbox_is_not_duplicated(rig):
    vin, owner, t0 = vehicle(rig)
    first = rig.ingest(volts(vin, 1, t0, [12.5, 11.5]))
    rig.restart()
    again = rig.ingest(volts(vin, 1, t0, [12.5, 11.5]))  # acked? no: killed after the outbox write
    assert [c.message_id for c in again] == [c.message_id for c in first]
    assert len(rig.fired(owner)) == 1
    # With the state in memory, an old duplicate does not fire against the current state.
    rig.ingest(volts(vin, 2, t0 + 10_000, [12.6]))  # re-armed
    assert rig.ingest(volts(vin, 1, t0, [12.5, 11.5])) == []


def test_voice_first_use_fires_once_per_vehicle(rig):
    vin, owner, t0 = vehicle(rig)
    voice = EVENTS.by_name("voice_session_started")

    def session(seq: int, at: int) -> tuple[str, bytes]:
        ts = np.array([at], dtype=np.int64)
        return f"vi/v1/{vin}/events", encode_events(
            vin, seq, at, np.array([voice.id], np.uint16), ts, np.zeros(1, np.int64), ["button"]
        )

    rig.ingest(session(1, t0))
    rig.restart()
    rig.ingest(session(2, t0 + 60_000))  # rebuilt: a voice session is stored, so not a first use
    assert [(c.tag, c.at_ms) for c in rig.fired(owner)] == [("moment.voice_first_use", t0)]
