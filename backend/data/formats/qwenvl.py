"""Qwen-VL's fine-tuning data: a JSON list of {"id", "conversations": [{"from": "user"|"assistant",
"value": ...}]} where each picture sits in the question text as "Picture 1: <img>path</img>",
numbered from 1 across the conversation.

Follows Qwen-VL's README, "Finetuning / Data preparation" (QwenLM/Qwen-VL). Reading turns each
"Picture n: <img>path</img>" into an "<image>" placeholder and the path into the sample's picture
list, so a file in this format never trains on text alone; a web link is refused with its row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import backend.data.formats.llava as llava
from backend.data.data_files import write_json_atomic
from backend.data.formats.base import Format, ReadContext, Sample, share
from backend.data.formats.conversation import Draft, build_records
from backend.data.formats.turns import conversation_only, metadata, picture_ref
from backend.data.rows import RowFaults
from backend.data.schema import GPT, HUMAN, IMAGE_PLACEHOLDER, ReadResult, Record
from backend.problems import Problem

LABEL = "Qwen-VL JSON"
# "Picture 1: <img>path</img>"; the "Picture n:" prefix is optional, as Qwen-VL's tokenizer reads it.
_PICTURE = re.compile(r"(?:Picture\s*\d+\s*[:：]\s*)?<img>(.*?)</img>", re.DOTALL)


def _has_tag(row: Any) -> bool:
    turns = row.get("conversations") if isinstance(row, dict) else None
    return isinstance(turns, list) and any(isinstance(t, dict) and isinstance(t.get("value"), str)
                                           and "<img>" in t["value"] for t in turns)


def detect(sample: Sample) -> float:
    head = sample.head()
    if sample.layout == "table" or not any(_has_tag(row) for row in head):
        return 0.0
    return 0.7 + 0.25 * share(head, llava.fits)


def draft(row: dict, index: int) -> Draft:
    made = llava.draft(row, index)
    if made.turns is None:
        return made
    pictures: list[str] = []
    turns = []
    for position, (role, text) in enumerate(made.turns, start=1):
        if isinstance(text, str) and "<img>" in text:
            if role != HUMAN:
                made.faults.error(Problem("row_answer_picture", "turn {position} is an answer with a picture "
                                          "(<img>) in it", position=position))
            elif IMAGE_PLACEHOLDER in text:
                made.faults.error(Problem("row_mixed_tags", "turn {position} marks pictures both as <img> and as "
                                          "<image>", position=position))
            else:
                text = _PICTURE.sub(lambda m: (pictures.append(m.group(1).strip()), IMAGE_PLACEHOLDER)[1], text)
        turns.append((role, text))
    made.turns, made.pictures = turns, pictures
    _check_no_loose_images(row, made.faults)
    return made


def _check_no_loose_images(row: dict, faults: RowFaults) -> None:
    if row.get("image") is not None or row.get("images") is not None:
        faults.error(Problem("row_qwen_image_key", "the pictures are named both in the text (<img>) and in "
                             "image/images; keep one"))


def read(sample: Sample, context: ReadContext) -> ReadResult:
    drafts, problems = llava.drafts_and_problems(sample, draft)
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


def row(record: Record, image_root: Path) -> dict[str, Any]:
    paths = iter(picture_ref(p, image_root) for p in record.images)
    number = 0

    def picture(_match: re.Match) -> str:
        nonlocal number
        number += 1
        return f"Picture {number}: <img>{next(paths)}</img>"

    turns = [{"from": "user" if t.role == HUMAN else "assistant" if t.role == GPT else t.role,
              "value": re.sub(re.escape(IMAGE_PLACEHOLDER), picture, t.text) if t.role == HUMAN else t.text}
             for t in record.turns]
    return {"id": record.id, "conversations": turns, **metadata(record)}


def write(records: Sequence[Record], path: Path, image_root: Path) -> Path:
    conversation_only(records, LABEL)
    for record in records:
        if record.system:
            raise ValueError(f"{record.id} has a system prompt, which {LABEL} cannot hold")
    root = Path(image_root).resolve()
    return write_json_atomic(Path(path), [row(r, root) for r in records])


FORMAT = Format("qwenvl", LABEL, detect, read, write, ".json")
