"""The one gate every analyst query passes: exactly one read statement, decided by ClickHouse's own parser.

The engine parses without executing: `formatQuerySingleLine` normalises the text (and refuses
several statements), `parseQueryToJSON` turns the normalised text into its syntax tree, and
`tokenizeQuery` splits the few statements the JSON form does not cover. The user's text only
ever travels as a bound parameter, never spliced into SQL. What is executed is the normalised
text, the very string whose tree was checked: comments and trailing semicolons are gone, and
nothing the checks did not see can run.

Allowed: SELECT (with WITH, UNION, INTERSECT, EXCEPT, subqueries), EXPLAIN of such a SELECT,
SHOW TABLES / DATABASES / COLUMNS / SETTINGS, and DESCRIBE / EXISTS / SHOW CREATE of a named
table. Refused anywhere in the tree: INTO OUTFILE, FORMAT, SETTINGS, query parameters, table
functions other than the generators below, and functions that read files. A regular expression
over user text never decides anything here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Protocol

from vehicle_ingest.errors import QueryRefusedError

__all__ = ["GENERATOR_TABLE_FUNCTIONS", "MAX_QUERY_BYTES", "PRIVATE_TABLES", "EngineParser", "gate_statement"]

MAX_QUERY_BYTES = 64 * 1024

# Table functions that only generate rows in memory. Everything else reaches files, the network,
# other processes or the caller's Python frames (chDB's `python`), and is refused.
GENERATOR_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "generaterandom", "values",
     "null", "view", "primes"}
)  # fmt: skip
# Ordinary functions that read the host: `file('/etc/passwd')` returns the file as a string.
_HOST_FUNCTIONS = frozenset({"file", "url", "s3", "hdfs", "executable", "python", "remote", "remotesecure"})
# Tables of the store's own machinery, not data: `erase_targets` holds the ids of an erasure in progress.
PRIVATE_TABLES = frozenset({"erase_targets"})

_TOP_LEVEL = frozenset({"SelectWithUnionQuery", "ExplainQuery", "ShowTablesQuery", "ShowColumnsQuery"})
# Every node type a read may contain that names a statement; anything else ending in "Query"
# (InsertQuery, AlterQuery, SetQuery, SystemQuery, ...) is refused wherever it appears.
_STATEMENT_NODES = _TOP_LEVEL | {"SelectQuery", "SelectIntersectExceptQuery", "TablesInSelectQuery"}
_KIND_WORDS = {"DropQuery": "DROP or TRUNCATE", "KillQueryQuery": "KILL", "SetQuery": "SET"}
# Statements parseQueryToJSON cannot serialise, allowed only as `<keywords> <table name>`.
_NAMED_TABLE_STATEMENTS = (("DESCRIBE", "TABLE"), ("EXISTS", "TABLE"), ("SHOW", "CREATE", "TABLE"))
_IGNORED_TOKENS = frozenset({"Whitespace", "Comment"})


class EngineParser(Protocol):
    """Calls a one-argument SQL function of the engine on `text`, bound as a parameter: `fn(text)`."""

    def call(self, function: str, text: str) -> Any: ...


def gate_statement(parser: EngineParser, text: str, max_bytes: int = MAX_QUERY_BYTES) -> str:
    """The normalised statement to execute, or `QueryRefusedError` with the reason."""
    if not text.strip():
        raise QueryRefusedError("empty query")
    if len(text.encode()) > max_bytes:
        raise QueryRefusedError(f"query is {len(text.encode())} bytes; at most {max_bytes} (query_max_bytes)")
    if "\x00" in text:
        raise QueryRefusedError("query contains a NUL character")
    normalised = _engine(parser, "formatQuerySingleLine", text)
    try:
        tree = _engine(parser, "parseQueryToJSON", normalised)
    except QueryRefusedError as exc:
        if "does not support JSON serialization" not in str(exc):
            raise
        _check_named_table_statement(parser, normalised)
        return normalised
    _check_tree(_loads(tree))
    return normalised


def _engine(parser: EngineParser, function: str, text: str) -> str:
    try:
        return str(parser.call(function, text))
    except QueryRefusedError:
        raise
    except Exception as exc:  # the engine's parser said no: a syntax error, several statements, ...
        raise QueryRefusedError(_engine_reason(exc)) from exc


def _engine_reason(exc: Exception) -> str:
    text = str(exc)
    start = text.find("DB::Exception: ")
    reason = text[start + len("DB::Exception: ") :] if start >= 0 else text
    if "UNKNOWN_FUNCTION" in text:
        return f"this ClickHouse cannot check queries without running them ({reason[:200]}): every query is refused"
    # ClickHouse appends the wrapping SELECT; the user did not write it.
    return reason.split(": In scope SELECT ")[0].split(". (")[0].strip()[:500]


def _loads(tree: str) -> Any:
    try:
        return json.loads(tree)
    except (RecursionError, ValueError) as exc:
        raise QueryRefusedError("query is nested too deeply to check") from exc


def _check_tree(root: Any) -> None:
    if not isinstance(root, dict) or root.get("type") not in _TOP_LEVEL:
        kind = root.get("type", "?") if isinstance(root, dict) else "?"
        raise QueryRefusedError(f"only SELECT, EXPLAIN, SHOW, DESCRIBE and EXISTS are allowed, not {_kind(kind)}")
    for key, node, parent in _nodes(root):
        _check_node(key, node, parent)


def _nodes(root: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every object in the tree with the key it hangs from and its parent object (iterative: trees run deep)."""
    stack: list[tuple[str, Any, dict[str, Any]]] = [("", root, {})]
    while stack:
        key, value, parent = stack.pop()
        if isinstance(value, list):
            stack.extend((key, item, parent) for item in value)
        elif isinstance(value, dict):
            yield key, value, parent
            stack.extend((k, v, value) for k, v in value.items())


