"""Spreadsheets as people write them: CSV, TSV or Excel's .xlsx, one question a row, with a header
naming at least the picture, the question and the answer, in English or Chinese (image / 图片 /
image_path / img, question / 问题, answer / 答案; the aliases below). Optional columns: id, dish_id
(or dish), food_name, cuisine, region, question_type; any others are kept as facts to split by.
A picture cell may name several pictures, separated by ";" or "|".

Each row becomes a one-question conversation about its pictures. Encodings are detected when the
file is parsed (formats/loading.py: UTF-8 with or without a BOM, UTF-16, GBK/GB18030).
"""

from __future__ import annotations

import re
from typing import Any

from backend.data.formats.base import Format, ReadContext, Sample
from backend.data.formats.conversation import Draft, build_records
from backend.data.rows import RowFaults
from backend.data.schema import GPT, HUMAN, IMAGE_PLACEHOLDER, ReadResult, ReportLine
from backend.problems import Problem

LABEL = "CSV/TSV/Excel table"
REQUIRED = ("image", "question", "answer")
# Header aliases -> the column they stand for (matched stripped and case-blind).
ALIASES = {
    "image": ("image", "images", "img", "image_path", "imagepath", "image_file", "image path", "图片", "图像",
              "图片路径", "照片"),
    # "multiple_choice_answer": VQAv2's; "prefix" and "suffix": PaliGemma's JSONL as Roboflow exports it
    "question": ("question", "问题", "提问", "prompt", "query", "instruction", "prefix"),
    "answer": ("answer", "答案", "回答", "response", "output", "multiple_choice_answer", "suffix"),
    "id": ("id", "编号", "序号"),
    "dish_id": ("dish_id", "dish", "菜品", "菜品编号"),
    "food_name": ("food_name", "菜名", "dish_name"),
    "cuisine": ("cuisine", "菜系"),
    "region": ("region", "地区"),
    "question_type": ("question_type", "题型"),
}
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_SEPARATORS = re.compile(r"\s*[;|]\s*")


def canonical_name(key: str) -> str:
    """The column a header cell or a row's key stands for ("图片" -> "image"); an unknown one lower-cased."""
    raw = key.strip().lstrip("\ufeff").strip().lower()
    return _CANONICAL.get(raw, raw)


def canonical_columns(header: tuple[str, ...]) -> list[str]:
    """Each header cell as the column it stands for ("图片" -> "image"); unknown ones as written,
    lower-cased; a column named twice keeps its first."""
    seen: set[str] = set()
    names = []
    for cell in header:
        name = canonical_name(cell)
        names.append("" if name in seen else name)
        seen.add(name)
    return names


def detect(sample: Sample) -> float:
    if sample.layout != "table":
        return 0.0
    names = set(canonical_columns(sample.columns))
    return 0.9 if set(REQUIRED) <= names else 0.5  # a table is read as one, its missing columns said


def question_text(question: str, pictures: int) -> str:
    """A question with one "<image>" per picture in front, unless it places them itself."""
    if IMAGE_PLACEHOLDER in question or not pictures:
        return question
    return f"{IMAGE_PLACEHOLDER * pictures}\n{question}" if question else ""


def picture_cell(value: Any) -> list[str]:
    text = value.strip() if isinstance(value, str) else ""
    # An empty cell stays one (empty) path, so the report says the picture is missing.
    return [p for p in _SEPARATORS.split(text) if p] or [text]


def read(sample: Sample, context: ReadContext) -> ReadResult:
    names = canonical_columns(sample.columns)
    problems = list(sample.problems)
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        found = ", ".join(c.strip() for c in sample.columns) or Problem("csv_no_columns", "none")
        problems.append(ReportLine(sample.name, None, None, Problem(
            "csv_column_missing", "{file} lacks the column {missing} (found: {found}).", file=sample.name,
            missing=missing[0], found=found) if len(missing) == 1 else Problem(
            "csv_columns_missing", "{file} lacks the columns {missing} (found: {found}).", file=sample.name,
            missing=", ".join(missing), found=found)))
        return build_records([], context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)
    drafts = [question_draft({name: value for name, value in zip(names, values) if name}, index)
              for index, values in enumerate(sample.rows)]
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


def question_draft(row: dict[str, Any], index: int) -> Draft:
    """One question about its pictures, from a row whose keys are the canonical column names."""
    value = row.get("image")
    pictures = value if isinstance(value, list) else picture_cell(value)
    question = row.get("question")
    question = question.strip() if isinstance(question, str) else ""
    turns = [(HUMAN, question_text(question, len(pictures))), (GPT, row.get("answer") or "")]
    return Draft(index, row, turns, pictures, RowFaults(), known_keys=tuple(ALIASES))


FORMAT = Format("table", LABEL, detect, read, None, ".csv")
