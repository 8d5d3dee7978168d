"""ms-swift's standard format: JSON lines (or a JSON list) of {"messages": [{"role": "system"|"user"|
"assistant", "content": ...}], "images": [...]}, "<image>" marking each picture in the text; ms-swift
prefers absolute picture paths and also takes "image" for "images". Its AutoPreprocessor reads two
more shapes, read here too: ShareGPT as ms-swift writes it ({"system", "conversation": [{"human",
"assistant"}]}) and query/response rows ({"system", "query", "response", "history": [[q, a], ...]}).

Follows ms-swift's documentation, "Custom Dataset" (docs/source_en/Customization/Custom-dataset.md:
the formats AutoPreprocessor handles, and "Multimodal").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import backend.data.formats.llava as llava
import backend.data.formats.sharegpt as sharegpt
from backend.data.data_files import write_jsonl_atomic
from backend.data.formats.base import Format, ReadContext, Sample, is_turn_list, share
from backend.data.formats.conversation import METADATA_KEYS, SYSTEM, Draft, build_records
from backend.data.formats.turns import metadata, picture_list, picture_ref, turn_list, write_rows
from backend.data.rows import RowFaults
from backend.data.schema import GPT, HUMAN, ReadResult, Record
from backend.problems import Problem

LABEL = "ms-swift messages"
_KNOWN = ("messages", "images", "image", "system", "conversation", "query", "response", "history",
          *METADATA_KEYS)


def _messages(row: Any) -> bool:
    return isinstance(row, dict) and is_turn_list(row.get("messages"), "role", "content") and all(
        isinstance(t.get("content"), str) for t in row["messages"])


def _swift_sharegpt(row: Any) -> bool:
    turns = row.get("conversation") if isinstance(row, dict) else None
    return isinstance(turns, list) and bool(turns) and all(isinstance(t, dict) and "human" in t for t in turns)


def _query_response(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("query"), str) and "response" in row


def _swift_marks(row: Any) -> bool:
    """What LLaMA-Factory's ShareGPT does not write: "image" for the list, absolute picture paths."""
    if not isinstance(row, dict):
        return False
    pictures = row.get("images", row.get("image"))
    pictures = [pictures] if isinstance(pictures, str) else pictures if isinstance(pictures, list) else []
    return "image" in row or any(isinstance(p, str) and PurePosixPath(p).is_absolute() for p in pictures)


def detect(sample: Sample) -> float:
    if sample.layout == "table":
        return 0.0
    head = sample.head()
    own = any(_swift_sharegpt(row) or _query_response(row) for row in head)  # shapes only ms-swift reads
    marked = sample.layout == "jsonl" or any(_swift_marks(r) for r in head)
    fits = share(head, lambda row: _messages(row) or _swift_sharegpt(row) or _query_response(row))
    return fits * (0.9 if own else 0.7 if marked else 0.45)


def draft(row: dict, index: int) -> Draft:
    faults = RowFaults()
    if _swift_sharegpt(row):
        turns = _pairs([(t.get("human"), t.get("assistant")) for t in row["conversation"]])
    elif _query_response(row):
        history = row.get("history") or []
        if not isinstance(history, list) or not all(isinstance(p, list) and len(p) == 2 for p in history):
            faults.error(Problem("row_history_bad", "{field} is not a list of [question, answer] pairs",
                                 field="history"))
            history = []
        turns = _pairs([*map(tuple, history), (row.get("query"), row.get("response"))])
    else:
        turns = turn_list(row.get("messages"), faults, field="messages", role_key="role", text_key="content")
    system = row.get("system")
    if turns is not None and isinstance(system, str) and system.strip() and not (turns and turns[0][0] == SYSTEM):
        turns = [(SYSTEM, system), *turns]
    pictures = picture_list(row, faults, ("images", "image"))
    sharegpt._no_other_media(row, faults)
    return Draft(index, row, turns, pictures, faults, known_keys=_KNOWN)


def _pairs(pairs: list[tuple[Any, Any]]) -> list[tuple[str, Any]]:
    return [turn for question, answer in pairs for turn in ((HUMAN, question), (GPT, answer))]


def read(sample: Sample, context: ReadContext) -> ReadResult:
    drafts, problems = llava.drafts_and_problems(sample, draft)
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=LABEL, problems=problems)


def row(record: Record, image_root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record.id, "messages": sharegpt.messages(record)}
    if record.images:
        out["images"] = [picture_ref(p, image_root) for p in record.images]
    out.update(metadata(record))
    return out


def write(records: Sequence[Record], path: Path, image_root: Path) -> Path:
    return write_rows(records, path, image_root, LABEL, row, write_jsonl_atomic)


FORMAT = Format("swift", LABEL, detect, read, write, ".jsonl")