def _check_node(key: str, node: dict[str, Any], parent: dict[str, Any]) -> None:
    kind = node.get("type", "")
    if "out_file" in node or node.get("is_into_outfile_with_stdout"):
        raise QueryRefusedError("INTO OUTFILE is not allowed: results come back in the response")
    if "format_ast" in node:
        raise QueryRefusedError("FORMAT is not allowed: the result format is the API's")
    if kind == "SetQuery":
        if key == "settings" and parent.get("type") == "ExplainQuery":
            return  # EXPLAIN's own options (graph=1, ...), not query settings
        raise QueryRefusedError("SETTINGS are not allowed: query limits are the gateway's (query_* settings)")
    if kind.endswith("Query") and kind not in _STATEMENT_NODES:
        raise QueryRefusedError(f"only SELECT, EXPLAIN, SHOW, DESCRIBE and EXISTS are allowed, not {_kind(kind)}")
    if kind == "QueryParameter":
        raise QueryRefusedError("query parameters ({name:Type}) are not supported")
    if kind == "Function":
        _check_function(key, str(node.get("name", "")))
    if kind == "TableIdentifier":
        parts = node.get("name_parts") or [node.get("name", "")]
        if str(parts[-1]) in PRIVATE_TABLES:
            raise QueryRefusedError(f"table {parts[-1]} is not readable: it is the store's own bookkeeping")


def _check_function(key: str, name: str) -> None:
    lowered = name.lower()
    if key == "table_function" and lowered not in GENERATOR_TABLE_FUNCTIONS:
        allowed = ", ".join(sorted(GENERATOR_TABLE_FUNCTIONS))
        raise QueryRefusedError(f"table function {name}() is not allowed (only {allowed})")
    if lowered in _HOST_FUNCTIONS:
        raise QueryRefusedError(f"function {name}() is not allowed: it reads outside the store")


def _kind(node_type: str) -> str:
    """`AlterQuery` -> `ALTER`: the statement kind as a user wrote it."""
    return _KIND_WORDS.get(node_type) or node_type.removesuffix("Query").upper() or "this statement"


def _check_named_table_statement(parser: EngineParser, normalised: str) -> None:
    """DESCRIBE / EXISTS / SHOW CREATE TABLE, accepted only with a plain (optionally qualified) table name."""
    words = _tokens(parser, normalised)
    for keywords in _NAMED_TABLE_STATEMENTS:
        head = [text.upper() for kind, text in words[: len(keywords)] if kind == "BareWord"]
        if tuple(head) == keywords and _is_table_name(words[len(keywords) :]):
            return
    raise QueryRefusedError(
        "this statement is not allowed; DESCRIBE, EXISTS and SHOW CREATE take a table name only"
        " (SHOW PROCESSLIST, SHOW GRANTS and the like are refused)"
    )


def _tokens(parser: EngineParser, normalised: str) -> list[tuple[str, str]]:
    """(kind, text) of each significant token, from the engine's own lexer."""
    spans = parser.call("tokenizeQuery", normalised)  # [{"begin", "end", "type"}], byte offsets
    encoded = normalised.encode()
    return [
        (span["type"], encoded[span["begin"] : span["end"]].decode())
        for span in spans
        if span["type"] not in _IGNORED_TOKENS
    ]


def _is_table_name(rest: list[tuple[str, str]]) -> bool:
    kinds = [kind for kind, _ in rest]
    name = ("BareWord", "QuotedIdentifier")
    if len(kinds) == 1:
        return kinds[0] in name
    return len(kinds) == 3 and kinds[0] in name and kinds[1] == "Dot" and kinds[2] in name
