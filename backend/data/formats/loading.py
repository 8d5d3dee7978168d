"""A data file, parsed once into a Sample: a JSON list, JSON lines (".json and .jsonl alike: the
content decides), one JSON object, or a table (CSV, TSV, Excel's .xlsx).

Tables are decoded as people save them: UTF-8 with or without a byte-order mark, UTF-16 (Excel's
"Unicode text"), or GB18030, the superset of the GBK that Excel on Chinese Windows writes. Whatever
cannot be read becomes a line of the report, never an exception.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

from backend.data.data_files import json_kind
from backend.data.formats.base import Sample
from backend.data.safe_paths import read_regular_file
from backend.data.schema import ReportLine
from backend.problems import Problem

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".xlsx")
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
DATA_SUFFIXES = JSON_SUFFIXES + TABLE_SUFFIXES
# An .xlsx is a zip: its sheets unpacked may not pass this (a zip bomb dressed as a spreadsheet).
MAX_XLSX_UNPACKED = 512 * 1024 * 1024


def load_sample(path: Path, name: str) -> Sample:
    """The file at `path` (already confined by the caller) as a Sample; a file that cannot be read at
    all is a Sample without rows whose problems say why."""
    try:
        data = read_regular_file(path)
    except OSError as err:
        return _unreadable(path, name, Problem("data_file_unreadable", "{file} cannot be read: {detail}.",
                                               file=name, detail=err.strerror or str(err)))
    if path.suffix.lower() == ".xlsx" or data[:4] == b"PK\x03\x04":
        return _xlsx(path, name, data)
    if path.suffix.lower() in TABLE_SUFFIXES:
        return _table(path, name, data)
    text = _json_text(data, name)
    if isinstance(text, Problem):
        return _unreadable(path, name, text)
    if not text.strip():
        return _unreadable(path, name, Problem("json_file_empty", "{file} is empty; it should hold a JSON list.",
                                               file=name))
    return _json(path, name, text)


def _unreadable(path: Path, name: str, reason: Problem) -> Sample:
    return Sample(path, name, "json", [], [], problems=(ReportLine(name, None, None, reason),))


def _json_text(data: bytes, name: str) -> str | Problem:
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return Problem("data_file_not_utf8", "{file} is not UTF-8 text (byte 0x{byte:02x} at position {position}); "
                       "save it as UTF-8 and read it again.", file=name, byte=data[err.start], position=err.start)


def _json(path: Path, name: str, text: str) -> Sample:
    """One JSON value (a list of rows, or an object), else JSON lines."""
    try:
        value = json.loads(text)
    except RecursionError:
        if "\n" in text.strip():  # JSON lines, one of which is nested too deeply: that line is said alone
            return _json_lines(path, name, text)
        return _unreadable(path, name, Problem("json_too_deep", "{file} is not usable JSON: it is nested too "
                                               "deeply.", file=name))
    except json.JSONDecodeError as err:
        if err.msg != "Extra data" and text.lstrip()[:1] == "[":
            return _unreadable(path, name, Problem(
                "json_invalid", "{file} is not valid JSON: {detail} at line {line}, column {column}.", file=name,
                detail=err.msg, line=err.lineno, column=err.colno))
        return _json_lines(path, name, text)
    if isinstance(value, list):
        return Sample(path, name, "json", value, list(range(1, len(value) + 1)))
    if isinstance(value, dict):
        return Sample(path, name, "json", [value], [1], value=value)
    return _unreadable(path, name, Problem("json_not_list", "{file} holds a JSON {json_type}, not a list of records.",
                                           file=name, json_type=json_kind(value)))


def _json_lines(path: Path, name: str, text: str) -> Sample:
    """JSON lines: one row per line; a line that is no JSON is a report row, the others are read."""
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    try:  # all lines at once, as one JSON list: one call into the C parser instead of one per line
        rows = json.loads("[" + ",".join(line for _, line in numbered) + "]")
        if len(rows) == len(numbered):
            return Sample(path, name, "jsonl", rows, [number for number, _ in numbered])
    except (json.JSONDecodeError, RecursionError):
        pass  # some line is broken (or one holds two values): line by line, to say which
    rows, lines, problems = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as err:
            detail = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
            problems.append(ReportLine(name, len(rows), None, Problem(
                "jsonl_line_invalid", "Line {line} is not valid JSON ({detail}). The line was skipped.",
                line=number, detail=detail)))
            continue
        lines.append(number)
    if not rows and problems:  # nothing parsed: the file is no JSON at all, said once
        first = problems[0].message
        return _unreadable(path, name, Problem("json_unreadable", "{file} is neither JSON nor JSON lines: {first}",
                                               file=name, first=first))
    return Sample(path, name, "jsonl", rows, lines, problems=tuple(problems))


# --- tables ---------------------------------------------------------------------------------------

def decode_table_text(data: bytes) -> tuple[str, str] | None:
    """(text, encoding) of a table's bytes, or None when it is none of the encodings people use."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError:
            return None
    for encoding, label in (("utf-8-sig", "UTF-8"), ("gb18030", "GBK")):
        try:
            return data.decode(encoding), label
        except UnicodeDecodeError:
            continue
    return None


