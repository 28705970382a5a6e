"""Reading an owner registry file: what it is, and its records (the values as the file holds them).

One path for every input: CSV (`,` `;` or tab, found from the header; UTF-8 with or without a byte
order mark, UTF-16 with one; LF, CRLF or CR), a JSON list of objects, or the first sheet of an .xlsx
workbook with a header row. The content decides the format (zip or OLE2 magic, byte order mark, first
non-space character); the file name's extension only helps name what a refused file is (.xls, .ods,
an encrypted .xlsx), because people rename files and systems export CSV named .xls.

Whole-file problems raise ConfigError (one line); a row's problem travels in its Record, so the caller
can report every bad row at once. Values are not judged here (vehicle_ingest.owners does that), except
what only the format knows: an Excel error cell, a CSV row with more fields than its header.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vehicle_ingest.errors import ConfigError

__all__ = [
    "FIELDS",
    "OWNER_ID_MAX_LENGTH",
    "REGISTRY_MAX_BYTES",
    "REGISTRY_MAX_ROWS",
    "XLSX_MAX_UNPACKED_BYTES",
    "Record",
    "read_records",
]

FIELDS = ("vin", "owner_id", "valid_from", "drivers")
REQUIRED = FIELDS[:3]
OWNER_ID_MAX_LENGTH = 256  # owner and driver ids; vehicle_ingest.owners enforces it, the CSV reader names it
# 1,000,000 rows of CSV is about 100 MB; a bigger registry is split (loading again adds and updates).
REGISTRY_MAX_BYTES = 128 << 20
REGISTRY_MAX_ROWS = 1_000_000
# What the zip members of an .xlsx may unpack to, in all: openpyxl holds the shared strings in memory,
# so this bounds memory, and a zip bomb is refused before anything is inflated. A million-row sheet is
# about 200 MB of XML.
XLSX_MAX_UNPACKED_BYTES = 256 << 20
_XLSX_MAX_MEMBERS = 10_000
_XLSX_MAX_COLUMNS = 64  # cells right of this are not read: a registry has 4 columns and some notes
_EXCEL_LAST_ROW = 1_048_576  # a crafted sheet may number a row 10**12; openpyxl would pad up to it
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
_EXPECTED = "expected CSV (UTF-8), a JSON list or an .xlsx workbook"
_SAVE_AS = "save it as .xlsx or CSV UTF-8"

_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BINARY = (
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"PAR1", "a Parquet file"),
    (b"\x7fELF", "an executable (ELF)"),
)


@dataclass(frozen=True, slots=True)
class Record:
    """One row of the file: `where` names it in problems (`line 3`, `item 2`, `row 4`)."""

    where: str
    fields: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def read_records(data: bytes | str, source: str, name: str = "") -> Iterator[Record]:
    """The records of a registry file (`name`: its file name, for the extension); ConfigError for the file."""
    if isinstance(data, str):
        return _text_records(data, source)
    if not data.strip():
        raise ConfigError("", "empty file; " + _EXPECTED, source)
    if data.startswith(_ZIP):
        _check_workbook(data, source, _extension(name))
        return _xlsx_records(data, source)
    _refuse_binary(data, source, _extension(name))
    return _text_records(_decode(data, source), source)


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


# -- what a file is ---------------------------------------------------------------------------------


def _refuse_binary(data: bytes, source: str, ext: str) -> None:
    if data.startswith(_OLE2):
        raise ConfigError("", _ole2_problem(ext), source)
    for magic, what in _BINARY:
        if data.startswith(magic):
            raise ConfigError("", f"this is {what}; {_EXPECTED}", source)
    head = data[:4096]
    if any(data.startswith(bom) for bom, _ in _BOMS):
        return
    if head[1::2].count(0) > len(head) // 3 or head[0::2].count(0) > len(head) // 3:
        raise ConfigError("", "UTF-16 text without a byte order mark; save it as CSV UTF-8", source)
    controls = sum(head.count(b) for b in range(9)) + sum(head.count(b) for b in range(14, 32))
    if controls > len(head) // 20:  # text has a stray control byte at most; a CSV's NUL is named by its line
        raise ConfigError("", f"binary data (not text); {_EXPECTED}", source)


def _ole2_problem(ext: str) -> str:
    """An OLE2 compound file: Excel 97-2003, or (named .xlsx) a workbook Excel encrypted with a password."""
    if ext in ("xlsx", "xlsm"):
        return "an encrypted (password-protected) Excel workbook: remove the password, then save it again"
    if ext == "xls":
        return f"an Excel 97-2003 workbook (.xls), which is not read: open it in Excel and {_SAVE_AS}"
    return f"an old binary Office document (OLE2, such as .xls or .doc); {_EXPECTED}: {_SAVE_AS}"


def _check_workbook(data: bytes, source: str, ext: str) -> None:
    """An .xlsx workbook that unpacks to a bounded size; other zip files are refused by what they are.

    The sizes are the central directory's: zipfile stops inflating a member at its declared size (and
    fails its CRC check), so a member that lies about its size cannot unpack to more either.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            names = {m.filename for m in members}
            mimetype = _small_member(archive, "mimetype")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise ConfigError("", f"a damaged zip archive ({exc}); .xlsx workbooks are zip archives", source) from None
    if "xl/workbook.xml" not in names:
        raise ConfigError("", _zip_problem(names, mimetype, ext), source)
    unpacked = sum(m.file_size for m in members)
    if len(members) > _XLSX_MAX_MEMBERS or unpacked > XLSX_MAX_UNPACKED_BYTES:
        raise ConfigError(
            "",
            f"the workbook unpacks to {unpacked:,} bytes in {len(members):,} parts; at most"
            f" {XLSX_MAX_UNPACKED_BYTES:,} bytes are read (a zip bomb?); split the registry or save it as CSV UTF-8",
            source,
        )


