"""InternVL's meta file: one JSON object naming data sets, each {"root": picture folder,
"annotation": a .jsonl in InternVL's format, "repeat_time", "length", ...}. Its data sets are offered
to pick from; the one picked is read as InternVL jsonl with its pictures under its root. Both paths
must lie inside the folder of the meta file (they are relative to it here, not to a training
script's working folder).

Follows InternVL's documentation, "Chat Data Format" (the meta file).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import backend.data.formats.internvl as internvl
from backend.data.formats.base import Format, ReadContext, Sample, SeveralDataSets
from backend.data.formats.loading import load_sample
from backend.data.safe_paths import UnsafePath, relative_name, resolve_inside
from backend.data.schema import DataError, ReadResult

LABEL = "InternVL meta file"


def _entries(value: Any) -> dict[str, dict]:
    if not isinstance(value, dict):
        return {}
    return {name: entry for name, entry in value.items()
            if isinstance(entry, dict) and isinstance(entry.get("annotation"), str)}


def detect(sample: Sample) -> float:
    entries = _entries(sample.value)
    return 0.95 if entries and len(entries) == len(sample.value) else 0.0


def read(sample: Sample, context: ReadContext) -> ReadResult:
    entries = _entries(sample.value)
    offered = [(f"{name} ({entry['annotation']})", name) for name, entry in entries.items()]
    names = [name for _, name in offered]
    if context.pick in names:
        name = context.pick
    elif len(names) == 1:
        name = names[0]
    else:
        raise SeveralDataSets("meta_several", "{file} names {count} data sets ({names}); pick one.", offered,
                              file=sample.name, count=len(names), names=", ".join(names))
    entry = entries[name]
    folder = sample.path.parent
    try:
        annotation = resolve_inside(folder, entry["annotation"])
        root = resolve_inside(folder, entry.get("root") or ".") if (entry.get("root") or ".") != "." else folder
    except UnsafePath as err:
        raise DataError("data_file_unsafe", "{file} was not read: {reason}.", file=entry["annotation"],
                        reason=err.problem) from None
    if not annotation.is_file() or not root.is_dir():
        raise DataError("meta_missing", "The data set {name} names {file} and the picture folder {root}; one of them "
                        "is not there.", name=name, file=entry["annotation"], root=entry.get("root") or ".")
    data = load_sample(annotation, relative_name(folder, annotation))
    result = internvl.read(data, context.for_root(root))
    return replace(result, format_label=f"{LABEL} → {name} ({internvl.LABEL})")


FORMAT = Format("internvl_meta", LABEL, detect, read, None, ".json")