def _table(path: Path, name: str, data: bytes) -> Sample:
    decoded = decode_table_text(data)
    if decoded is None:
        return _unreadable(path, name, Problem("table_encoding", "{file} is neither UTF-8 nor GBK text; save it "
                                               "as UTF-8 and read it again.", file=name))
    text, _encoding = decoded
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as err:
        return _unreadable(path, name, Problem("csv_unreadable", "{file} is not a readable CSV file ({detail}).",
                                               file=name, detail=str(err)))
    if header is None:
        return _unreadable(path, name, Problem("csv_empty", "{file} is empty; it needs the columns image, "
                                               "question, answer.", file=name))
    rows, lines, problems = [], [], []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank lines at the end of a hand-edited file
            rows.append(values)
            lines.append(reader.line_num)
    except csv.Error as err:
        problems.append(ReportLine(name, len(rows), None, Problem(
            "csv_broken", "{file} stops being readable CSV at line {line} ({detail}); the rows before it were "
            "read.", file=name, line=reader.line_num, detail=str(err))))
    return Sample(path, name, "table", rows, lines, columns=tuple(header), problems=tuple(problems))


def _sniff_delimiter(text: str) -> str:
    """A .csv saved by a spreadsheet in some locales is separated by ";" or tabs: the header says."""
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] and counts[","] == 0 else ","


def _xlsx(path: Path, name: str, data: bytes) -> Sample:
    """The first sheet of an Excel workbook, through openpyxl (read-only, values not formulas)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        return _unreadable(path, name, Problem("xlsx_unreadable", "{file} is not a readable Excel workbook "
                                               "({detail}).", file=name, detail="not a zip archive"))
    if unpacked > MAX_XLSX_UNPACKED:
        return _unreadable(path, name, Problem("xlsx_too_large", "{file} unpacks to {size:.0f} MB, more than the "
                                               "{limit:.0f} MB a workbook may hold.", file=name, size=unpacked / 1e6,
                                               limit=MAX_XLSX_UNPACKED / 1e6))
    try:
        import openpyxl

        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        sheet = book.worksheets[0]
        table = [["" if cell is None else str(cell) for cell in row] for row in sheet.iter_rows(values_only=True)]
        book.close()
    except Exception as err:  # openpyxl raises many types for a damaged workbook; all mean "unreadable"
        return _unreadable(path, name, Problem("xlsx_unreadable", "{file} is not a readable Excel workbook "
                                               "({detail}).", file=name, detail=f"{type(err).__name__}: {err}"[:200]))
    if not table:
        return _unreadable(path, name, Problem("csv_empty", "{file} is empty; it needs the columns image, "
                                               "question, answer.", file=name))
    header, body = table[0], table[1:]
    rows = [(values, number) for number, values in enumerate(body, start=2) if any(v.strip() for v in values)]
    return Sample(path, name, "table", [v for v, _ in rows], [n for _, n in rows], columns=tuple(header))
