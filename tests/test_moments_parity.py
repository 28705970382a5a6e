"""The moment engine's in-order path (one numba pass in batch order) against its sorted reference path.

Both engines see the same batches and a store stub that answers the state rebuild, the owners and
the cool-downs the same way; they must send the same changes and end with the same state. Batches
carry what the in-order path must get right or hand over: equal timestamps within and across
messages, duplicates older than the state, rows out of time order (within a message, across
messages, and CAN rows appended after the batch's other samples), rejected messages, two moments
on one signal, a moment whose fire and re-arm conditions hold together, an event moment, a
cool-down, vehicles without owner, and restarts (state rebuilt from the store).
"""

from __future__ import annotations

import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from vehicle_ingest.metrics import Metrics
from vehicle_ingest.moments import MomentDefinition, MomentEngine
from vehicle_ingest.tags.rules import Rule, parse_rule

SIGNAL_IDS, EVENT_IDS = (1, 2, 3, 4), (50, 51)  # 4 and 51 are watched by no moment
VINS = [f"PARITY{n:011d}" for n in range(5)]


def _rule(text: str | None) -> Rule | None:
    return None if text is None else parse_rule(text, {"value"}, text)


def _moment(name: str, signals: tuple[int, ...], fire: str | None, rearm: str | None, cooldown_ms: int = 0):
    return MomentDefinition(
        id=f"moment.{name}",
        description=name,
        signal_ids=signals,
        signal_paths=tuple(f"Sig.S{s}" for s in signals),
        event_id=None if signals else 50,
        event_name="" if signals else "ev",
        fire=_rule(fire),
        rearm=_rule(rearm),
        cooldown_ms=cooldown_ms,
    )


MOMENTS = (
    _moment("a", (1,), "value < 3", "value > 6"),
    _moment("b", (1, 2), "value > 7", "value < 4"),  # signal 1 twice: a and b
    _moment("c", (3,), "value < 5", "value < 2 or value > 8"),  # under 2 both hold
    _moment("d", (2,), "value >= 5", None),  # never re-arms
    _moment("e", (), None, None),  # event 50
    _moment("f", (3,), "value > 5", "value < 3", cooldown_ms=40),
)


def _hashed(*parts: object) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


class StubStore:
    """Rebuilt state from a hash of (vin, source); owners by VIN (none for the last one); no earlier moments."""

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        assert params is not None
        if "FROM ownership" in sql:
            return [(v, 0, f"owner-{int(v[-1]) % 3}") for v in params["vins"] if v != VINS[-1]]
        if "FROM tag_history" in sql:
            return []
        if "SELECT DISTINCT" in sql:  # VINs with stored history: every one, so each is rebuilt from here
            return [(v,) for v in VINS]
        keys = [k.split(":") for k in params["keys"]]  # table ('s' or 'e'), vin, source
        if "FROM signals" in sql:
            pairs = sql.count("maxIf(") // 2
            return [
                (v, int(s), *(_hashed(v, s, j) % 3 * 100 for j in range(2 * pairs)))
                for table, v, s in keys
                if table == "s" and int(s) in SIGNAL_IDS
            ]
        assert "FROM events" in sql
        return [(v, int(s), _hashed(v, s) % 2 * 100) for table, v, s in keys if table == "e" and int(s) in EVENT_IDS]


