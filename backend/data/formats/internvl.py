"""InternVL's fine-tuning data: JSON lines, one sample a line, {"id", "image" (a path, or a list of
paths for several pictures), "conversations": [{"from": "human"|"gpt", "value": ...}]}, with as many
"<image>" placeholders in the questions as there are pictures; "width"/"height" (or "width_list"/
"height_list") may stand beside them.

Follows InternVL's documentation, "Chat Data Format" (internvl.readthedocs.io, get_started/
chat_data_format: pure text, single-image and multi-image data). That page writes some answers as
{"from": "gpt", "text": ...}; its examples use "value", and both are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import backend.data.formats.llava as llava
from backend.data.data_files import write_jsonl_atomic
from backend.data.formats.base import Format, ReadContext, Sample, share
from backend.data.formats.conversation import Draft, build_records
from backend.data.formats.turns import metadata, picture_ref, write_rows
from backend.data.schema import ReadResult, Record

LABEL = "InternVL jsonl"
_OWN_KEYS = ("width", "height", "width_list", "height_list")


def detect(sample: Sample) -> float:
    if sample.layout == "table":
        return 0.0
    head = sample.head()
    if sample.value is not None and not llava.fits(sample.value):
        return 0.0
    own = share(head, lambda row: isinstance(row, dict) and any(k in row for k in _OWN_KEYS))
    return share(head, llava.fits) * (0.55 if sample.layout == "jsonl" else 0.3) + 0.2 * own


def draft(row: dict, index: int) -> Draft:
    made = llava.draft(row, index, text_alias="text")
    made.known_keys = (*made.known_keys, *_OWN_KEYS)
    return made


def read(sample: Sample, context: ReadContext) -> ReadResult:
    drafts, problems = llava.drafts_and_problems(sample, draft)
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


def row(record: Record, image_root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record.id}
    paths = [picture_ref(p, image_root) for p in record.images]
    if paths:
        out["image"] = paths[0] if len(paths) == 1 else paths
    out["conversations"] = llava.conversations(record)
    out.update(metadata(record))
    return out


def write(records: Sequence[Record], path: Path, image_root: Path) -> Path:
    return write_rows(records, path, image_root, LABEL, row, write_jsonl_atomic)


FORMAT = Format("internvl", LABEL, detect, read, write, ".jsonl")
