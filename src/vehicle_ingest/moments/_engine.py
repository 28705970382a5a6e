"""Moments at ingest: evaluate a committed batch, then commit the new state once its messages are in the outbox.

    evaluate(decoded, plan) ── rows of watched channels (numpy) ── state machine (numba) ── fires (few)
        │                                                                      │
        └── vehicles not in memory: state rebuilt from the store (_history)    └── owner as of the sample,
                                                                                   cool-down, TagChange
    outbox.enqueue(evaluation.changes)  →  commit(evaluation)  →  the caller acks the batch

Every accepted message of the batch counts, stored now or a duplicate: a message redelivered
after a crash between its insert and the outbox write fires again, with the same message id
(owner, moment, VIN, seq), and the outbox keeps one copy. The in-memory state moves only in
`commit`, after the outbox write; a failed write leaves it where it was, so the retry decides
the same. A vehicle's samples no later than its last evaluated one are skipped: a duplicate of an
old message must not fire against today's state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np

from vehicle_ingest.cdp import TagChange, moment_message_id
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.moments._crossings import condition_mask, crossings_numba
from vehicle_ingest.moments._definitions import MomentDefinition
from vehicle_ingest.moments._history import ChannelKey, fired_history, last_crossings, owners_of
from vehicle_ingest.pipeline import Decoded, Plan
from vehicle_ingest.storage import Store

__all__ = ["Evaluation", "MomentEngine"]

_NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class _Channel:
    moment: int  # index into the definitions
    source: int  # signal id, or event id
    name: str  # what the CDP sees as `signal`


@dataclass(slots=True)
class Evaluation:
    """What one batch decided; nothing is applied before `MomentEngine.commit`."""

    changes: list[TagChange] = field(default_factory=list)
    vins: list[str] = field(default_factory=list)  # per state row below
    channels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    armed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    last_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loaded: dict[str, np.ndarray] = field(default_factory=dict)  # vin -> armed per channel, rebuilt from the store
    fired: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)  # recent fires after it
    suppressed: int = 0  # crossings not sent: cool-down, or no owner at the sample's time


class MomentEngine:
    """Per (vehicle, channel) armed state in memory; per (owner, moment) recent fires for the cool-down."""

    def __init__(self, store: Store, moments: Sequence[MomentDefinition], metrics: Metrics) -> None:
        self._store = store
        self.moments = tuple(moments)
        self._metrics = metrics
        self._channels = [
            _Channel(i, s, p)
            for i, m in enumerate(self.moments)
            for s, p in zip(m.signal_ids, m.signal_paths, strict=True)
        ] + [_Channel(i, int(m.event_id), m.event_name) for i, m in enumerate(self.moments) if m.event_id is not None]
        # source id -> channel indexes, signals and events apart (one batch pass picks them all)
        self._signal_sources: dict[int, list[int]] = {}
        self._event_sources: dict[int, list[int]] = {}
        for c, ch in enumerate(self._channels):
            by_source = self._event_sources if self.moments[ch.moment].event_id is not None else self._signal_sources
            by_source.setdefault(ch.source, []).append(c)
        self._slot: dict[str, int] = {}
        self._armed = np.ones((0, len(self._channels)), dtype=bool)
        self._last_ts = np.full((0, len(self._channels)), _NEVER, dtype=np.int64)
        self._recent: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._max_cooldown = max((m.cooldown_ms for m in self.moments), default=0)
        for m in self.moments:  # counters exist at 0, so a rate sees every moment from the start
            metrics.moments_fired.labels(m.id)

    def evaluate(self, decoded: Decoded, plan: Plan) -> Evaluation:
        started = perf_counter()
        rows = self._rows(decoded, plan)
        if rows is None:
            return Evaluation()
        vidx, chan, ts, value, msg = rows
        vins = plan.vins
        evaluation = Evaluation()
        slot = self._slots(vins, vidx, chan, ts, evaluation)
        armed0, last0 = self._start_state(vins, vidx, chan, slot, evaluation)
        keep = ts > last0
        vidx, chan, ts, value, msg, armed0 = vidx[keep], chan[keep], ts[keep], value[keep], msg[keep], armed0[keep]
        if len(ts) == 0:  # only samples older than the state: late data and old duplicates
            return evaluation
        order = np.lexsort((msg, ts, chan, vidx))
        vidx, chan, ts, value, msg, armed0 = (a[order] for a in (vidx, chan, ts, value, msg, armed0))
        key = vidx * len(self._channels) + chan
        starts = np.r_[True, key[1:] != key[:-1]]
        first, group = np.flatnonzero(starts), np.cumsum(starts) - 1
        fire, rearm = self._conditions(chan, value)
        armed = armed0[first].copy()
        fired = crossings_numba(group, fire, rearm, armed)
        last = np.r_[first[1:], len(key)] - 1
        evaluation.vins = [vins[i] for i in vidx[first].tolist()]
        evaluation.channels, evaluation.armed, evaluation.last_ts = chan[first], armed, ts[last]
        hits = np.flatnonzero(fired)
        self._changes(
            evaluation,
            [vins[i] for i in vidx[hits].tolist()],
            chan[hits],
            ts[hits],
            value[hits],
            decoded.messages.seq[msg[hits]],
        )
        self._metrics.moment_seconds.observe(perf_counter() - started)
        return evaluation

    def commit(self, evaluation: Evaluation) -> None:
        """Apply an evaluation whose changes the outbox holds now."""
        for vin, armed in evaluation.loaded.items():
            row = self._new_slot(vin)
            self._armed[row] = armed
            self._last_ts[row] = _NEVER
        rows = np.array([self._slot[v] for v in evaluation.vins], dtype=np.int64)
        self._armed[rows, evaluation.channels] = evaluation.armed
        self._last_ts[rows, evaluation.channels] = evaluation.last_ts
        for pair, fires in evaluation.fired.items():
            self._recent[pair] = sorted(fires)[-16:]  # the cool-down only needs the latest few
        counts = Counter(c.tag for c in evaluation.changes)
        for moment, n in counts.items():
            self._metrics.moments_fired.labels(moment).inc(n)
        if evaluation.suppressed:
            self._metrics.moments_suppressed.inc(evaluation.suppressed)

    # -- the batch's rows ----------------------------------------------------------------------

    def _rows(self, decoded: Decoded, plan: Plan) -> tuple[np.ndarray, ...] | None:
        """(vin index, channel, ts, value, msg) of every watched sample or event of an accepted message.

        One pass over the batch's samples picks the watched ones (a small share); the channels are
        then told apart within those. A pass per channel over a 1 M-sample batch cost more than the
        rest of the evaluation.
        """
        s, e = decoded.signals, decoded.events
        parts = [
            self._watched(s.signal_id, s.msg, s.ts, s.value, plan, self._signal_sources),
            self._watched(e.event_id, e.msg, e.ts, None, plan, self._event_sources),
        ]
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

    def _watched(
        self,
        source: np.ndarray,
        src_msg: np.ndarray,
        ts: np.ndarray,
        value: np.ndarray | None,
        plan: Plan,
        channels: dict[int, list[int]],
    ) -> tuple[np.ndarray, ...] | None:
        if not channels or len(source) == 0:
            return None
        hit = np.flatnonzero(np.isin(source, np.fromiter(channels, np.int64, len(channels))))
        hit = hit[plan.accepted[src_msg[hit]]]
        if len(hit) == 0:
            return None
        picked = source[hit].astype(np.int64)
        parts = []
        for src, chans in channels.items():
            rows = hit[picked == src]
            for c in chans:  # two moments on one signal: its rows once per channel
                msg = src_msg[rows].astype(np.int64)
                vals = np.ones(len(rows)) if value is None else value[rows]
                parts.append(
                    (plan.vin_index[msg].astype(np.int64), np.full(len(rows), c, np.int64), ts[rows], vals, msg)
                )
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

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

    def _slots(self, vins: list[str], vidx: np.ndarray, chan: np.ndarray, ts: np.ndarray, ev: Evaluation) -> np.ndarray:
        """Each batch VIN's state row (-1: not in memory; its state is then rebuilt into `ev.loaded`)."""
        present = np.unique(vidx)
        slot = np.full(len(vins), -1, dtype=np.int64)
        missing = []
        for i in present.tolist():
            row = self._slot.get(vins[i], -1)
            slot[i] = row
            if row < 0:
                missing.append(i)
        if missing:
            self._load(vins, missing, vidx, chan, ts, ev)
        return slot

    def _load(
        self, vins: list[str], missing: list[int], vidx: np.ndarray, chan: np.ndarray, ts: np.ndarray, ev: Evaluation
    ) -> None:
        rows = np.isin(vidx, missing)
        sources = np.array([ch.source for ch in self._channels], dtype=np.int64)
        key = vidx[rows] * 65536 + sources[chan[rows]]  # two moments on one signal share its bound
        unique, inverse = np.unique(key, return_inverse=True)
        first = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, inverse.reshape(-1), ts[rows])
        keys = [
            ChannelKey(vins[k // 65536], k % 65536, before)
            for k, before in zip(unique.tolist(), first.tolist(), strict=True)
        ]
        history = last_crossings(self._store, self.moments, keys) if keys else {}
        for v in missing:
            armed = np.ones(len(self._channels), dtype=bool)
            for c, ch in enumerate(self._channels):
                fire_ms, rearm_ms = history.get((vins[v], ch.moment, ch.source), (0, 0))
                armed[c] = fire_ms == 0 or rearm_ms > fire_ms
            ev.loaded[vins[v]] = armed

    def _start_state(
        self, vins: list[str], vidx: np.ndarray, chan: np.ndarray, slot: np.ndarray, ev: Evaluation
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row: its channel's armed state and last evaluated ts before this batch."""
        row = slot[vidx]
        known = row >= 0
        armed = np.ones(len(vidx), dtype=bool)
        last = np.full(len(vidx), _NEVER, dtype=np.int64)
        armed[known] = self._armed[row[known], chan[known]]
        last[known] = self._last_ts[row[known], chan[known]]
        if ev.loaded:
            rebuilt = np.ones((len(vins), len(self._channels)), dtype=bool)
            for i, vin in enumerate(vins):
                if vin in ev.loaded:
                    rebuilt[i] = ev.loaded[vin]
            armed[~known] = rebuilt[vidx[~known], chan[~known]]
        return armed, last

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
