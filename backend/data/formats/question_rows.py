"""Question-and-answer rows in JSON: a JSON list, or JSON lines, of flat objects naming a picture (or a
list of them), a question and an answer under any of the names a table's header may use (table.py's
aliases: image / 图片, question / 问题 / prompt / prefix, answer / 答案 / suffix, ...). What a person
writes by hand, and PaliGemma's JSONL ({"image", "prefix", "suffix"}) as Roboflow exports it. Each row
becomes a one-question conversation about its pictures, as a table's row does.
"""

from __future__ import annotations

from typing import Any

import backend.data.formats.llava as llava
import backend.data.formats.table as table
from backend.data.formats.base import Format, ReadContext, Sample, rows_sureness
from backend.data.formats.conversation import build_records
from backend.data.schema import ReadResult

LABEL = "JSON question rows"
_CHAT_KEYS = ("conversations", "messages", "texts")


def _canonical(row: dict) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for key, value in row.items():
        named.setdefault(table.canonical_name(key), value)  # a key named twice keeps its first, as in tables
    return named


def fits(row: Any) -> bool:
    if not isinstance(row, dict) or any(key in row for key in _CHAT_KEYS):
        return False
    named = _canonical(row)
    return isinstance(named.get("question"), str) and "answer" in named


def detect(sample: Sample) -> float:
    return rows_sureness(sample, fits, json=0.4, jsonl=0.4)  # below every chat format: alpaca rows name a question


def read(sample: Sample, context: ReadContext) -> ReadResult:
    drafts, problems = llava.drafts_and_problems(sample, lambda row, index: table.question_draft(_canonical(row),
                                                                                                 index))
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


FORMAT = Format("question_rows", LABEL, detect, read, None, ".json")
