"""MiniCPM-V's fine-tuning JSON: a list of {"id", "image", "conversations": [{"role": "user"|"assistant",
"content": ...}]}. "image" is one path, or for several pictures an object {"<image_00>": path,
"<image_01>": path, ...} whose keys stand in the text where each picture goes. A question naming no
picture gets them in front, as MiniCPM-V's own data loader places them.

Follows OpenBMB/MiniCPM-V's finetune/readme.md ("Data preparation") and its multi-image variant.
"""

from __future__ import annotations

from typing import Any

import backend.data.formats.llava as llava
import backend.data.formats.table as table
from backend.data.formats.base import Format, ReadContext, Sample, rows_sureness
from backend.data.formats.conversation import METADATA_KEYS, Draft, build_records
from backend.data.formats.turns import turn_list
from backend.data.rows import RowFaults
from backend.data.schema import HUMAN, IMAGE_PLACEHOLDER, ReadResult
from backend.problems import Problem

LABEL = "MiniCPM-V JSON"
KNOWN = ("image", "conversations", *METADATA_KEYS)


def fits(row: Any) -> bool:
    turns = row.get("conversations") if isinstance(row, dict) else None
    return (isinstance(turns, list) and any(isinstance(t, dict) and "role" in t and "content" in t for t in turns)
            and not any(isinstance(t, dict) and "from" in t for t in turns))


def detect(sample: Sample) -> float:
    return rows_sureness(sample, fits, json=0.6, jsonl=0.45)


def draft(row: dict, index: int) -> Draft:
    faults = RowFaults()
    keys, pictures = _pictures(row.get("image"), faults)
    turns = turn_list(row.get("conversations"), faults, field="conversations", role_key="role", text_key="content")
    if turns:
        turns = [(role, _placed(text, keys)) for role, text in turns]
        _pictures_in_front(turns, len(pictures))
    return Draft(index, row, turns, pictures, faults, known_keys=KNOWN)


def _pictures_in_front(turns: list[tuple[Any, Any]], pictures: int) -> None:
    """Where no question names a picture, they go in front of the first question."""
    questions = [(i, text) for i, (role, text) in enumerate(turns) if role == HUMAN and isinstance(text, str)]
    if questions and not any(IMAGE_PLACEHOLDER in text for _, text in questions):
        first, text = questions[0]
        turns[first] = (HUMAN, table.question_text(text, pictures))


def _pictures(value: Any, faults: RowFaults) -> tuple[list[str], list[Any]]:
    """(placeholder keys in order, picture paths): one path has no key of its own."""
    if value is None:
        return [], []
    if isinstance(value, str):
        return [], [value]
    if isinstance(value, dict):
        return list(value), list(value.values())
    faults.error(Problem("row_image_minicpm_bad", "image is neither a path nor an object of "
                         "{{\"<image_00>\": path, ...}}"))
    return [], []


def _placed(text: Any, keys: list[str]) -> Any:
    """The text with each picture's own placeholder ("<image_00>") as the "<image>" every format shares."""
    if not isinstance(text, str):
        return text
    for key in keys:
        text = text.replace(key, IMAGE_PLACEHOLDER)
    return text


def read(sample: Sample, context: ReadContext) -> ReadResult:
    drafts, problems = llava.drafts_and_problems(sample, draft)
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


FORMAT = Format("minicpm", LABEL, detect, read, None, ".json")
