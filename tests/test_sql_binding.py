"""No SQL is assembled from message content: values are bound, never formatted in.

A static scan lists every value interpolated into SQL text in src/ and gateway/
(f-strings, str.format, % and + on SQL literals); each must be in REVIEWED with
the reason it cannot come from a message. A new interpolation fails here until
someone reviews it. The dynamic test stores hostile strings and reads them back
verbatim with every table intact.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from tests.helpers import SIGNALS, now_ms
from vehicle_ingest.catalog import load_event_catalog
from vehicle_ingest.codec import encode_events
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
SQL = re.compile(r"\b(SELECT|INSERT|ALTER|DELETE|CREATE|WHERE|FROM|OPTIMIZE|TRUNCATE|DROP)\b")

_REPORT = "report period bounds and CTEs: module constants"
_TAG_RULES = "SQL compiled from tags.toml rules (operator-owned, parsed by tags.rules), never from messages"
_CAMPAIGN = "campaign query building blocks: module constants (owners, times and windows are bound)"
_COLUMN = "a column name or expression written in the module, wrapped by a helper"
_CATALOG_IDS = "ints from the signal / event catalog (the moments' definitions)"
REVIEWED: dict[tuple[str, str], str] = {
    ("src/vehicle_ingest/storage.py", "table"): "'signals', 'events' or 'can_signals': literals in the storage code",
    ("src/vehicle_ingest/storage.py", "_IDENTITY_IN_JOINED if joined else _IDENTITY_IN"): (
        "one of two module constants (bound parameters inside)"
    ),
    ("src/vehicle_ingest/storage.py", "target"): "table names: literals at each _insert_arrow call",
    ("src/vehicle_ingest/storage.py", "column_list"): "Arrow column names: literals in the insert_* methods",
    ("src/vehicle_ingest/storage.py", "_EMBEDDED_INSERT_CLAUSE"): "module constant (insert settings)",
    ("src/vehicle_ingest/privacy.py", "moment"): "expression from the module's _TTL_TABLES",
    ("src/vehicle_ingest/privacy.py", "days"): "int, checked > 0 (location_retention_days setting)",
    ("src/vehicle_ingest/privacy.py", "ids"): "ints from the signal catalog",
    ("src/vehicle_ingest/privacy.py", "table"): "keys of ERASE_PLAN / _TTL_TABLES",
    ("src/vehicle_ingest/privacy.py", "ttl"): "built from moment, days and ids above",
    ("src/vehicle_ingest/privacy.py", "condition"): "values of ERASE_PLAN / _DERIVED (bound parameters inside)",
    ("src/vehicle_ingest/privacy.py", "_OWNERS"): "module constant: a subquery on erase_targets (bound erasure id)",
    ("src/vehicle_ingest/report/queries.py", "_AS_OF"): _REPORT,
    ("src/vehicle_ingest/report/queries.py", "_START"): _REPORT,
    ("src/vehicle_ingest/report/queries.py", "_CURRENT_OWNERS"): _REPORT,
    ("src/vehicle_ingest/report/queries.py", "_CURRENT_TAGS"): _REPORT,
    ("src/vehicle_ingest/cdp/_outbox.py", "_SELECT"): "module constant",
    ("src/vehicle_ingest/cdp/_outbox.py", "_PENDING"): "module constant (subqueries with bound parameters)",
    ("src/vehicle_ingest/cdp/_quarantine.py", "HELD_FOR_SINK"): "module constant (a subquery with bound parameters)",
    ("src/vehicle_ingest/cdp/_quarantine.py", "where"): "conditions from _filter, literals with bound parameters",
    ("src/vehicle_ingest/features/sql.py", "'WITH' + _RANGES"): "module constants",
    ("src/vehicle_ingest/tags/owner_features.py", "d28"): "window length, a module constant",
    ("src/vehicle_ingest/tags/owner_features.py", "d56"): "window length, a module constant",
    ("src/vehicle_ingest/tags/owner_features.py", "_DAY"): "module constant",
    ("src/vehicle_ingest/tags/owner_features.py", "_usage_columns()"): "columns from the event catalog",
    ("src/vehicle_ingest/tags/owner_features.py", "_usage_select()"): "columns from the event catalog",
    ("src/vehicle_ingest/tags/engine.py", "owner_features_sql()"): _TAG_RULES,
    ("src/vehicle_ingest/tags/engine.py", "_tags_array_sql(self._definitions)"): _TAG_RULES,
    ("src/vehicle_ingest/tags/engine.py", "where"): "_BY_ID or _BY_DIGEST: module constants (bound parameters inside)",
    ("src/vehicle_ingest/query_gate.py", "_kind(kind)"): "an error message naming a statement kind, not SQL",
    ("src/vehicle_ingest/reads.py", "function"): "one of three parser function names, constants of query_gate",
    ("src/vehicle_ingest/campaigns/_sql.py", "_AS_OF"): _CAMPAIGN,
    ("src/vehicle_ingest/campaigns/_sql.py", "_NEVER"): _CAMPAIGN,
    ("src/vehicle_ingest/campaigns/_sql.py", "_OWNER_AT"): _CAMPAIGN,
    ("src/vehicle_ingest/campaigns/_sql.py", "_UNITS"): _CAMPAIGN,
    ("src/vehicle_ingest/campaigns/_sql.py", "facts"): "one of three module-constant CTEs, picked by the outcome kind",
    ("src/vehicle_ingest/campaigns/_sql.py", "_outcome_expression(campaign, after, before)"): (
        "module-constant measures; the threshold is a bound parameter ({at_least:Float64})"
    ),
    ("src/vehicle_ingest/campaigns/_sql.py", "_MS.format('at')"): _COLUMN,
    ("src/vehicle_ingest/campaigns/_sql.py", "_MS.format('exposed_at')"): _COLUMN,
    ("src/vehicle_ingest/campaigns/_sql.py", "_MS.format('tr.trip_start')"): _COLUMN,
    ("src/vehicle_ingest/campaigns/_sql.py", "_MS.format(\"toDateTime64(cu.day, 3, 'UTC')\")"): _COLUMN,
    ("src/vehicle_ingest/moments/_history.py", "', '.join((str(e) for e in ids))"): _CATALOG_IDS,
    ("src/vehicle_ingest/moments/_history.py", "', '.join((str(s) for s in sorted(sources)))"): _CATALOG_IDS,
    ("src/vehicle_ingest/moments/_history.py", "', '.join(columns)"): (
        "maxIf columns of catalog ids and moment rules from tags.toml (operator-owned, parsed by tags.rules)"
    ),
    ("src/vehicle_ingest/moments/_history.py", "_before('event_id')"): _COLUMN + " (keys and bounds bound)",
    ("src/vehicle_ingest/moments/_history.py", "_before('signal_id')"): _COLUMN + " (keys and bounds bound)",
    ("src/vehicle_ingest/moments/_history.py", "_ms('at')"): _COLUMN,
    ("src/vehicle_ingest/moments/_history.py", "_ms('max(ts)')"): _COLUMN,
    ("src/vehicle_ingest/moments/_history.py", "_ms('valid_from')"): _COLUMN,
    ("src/vehicle_ingest/moments/_history.py", "floor"): "empty or a module constant with a bound parameter",
}


def _is_sql(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(SQL.search(node.value))


def _interpolations(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if SQL.search(text):
                found += [ast.unparse(v.value) for v in node.values if isinstance(v, ast.FormattedValue)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            receiver = node.func.value
            if _is_sql(receiver) or (isinstance(receiver, ast.Name) and "sql" in receiver.id.lower()):
                found += [ast.unparse(a) for a in node.args] + [ast.unparse(k.value) for k in node.keywords]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            if _is_sql(node.left) and not _is_sql(node.right):
                found.append(ast.unparse(node.right))
            elif _is_sql(node.right) and not _is_sql(node.left) and isinstance(node.op, ast.Add):
                found.append(ast.unparse(node.left))
    return found


def test_every_value_formatted_into_sql_is_reviewed():
    found = set()
    for folder in ("src", "gateway"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            found |= {(rel, expr) for expr in _interpolations(ast.parse(path.read_text()))}
    unreviewed = sorted(found - set(REVIEWED))
    assert not unreviewed, f"values formatted into SQL need a review (bind them with %(name)s): {unreviewed}"
    assert not set(REVIEWED) - found, f"stale entries in REVIEWED: {sorted(set(REVIEWED) - found)}"


def test_the_scan_finds_an_interpolated_message_value():
    """The scanner itself: a message field formatted into SQL is caught in each form."""
    code = (
        "store.rows(f\"SELECT * FROM signals WHERE vin = '{msg.vin}'\")\n"
        "store.rows(\"SELECT * FROM signals WHERE vin = '%s'\" % topic)\n"
        "store.rows(\"SELECT * FROM events WHERE text = '{}'\".format(text))\n"
        'store.rows("DELETE FROM t WHERE x = \'" + payload + "\'")\n'
    )
    assert _interpolations(ast.parse(code)) == ["msg.vin", "topic", "text", "payload"]


HOSTILE = ["'); DROP TABLE signals; --", "\\' OR 1=1 --", "%(vins)s", "{t}", "\u0000\u202e", "' || sleep(3) || '"]


def test_hostile_strings_are_stored_verbatim(store):
    events = load_event_catalog()
    event_id = int(np.flatnonzero(events.known)[0])
    ingestor = Pipeline(store, SIGNALS, events, Metrics.create(CollectorRegistry()))
    vin, t = "SMXSKL1NJECT10N01", now_ms() - 1000
    n = len(HOSTILE)
    payload = encode_events(
        vin, 1, t, np.full(n, event_id, np.uint16), np.arange(n, dtype=np.int64) + t, np.zeros(n, np.int64), HOSTILE
    )
    topics = [f"vi/v1/{vin}/events", *(f"vi/v1/{h}/signals" for h in HOSTILE)]
    ingestor.ingest(topics, [payload, *([b"\xc1"] * n)], now_ms())
    stored = store.rows("SELECT text FROM events WHERE vin = %(v)s ORDER BY ts", {"v": vin})
    assert [r[0] for r in stored] == HOSTILE
    letters = store.rows("SELECT topic FROM dead_letters FINAL")
    assert {f"vi/v1/{h}/signals" for h in HOSTILE} <= {r[0] for r in letters}
    assert store.rows("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'signals'") == [
        (1,)
    ]
