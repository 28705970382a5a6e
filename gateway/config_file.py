"""Reading settings from TOML and from text (env, flags), with every problem named by key.

The file uses the setting names as keys. Tables are optional headings: a key may
sit at the top level or under its own table (`[mqtt] mqtt_url = ...`), so the
name in the file is always the name of the flag and the variable. This module
knows settings only as `name -> type` and `name -> table`, not the dataclass.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vehicle_ingest.errors import ConfigError

__all__ = [
    "parse_text",
    "read_config_file",
    "redact",
    "suggest",
    "toml_value",
    "type_name",
]

_TYPE_NAMES = {bool: "a boolean (true or false)", int: "an integer", str: "a string"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def type_name(kind: type) -> str:
    return _TYPE_NAMES[kind]


def toml_value(value: Any) -> str:
    """A TOML literal for a scalar (JSON string escapes are valid TOML basic-string escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _toml_kind(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string")):
        if isinstance(value, kind):
            return name
    containers: dict[type, str] = {list: "an array", dict: "a table"}
    return containers.get(type(value), "a date/time")


def suggest(name: str, choices: list[str]) -> str | None:
    """The closest valid name, also for env-style spellings (`VI_HTTP_PORT`, `http-port`)."""
    normal = name.lower().replace("-", "_").removeprefix("vi_")
    if normal in choices and normal != name:
        return normal
    close = difflib.get_close_matches(normal, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def parse_text(key: str, raw: str, kind: type) -> Any:
    """A value given as text (env var or flag)."""
    if kind is bool:
        if raw.strip().lower() in _TRUE + _FALSE:
            return raw.strip().lower() in _TRUE
        raise ConfigError(key, f"expected {type_name(bool)} or 1/0, got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(key, f"expected {type_name(int)}, got {raw!r}") from None
    return raw


def _type_problem(value: Any, kind: type) -> str | None:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    return None if ok else f"expected {type_name(kind)}, got {toml_value(value)} ({_toml_kind(value)})"


def read_config_file(
    path: Path, kinds: Mapping[str, type], groups: Mapping[str, str]
) -> tuple[dict[str, Any], list[ConfigError]]:
    """(valid values by key, every problem found): unknown keys and tables, misplaced keys, wrong types."""
    source = str(path)
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        return {}, [ConfigError("", f"cannot read the file: {exc.strerror or exc}", source)]
    except UnicodeDecodeError:
        return {}, [ConfigError("", "not UTF-8 text", source)]
    except tomllib.TOMLDecodeError as exc:
        return {}, [ConfigError("", f"not valid TOML: {exc}", source)]
    reader = _Reader(kinds, groups, source)
    reader.read(document)
    return reader.values, reader.errors


class _Reader:
    def __init__(self, kinds: Mapping[str, type], groups: Mapping[str, str], source: str) -> None:
        self.kinds = kinds
        self.groups = groups
        self.tables = sorted(set(groups.values()))
        self.source = source
        self.values: dict[str, Any] = {}
        self.errors: list[ConfigError] = []

    def error(self, key: str, problem: str) -> None:
        self.errors.append(ConfigError(key, problem, self.source))

    def read(self, document: Mapping[str, Any]) -> None:
        for name, value in document.items():
            if name in self.tables and isinstance(value, dict):
                for key, inner in value.items():
                    self.place(key, inner, name)
            elif isinstance(value, dict) and name not in self.kinds:
                hint = suggest(name, self.tables)
                self.error(f"[{name}]", "unknown table" + (f"; did you mean [{hint}]?" if hint else ""))
            else:
                self.place(name, value, None)

    def place(self, key: str, value: Any, table: str | None) -> None:
        shown = f"{table}.{key}" if table else key
        if key not in self.kinds:
            self.error(shown, "unknown key" + self._hint(key, table))
        elif table is not None and self.groups[key] != table:
            self.error(shown, f"{key} belongs in [{self.groups[key]}] (or at the top level), not in [{table}]")
        elif key in self.values or any(e.key == key for e in self.errors):
            self.error(key, f"set twice (at the top level and in [{self.groups[key]}])")
        elif problem := _type_problem(value, self.kinds[key]):
            self.error(key, problem)
        else:
            self.values[key] = value

    def _hint(self, key: str, table: str | None) -> str:
        names = list(self.kinds)
        hint = f"{table}_{key}" if table and f"{table}_{key}" in self.kinds else suggest(key, names)
        return f"; did you mean {hint}?" if hint else ""


_USERINFO = re.compile(r"://([^/@:,]*)(:[^/@,]*)?@")


def redact(value: object) -> object:
    """Hide secrets in URLs: `user:password@` -> `user:***@`; a lone `key@` (Segment write key) -> `***@`."""
    if not isinstance(value, str):
        return value
    return _USERINFO.sub(lambda m: f"://{m[1]}:***@" if m[2] else "://***@", value)
