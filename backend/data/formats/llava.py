"""LLaVA / XTuner conversation JSON: a list of {"id", "image" (or "images"), "conversations":
[{"from": "human"|"gpt", "value": ...}]}, "<image>" marking each picture in a question.

Follows LLaVA's own training data (llava_v1_5_mix665k.json) and XTuner's llava dataset docs; "id"
is optional in both. Foodie Studio also writes a few fields beside it (dish_id, food_name, cuisine,
region, question_type, source) that trainers ignore and this reader reads back, and a system prompt
as a first "system" turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.data.data_files import json_kind, write_json_atomic
from backend.data.formats.base import Format, ReadContext, Sample, share
from backend.data.formats.conversation import METADATA_KEYS, SYSTEM, Draft, build_records
from backend.data.formats.turns import metadata, picture_list, picture_ref, turn_list, write_rows
from backend.data.rows import RowFaults, not_an_object
from backend.data.schema import ReadResult, Record, ReportLine

LABEL = "LLaVA/XTuner JSON"
KNOWN = ("image", "images", "conversations", *METADATA_KEYS)


def fits(row: Any) -> bool:
    turns = row.get("conversations") if isinstance(row, dict) else None
    return isinstance(turns, list) and any(isinstance(t, dict) and "from" in t for t in turns)


def detect(sample: Sample) -> float:
    if sample.layout == "table" or (sample.value is not None and not fits(sample.value)):
        return 0.0
    head = sample.head()
    plain = share(head, lambda row: fits(row) and "images" not in row)  # ShareGPT rows say "images"
    return (0.6 if sample.layout == "json" else 0.45) * share(head, fits) + 0.05 * plain


def draft(row: dict, index: int, *, text_alias: str = "") -> Draft:
    faults = RowFaults()
    pictures = picture_list(row, faults)
    turns = turn_list(row.get("conversations"), faults, field="conversations", role_key="from",
                      text_key="value", text_alias=text_alias)
    return Draft(index, row, turns, pictures, faults, known_keys=KNOWN)


def drafts_and_problems(sample: Sample, make=draft) -> tuple[list[Draft], list[ReportLine]]:
    """A Draft for each object row; a report row for each row that is no object."""
    drafts, problems = [], list(sample.problems)
    for index, row in enumerate(sample.rows):
        if isinstance(row, dict):
            drafts.append(make(row, index))
        else:
            problems.append(ReportLine(sample.name, index, None, not_an_object(json_kind(row))))
    return drafts, problems


def read(sample: Sample, context: ReadContext) -> ReadResult:
    drafts, problems = drafts_and_problems(sample)
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


def row(record: Record, image_root: Path) -> dict[str, Any]:
    """One conversation record as a LLaVA row: "image" for one picture, "images" for several."""
    out: dict[str, Any] = {"id": record.id}
    paths = [picture_ref(p, image_root) for p in record.images]
    if len(paths) == 1:
        out["image"] = paths[0]
    elif paths:
        out["images"] = paths
    out["conversations"] = conversations(record)
    out.update(metadata(record))
    return out


def conversations(record: Record) -> list[dict[str, str]]:
    """The record's turns as LLaVA's (and InternVL's) {"from", "value"} list, a system prompt first."""
    system = [{"from": SYSTEM, "value": record.system}] if record.system else []
    return system + [{"from": t.role, "value": t.text} for t in record.turns]


def write(records: Sequence[Record], path: Path, image_root: Path) -> Path:
    return write_rows(records, path, image_root, LABEL, row, write_json_atomic)


FORMAT = Format("llava", LABEL, detect, read, write, ".json")
