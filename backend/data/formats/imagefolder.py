"""The Hugging Face `datasets` ImageFolder convention: pictures in a folder with a metadata.jsonl or
metadata.csv beside them, whose `file_name` column names each row's picture relative to the metadata
file (`file_names` for a list of them; `<name>_file_name(s)` for further picture columns), the other
columns being the row's data. A question/answer pair comes from the columns named as in tables
(question / 问题, answer / 答案, ...); a captioning set with only a `text` (or `caption`) column is
asked "Describe this picture." about each picture, which the report says once.

Follows the datasets documentation, "Create an image dataset" (ImageFolder, metadata) and the Hub's
"Image Dataset" guide (metadata.csv / metadata.jsonl, file_name, relative paths).
"""

from __future__ import annotations

from typing import Any

import backend.data.formats.table as table
from backend.data.data_files import json_kind
from backend.data.formats.base import Format, ReadContext, Sample, share
from backend.data.formats.conversation import Draft, build_records
from backend.data.rows import RowFaults, not_an_object
from backend.data.schema import GPT, HUMAN, ReadResult, ReportLine
from backend.problems import Problem

LABEL = "Hugging Face ImageFolder metadata"
DEFAULT_QUESTION = "Describe this picture."
CAPTIONS = ("text", "caption", "描述", "说明")


def _picture_keys(keys) -> list[str]:
    return [k for k in keys if isinstance(k, str) and (k in ("file_name", "file_names")
                                                       or k.endswith(("_file_name", "_file_names")))]


def detect(sample: Sample) -> float:
    if sample.layout == "table":
        return 0.95 if _picture_keys([c.strip().lower() for c in sample.columns]) else 0.0
    return 0.9 * share(sample.head(), lambda row: isinstance(row, dict) and bool(_picture_keys(row)))


def _rows(sample: Sample) -> list[Any]:
    if sample.layout != "table":
        return sample.rows
    header = [c.strip().lstrip("\ufeff").strip() for c in sample.columns]
    return [dict(zip(header, values)) for values in sample.rows]


def default_question_note(file: str, column: str) -> ReportLine:
    """What the report says, once, of a caption set: the question each picture is asked."""
    return ReportLine(file, None, None, Problem(
        "imagefolder_default_question", "{file} has no question column, so each picture is asked \"{question}\" "
        "with {column} as the answer.", file=file, question=DEFAULT_QUESTION, column=column), skipped=False)


def read(sample: Sample, context: ReadContext) -> ReadResult:
    problems = list(sample.problems)
    rows = _rows(sample)
    keys = list(dict.fromkeys(k for row in rows if isinstance(row, dict) for k in row))
    columns = {name: key for key in keys for name in [table._CANONICAL.get(key.strip().lower())] if name}
    question_key = next((k for k in keys if table._CANONICAL.get(k.strip().lower()) == "question"), None)
    answer_key = next((k for k in keys if table._CANONICAL.get(k.strip().lower()) == "answer"), None)
    if answer_key is None:
        answer_key = next((k for k in keys if k.strip().lower() in CAPTIONS), None)
    if question_key is None and answer_key is not None:
        problems.append(default_question_note(sample.name, answer_key))
    picture_keys = _picture_keys(keys)
    drafts = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(ReportLine(sample.name, index, None, not_an_object(json_kind(row))))
            continue
        faults = RowFaults()
        pictures: list[Any] = []
        for key in picture_keys:
            value = row.get(key)
            pictures += value if isinstance(value, list) else [] if value is None else [value]
        question = row.get(question_key) if question_key else DEFAULT_QUESTION
        question = question.strip() if isinstance(question, str) else question
        if answer_key is None:
            faults.error(Problem("imagefolder_no_answer", "the row has no answer column (answer, 答案, text, "
                                 "caption)"))
        turns = [(HUMAN, table.question_text(question, len(pictures)) if isinstance(question, str) else question),
                 (GPT, row.get(answer_key) if answer_key else None)]
        data = {**row, **{name: row[key] for name, key in columns.items() if key in row}}
        drafts.append(Draft(index, data, turns, pictures, faults,
                            known_keys=(*picture_keys, *columns.values(), *(k for k in (answer_key,) if k))))
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


FORMAT = Format("imagefolder", LABEL, detect, read, None, ".jsonl")