class Fleet:
    """Each VIN's clock and seq; `batch()` makes one batch of messages from them."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.clock = dict.fromkeys(VINS, 1_000)
        self.last_base = dict.fromkeys(VINS, 1_000)
        self.seq = dict.fromkeys(VINS, 0)

    def batch(self, disorder: bool) -> tuple[SimpleNamespace, SimpleNamespace]:
        rng = self.rng
        vins, signals, can, events, seqs, accepted = [], [], [], [], [], []
        twin: tuple[str, int] | None = None  # the next message: this VIN at this instant
        for m in range(int(rng.integers(1, 16))):
            rows = signals
            if twin is not None:
                (vin, base), spread, twin = twin, 1, None
            else:
                vin = VINS[int(rng.integers(len(VINS)))]
                base = self._base(vin, disorder)
                spread = 1 if rng.random() < 0.3 else 10  # 1: every sample at `base`
                if disorder and rng.random() < 0.3:
                    rows = can  # CAN rows come after all others
                    if rng.random() < 0.5:  # and a later message at the same instant comes before them
                        twin, spread = (vin, base), 1
            vins.append(vin)
            self.seq[vin] += 1
            seqs.append(self.seq[vin])
            accepted.append(rng.random() > 0.1)
            for src in rng.choice(SIGNAL_IDS, size=int(rng.integers(1, 4)), replace=False).tolist():
                offsets = np.sort(rng.integers(0, spread, int(rng.integers(1, 8))))  # repeats: equal timestamps
                if disorder and rng.random() < 0.15:
                    rng.shuffle(offsets)
                rows += [(m, src, base + int(o), float(rng.integers(0, 10))) for o in offsets]
            if rng.random() < 0.3:
                events += [(m, int(rng.choice(EVENT_IDS)), base + int(o)) for o in np.sort(rng.integers(0, spread, 2))]
        return self._columns(vins, seqs, accepted, signals + can, events)

    def _base(self, vin: str, disorder: bool) -> int:
        roll = self.rng.random()
        if roll < 0.25:
            return self.last_base[vin]  # the same instant as the message before: ties across messages
        if roll < 0.35:
            return self.clock[vin] - int(self.rng.integers(1, 400))  # old: mostly before the state
        if disorder and roll < 0.5:
            return self.clock[vin] - int(self.rng.integers(1, 12))  # overlaps the message before
        base = self.last_base[vin] = self.clock[vin]
        self.clock[vin] += int(self.rng.integers(9, 12))  # 9: the next message may start on this one's last ts
        return base

    @staticmethod
    def _columns(vins, seqs, accepted, signals, events) -> tuple[SimpleNamespace, SimpleNamespace]:
        distinct = sorted(set(vins))
        plan = SimpleNamespace(
            vins=distinct,
            vin_index=np.array([distinct.index(v) for v in vins], dtype=np.int32),
            accepted=np.array(accepted, dtype=bool),
        )
        s = np.array(signals, dtype=np.float64).reshape(-1, 4)
        e = np.array(events, dtype=np.int64).reshape(-1, 3)
        decoded = SimpleNamespace(
            messages=SimpleNamespace(seq=np.array(seqs, dtype=np.uint64)),
            signals=SimpleNamespace(
                msg=s[:, 0].astype(np.int32),
                signal_id=s[:, 1].astype(np.uint16),
                ts=s[:, 2].astype(np.int64),
                value=s[:, 3].copy(),
            ),
            events=SimpleNamespace(msg=e[:, 0].astype(np.int32), event_id=e[:, 1].astype(np.uint16), ts=e[:, 2]),
        )
        return decoded, plan


def _engine(fast: bool) -> MomentEngine:
    return MomentEngine(StubStore(), MOMENTS, Metrics.create(CollectorRegistry()), fast=fast)


def _assert_same_state(fast: MomentEngine, ref: MomentEngine, where: str) -> None:
    assert fast._slot == ref._slot, where
    n = len(fast._slot)
    assert np.array_equal(fast._armed[:n], ref._armed[:n]), where
    assert np.array_equal(fast._last_ts[:n], ref._last_ts[:n]), where
    assert fast._recent == ref._recent, where


def test_in_order_path_decides_as_the_sorted_reference():
    in_order, fell_back, fires_in_order = 0, 0, 0
    for seed in range(120):
        rng = np.random.default_rng(seed)
        fleet, fast, ref = Fleet(rng), _engine(True), _engine(False)
        for step in range(8):
            if step == 4:  # a restart: state rebuilt from the store again
                fast, ref = _engine(True), _engine(False)
            decoded, plan = fleet.batch(disorder=rng.random() < 0.4)
            where = f"seed {seed} step {step}"
            before = fast.sorted_batches
            a, b = fast.evaluate(decoded, plan), ref.evaluate(decoded, plan)
            took_sorted = fast.sorted_batches > before
            assert a.changes == b.changes, where
            assert a.suppressed == b.suppressed, where
            retry = fast.evaluate(decoded, plan)  # the outbox write failed: evaluate again
            assert (retry.changes, retry.suppressed) == (a.changes, a.suppressed), where
            fast.commit(a)
            ref.commit(b)
            _assert_same_state(fast, ref, where)
            fell_back += took_sorted
            in_order += not took_sorted
            fires_in_order += 0 if took_sorted else len(a.changes) + a.suppressed
    # Both ways were taken, and the in-order one decided real crossings.
    assert in_order > 400 and fell_back > 300 and fires_in_order > 2000, (in_order, fell_back, fires_in_order)


def _one_vin_batch(rows: list[tuple[int, int, float]]) -> tuple[SimpleNamespace, SimpleNamespace]:
    """Rows (msg, ts, value) of signal 3 from one VIN, in this order."""
    msgs = max(m for m, _, _ in rows) + 1
    return Fleet._columns([VINS[0]] * msgs, list(range(1, msgs + 1)), [True] * msgs,
                          [(m, 3, ts, v) for m, ts, v in rows], [])  # fmt: skip


def test_rows_out_of_time_order_take_the_sorted_path():
    fast = _engine(True)
    # Equal timestamps across messages in message order, and an old row: in order.
    fast.commit(fast.evaluate(*_one_vin_batch([(0, 10, 9.0), (1, 10, 4.0), (1, 11, 1.0)])))
    fast.commit(fast.evaluate(*_one_vin_batch([(0, 5, 4.0), (0, 12, 9.0)])))
    assert fast.sorted_batches == 0
    # A row before its group's last one, then an equal timestamp from an earlier message (CAN rows
    # come after the others): both out of order.
    fast.evaluate(*_one_vin_batch([(0, 20, 9.0), (0, 19, 4.0)]))
    fast.evaluate(*_one_vin_batch([(1, 20, 9.0), (0, 20, 4.0)]))
    assert fast.sorted_batches == 2
