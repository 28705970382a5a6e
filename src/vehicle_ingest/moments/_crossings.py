"""The moment state machine over a batch: which samples fire, and whether each channel ends armed.

A group is one (vehicle, channel). A sample that meets the fire condition while its group is
armed fires and disarms it; a sample that meets the re-arm condition while disarmed arms it
again (when both hold, an armed group fires, a disarmed one re-arms).

Two ways through a batch, which decide the same (tests/test_moments_parity.py):

- `crossings_in_order`, the common case: one pass over the watched rows in batch order, with
  the state of each (batch VIN, channel) in small dense arrays. Rows no later than the state's
  last evaluated sample are skipped; a row earlier than the last one its group took this batch
  (by (ts, msg), the sorted order) stops the pass, and the caller takes the other way.
- sorted: the rows sorted by (group, ts, msg), then `crossings_numba` (twin:
  `crossings_reference`, tests/test_moments_kernel.py) over each group.

`watched_rows` picks the rows of watched sources from accepted messages (one pass over the
batch); `condition_mask` evaluates a rule over `value` for a whole column at once.
"""

from __future__ import annotations

import ast
from functools import reduce

import numpy as np
from numba import njit

from vehicle_ingest.tags.rules import Rule

__all__ = ["condition_mask", "crossings_in_order", "crossings_numba", "crossings_reference", "watched_rows"]


@njit(cache=True, nogil=True)
def crossings_numba(group: np.ndarray, fire: np.ndarray, rearm: np.ndarray, armed: np.ndarray) -> np.ndarray:
    """Per row, whether it fires; `armed` (per group) is updated in place to the state after the batch."""
    fired = np.zeros(len(group), dtype=np.bool_)
    for i in range(len(group)):
        g = group[i]
        if armed[g]:
            if fire[i]:
                fired[i] = True
                armed[g] = False
        elif rearm[i]:
            armed[g] = True
    return fired


def crossings_reference(group: np.ndarray, fire: np.ndarray, rearm: np.ndarray, armed: np.ndarray) -> np.ndarray:
    """The same, one row at a time in plain Python."""
    state = [bool(a) for a in armed]
    fired = []
    for g, f, r in zip(group.tolist(), fire.tolist(), rearm.tolist(), strict=True):
        if state[g] and f:
            state[g] = False
            fired.append(True)
            continue
        if not state[g] and r:
            state[g] = True
        fired.append(False)
    armed[:] = state
    return np.array(fired, dtype=bool)


