"""Reading a dataset's own files (JSON lists, CSV text), each failure turned into a line of the
report (a ReportLine)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from backend.data.safe_paths import UnsafePath, read_regular_file, resolve_inside
from backend.data.schema import ReportLine
from backend.problems import Problem

log = logging.getLogger(__name__)


def read_text_file(root: Path, name: str, problems: list[ReportLine]) -> str | None:
    """The UTF-8 text of `name` inside `root` (a BOM is fine), or None with a report row."""
    try:
        path = resolve_inside(root, name)
    except UnsafePath as err:
        problems.append(ReportLine(name, None, None, Problem("data_file_unsafe", "{file} was not read: {reason}.",
                                                         file=name, reason=err.problem)))
        return None
    try:
        data = read_regular_file(path)
    except OSError as err:
        problems.append(ReportLine(name, None, None, Problem("data_file_unreadable", "{file} cannot be read: {detail}.",
                                                         file=name, detail=err.strerror or str(err))))
        return None
    try:
        # utf-8-sig: Excel and Notepad put a byte-order mark in front of UTF-8 files.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        problems.append(ReportLine(name, None, None, Problem(
            "data_file_not_utf8", "{file} is not UTF-8 text (byte 0x{byte:02x} at position {position}); save it "
            "as UTF-8 and read it again.", file=name, byte=data[err.start], position=err.start)))
        return None


def read_json_list(root: Path, name: str, problems: list[ReportLine]) -> list | None:
    """The JSON list in `name` inside `root`, or None with a report row saying what is wrong."""
    text = read_text_file(root, name, problems)
    if text is None:
        return None
    if not text.strip():
        problems.append(ReportLine(name, None, None, Problem(
            "json_file_empty", "{file} is empty; it should hold a JSON list.", file=name)))
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        problems.append(ReportLine(name, None, None, Problem(
            "json_invalid", "{file} is not valid JSON: {detail} at line {line}, column {column}.", file=name,
            detail=err.msg, line=err.lineno, column=err.colno)))
        return None
    except RecursionError:
        problems.append(ReportLine(name, None, None, Problem(
            "json_too_deep", "{file} is not usable JSON: it is nested too deeply.", file=name)))
        return None
    if not isinstance(data, list):
        problems.append(ReportLine(name, None, None, Problem(
            "json_not_list", "{file} holds a JSON {json_type}, not a list of records.", file=name,
            json_type=json_kind(data))))
        return None
    log.debug("read %d rows from %s", len(data), name)
    return data


def json_kind(value: object) -> str:
    """JSON's name for a value's type, for messages: "object", "string", "number"... (a Problem, so a
    page in another language names it in its own words)."""
    if value is None:
        return Problem("json_null", "null")
    if isinstance(value, bool):
        return Problem("json_bool", "true/false value")
    if isinstance(value, (int, float)):
        return Problem("json_number", "number")
    if isinstance(value, str):
        return Problem("json_string", "string")
    if isinstance(value, dict):
        return Problem("json_object", "object")
    if isinstance(value, list):
        return Problem("json_list", "list")
    return type(value).__name__


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON (UTF-8, Chinese kept readable) through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def write_jsonl_atomic(path: Path, rows: list) -> Path:
    """Write JSON lines (one row a line, UTF-8) through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False))
                handle.write("\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