def _small_member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return b""
    return archive.read(info) if info.file_size <= 256 else b""


def _zip_problem(names: set[str], mimetype: bytes, ext: str) -> str:
    if "xl/workbook.bin" in names:
        return f"an Excel binary workbook (.xlsb), which is not read: {_SAVE_AS}"
    if mimetype.startswith(b"application/vnd.oasis.opendocument.spreadsheet"):
        return f"an OpenDocument spreadsheet (.ods), which is not read: {_SAVE_AS} (File > Save As)"
    if any(n.startswith("Index/") and n.endswith(".iwa") for n in names):
        return "an Apple Numbers document, which is not read: export it as Excel (.xlsx) or CSV"
    if "word/document.xml" in names or "ppt/presentation.xml" in names:
        return f"a Word or PowerPoint document; {_EXPECTED}"
    named = f" named .{ext}" if ext else ""
    return f"a zip archive{named} without an Excel workbook in it; {_EXPECTED}"


def _decode(data: bytes, source: str) -> str:
    """UTF-8 (a byte order mark is dropped), or UTF-16/32 with a byte order mark (Excel's "Unicode text")."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex().upper()
        raise ConfigError(
            f"line {line}",
            f"not {encoding.upper().removesuffix('-SIG')} text (byte 0x{bad}); save the file as CSV UTF-8"
            " (Excel: Save As > CSV UTF-8), not as CSV for a local code page",
            source,
        ) from None


def _text_records(text: str, source: str) -> Iterator[Record]:
    text = text.removeprefix("\ufeff")  # a str handed over with its byte order mark
    head = text.lstrip(" \t\r\n")
    if not head:
        raise ConfigError("", "empty file; " + _EXPECTED, source)
    if head.startswith("["):
        return _json_records(text, source)
    if head.startswith("{"):
        raise ConfigError("", "a JSON object (or JSON Lines); the registry is a JSON list: [{...}, {...}]", source)
    if head.startswith("<"):
        raise ConfigError(
            "", f"an HTML or XML document (some systems export web tables named .xls): open it and {_SAVE_AS}", source
        )
    return _csv_records(text, source)


# -- the header, shared by CSV and .xlsx ------------------------------------------------------------


def _column_name(value: Any) -> str:
    return "" if value is None else str(value).strip(" \t").lower()


def _columns(header: Sequence[str], where: str, source: str) -> dict[str, int]:
    """{field: column index} of a header (names in any case, spaces around them ignored)."""
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        if name in FIELDS:
            if name in found:
                raise ConfigError(where, f"the column {name} appears twice in the header", source)
            found[name] = index
    if missing := [f for f in REQUIRED if f not in found]:
        shown = ", ".join(repr(h) for h in header[:8] if h) or "nothing"
        raise ConfigError(
            where,
            f"the header has no {', '.join(missing)} column (it reads {shown}); the columns are"
            " vin, owner_id, valid_from and optionally drivers, separated by commas, semicolons or tabs",
            source,
        )
    return found


def _values(cells: Sequence[Any], columns: dict[str, int]) -> dict[str, Any]:
    return {name: cells[i] if i < len(cells) else None for name, i in columns.items()}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip(" \t"))


# -- CSV --------------------------------------------------------------------------------------------


def _csv_records(text: str, source: str) -> Iterator[Record]:
    """Records of delimited text. The csv module reads a `newline=""` stream, so only CR and LF end a
    line: U+2028, NEL and the rest stay inside their field, where the id rules judge them."""
    delimiter, hint_line = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns: dict[str, int] | None = None
    width = 0
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: name the line the row starts on
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader resumes on the next line
            yield Record(f"line {start}", problem=_csv_problem(exc))
            continue
        if all(_blank(v) for v in row) or (columns is None and delimiter.join(row) == hint_line):
            continue
        if columns is None:
            columns = _columns([_column_name(v) for v in row], f"line {start}", source)
            width = len(row)
            continue
        yield _csv_record(f"line {start}", row, columns, width, delimiter)


def _csv_record(where: str, row: list[str], columns: dict[str, int], width: int, delimiter: str) -> Record:
    if len(row) > width and any(not _blank(v) for v in row[width:]):
        return Record(
            where,
            problem=f"{len(row)} fields, the header has {width}: quote a value that holds a"
            f' {_DELIMITERS[delimiter]} ("a{delimiter}b")',
        )
    return Record(where, _values(row, columns))


def _csv_problem(exc: csv.Error) -> str:
    if "field limit" in str(exc):
        return (
            f"unreadable CSV ({exc}): a quote opened and never closed, or a value far longer than any id"
            f" (owner and driver ids are at most {OWNER_ID_MAX_LENGTH} characters)"
        )
    return f"unreadable CSV ({exc})"


def _delimiter(text: str) -> tuple[str, str]:
    """(delimiter, the `sep=` line to skip or ""): the delimiter that splits the header into the registry's columns.

    Excel writes `;` where the decimal separator is a comma, and its "Unicode text" is tab-separated;
    a `sep=;` first line (Excel's own hint) is obeyed. `|` is not one: it separates driver ids.
    """
    first = _first_line(text)
    if first.startswith("sep=") and first[4:] in _DELIMITERS:
        return first[4:], first
    best, best_score = ",", (-1, -1)
    for delimiter in _DELIMITERS:
        header = next((r for r in csv.reader(io.StringIO(first, newline=""), delimiter=delimiter)), [])
        names = [_column_name(v) for v in header]
        score = (sum(f in names for f in REQUIRED), len(names))
        if score > best_score:
            best, best_score = delimiter, score
    return best, ""


def _first_line(text: str) -> str:
    """The first line that is not blank, ended by CR or LF only (never U+2028 or NEL, as str.splitlines would)."""
    for line in io.StringIO(text, newline=""):
        if line.strip(" \t\r\n"):
            return line.rstrip("\r\n")
    return ""


# -- JSON -------------------------------------------------------------------------------------------


def _json_records(text: str, source: str) -> Iterator[Record]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"line {exc.lineno}", f"invalid JSON: {exc.msg} (column {exc.colno})", source) from None
    except RecursionError:
        raise ConfigError("", "invalid JSON: nested too deeply", source) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError("", f"invalid JSON: {exc}", source) from None
    if not isinstance(items, list):
        raise ConfigError("", "expected a JSON list of ownership objects", source)
    if len(items) > REGISTRY_MAX_ROWS:
        raise ConfigError("", f"{len(items):,} items; at most {REGISTRY_MAX_ROWS:,} are read at once", source)
    return (_json_record(i, item) for i, item in enumerate(items, start=1))


def _json_record(index: int, item: Any) -> Record:
    if not isinstance(item, dict):
        kind = {list: "a list", str: "a string", type(None): "null"}.get(type(item), "a number or boolean")
        return Record(f"item {index}", problem=f"expected an object with vin, owner_id and valid_from, got {kind}")
    return Record(f"item {index}", {name: item.get(name) for name in FIELDS if name in item})


# -- .xlsx ------------------------------------------------------------------------------------------


def _xlsx_records(data: bytes, source: str) -> Iterator[Record]:
    workbook = _open_workbook(data, source)
    try:
        if not workbook.worksheets:  # chart sheets only
            raise ConfigError("", "the workbook has no worksheet", source)
        sheet = workbook.worksheets[0]
        sheet.reset_dimensions()  # read-only mode trusts the declared size, which some writers get wrong
        rows = _sheet_rows(sheet, source)
        header_row, header = next(((n, r) for n, r in rows if any(c.value is not None for c in r)), (0, ()))
        if not header_row:
            raise ConfigError("", "the first sheet is empty", source)
        columns = _columns([_column_name(c.value) for c in header], f"row {header_row}", source)
        for number, cells in rows:
            if any(c.value is not None for c in cells):
                yield _xlsx_record(f"row {number}", cells, columns)
    finally:
        workbook.close()


def _open_workbook(data: bytes, source: str) -> Any:
    import openpyxl

    try:
        # openpyxl warns about what it drops (styles, extensions): nothing a registry needs, and the
        # warnings would break the command's one-line output. (The filter is process-wide while it lasts.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # a damaged or hostile workbook fails in many ways inside openpyxl: name it, in one line
        raise ConfigError("", f"unreadable .xlsx workbook ({type(exc).__name__}: {exc})", source) from None


def _sheet_rows(sheet: Any, source: str) -> Iterator[tuple[int, Sequence[Any]]]:
    """(row number, cells) of the sheet's rows, from row 1; openpyxl's failures become one ConfigError."""
    number = 0
    try:
        for number, cells in enumerate(sheet.iter_rows(min_row=1, max_col=_XLSX_MAX_COLUMNS), start=1):
            if number > _EXCEL_LAST_ROW:
                raise ConfigError(f"row {number}", f"beyond Excel's last row ({_EXCEL_LAST_ROW:,})", source)
            yield number, cells
    except ConfigError:
        raise
    except Exception as exc:  # XML errors (expat refuses entity expansion bombs), CRC errors of a lying zip member
        raise ConfigError(
            f"row {number + 1}", f"unreadable .xlsx sheet ({type(exc).__name__}: {exc})", source
        ) from None


def _xlsx_record(where: str, cells: Sequence[Any], columns: dict[str, int]) -> Record:
    for name, index in columns.items():
        if index < len(cells) and getattr(cells[index], "data_type", "") == "e":
            return Record(where, problem=f"{name} is the Excel error {cells[index].value}")
    return Record(where, _values([c.value for c in cells], columns))
