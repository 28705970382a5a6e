"""Owner registries as people really have them: Excel exports, semicolons, tabs, .xlsx, mistakes.

The parsing tests run in this process (no store is opened here: chDB allows one data directory per
process); the command tests run `python -m vehicle_ingest.gateway.cli owners ...` against an embedded
store of their own, or against a running gateway.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from vehicle_ingest.errors import ConfigError
from vehicle_ingest.owners import (
    REGISTRY_MAX_BYTES,
    Ownership,
    parse_registry,
    write_registry,
)

V1, V2 = "SMXREG1STRY000001", "SMXREG1STRY000002"
HEADER = ["vin", "owner_id", "valid_from", "drivers"]
OWNER = "owner-zoë 7"  # not ASCII, an inner space: both allowed


def _ms(*when: int) -> int:
    return int(datetime(*when, tzinfo=UTC).timestamp()) * 1000  # type: ignore[misc]


# The same three rows, whatever the file: a vehicle changes hands, one owner has two vehicles.
EXPECTED = [
    Ownership(V1, OWNER, _ms(2026, 1, 1), ("d-1", "d-2")),
    Ownership(V1, "12345", _ms(2026, 3, 1, 8, 30), ()),
    Ownership(V2, OWNER, _ms(2026, 2, 15), ("d-3",)),
]
_TEXT_ROWS = [
    [V1, OWNER, "2026-01-01", "d-1|d-2"],
    [V1, "12345", "2026-03-01T09:30:00+01:00", ""],
    [V2, OWNER, "2026-02-15", "d-3"],
]


def _delimited(delimiter: str, newline: str, header: list[str] = HEADER) -> str:
    return "".join(delimiter.join(row) + newline for row in [header, *_TEXT_ROWS])


def _xlsx_bytes(rows: list[list[Any]], tmp_path: Path, name: str = "book.xlsx") -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    workbook.save(tmp_path / name)
    return (tmp_path / name).read_bytes()


def _registry_xlsx(tmp_path: Path, name: str = "book.xlsx") -> bytes:
    """The rows as Excel holds them: a date cell, a number cell for an owner id, a date-time cell (no zone)."""
    return _xlsx_bytes(
        [
            HEADER,
            [V1, OWNER, date(2026, 1, 1), "d-1|d-2"],
            [V1, 12345, datetime(2026, 3, 1, 8, 30), None],
            [V2, OWNER, datetime(2026, 2, 15), "d-3"],
        ],
        tmp_path,
        name,
    )


FORMATS = {
    "csv": lambda _: _delimited(",", "\n").encode(),
    # Excel's "CSV UTF-8": a byte order mark and CRLF
    "excel_csv_utf8": lambda _: b"\xef\xbb\xbf" + _delimited(",", "\r\n").encode(),
    # Excel where the decimal separator is a comma; header names in any case, spaces around values
    "semicolon": lambda _: _delimited(";", "\r\n", ["VIN", " Owner_ID ", "Valid_From", "Drivers"]).encode(),
    "excel_sep_hint": lambda _: ("sep=;\r\n" + _delimited(";", "\r\n")).encode(),
    "tab": lambda _: _delimited("\t", "\n").encode(),
    "excel_unicode_text": lambda _: _delimited("\t", "\r\n").encode("utf-16"),  # UTF-16 with its mark
    "json": lambda _: json.dumps(
        [
            {"vin": V1, "owner_id": OWNER, "valid_from": "2026-01-01", "drivers": ["d-1", "d-2"]},
            {"vin": V1, "owner_id": 12345, "valid_from": "2026-03-01T09:30:00+01:00"},
            {"vin": V2, "owner_id": OWNER, "valid_from": "2026-02-15", "drivers": "d-3"},
        ],
        ensure_ascii=False,
    ).encode(),
    "xlsx": _registry_xlsx,
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_every_format_reads_to_the_same_rows(kind: str, tmp_path: Path):
    assert parse_registry(FORMATS[kind](tmp_path), "owners") == EXPECTED


def test_write_registry_round_trips(tmp_path: Path):
    write_registry(tmp_path / "owners.csv", EXPECTED)
    assert parse_registry((tmp_path / "owners.csv").read_bytes(), "owners.csv") == EXPECTED


# -- what an owner id may hold, the same in every format ------------------------------------------


def _one_owner(kind: str, owner_id: str, tmp_path: Path) -> bytes:
    if kind == "csv":  # unquoted: U+2028 and NEL end no line in CSV
        return f"vin,owner_id,valid_from\n{V1},{owner_id},2026-01-01\n".encode()
    if kind == "json":
        return json.dumps([{"vin": V1, "owner_id": owner_id, "valid_from": "2026-01-01"}]).encode()
    return _xlsx_bytes([HEADER[:3], [V1, owner_id, "2026-01-01"]], tmp_path)


_WHERE = {"csv": "line 2", "json": "item 1", "xlsx": "row 2"}
_REFUSED_IDS = {
    "o\u2028x": "owner_id contains the line separator U+2028; none are allowed",
    "o\u2029x": "owner_id contains the paragraph separator U+2029; none are allowed",
    "o\x85x": "owner_id contains the control character U+0085; none are allowed",  # NEL
    "o\x1b[31mx": "owner_id contains the control character U+001B; none are allowed",
    "o\u200bx": "owner_id contains the invisible format character U+200B; none are allowed",
    "o\u202ex": "owner_id contains the invisible format character U+202E; none are allowed",  # bidi override
    "ox\u2028": "owner_id contains the line separator U+2028; none are allowed",  # at the end: not trimmed away
    "\u00a0ox": "owner_id starts with the space character U+00A0; ids do not start or end with spaces",
    "ox\u3000": "owner_id ends with the space character U+3000; ids do not start or end with spaces",
    "x" * 257: "owner_id has 257 characters; at most 256 are allowed",
}


@pytest.mark.parametrize("kind", ["csv", "json", "xlsx"])
def test_owner_ids_are_judged_the_same_in_csv_json_and_xlsx(kind: str, tmp_path: Path):
    for owner_id, problem in _REFUSED_IDS.items():
        if kind == "xlsx" and "\x1b" in owner_id:
            continue  # XML 1.0 cannot hold it: openpyxl refuses to write it (Excel writes it as the text _x001B_)
        with pytest.raises(ConfigError) as refused:
            parse_registry(_one_owner(kind, owner_id, tmp_path), "owners")
        assert str(refused.value) == f"owners: {_WHERE[kind]}: {problem}", repr(owner_id)
    for owner_id in ("x" * 256, "Zoë Ōwner", "user@example.com", "a|b", "  trimmed\t"):
        rows = parse_registry(_one_owner(kind, owner_id, tmp_path), "owners")
        assert rows == [Ownership(V1, owner_id.strip(" \t"), _ms(2026, 1, 1))], repr(owner_id)


def test_line_separators_inside_csv_fields_end_no_line():
    text = (
        "vin,owner_id,valid_from,notes\r\n"
        f"{V1},o-1,2026-01-01,first\u2028second\x85third\r\n"
        f'{V2},o-2,2026-01-01,"two\r\nlines"\r\n'
        f"{V1},o-3,someday,\u2029\r\n"
    )
    with pytest.raises(ConfigError) as refused:
        parse_registry(text.encode(), "f.csv")
    # The quoted CRLF is the only break inside a row: the bad row is the file's fifth line.
    assert str(refused.value) == (
        "f.csv: line 5: valid_from 'someday' is not an ISO date or date-time"
        " (such as 2026-01-01 or 2026-01-01T08:00:00+01:00)"
    )


# -- every bad row, at once -----------------------------------------------------------------------


def test_every_bad_row_is_reported_and_duplicates_name_both_lines():
    text = (
        "vin,owner_id,valid_from,drivers\n"
        f"{V1},o-1,2026-01-01,\n"
        f"{V2},o-2,2026-01-01\n"
        "\n"
        f"{V1},o-9,2026-01-01T01:00:00+01:00,\n"  # the same instant as line 2, another owner
        f"SMXI,o-3,2026-01-01,\n"
        f"{V2},,01/02/2026,\n"
        f"{V2},o-4,2026-01-03,d\x00\n"
        f"{V2},o,4,2026-01-02,d-1\n"  # an unquoted comma in the owner id
        f"{V1},o-1,2026-01-01,\n"  # an exact repeat of line 2
        f"{V2},o-5,2026-01-02,a|\tb\u2028|c\n"
    )
    with pytest.raises(ConfigError) as refused:
        parse_registry(text.encode(), "f.csv")
    assert [str(e) for e in refused.value.errors] == [  # type: ignore[attr-defined]
        f"f.csv: line 5: vin {V1} with valid_from 2026-01-01T00:00:00+00:00 is also on line 2:"
        " one row per vehicle and valid_from",
        "f.csv: line 6: vin 'SMXI' is not 17 characters of the VIN alphabet (no I, O, Q)",
        "f.csv: line 7: missing owner_id",
        "f.csv: line 8: a driver id contains the control character U+0000; none are allowed",
        'f.csv: line 9: 5 fields, the header has 4: quote a value that holds a comma ("a,b")',
        f"f.csv: line 10: vin {V1} with valid_from 2026-01-01T00:00:00+00:00 is also on line 2:"
        " one row per vehicle and valid_from",
        "f.csv: line 11: a driver id contains the line separator U+2028; none are allowed",
    ]


def test_reported_problems_are_capped_at_50_with_a_count_of_the_rest():
    text = "vin,owner_id,valid_from\n" + "".join(f"{V1},o-{i},yesterday\n" for i in range(75))
    with pytest.raises(ConfigError) as refused:
        parse_registry(text.encode(), "f.csv")
    lines = [str(e) for e in refused.value.errors]  # type: ignore[attr-defined]
    assert len(lines) == 51
    assert lines[0] == "f.csv: line 2: valid_from 'yesterday' is not an ISO date or date-time" + (
        " (such as 2026-01-01 or 2026-01-01T08:00:00+01:00)"
    )
    assert lines[49].startswith("f.csv: line 51: valid_from 'yesterday'")
    assert lines[50] == "f.csv: and 25 more bad rows (nothing was loaded)"


def test_xlsx_cells_are_converted_or_refused_by_what_they_hold(tmp_path: Path):
    data = _xlsx_bytes(
        [
            ["Notes", *HEADER],  # the columns are found by name, in any order
            ["ok", V1, 123456789012345, datetime(2026, 1, 1, 12, 0), 7],
            [None, V2, "#N/A", "2026-01-01", None],  # an Excel error value
            [None, V2, 12.5, "2026-01-02", None],
            [None, V2, 1.2e17, "2026-01-03", None],  # beyond what Excel keeps exactly
            [None, V2, True, "2026-01-04", None],
            [None, V2, "o-1", time(8, 0), None],
            [None, V2, "o-1", 46023, None],  # a date typed into a cell formatted as a number
            [None, V2, "o-1", "2300-01-01", None],
            [None, None, None, None, None],  # empty rows are skipped
            [None, V2, "o-1", "2026-01-05", "x\ny"],  # Alt+Enter in a cell
        ],
        tmp_path,
    )
    with pytest.raises(ConfigError) as refused:
        parse_registry(data, "f.xlsx")
    assert [str(e) for e in refused.value.errors] == [  # type: ignore[attr-defined]
        "f.xlsx: row 3: owner_id is the Excel error #N/A",
        "f.xlsx: row 4: owner_id is the number 12.5, which a spreadsheet may have rounded: store it as text",
        "f.xlsx: row 5: owner_id is the number 1.2e+17, which a spreadsheet may have rounded: store it as text",
        "f.xlsx: row 6: owner_id is true, not text",
        "f.xlsx: row 7: valid_from must be an ISO date or date-time, such as 2026-01-01",
        "f.xlsx: row 8: valid_from is the number 46023, not a date: write an ISO date such as 2026-01-01"
        " (in a spreadsheet, format the column as a date)",
        "f.xlsx: row 9: valid_from 2300-01-01T00:00:00+00:00 is outside 1900-01-01 .. 2299-12-31",
        "f.xlsx: row 11: a driver id contains the control character U+000A; none are allowed",
    ]
    first_row_only = _xlsx_bytes(
        [["Notes", *HEADER], ["ok", V1, 123456789012345, datetime(2026, 1, 1, 12), 7]], tmp_path
    )
    assert parse_registry(first_row_only, "f.xlsx") == [Ownership(V1, "123456789012345", _ms(2026, 1, 1, 12), ("7",))]


# -- files that are not registries ----------------------------------------------------------------


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
REFUSED_FILES = {
    ("owners.xls", OLE2): "an Excel 97-2003 workbook (.xls), which is not read: open it in Excel and"
    " save it as .xlsx or CSV UTF-8",
    ("owners.xlsx", OLE2): "an encrypted (password-protected) Excel workbook: remove the password, then save it again",
    ("owners.bin", OLE2): "an old binary Office document (OLE2, such as .xls or .doc); expected CSV (UTF-8),"
    " a JSON list or an .xlsx workbook: save it as .xlsx or CSV UTF-8",
    ("owners.ods", _zip({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"})): (
        "an OpenDocument spreadsheet (.ods), which is not read: save it as .xlsx or CSV UTF-8 (File > Save As)"
    ),
    ("owners.xlsb", _zip({"xl/workbook.bin": b"\x00"})): "an Excel binary workbook (.xlsb), which is not read:"
    " save it as .xlsx or CSV UTF-8",
    ("owners.zip", _zip({"owners.csv": b"vin"})): "a zip archive named .zip without an Excel workbook in it;"
    " expected CSV (UTF-8), a JSON list or an .xlsx workbook",
    ("owners.xlsx", b"PK\x03\x04 truncated"): "a damaged zip archive (File is not a zip file);"
    " .xlsx workbooks are zip archives",
    ("owners.csv.gz", b"\x1f\x8b\x08\x00rest"): "this is gzip-compressed data; expected CSV (UTF-8), a JSON list"
    " or an .xlsx workbook",
    ("owners.xls", b"\n  <html><table><tr><td>vin</td></tr></table></html>"): "an HTML or XML document (some"
    " systems export web tables named .xls): open it and save it as .xlsx or CSV UTF-8",
    ("owners.json", b'{"vin": "x"}\n{"vin": "y"}\n'): "a JSON object (or JSON Lines); the registry is a JSON list:"
    " [{...}, {...}]",
    ("owners.json", b'[{"vin": "x"},]'): "line 1: invalid JSON: Expecting value (column 15)",
    ("owners.json", b"[" * 100_000): "invalid JSON: nested too deeply",
    ("owners.csv", "vin,owner_id,valid_from\nSMX,Zoë,2026\n".encode("cp1252")): "line 2: not UTF-8 text"
    " (byte 0xEB); save the file as CSV UTF-8 (Excel: Save As > CSV UTF-8), not as CSV for a local code page",
    ("owners.csv", "vin,owner_id,valid_from\n".encode("utf-16-le")): "UTF-16 text without a byte order mark;"
    " save it as CSV UTF-8",
    ("owners.csv", b" \r\n"): "empty file; expected CSV (UTF-8), a JSON list or an .xlsx workbook",
    ("owners.csv", b"vin|owner_id|valid_from\n"): "line 1: the header has no vin, owner_id, valid_from column"
    " (it reads 'vin|owner_id|valid_from'); the columns are vin, owner_id, valid_from and optionally drivers,"
    " separated by commas, semicolons or tabs",
    ("owners.csv", b"\r\nvin,owner,valid_from\n"): "line 2: the header has no owner_id column (it reads 'vin',"
    " 'owner', 'valid_from'); the columns are vin, owner_id, valid_from and optionally drivers, separated by"
    " commas, semicolons or tabs",
    ("owners.csv", b"vin,owner_id,valid_from,VIN\n"): "line 1: the column vin appears twice in the header",
    ("owners.csv", b"vin;owner_id;valid_from\r\n;;\r\n"): "no ownership rows, only a header",
}


@pytest.mark.parametrize(
    ("name", "data"), list(REFUSED_FILES), ids=[f"{n}-{i}" for i, (n, _) in enumerate(REFUSED_FILES)]
)
def test_files_that_are_not_registries_are_refused_by_what_they_are(name: str, data: bytes):
    with pytest.raises(ConfigError) as refused:
        parse_registry(data, name, name)
    assert str(refused.value) == f"{name}: {REFUSED_FILES[(name, data)]}"


def test_an_xlsx_entity_expansion_bomb_is_refused(tmp_path: Path):
    """Billion laughs in the shared strings, which openpyxl reads whole: expat stops the expansion."""
    levels = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
    strings = (
        f'<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY e0 "lol">{levels}]>'
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>&e9;</t></si></sst>'
    )
    data = _with_member(_xlsx_bytes([HEADER[:3], [V1, "o-1", "2026-01-01"]], tmp_path), strings.encode())
    with pytest.raises(ConfigError) as refused:
        parse_registry(data, "f.xlsx")
    assert str(refused.value).startswith(
        "f.xlsx: unreadable .xlsx workbook (ParseError: limit on input amplification factor (from DTD and entities)"
        " breached"
    )


_STRINGS_TYPE = (
    b'<Override PartName="/xl/sharedStrings.xml"'
    b' ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
)


def _with_shared_strings(workbook: bytes, out: zipfile.ZipFile) -> zipfile.ZipFile:
    """`workbook`'s parts copied into `out`, its content types naming a shared strings part, which the caller
    writes: openpyxl writes inline strings, Excel a shared strings part, which openpyxl reads whole."""
    with zipfile.ZipFile(io.BytesIO(workbook)) as source:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "[Content_Types].xml":
                content = content.replace(b"</Types>", _STRINGS_TYPE)
            out.writestr(info, content)
    return out


def _with_member(workbook: bytes, shared_strings: bytes) -> bytes:
    buffer = io.BytesIO()
    with _with_shared_strings(workbook, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)) as out:
        out.writestr("xl/sharedStrings.xml", shared_strings)
    return buffer.getvalue()


# -- the command ----------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vehicle_ingest.gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _refused(result: subprocess.CompletedProcess[str], *lines: str) -> None:
    """Exit 2, nothing on stdout, and each problem one line of its own: no traceback."""
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.splitlines() == [f"vehicle-ingest: {line}" for line in lines]


def _loaded(result: subprocess.CompletedProcess[str]) -> Any:
    assert (result.returncode, result.stderr) == (0, "")
    return json.loads(result.stdout)


@pytest.fixture
def store_dsn(tmp_path: Path) -> str:
    dsn = f"chdb://{tmp_path / 'store'}"
    code = "import sys; from vehicle_ingest.storage import Store; s = Store.open(sys.argv[1]); s.migrate(); s.close()"
    subprocess.run([sys.executable, "-c", code, dsn], check=True, timeout=300)
    return dsn


_OWNERSHIP = (
    "SELECT vin, owner_id, toString(valid_from), toString(drivers) FROM ownership FINAL ORDER BY vin, valid_from"
)


def _ownership(dsn: str) -> list[list[str]]:
    result = _cli("sql", "--store", dsn, _OWNERSHIP)
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()[1:]]


STORED = [
    [V1, OWNER, "2026-01-01 00:00:00.000", "['d-1','d-2']"],
    [V1, "12345", "2026-03-01 08:30:00.000", "[]"],
    [V2, OWNER, "2026-02-15 00:00:00.000", "['d-3']"],
]


def test_real_exports_load_through_the_command(store_dsn: str, tmp_path: Path):
    for kind, suffix in (("excel_csv_utf8", "csv"), ("semicolon", "csv"), ("tab", "tsv"), ("xlsx", "xlsx")):
        path = tmp_path / f"{kind}.{suffix}"
        path.write_bytes(FORMATS[kind](tmp_path))
        assert _loaded(_cli("owners", str(path), "--store", store_dsn)) == {"loaded": 3}, kind
        assert _ownership(store_dsn) == STORED, kind  # loading again updates: still three rows


def test_a_file_with_bad_rows_loads_nothing_and_names_every_one(store_dsn: str, tmp_path: Path):
    path = tmp_path / "owners.csv"
    path.write_bytes(
        b"\xef\xbb\xbfvin;owner_id;valid_from\r\n"
        + f"{V1};o-1;2026-01-01\r\n{V2};o-2;2026-13-01\r\n{V2};;2026-01-01\r\n{V1};o-3;2026-01-01\r\n".encode()
    )
    problems = [
        f"{path}: line 3: valid_from '2026-13-01' is not an ISO date or date-time"
        " (such as 2026-01-01 or 2026-01-01T08:00:00+01:00)",
        f"{path}: line 4: missing owner_id",
        f"{path}: line 5: vin {V1} with valid_from 2026-01-01T00:00:00+00:00 is also on line 2:"
        " one row per vehicle and valid_from",
    ]
    _refused(_cli("owners", str(path), "--store", store_dsn), *problems)
    _refused(_cli("owners", str(path), "--dry-run", "--store", store_dsn), *problems)
    assert _ownership(store_dsn) == []


def test_spreadsheets_of_other_kinds_bombs_and_oversize_files_are_refused_by_name(store_dsn: str, tmp_path: Path):
    xls = tmp_path / "owners.xls"
    xls.write_bytes(OLE2)
    _refused(
        _cli("owners", str(xls), "--store", store_dsn),
        f"{xls}: an Excel 97-2003 workbook (.xls), which is not read: open it in Excel and"
        " save it as .xlsx or CSV UTF-8",
    )
    bomb, unpacked, parts = _zip_bomb(tmp_path)
    assert bomb.stat().st_size < 2 << 20 and unpacked > 300 << 20  # under 2 MB on disk, 300 MB inflated
    _refused(
        _cli("owners", str(bomb), "--store", store_dsn),
        f"{bomb}: the workbook unpacks to {unpacked:,} bytes in {parts} parts; at most 268,435,456 bytes are"
        " read (a zip bomb?); split the registry or save it as CSV UTF-8",
    )
    huge = tmp_path / "huge.xlsx"
    with huge.open("wb") as out:  # sparse: the size is refused before a byte is read
        out.write(b"PK\x03\x04")
        out.truncate(REGISTRY_MAX_BYTES + 1)
    _refused(
        _cli("owners", str(huge), "--store", store_dsn),
        f"{huge}: {REGISTRY_MAX_BYTES + 1:,} bytes; a registry is at most {REGISTRY_MAX_BYTES:,} (split it)",
    )
    _refused(
        _cli("owners", str(tmp_path / "absent.csv"), "--store", store_dsn), f"{tmp_path / 'absent.csv'}: no such file"
    )
    assert _ownership(store_dsn) == []


def _zip_bomb(tmp_path: Path) -> tuple[Path, int, int]:
    """A real workbook whose shared strings inflate to 300 MB: openpyxl would hold them all in memory."""
    bomb = tmp_path / "bomb.xlsx"
    workbook = _xlsx_bytes([HEADER[:3], [V1, "o-1", "2026-01-01"]], tmp_path)
    out = _with_shared_strings(workbook, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED))
    with out, out.open("xl/sharedStrings.xml", "w", force_zip64=True) as member:
        member.write(b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>')
        for _ in range(300):
            member.write(b"A" * (1 << 20))
        member.write(b"</t></si></sst>")
    with zipfile.ZipFile(bomb) as archive:
        infos = archive.infolist()
    return bomb, sum(i.file_size for i in infos), len(infos)


DRY_RUN_FILE = f"vin,owner_id,valid_from\n{V1},o-1b,2026-01-01\n{V1},o-2,2026-06-01\n{V2},o-3,2026-01-01\n"
DRY_RUN = {
    "would_load": 3,
    "vehicles": 2,
    "owners": 3,
    "new": 2,
    "unchanged": 0,
    "replaced": 1,
    "changes_of_hands": 1,
    "replaced_rows": [{"vin": V1, "valid_from": "2026-01-01T00:00:00+00:00", "owner_id": "o-1b", "was": "o-1"}],
    "changes_of_hands_rows": [{"vin": V1, "valid_from": "2026-06-01T00:00:00+00:00", "from": "o-1b", "to": "o-2"}],
}
FIRST_OWNER = [[V1, "o-1", "2026-01-01 00:00:00.000", "[]"]]


def test_dry_run_reports_replacements_and_changes_of_hands_and_loads_nothing(store_dsn: str, tmp_path: Path):
    first, plan = tmp_path / "first.csv", tmp_path / "plan.csv"
    first.write_text(f"vin,owner_id,valid_from\n{V1},o-1,2026-01-01\n")
    plan.write_text(DRY_RUN_FILE)
    assert _loaded(_cli("owners", str(first), "--store", store_dsn)) == {"loaded": 1}
    assert _loaded(_cli("owners", str(plan), "--dry-run", "--store", store_dsn)) == DRY_RUN
    assert _ownership(store_dsn) == FIRST_OWNER
    assert _loaded(_cli("owners", str(first), "--dry-run", "--store", store_dsn)) == {
        "would_load": 1,
        "vehicles": 1,
        "owners": 1,
        "new": 0,
        "unchanged": 1,
        "replaced": 0,
        "changes_of_hands": 0,
        "replaced_rows": [],
        "changes_of_hands_rows": [],
    }


# -- through a running gateway --------------------------------------------------------------------


def _post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.integration
def test_owners_through_a_running_gateway(broker, rig, tmp_path: Path):
    gw = rig.gateway(broker.url, "--tags-interval-s", "0")
    first, plan, bad = tmp_path / "first.csv", tmp_path / "plan.csv", tmp_path / "bad.csv"
    first.write_text(f"vin,owner_id,valid_from\n{V1},o-1,2026-01-01\n")
    plan.write_text(DRY_RUN_FILE)
    bad.write_text(f"vin,owner_id,valid_from\n{V1},,2026-01-01\nSMX,o-2,2026-01-01\n")
    assert _loaded(_cli("owners", str(first), "--gateway", gw.url)) == {"loaded": 1}
    assert _loaded(_cli("owners", str(plan), "--dry-run", "--gateway", gw.url)) == DRY_RUN
    # The command checks the file first: its problems name the file, and nothing is sent.
    _refused(
        _cli("owners", str(bad), "--gateway", gw.url),
        f"{bad}: line 2: missing owner_id",
        f"{bad}: line 3: vin 'SMX' is not 17 characters of the VIN alphabet (no I, O, Q)",
    )
    problems = [
        "request body: line 2: missing owner_id",
        "request body: line 3: vin 'SMX' is not 17 characters of the VIN alphabet (no I, O, Q)",
    ]
    for route in ("/api/owners", "/api/owners/check"):
        answer = {"error": "\n".join(problems), "problems": problems}
        assert _post(gw.url + route, bad.read_bytes()) == (400, answer)
    xls = {
        "error": "request body: an old binary Office document (OLE2, such as .xls or .doc); expected CSV (UTF-8),"
        " a JSON list or an .xlsx workbook: save it as .xlsx or CSV UTF-8"
    }
    assert _post(gw.url + "/api/owners", OLE2) == (400, xls | {"problems": [xls["error"]]})
    assert gw.sql(_OWNERSHIP) == [[V1, "o-1", "2026-01-01 00:00:00.000", "[]"]]
    # The dry run's file as a workbook, straight to the route: it loads, replacing o-1's row.
    xlsx = _xlsx_bytes([HEADER[:3], *[line.split(",") for line in DRY_RUN_FILE.splitlines()[1:]]], tmp_path)
    assert _post(gw.url + "/api/owners/check", xlsx) == (200, DRY_RUN)
    assert _post(gw.url + "/api/owners", xlsx) == (200, {"loaded": 3})
    assert gw.sql(_OWNERSHIP) == [
        [V1, "o-1b", "2026-01-01 00:00:00.000", "[]"],
        [V1, "o-2", "2026-06-01 00:00:00.000", "[]"],
        [V2, "o-3", "2026-01-01 00:00:00.000", "[]"],
    ]


@pytest.fixture
def refusing_gateway() -> Iterator[str]:
    """An HTTP server that refuses every registry as a gateway of another version might: 400 with two problems."""
    problems = ["request body: line 2: owner_id is not allowed here", "request body: line 3: nor here"]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"error": "\n".join(problems), "problems": problems}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_command_prints_each_of_a_gateways_problems_on_its_own_line(refusing_gateway: str, tmp_path: Path):
    path = tmp_path / "owners.csv"
    path.write_text(f"vin,owner_id,valid_from\n{V1},o-1,2026-01-01\n")
    for flags, route in (([], "/api/owners"), (["--dry-run"], "/api/owners/check")):
        _refused(
            _cli("owners", str(path), *flags, "--gateway", refusing_gateway),
            f"{refusing_gateway}{route}: 400: request body: line 2: owner_id is not allowed here",
            f"{refusing_gateway}{route}: 400: request body: line 3: nor here",
        )
