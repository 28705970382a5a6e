"""Tag rules: a small expression language, compiled to ClickHouse SQL and evaluated in Python.

A rule reads like a formula a marketer can review:

    km_28d >= 2500 and night_share_28d < 0.5

Allowed: feature names, numbers, `and`, `or`, `not`, comparisons
(`< <= > >= == !=`, chained), `+ - * /` and parentheses. Nothing else
parses, so a rule can neither call functions nor reach data it should not.

Missing values (a vehicle that never reported a signal) are NULL/None and
follow SQL's three-valued logic in both forms; a rule that ends up unknown
does not hold. The Python form is what the simulator uses to derive its
ground truth from the same definitions the engine runs.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vehicle_ingest.errors import CatalogError

__all__ = ["Rule", "parse_rule"]

_COMPARE_SQL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "=", ast.NotEq: "!="}
_ARITH_SQL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_COMPARE_PY: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}
_ARITH_PY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: None if b == 0 else a / b,
}


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    tree: ast.expr
    names: frozenset[str]

    def to_sql(self) -> str:
        return _sql(self.tree)

    def holds(self, features: Mapping[str, Any]) -> bool:
        return _eval(self.tree, features) is True


def parse_rule(text: str, known: frozenset[str] | set[str], where: str) -> Rule:
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise CatalogError(f"{where}: rule {text!r} does not parse: {exc.msg}") from exc
    names: set[str] = set()
    _check(tree, names, where, text)
    _check_boolean(tree, where, text)
    unknown = names - set(known)
    if unknown:
        raise CatalogError(f"{where}: rule {text!r} uses unknown feature(s) {sorted(unknown)}")
    return Rule(text, tree, frozenset(names))


def _check(node: ast.AST, names: set[str], where: str, text: str) -> None:
    allowed = (
        ast.BoolOp,
        ast.And,
        ast.Or,
        ast.UnaryOp,
        ast.Not,
        ast.USub,
        ast.Compare,
        ast.BinOp,
        ast.Name,
        ast.Load,
        ast.Constant,
        *_COMPARE_SQL,
        *_ARITH_SQL,
    )
    if not isinstance(node, allowed):
        raise CatalogError(f"{where}: rule {text!r}: {type(node).__name__} is not allowed in rules")
    if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or not isinstance(node.value, int | float)):
        raise CatalogError(f"{where}: rule {text!r}: only numbers are allowed as constants")
    if isinstance(node, ast.Name):
        names.add(node.id)
    for child in ast.iter_child_nodes(node):
        _check(child, names, where, text)


def _check_boolean(node: ast.expr, where: str, text: str) -> None:
    """Truth values only where truth is expected: `km_28d and x > 1` means different things in SQL and Python."""
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check_boolean(value, where, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check_boolean(node.operand, where, text)
    elif not isinstance(node, ast.Compare):
        raise CatalogError(f"{where}: rule {text!r}: {ast.unparse(node)!r} is a number where a condition is expected")


def _sql(node: ast.expr) -> str:
    match node:
        case ast.BoolOp(op=ast.And(), values=values):
            return "(" + " AND ".join(_sql(v) for v in values) + ")"
        case ast.BoolOp(op=ast.Or(), values=values):
            return "(" + " OR ".join(_sql(v) for v in values) + ")"
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return f"(NOT {_sql(operand)})"
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return f"(-{_sql(operand)})"
        case ast.Compare(left=left, ops=ops, comparators=rights):
            terms, prev = [], _sql(left)
            for op, right in zip(ops, rights, strict=True):
                cur = _sql(right)
                terms.append(f"({prev} {_COMPARE_SQL[type(op)]} {cur})")
                prev = cur
            return "(" + " AND ".join(terms) + ")"
        case ast.BinOp(left=left, op=ast.Div(), right=right):
            # Division by zero is unknown (NULL), not infinity: the Python form says the same.
            return f"if({_sql(right)} = 0, NULL, {_sql(left)} / {_sql(right)})"
        case ast.BinOp(left=left, op=op, right=right):
            return f"({_sql(left)} {_ARITH_SQL[type(op)]} {_sql(right)})"
        case ast.Name(id=name):
            return f"`{name}`"
        case ast.Constant(value=value):
            return repr(value)
    raise AssertionError(f"unchecked node {node!r}")


def _and(values: list[Any]) -> Any:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values: list[Any]) -> Any:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _eval(node: ast.expr, f: Mapping[str, Any]) -> Any:
    match node:
        case ast.BoolOp(op=ast.And(), values=values):
            return _and([_eval(v, f) for v in values])
        case ast.BoolOp(op=ast.Or(), values=values):
            return _or([_eval(v, f) for v in values])
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            v = _eval(operand, f)
            return None if v is None else not v
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            v = _eval(operand, f)
            return None if v is None else -v
        case ast.Compare(left=left, ops=ops, comparators=rights):
            values = [_eval(left, f), *(_eval(r, f) for r in rights)]
            results = [
                None if a is None or b is None else _COMPARE_PY[type(op)](a, b)
                for op, a, b in zip(ops, values, values[1:], strict=False)
            ]
            return _and(results)
        case ast.BinOp(left=left, op=op, right=right):
            a, b = _eval(left, f), _eval(right, f)
            return None if a is None or b is None else _ARITH_PY[type(op)](a, b)
        case ast.Name(id=name):
            return f.get(name)
        case ast.Constant(value=value):
            return value
    raise AssertionError(f"unchecked node {node!r}")