@njit(cache=True, nogil=True)
def watched_rows(
    source: np.ndarray, msg: np.ndarray, accepted: np.ndarray, vin_index: np.ndarray, first: np.ndarray,
    seen: np.ndarray, present: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Positions of the rows of a watched source (`first[s] < first[s + 1]`) in an accepted message, in batch order.

    Marks each such row's source in `seen` and its VIN (`vin_index` of its message) in `present`.
    """
    out = np.empty(len(source), dtype=np.int64)
    k = 0
    top = len(first) - 1
    for i in range(len(source)):
        s = source[i]
        if s >= top or first[s] == first[s + 1]:
            continue
        m = msg[i]
        if not accepted[m]:
            continue
        out[k] = i
        k += 1
        seen[s] = True
        present[vin_index[m]] = True
    return out[:k].copy()  # not a view: the batch-sized buffer goes now


@njit(cache=True, nogil=True)
def crossings_in_order(
    hit: np.ndarray, source: np.ndarray, msg: np.ndarray, ts: np.ndarray, vin_index: np.ndarray,
    first: np.ndarray, chans: np.ndarray, cond: np.ndarray, fire: np.ndarray, rearm: np.ndarray,
    armed: np.ndarray, before: np.ndarray, last: np.ndarray, last_msg: np.ndarray, touched: np.ndarray,
    fired_at: np.ndarray, fired_chan: np.ndarray,
) -> int:  # fmt: skip
    """The state machine over rows `hit` of one table, in batch order: how many fired, or -1 (out of order).

    Row j is sample `hit[j]` of `source`/`msg`/`ts`; its channels are `chans[first[s]:first[s + 1]]`
    for its source s, and channel c's conditions are row `cond[c]` of `fire` and `rearm` (column j).
    State per (batch VIN, channel), updated in place: `armed`; `before`, the last ts evaluated
    before the batch (read only); `last`/`last_msg`, the (ts, msg) of the group's last row taken
    (start: `last` = `before`); `touched`. The k-th fire is row `fired_at[k]` on channel
    `fired_chan[k]` (room: one per row and channel). When a row comes before its group's last
    one taken, the batch is out of order for that group: returns -1 at once, the state half done
    (the caller drops it). Ties in (ts, msg) keep batch order, as the sorted way's stable sort.
    """
    # Rows come in runs of one source in one message (a signal's block): a run's channels keep
    # their state in locals, not in the 2-D arrays per row (2.5x faster). The output buffers come
    # from the caller: growing arrays here made the loop 4x slower.
    k = 0
    j = 0
    while j < len(hit):
        s, m = source[hit[j]], msg[hit[j]]
        end = j + 1
        while end < len(hit) and source[hit[end]] == s and msg[hit[end]] == m:
            end += 1
        v = vin_index[m]
        for q in range(first[s], first[s + 1]):
            c = chans[q]
            r = cond[c]
            floor, t_last, m_last, on = before[v, c], last[v, c], last_msg[v, c], armed[v, c]
            took = False
            for jj in range(j, end):
                t = ts[hit[jj]]
                if t <= floor:
                    continue  # late data or an old duplicate: decided already
                if t < t_last or (t == t_last and m < m_last):
                    return -1
                t_last, m_last, took = t, m, True
                if on:
                    if fire[r, jj]:
                        on = False
                        fired_at[k], fired_chan[k] = jj, c
                        k += 1
                elif rearm[r, jj]:
                    on = True
            if took:
                last[v, c], last_msg[v, c], armed[v, c], touched[v, c] = t_last, m_last, on, True
        j = end
    return k


def condition_mask(rule: Rule | None, value: np.ndarray) -> np.ndarray:
    """Where `rule` holds for each value (None: nowhere). A division by zero is NaN, so a comparison with it
    does not hold, as an unknown does not in a tag rule."""
    if rule is None:
        return np.zeros(len(value), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _eval(rule.tree, np.asarray(value, dtype=np.float64))
    return np.broadcast_to(np.asarray(out, dtype=bool), value.shape).copy()


def _eval(node: ast.expr, value: np.ndarray) -> np.ndarray | float:
    # Terms combine pairwise, so a constant term (`2 > 1`) broadcasts against the column; a ufunc's
    # reduce would first make one array of them and fail on the mixed shapes.
    match node:
        case ast.BoolOp(op=ast.And(), values=values):
            return reduce(np.logical_and, [_eval(v, value) for v in values])
        case ast.BoolOp(op=ast.Or(), values=values):
            return reduce(np.logical_or, [_eval(v, value) for v in values])
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return np.logical_not(_eval(operand, value))
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand, value)
        case ast.Compare(left=left, ops=ops, comparators=rights):
            terms = [_eval(left, value), *(_eval(r, value) for r in rights)]
            return reduce(
                np.logical_and, [_COMPARE[type(op)](a, b) for op, a, b in zip(ops, terms, terms[1:], strict=False)]
            )
        case ast.BinOp(left=left, op=ast.Div(), right=right):
            b = _eval(right, value)
            return np.where(np.equal(b, 0), np.nan, np.divide(_eval(left, value), b))
        case ast.BinOp(left=left, op=op, right=right):
            return _ARITH[type(op)](_eval(left, value), _eval(right, value))
        case ast.Name():
            return value  # parse_rule allowed no other name
        case ast.Constant(value=int() | float() as constant):  # parse_rule allowed no other constant
            return float(constant)
    raise AssertionError(f"unchecked node {node!r}")


_COMPARE = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_ARITH = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply}
