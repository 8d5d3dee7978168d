"""OpenAI-style chat messages with content parts: {"messages": [{"role": "user", "content": [
{"type": "image_url", "image_url": {"url": ...}}, {"type": "text", "text": ...}]}, ...]}. Each
image part becomes an "<image>" placeholder where it stands and its address a picture, in order,
the text parts joined as they are (as ms-swift's MessagesPreprocessor converts them); "image" parts
({"type": "image", "image": path}) are read alike. A url may be a path (relative to the data file),
a data: address with the picture in base64, or a web link, which is refused with its row.

Follows OpenAI's Chat Completions documentation (vision: image_url content parts) and ms-swift's
"Custom Dataset" page ("OpenAI Chat Completions multimodal" format).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import backend.data.formats.llava as llava
import backend.data.formats.sharegpt as sharegpt
from backend.data.data_files import write_jsonl_atomic
from backend.data.formats.base import Format, ReadContext, Sample, share
from backend.data.formats.conversation import METADATA_KEYS, Draft, build_records
from backend.data.formats.turns import ROLE_NAMES, metadata, picture_ref, write_rows
from backend.data.rows import RowFaults
from backend.data.schema import IMAGE_PLACEHOLDER, ReadResult, Record
from backend.problems import Problem

LABEL = "OpenAI-style messages"


def has_parts(row: Any) -> bool:
    turns = row.get("messages") if isinstance(row, dict) else None
    return isinstance(turns, list) and any(isinstance(t, dict) and isinstance(t.get("content"), list) for t in turns)


def _fits(row: Any) -> bool:
    turns = row.get("messages") if isinstance(row, dict) else None
    return isinstance(turns, list) and bool(turns) and all(isinstance(t, dict) and "role" in t for t in turns)


def detect(sample: Sample) -> float:
    head = sample.head()
    if sample.layout == "table" or not any(has_parts(row) for row in head):
        return 0.0
    return 0.7 + 0.25 * share(head, _fits)


def draft(row: dict, index: int) -> Draft:
    faults = RowFaults()
    value = row.get("messages")
    turns: list[tuple[Any, Any]] | None = []
    pictures: list[Any] = []
    if not isinstance(value, list) or not value:
        faults.error(Problem("row_turns_bad", "{field} is missing, empty or not a list", field="messages"))
        turns = None
    else:
        for position, message in enumerate(value, start=1):
            if not isinstance(message, dict):
                faults.error(Problem("row_turn_not_object", "turn {position} is not an object", position=position))
                continue
            role = message.get("role")
            role = ROLE_NAMES.get(role.strip().lower(), role) if isinstance(role, str) else role
            turns.append((role, _content(message.get("content"), position, pictures, faults)))
    return Draft(index, row, turns, pictures, faults, known_keys=("messages", *METADATA_KEYS))


def _content(content: Any, position: int, pictures: list[Any], faults: RowFaults) -> Any:
    """A message's text with an "<image>" where each image part stood; its addresses go to `pictures`."""
    if not isinstance(content, list):
        return content
    text = []
    for number, part in enumerate(content, start=1):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif kind in ("image_url", "image"):
            address = part.get(kind)
            pictures.append(address.get("url") if isinstance(address, dict) else address)
            text.append(IMAGE_PLACEHOLDER)
        else:
            faults.error(Problem("row_part_unknown", "turn {position}, part {part}: {kind!r:.30} is neither text nor "
                                 "a picture", position=position, part=number, kind=kind))
    return "".join(text)


def read(sample: Sample, context: ReadContext) -> ReadResult:
    drafts, problems = llava.drafts_and_problems(sample, draft)
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


def row(record: Record, image_root: Path) -> dict[str, Any]:
    paths = iter(picture_ref(p, image_root) for p in record.images)
    messages = []
    for message in sharegpt.messages(record):
        if message["role"] != "user" or IMAGE_PLACEHOLDER not in message["content"]:
            messages.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for index, piece in enumerate(message["content"].split(IMAGE_PLACEHOLDER)):
            if index:
                parts.append({"type": "image_url", "image_url": {"url": next(paths)}})
            if piece:
                parts.append({"type": "text", "text": piece})
        messages.append({"role": message["role"], "content": parts})
    return {"id": record.id, "messages": messages, **metadata(record)}


def write(records: Sequence[Record], path: Path, image_root: Path) -> Path:
    return write_rows(records, path, image_root, LABEL, row, write_jsonl_atomic)


FORMAT = Format("openai", LABEL, detect, read, write, ".jsonl")
