"""LLaMA-Factory's dataset_info.json: one JSON object naming data sets, each {"file_name", "formatting"
("sharegpt" or "alpaca"), "columns", "tags", ...}. The data sets with a file beside it are offered to
pick from; the one picked is read with its own column names and role tags (formats/sharegpt.py),
its pictures relative to the folder of dataset_info.json (LLaMA-Factory's media_dir default).

Follows LLaMA-Factory's data/README.md (the dataset description, "Sharegpt Format", "Alpaca Format",
"Multimodal Image Dataset") and its data/dataset_info.json entry for mllm_demo.
"""

from __future__ import annotations

from typing import Any

import backend.data.formats.sharegpt as sharegpt
from backend.data.formats.base import Format, ReadContext, Sample, SeveralDataSets
from backend.data.formats.loading import load_sample
from backend.data.safe_paths import UnsafePath, relative_name, resolve_inside
from backend.data.schema import DataError, ReadResult

LABEL = "LLaMA-Factory dataset_info.json"
_SOURCES = ("file_name", "hf_hub_url", "ms_hub_url", "script_url", "cloud_file_name", "om_hub_url")


def _entries(value: Any) -> dict[str, dict]:
    if not isinstance(value, dict):
        return {}
    return {name: entry for name, entry in value.items()
            if isinstance(entry, dict) and any(key in entry for key in _SOURCES)}


def detect(sample: Sample) -> float:
    entries = _entries(sample.value)
    return 0.95 if entries and len(entries) >= len(sample.value) / 2 else 0.0


def choices(sample: Sample) -> list[tuple[str, str]]:
    """(label, name) of each data set that can be read here: a local file, not a preference set."""
    return [(f"{name} ({entry['file_name']})", name) for name, entry in _entries(sample.value).items()
            if isinstance(entry.get("file_name"), str) and not entry.get("ranking")
            and not any(entry.get(k) for k in ("hf_hub_url", "ms_hub_url", "script_url", "cloud_file_name"))]


def mapping(entry: dict) -> sharegpt.Mapping:
    formatting = entry.get("formatting") or "alpaca"
    columns = entry.get("columns") if isinstance(entry.get("columns"), dict) else {}
    tags = entry.get("tags") if isinstance(entry.get("tags"), dict) else {}
    defaults = sharegpt.Mapping()
    named = {key: value for key, value in {**columns, **tags}.items()
             if isinstance(value, str) and key in sharegpt.Mapping.__dataclass_fields__}
    if formatting == "alpaca":
        named.setdefault("system", "system")
    return sharegpt.Mapping(**{**{k: getattr(defaults, k) for k in defaults.__dataclass_fields__}, **named,
                               "formatting": formatting})


def read(sample: Sample, context: ReadContext) -> ReadResult:
    offered = choices(sample)
    if not offered:
        raise DataError("dataset_info_nothing", "{file} names no data set with a file on this server (data sets "
                        "on a hub cannot be fetched here, preference sets are not conversations).", file=sample.name)
    names = [name for _, name in offered]
    if context.pick in names:
        name = context.pick
    elif len(names) == 1:
        name = names[0]
    else:
        raise SeveralDataSets("dataset_info_several", "{file} names {count} data sets ({names}); pick one.",
                              offered, file=sample.name, count=len(names), names=", ".join(names))
    entry = _entries(sample.value)[name]
    folder = sample.path.parent
    try:
        data_path = resolve_inside(folder, entry["file_name"])
    except UnsafePath as err:
        raise DataError("data_file_unsafe", "{file} was not read: {reason}.", file=entry["file_name"],
                        reason=err.problem) from None
    if data_path.is_dir():
        files = sorted(p for p in data_path.iterdir() if p.is_file() and p.suffix.lower() in (".json", ".jsonl"))
        if len(files) != 1:
            raise DataError("dataset_info_folder", "The data set {name} is the folder {folder}; Foodie Studio reads a "
                            "data set from one .json or .jsonl file.", name=name, folder=entry["file_name"])
        data_path = files[0]
    if not data_path.is_file():
        raise DataError("dataset_info_missing", "The data set {name} names {file}, which is not there.", name=name,
                        file=entry["file_name"])
    data = load_sample(data_path, relative_name(folder, data_path))
    how = mapping(entry)
    label = f"{LABEL} → {name} ({'alpaca' if how.formatting == 'alpaca' else 'ShareGPT'})"
    return sharegpt.read_with(data, context.for_root(folder), how, label)


FORMAT = Format("llamafactory", LABEL, detect, read, None, ".json")
