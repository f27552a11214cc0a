"""The rows of a data file, whatever its format: TSV, CSV or JSON Lines, told by the file's suffix.

read_table gives each data row as a dict from column name to text, with the line it starts
on, so that kd_ref.data.glue reads every format with one reader and every error names the
file and line. Shared by all formats: UTF-8 (checked line by line), an optional BOM, '\\n' or
'\\r\\n' line ends, a final newline optional.

- TSV: fields split on '\\t' only, quotes are data (GLUE's MRPC and QNLI sentences contain '"');
  a header line names the columns, unless the caller gives the names (GLUE's CoLA has none).
- CSV: RFC 4180 as Python's csv module reads it (quoted fields may hold commas, quotes and
  newlines); a header line names the columns.
- JSON Lines: one JSON object per line, its keys the columns; blank lines are skipped. A
  string is taken as it is, a number as its JSON text (1 -> '1', 0.5 -> '0.5').
"""
import csv
import json
from dataclasses import dataclass
from pathlib import Path

from kd_ref.plumbing.errors import KdError

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass
class Table:
    names: list[str] | None        # the header's column names; None for JSON Lines (each row has its keys)
    rows: list[tuple[int, dict]]   # (line the row starts on, column name -> text)


def file_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise KdError(f"{path}: unknown file type {Path(path).suffix!r}; data files end in .tsv, .csv or .jsonl")
    return fmt


def read_table(path: Path, headerless: tuple[str, ...] = ()) -> Table:
    """All data rows of path. headerless: the column names of a TSV file without a header line."""
    fmt = file_format(path)
    lines = _lines(path)
    if fmt == "jsonl":
        return Table(None, _json_rows(path, lines))
    rows = _csv_rows(path, lines) if fmt == "csv" else [(n, line.split("\t")) for n, line in enumerate(lines, 1)]
    names = list(headerless) if headerless else rows.pop(0)[1]
    sep = "comma" if fmt == "csv" else "tab"
    table = []
    for line_no, fields in rows:
        if len(fields) != len(names):
            raise KdError(f"{path}:{line_no}: expected {len(names)} {sep}-separated columns, got {len(fields)}")
        table.append((line_no, dict(zip(names, fields))))
    return Table(names, table)


def _lines(path: Path) -> list[str]:
    """The file's lines, decoded: BOM and '\\r\\n' removed, a final newline optional."""
    try:
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    except OSError as e:
        raise KdError(f"{path}: cannot read ({e.strerror})") from None
    if not data.strip():
        raise KdError(f"{path}: file is empty")
    # split bytes on '\n' only: str.splitlines would also break on \x85, \u2028, ... inside text
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    decoded = []
    for line_no, line in enumerate(lines, 1):
        if b"\0" in line:
            raise KdError(f"{path}:{line_no}: NUL byte, this is a binary file, not a text file of rows")
        try:
            decoded.append(line.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError as e:
            raise KdError(f"{path}:{line_no}: not UTF-8 (byte {e.start + 1} of the line)") from None
    return decoded


def _csv_rows(path: Path, lines: list[str]) -> list[tuple[int, list[str]]]:
    """(line the record starts on, fields) of each CSV record; a quoted field may span lines."""
    reader = csv.reader((line + "\n" for line in lines), strict=True)
    rows, start = [], 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return rows
        except csv.Error as e:
            raise KdError(f"{path}:{reader.line_num}: not CSV ({e})") from None
        rows.append((start, fields))
        start = reader.line_num + 1


def _json_rows(path: Path, lines: list[str]) -> list[tuple[int, dict]]:
    rows = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise KdError(f"{path}:{line_no}: not a JSON object ({e})") from None
        if not isinstance(obj, dict):
            raise KdError(f"{path}:{line_no}: not a JSON object (a JSON {type(obj).__name__})")
        rows.append((line_no, {key: _text(value) for key, value in obj.items()}))
    return rows


def _text(value) -> str | None:
    """A JSON value as the text a TSV or CSV file would hold; None for the rest (null, true, lists,
    objects): an error if the task reads that column."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    return None
