"""ShareGPT as LLaMA-Factory reads it: a JSON list of rows whose "conversations" hold
{"from": "human"|"gpt", "value"} turns, or whose "messages" hold {"role": "user"|"assistant"|"system",
"content"} turns, with an "images" list and one "<image>" tag per picture in the questions; an
optional "system" column holds the system prompt.

Follows LLaMA-Factory's data/README.md ("Sharegpt Format", "Multimodal Image Dataset", "OpenAI
Format") and its data/mllm_demo.json. A dataset_info.json entry can rename the columns and the role
tags (`columns`, `tags`); `Mapping` carries them, the defaults being the README's. The same module
reads LLaMA-Factory's alpaca rows (instruction, input, output, system, history, images) when a
dataset_info.json entry names that formatting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backend.data.formats.llava as llava
from backend.data.data_files import write_json_atomic
from backend.data.formats.base import Format, ReadContext, Sample, is_turn_list, share
from backend.data.formats.conversation import METADATA_KEYS, SYSTEM, Draft, build_records
from backend.data.formats.turns import conversation_only, metadata, picture_ref, turn_list
from backend.data.rows import RowFaults
from backend.data.schema import GPT, HUMAN, ReadResult, Record
from backend.problems import Problem

LABEL = "ShareGPT (LLaMA-Factory)"


@dataclass(frozen=True)
class Mapping:
    """LLaMA-Factory's `columns` and `tags` of one data set (dataset_info.json), with its defaults."""

    formatting: str = "sharegpt"
    messages: str = "conversations"
    images: str = "images"
    system: str = "system"
    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "gpt"
    system_tag: str = "system"
    observation_tag: str = "observation"
    function_tag: str = "function_call"
    # alpaca's columns
    prompt: str = "instruction"
    query: str = "input"
    response: str = "output"
    history: str = ""

    @property
    def roles(self) -> dict[str, str]:
        return {self.user_tag.lower(): HUMAN, self.assistant_tag.lower(): GPT, self.system_tag.lower(): SYSTEM}

    @property
    def own_keys(self) -> tuple[str, ...]:
        return (self.messages, self.images, self.system, self.prompt, self.query, self.response, self.history,
                "tools", "videos", "audios", *METADATA_KEYS)


MESSAGES = Mapping(messages="messages", role_tag="role", content_tag="content", user_tag="user",
                   assistant_tag="assistant")


def mapping_of(row: Any) -> Mapping | None:
    """The README's two ShareGPT shapes, told apart by the row's keys."""
    if not isinstance(row, dict):
        return None
    if is_turn_list(row.get("messages"), "role", "content"):
        return MESSAGES
    if is_turn_list(row.get("conversations"), "from", "value") and "images" in row:
        return Mapping()
    return None


def _plain_messages(row: Any) -> bool:
    mapping = mapping_of(row)
    return mapping is not None and all(isinstance(t.get(mapping.content_tag), str) or t.get(mapping.content_tag)
                                       is None for t in row[mapping.messages])


def detect(sample: Sample) -> float:
    if sample.layout == "table":
        return 0.0
    head = sample.head()
    return share(head, _plain_messages) * (0.65 if sample.layout == "json" else 0.5)


def draft(row: dict, index: int, mapping: Mapping | None = None) -> Draft:
    mapping = mapping or mapping_of(row) or Mapping()
    faults = RowFaults()
    if mapping.formatting == "alpaca":
        turns = _alpaca_turns(row, mapping, faults)
    else:
        turns = turn_list(row.get(mapping.messages), faults, field=mapping.messages, role_key=mapping.role_tag,
                          text_key=mapping.content_tag, names=mapping.roles)
        turns = _with_system_column(turns, row, mapping, faults)
    pictures = _pictures(row.get(mapping.images), faults)
    _no_other_media(row, faults)
    return Draft(index, row, turns, pictures, faults, known_keys=mapping.own_keys)


def _with_system_column(turns, row: dict, mapping: Mapping, faults: RowFaults):
    system = row.get(mapping.system)
    if turns is None or system in (None, ""):
        return turns
    if turns and turns[0][0] == SYSTEM:  # the system tag overrides the column (LLaMA-Factory's README)
        return turns
    if not isinstance(system, str):
        faults.error(Problem("row_field_not_text", "{field} is not text", field=mapping.system))
        return turns
    return [(SYSTEM, system), *turns]


def _alpaca_turns(row: dict, mapping: Mapping, faults: RowFaults):
    """instruction + "\\n" + input as the question, output as the answer, after the history's pairs."""
    turns: list[tuple[str, Any]] = []
    system = row.get(mapping.system)
    if isinstance(system, str) and system.strip():
        turns.append((SYSTEM, system))
    history = row.get(mapping.history) if mapping.history else None
    if history is not None:
        if not isinstance(history, list) or not all(isinstance(p, list) and len(p) == 2 for p in history):
            faults.error(Problem("row_history_bad", "{field} is not a list of [question, answer] pairs",
                                 field=mapping.history))
            return None
        for question, answer in history:
            turns += [(HUMAN, question), (GPT, answer)]
    prompt, query = row.get(mapping.prompt), row.get(mapping.query)
    parts = [p for p in (prompt, query) if isinstance(p, str) and p.strip()]
    turns += [(HUMAN, "\n".join(parts) if parts else prompt), (GPT, row.get(mapping.response))]
    return turns


def _pictures(value: Any, faults: RowFaults) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    faults.error(Problem("row_images_not_list", "images is not a list of pictures"))
    return []


def _no_other_media(row: dict, faults: RowFaults) -> None:
    for key in ("videos", "audios", "video", "audio"):
        if row.get(key):
            faults.error(Problem("row_other_media", "the row holds {field}; Foodie Studio trains on pictures and "
                                 "text only", field=key))


def read_with(sample: Sample, context: ReadContext, mapping: Mapping | None, label: str) -> ReadResult:
    drafts, problems = llava.drafts_and_problems(sample, lambda row, index: draft(row, index, mapping))
    return build_records(drafts, context, sample.name, stem=sample.path.stem, format_label=label, problems=problems)


def read(sample: Sample, context: ReadContext) -> ReadResult:
    return read_with(sample, context, None, LABEL)


def messages(record: Record) -> list[dict[str, str]]:
    system = [{"role": "system", "content": record.system}] if record.system else []
    return system + [{"role": "user" if t.role == HUMAN else "assistant", "content": t.text} for t in record.turns]


def row(record: Record, image_root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record.id, "messages": messages(record)}
    if record.images:
        out["images"] = [picture_ref(p, image_root) for p in record.images]
    out.update(metadata(record))
    return out


# The dataset_info.json entry that tells LLaMA-Factory how to read what `write` writes.
def dataset_info(file_name: str) -> dict[str, Any]:
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}}


def write(records: Sequence[Record], path: Path, image_root: Path) -> Path:
    """The rows as a JSON list, and beside it a dataset_info.json naming them (LLaMA-Factory reads a
    data set only through one), keeping any other data sets that file already names."""
    conversation_only(records, LABEL)
    root = Path(image_root).resolve()
    path = write_json_atomic(Path(path), [row(r, root) for r in records])
    info_path = path.parent / "dataset_info.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        info = info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        info = {}
    info[path.stem] = dataset_info(path.name)
    write_json_atomic(info_path, info)
    return path


FORMAT = Format("sharegpt", LABEL, detect, read, write, ".json")
