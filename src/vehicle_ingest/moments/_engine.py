"""Moments at ingest: evaluate a committed batch, then commit the new state once its messages are in the outbox.

    evaluate(decoded, plan) ── watched rows (numba) ── state machine in batch order (numba) ── fires (few)
        │                          │ rows out of time order: sorted (reference) path  │
        └── vehicles not in memory: state rebuilt from the store (_history)            └── owner as of the sample,
                                                                                           cool-down, TagChange
    outbox.enqueue(evaluation.changes)  →  commit(evaluation)  →  the caller acks the batch

Every accepted message of the batch counts, stored now or a duplicate: a message redelivered
after a crash between its insert and the outbox write fires again, with the same message id
(owner, moment, VIN, seq), and the outbox keeps one copy. The in-memory state moves only in
`commit`, after the outbox write; a failed write leaves it where it was, so the retry decides
the same. A vehicle's samples no later than its last evaluated one are skipped: a duplicate of an
old message must not fire against today's state.

The batch's state lives in dense (batch VIN, channel) arrays, copied from memory (or the rebuilt
state) in `_start`; the common path walks the watched rows in batch order, since per (VIN,
channel) they almost always come in time order (_crossings). A batch where they do not takes the
sorted path, the reference the parity test holds the common path to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np

from vehicle_ingest.cdp import TagChange, moment_message_id
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.moments._crossings import condition_mask, crossings_in_order, crossings_numba
from vehicle_ingest.moments._definitions import MomentDefinition
from vehicle_ingest.moments._history import ChannelKey, fired_history, last_crossings, owners_of, vins_with_history
from vehicle_ingest.moments._rows import Part, Rows, Watch, concat_rows, fired_rows, pick, rows_per_channel
from vehicle_ingest.pipeline import Decoded, Plan
from vehicle_ingest.storage import Store

__all__ = ["Evaluation", "MomentEngine"]

_NEVER = np.iinfo(np.int64).min
_Decided = tuple[np.ndarray, np.ndarray, np.ndarray, Rows]  # armed, last ts, touched (per VIN, channel); fires


@dataclass(frozen=True, slots=True)
class _Channel:
    moment: int  # index into the definitions
    source: int  # signal id, or event id
    name: str  # what the CDP sees as `signal`


@dataclass(slots=True)
class Evaluation:
    """What one batch decided; nothing is applied before `MomentEngine.commit`."""

    changes: list[TagChange] = field(default_factory=list)
    vins: list[str] = field(default_factory=list)  # the batch's VINs: the rows of the arrays below
    slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # state row then, -1: not in memory
    armed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # per (VIN, channel), after the batch
    last_ts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    touched: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # cells the batch moved
    loaded: dict[str, np.ndarray] = field(default_factory=dict)  # vin -> armed per channel, rebuilt from the store
    fired: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)  # recent fires after it
    suppressed: int = 0  # crossings not sent: cool-down, or no owner at the sample's time


class MomentEngine:
    """Per (vehicle, channel) armed state in memory; per (owner, moment) recent fires for the cool-down.

    `fast=False` sends every batch down the sorted path (the parity tests compare the two).
    """

    def __init__(
        self, store: Store, moments: Sequence[MomentDefinition], metrics: Metrics, *, fast: bool = True
    ) -> None:
        self._store = store
        self.moments = tuple(moments)
        self._metrics = metrics
        self._fast = fast
        self._with_history: set[str] | None = None  # read at the first batch (on the store's thread)
        self.sorted_batches = 0  # batches whose rows were out of time order (or fast=False)
        self._channels = [
            _Channel(i, s, p)
            for i, m in enumerate(self.moments)
            for s, p in zip(m.signal_ids, m.signal_paths, strict=True)
        ] + [_Channel(i, int(m.event_id), m.event_name) for i, m in enumerate(self.moments) if m.event_id is not None]
        # source id -> channel indexes, signals and events apart (one batch pass picks them all)
        signal_sources: dict[int, list[int]] = {}
        event_sources: dict[int, list[int]] = {}
        for c, ch in enumerate(self._channels):
            by_source = event_sources if self.moments[ch.moment].event_id is not None else signal_sources
            by_source.setdefault(ch.source, []).append(c)
        self._signals, self._events = Watch.of(signal_sources), Watch.of(event_sources)
        self._slot: dict[str, int] = {}
        self._armed = np.ones((0, len(self._channels)), dtype=bool)
        self._last_ts = np.full((0, len(self._channels)), _NEVER, dtype=np.int64)
        self._recent: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._max_cooldown = max((m.cooldown_ms for m in self.moments), default=0)
        for m in self.moments:  # counters exist at 0, so a rate sees every moment from the start
            metrics.moments_fired.labels(m.id)

    def evaluate(self, decoded: Decoded, plan: Plan) -> Evaluation:
        started = perf_counter()
        parts, present = pick(decoded, plan, self._signals, self._events)
        if not parts:
            return Evaluation()
        vins = plan.vins
        evaluation = Evaluation(vins=vins)
        slots, missing = self._slots(vins, present, parts, plan, evaluation)
        armed0, before = self._start(vins, slots, missing, evaluation)
        decided = self._in_order(parts, plan, armed0, before) if self._fast else None
        if decided is None:
            self.sorted_batches += 1
            decided = self._sorted(parts, plan, armed0, before)
        evaluation.slots = slots
        evaluation.armed, evaluation.last_ts, evaluation.touched, fires = decided
        vidx, chan, ts, value, msg = fires
        seq = decoded.messages.seq[msg]
        self._changes(evaluation, [vins[i] for i in vidx.tolist()], chan, ts, value, seq)
        self._metrics.moment_seconds.observe(perf_counter() - started)
        return evaluation

    def commit(self, evaluation: Evaluation) -> None:
        """Apply an evaluation whose changes the outbox holds now: only the (VIN, channel) cells it moved."""
        slots = evaluation.slots.copy()
        for i in np.flatnonzero(slots < 0).tolist():
            armed = evaluation.loaded.get(evaluation.vins[i])
            if armed is None:
                continue  # no watched row of this VIN in the batch
            slots[i] = self._new_slot(evaluation.vins[i])
            self._armed[slots[i]] = armed
            self._last_ts[slots[i]] = _NEVER
        v, c = np.nonzero(evaluation.touched)
        self._armed[slots[v], c] = evaluation.armed[v, c]
        self._last_ts[slots[v], c] = evaluation.last_ts[v, c]
        for pair, fires in evaluation.fired.items():
            self._recent[pair] = sorted(fires)[-16:]  # the cool-down only needs the latest few
        counts = Counter(ch.tag for ch in evaluation.changes)
        for moment, n in counts.items():
            self._metrics.moments_fired.labels(moment).inc(n)
        if evaluation.suppressed:
            self._metrics.moments_suppressed.inc(evaluation.suppressed)

    # -- conditions --------------------------------------------------------------------------

    def _part_conditions(self, part: Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per channel its row in `fire`/`rearm`; per moment with rows here, where its conditions hold in `hit`.

        One row per moment, not per channel: a moment's channels share its rules.
        """
        moments = sorted(
            {self._channels[c].moment for s in np.flatnonzero(part.seen).tolist() for c in part.watch.channels(s)}
        )
        value = part.values()
        fire = np.empty((len(moments), len(value)), dtype=bool)
        rearm = np.empty((len(moments), len(value)), dtype=bool)
        cond = np.full(len(self._channels), -1, dtype=np.int64)
        for r, i in enumerate(moments):
            m = self.moments[i]
            fire[r] = True if m.fire is None else condition_mask(m.fire, value)
            rearm[r] = condition_mask(m.rearm, value)
            cond[[c for c, ch in enumerate(self._channels) if ch.moment == i]] = r
        return cond, fire, rearm

    # -- the two ways through a batch ----------------------------------------------------------

    def _in_order(self, parts: list[Part], plan: Plan, armed0: np.ndarray, before: np.ndarray) -> _Decided | None:
        """One pass per table in batch order; None when some (VIN, channel) has rows out of time order."""
        armed, last = armed0.copy(), before.copy()
        last_msg = np.zeros(armed.shape, dtype=np.int64)
        touched = np.zeros(armed.shape, dtype=bool)
        fires: list[Rows] = []
        for part in parts:
            cond, fire, rearm = self._part_conditions(part)
            w = part.watch
            room = len(part.hit) * w.width
            fired_at, fired_chan = np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64)
            k = crossings_in_order(
                part.hit, part.source, part.msg, part.ts, plan.vin_index, w.first, w.chans, cond, fire, rearm,
                armed, before, last, last_msg, touched, fired_at, fired_chan,
            )  # fmt: skip
            if k < 0:
                return None
            fires.append(fired_rows(part, fired_at[:k], fired_chan[:k], plan.vin_index))
        return armed, last, touched, concat_rows(fires)

    def _sorted(self, parts: list[Part], plan: Plan, armed0: np.ndarray, before: np.ndarray) -> _Decided:
        """The reference: rows sorted by (VIN, channel, ts, msg), then the state machine per group."""
        armed, last, touched = armed0.copy(), before.copy(), np.zeros(armed0.shape, dtype=bool)
        vidx, chan, ts, value, msg = rows_per_channel(parts, plan.vin_index)
        keep = ts > before[vidx, chan]
        vidx, chan, ts, value, msg = vidx[keep], chan[keep], ts[keep], value[keep], msg[keep]
        if len(ts) == 0:  # only samples older than the state: late data and old duplicates
            return armed, last, touched, (vidx, chan, ts, value, msg)
        order = np.lexsort((msg, ts, chan, vidx))
        vidx, chan, ts, value, msg = (a[order] for a in (vidx, chan, ts, value, msg))
        key = vidx * len(self._channels) + chan
        starts = np.r_[True, key[1:] != key[:-1]]
        first, group = np.flatnonzero(starts), np.cumsum(starts) - 1
        fire, rearm = self._conditions(chan, value)
        cells = vidx[first], chan[first]
        group_armed = armed0[cells].copy()
        fired = crossings_numba(group, fire, rearm, group_armed)
        armed[cells], last[cells], touched[cells] = group_armed, ts[np.r_[first[1:], len(key)] - 1], True
        hits = np.flatnonzero(fired)
        return armed, last, touched, (vidx[hits], chan[hits], ts[hits], value[hits], msg[hits])

    def _conditions(self, chan: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fire, rearm = np.zeros(len(chan), bool), np.zeros(len(chan), bool)
        for c, ch in enumerate(self._channels):
            rows = chan == c
            if not rows.any():
                continue
            m = self.moments[ch.moment]
            fire[rows] = True if m.fire is None else condition_mask(m.fire, value[rows])
            rearm[rows] = condition_mask(m.rearm, value[rows])
        return fire, rearm

    # -- state -------------------------------------------------------------------------------

    def _slots(
        self, vins: list[str], present: np.ndarray, parts: list[Part], plan: Plan, ev: Evaluation
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each batch VIN's state row (-1: not in memory), and those of the present VINs not in memory.

        Their state is rebuilt into `ev.loaded`.
        """
        get = self._slot.get
        slot = np.fromiter((get(v, -1) for v in vins), dtype=np.int64, count=len(vins))
        missing = np.flatnonzero(present & (slot < 0))
        if len(missing):
            self._load(vins, missing, parts, plan, ev)
        return slot, missing

    def _load(self, vins: list[str], missing: np.ndarray, parts: list[Part], plan: Plan, ev: Evaluation) -> None:
        if self._with_history is None:
            self._with_history = vins_with_history(self._store, self.moments)
        stored = [v for v in missing.tolist() if vins[v] in self._with_history]
        history = self._history(vins, np.array(stored, dtype=np.int64), parts, plan) if stored else {}
        for v in missing.tolist():
            armed = np.ones(len(self._channels), dtype=bool)
            for c, ch in enumerate(self._channels):
                fire_ms, rearm_ms = history.get((vins[v], ch.moment, ch.source), (0, 0))
                armed[c] = fire_ms == 0 or rearm_ms > fire_ms
            ev.loaded[vins[v]] = armed

    def _history(
        self, vins: list[str], missing: np.ndarray, parts: list[Part], plan: Plan
    ) -> dict[tuple[str, int, int], tuple[int, int]]:
        """The last fire and re-arm times per channel of `missing` VINs, from their rows before this batch."""
        is_missing = np.zeros(len(vins), dtype=bool)
        is_missing[missing] = True
        keys, times = [], []
        for part in parts:
            vidx = plan.vin_index[part.msg[part.hit]].astype(np.int64)
            mine = is_missing[vidx]
            rows = part.hit[mine]
            # Per (vin, table, source): two moments on one signal share its bound; signal 5 and event 5 do not.
            table = 65536 if part.value is None else 0
            keys.append(vidx[mine] * 131072 + table + part.source[rows])
            times.append(part.ts[rows])
        unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        first = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, inverse.reshape(-1), np.concatenate(times))
        channel_keys = [
            ChannelKey(vins[k // 131072], k % 65536, before, event=bool(k % 131072 >= 65536))
            for k, before in zip(unique.tolist(), first.tolist(), strict=True)
        ]
        return last_crossings(self._store, self.moments, channel_keys) if channel_keys else {}

    def _start(
        self, vins: list[str], slot: np.ndarray, missing: np.ndarray, ev: Evaluation
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per (batch VIN, channel): armed, and the last evaluated ts before this batch.

        Copies, filled from memory or the rebuilt state: evaluate moves nothing.
        """
        armed = np.ones((len(vins), len(self._channels)), dtype=bool)
        before = np.full((len(vins), len(self._channels)), _NEVER, dtype=np.int64)
        known = np.flatnonzero(slot >= 0)
        armed[known] = self._armed[slot[known]]
        before[known] = self._last_ts[slot[known]]
        for i in missing.tolist():
            armed[i] = ev.loaded[vins[i]]
        return armed, before

    def _new_slot(self, vin: str) -> int:
        row = self._slot.get(vin)
        if row is not None:
            return row
        row = len(self._slot)
        if row >= len(self._armed):
            grow = max(1024, len(self._armed))
            self._armed = np.vstack([self._armed, np.ones((grow, len(self._channels)), bool)])
            self._last_ts = np.vstack([self._last_ts, np.full((grow, len(self._channels)), _NEVER, np.int64)])
        self._slot[vin] = row
        return row

    # -- fires -------------------------------------------------------------------------------

    def _changes(
        self, ev: Evaluation, vins: list[str], chan: np.ndarray, ts: np.ndarray, value: np.ndarray, seq: np.ndarray
    ) -> None:
        """Fires (few) to outbox changes: owner as of the sample, then the owner's cool-down, in time order."""
        if not vins:
            return
        owners = owners_of(self._store, sorted(set(vins)))
        fires = []
        for vin, c, t, v, s in zip(vins, chan.tolist(), ts.tolist(), value.tolist(), seq.tolist(), strict=True):
            owner = _owner_at(owners.get(vin, []), t)
            if owner is None:
                ev.suppressed += 1  # nobody to tell: a vehicle without an owner at that time
                continue
            fires.append((t, owner, c, vin, v, s))
        fires.sort()
        recent = self._cooldowns(
            {(o, self.moments[self._channels[c].moment].id) for _, o, c, _, _, _ in fires},
            min((f[0] for f in fires), default=0),
        )
        for t, owner, c, vin, v, s in fires:
            ch = self._channels[c]
            m = self.moments[ch.moment]
            message_id = moment_message_id(owner, m.id, vin, int(s))
            before = recent.setdefault((owner, m.id), [])
            if any(mid != message_id and t - m.cooldown_ms < at <= t for at, mid in before) and m.cooldown_ms:
                ev.suppressed += 1
                continue
            before.append((t, message_id))
            evidence = {"signal": ch.name, "value": v}
            ev.changes.append(TagChange(message_id, owner, m.id, "fired", evidence, {}, t))
        ev.fired = recent

    def _cooldowns(self, pairs: set[tuple[str, str]], since_ms: int) -> dict[tuple[str, str], list[tuple[int, str]]]:
        """The recent fires per (owner, moment): from memory, or from the outbox for pairs not seen yet."""
        out = {p: list(self._recent[p]) for p in pairs if p in self._recent}
        unknown = sorted(pairs - set(out))
        if unknown and self._max_cooldown:
            out.update(fired_history(self._store, unknown, since_ms - self._max_cooldown))
        return out


def _owner_at(history: list[tuple[int, str]], ts: int) -> str | None:
    owner = None
    for since, who in history:
        if since <= ts:
            owner = who
    return owner
