"""Reading a dataset's own files (JSON lists, CSV text) with every failure turned into a Problem."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from backend.data.safe_paths import UnsafePath, read_regular_file, resolve_inside
from backend.data.schema import Problem

log = logging.getLogger(__name__)


def read_text_file(root: Path, name: str, problems: list[Problem]) -> str | None:
    """The UTF-8 text of `name` inside `root` (a BOM is fine), or None with a report row."""
    try:
        path = resolve_inside(root, name)
    except UnsafePath as err:
        problems.append(Problem(name, None, None, f"{name} was not read: {err}."))
        return None
    try:
        data = read_regular_file(path)
    except OSError as err:
        problems.append(Problem(name, None, None, f"{name} cannot be read: {err.strerror or err}."))
        return None
    try:
        # utf-8-sig: Excel and Notepad put a byte-order mark in front of UTF-8 files.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        problems.append(Problem(
            name, None, None,
            f"{name} is not UTF-8 text (byte 0x{data[err.start]:02x} at position {err.start}); "
            "save it as UTF-8 and read it again."))
        return None


def read_json_list(root: Path, name: str, problems: list[Problem]) -> list | None:
    """The JSON list in `name` inside `root`, or None with a report row saying what is wrong."""
    text = read_text_file(root, name, problems)
    if text is None:
        return None
    if not text.strip():
        problems.append(Problem(name, None, None, f"{name} is empty; it should hold a JSON list."))
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        problems.append(Problem(name, None, None,
                                f"{name} is not valid JSON: {err.msg} at line {err.lineno}, "
                                f"column {err.colno}."))
        return None
    except RecursionError:
        problems.append(Problem(name, None, None, f"{name} is not usable JSON: it is nested too deeply."))
        return None
    if not isinstance(data, list):
        problems.append(Problem(name, None, None,
                                f"{name} holds a JSON {json_kind(data)}, not a list of records."))
        return None
    log.debug("read %d rows from %s", len(data), name)
    return data


def json_kind(value: object) -> str:
    """JSON's name for a value's type, for messages: "object", "string", "number"..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false value"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__
