"""The moment state machine over a batch: which samples fire, and whether each channel ends armed.

Rows come sorted by (group, time); a group is one (vehicle, channel). A sample that meets
the fire condition while its group is armed fires and disarms it; a sample that meets the
re-arm condition while disarmed arms it again. `crossings_numba` is the fast path,
`crossings_reference` its plain-Python twin (tests/test_moments_kernel.py checks they agree).
`condition_mask` evaluates a rule over `value` for a whole column at once.
"""

from __future__ import annotations

import ast
from functools import reduce

import numpy as np
from numba import njit

from vehicle_ingest.tags.rules import Rule

__all__ = ["condition_mask", "crossings_numba", "crossings_reference"]


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
