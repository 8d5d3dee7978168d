"""Any Hugging Face `datasets` data set with an image column, from a folder on this server: one saved
with `Dataset.save_to_disk` (or a DatasetDict: each split offered to pick from), or Parquet / Arrow
files as the Hub stores them. The `datasets` library does the reading (no hub is asked); pictures
stored as bytes are written into the scratch folder by content, pictures stored as paths are read
where they are (relative to the folder). A row holds one of:

- a conversation, "messages" or "conversations" as ShareGPT (LLaMA-Factory's mllm_demo);
- "messages" whose contents are parts, {"type": "image"} standing where a picture of the image column
  goes (TRL's vision examples, HuggingFaceH4/llava-instruct-mix-vsft);
- "texts", a list of {"user", "assistant"} exchanges, the pictures before the first question (The
  Cauldron, HuggingFaceM4/the_cauldron and Docmatix; torchtune reads them the same way);
- a question and an answer (columns named as in tables);
- a caption alone ("text", "caption": Unsloth's vision examples), asked "Describe this picture." as an
  ImageFolder caption set is.

Parquet files named as the Hub names them (data/train-00000-of-00001.parquet, test-...) are splits to
pick from. Follows the datasets documentation: "Load image data" (the Image feature, decode=False
giving {"bytes", "path"}), "Save and export" (save_to_disk / load_from_disk) and "Load" (Parquet
files, data_files per split).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import backend.data.formats.imagefolder as imagefolder
import backend.data.formats.openai as openai
import backend.data.formats.sharegpt as sharegpt
import backend.data.formats.table as table
from backend.data.formats.base import ReadContext, SeveralDataSets
from backend.data.formats.conversation import Draft, build_records
from backend.data.rows import RowFaults, picture_refused
from backend.data.safe_paths import UnsafePath
from backend.data.schema import GPT, HUMAN, DataError, ReadResult
from backend.problems import Problem

log = logging.getLogger(__name__)

LABEL = "Hugging Face datasets"
_TABLE_FILES = ("*.parquet", "data/*.parquet", "*.arrow", "data/*.arrow")
TABLE_SUFFIXES = (".parquet", ".arrow")
_SPLIT_NAMES = ("train", "validation", "valid", "dev", "test")


def is_dataset_folder(folder: Path) -> bool:
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return True
    return any(any(folder.glob(pattern)) for pattern in _TABLE_FILES)


def read_folder(folder: Path, context: ReadContext, only: Path | None = None) -> ReadResult:
    """The data set in `folder`; `only`: one Parquet or Arrow file of it, named by the person."""
    try:
        import datasets
    except ImportError:  # a dependency of the app; only a broken install lacks it
        raise DataError("datasets_missing", "Reading this folder needs the datasets library, which is not "
                        "installed.") from None
    table_data, split = _load(datasets, folder, context, only)
    columns = _image_columns(datasets, table_data.features)
    if not columns:
        raise DataError("datasets_no_image", "The data set in {folder} has no image column (its columns: {columns}).",
                        folder=folder.name, columns=", ".join(table_data.column_names))
    for name, is_list in columns.items():
        image = datasets.Image(decode=False)
        table_data = table_data.cast_column(name, datasets.List(image) if is_list else image)
    caption = _caption_column(table_data.column_names)
    drafts = [_draft(row, index, columns, context, caption) for index, row in enumerate(table_data)]
    label = f"{LABEL} ({', '.join(columns)}{f', {split}' if split else ''})"
    said = [imagefolder.default_question_note(folder.name, caption)] if caption else []
    return build_records(drafts, context, folder.name, stem=split or folder.name, format_label=label, problems=said)


def _caption_column(names: list[str]) -> str | None:
    """A captioning set's text column ("text", "caption"), where no column is a question or a conversation."""
    if any(table.canonical_name(n) == "question" or n in ("messages", "conversations", "texts") for n in names):
        return None
    return next((n for n in names if n.strip().lower() in imagefolder.CAPTIONS), None)


def _load(datasets, folder: Path, context: ReadContext, only: Path | None = None):
    # the library's own cache of Parquet files as Arrow: beside the pictures it writes, never in the data folder
    cache = str((context.scratch or Path(tempfile.gettempdir()) / "foodie-studio-pictures") / "datasets-cache")
    try:
        if only is None and ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(folder))
        else:
            files = [str(only)] if only else sorted(str(p) for pattern in _TABLE_FILES for p in folder.glob(pattern))
            kind = "parquet" if files[0].endswith(".parquet") else "arrow"
            splits = _splits_of([f for f in files if f.endswith(kind)])
            if len(splits) == 1:  # one split: read as the folder's data, named after the folder
                loaded = datasets.load_dataset(kind, data_files=next(iter(splits.values())), split="train",
                                               cache_dir=cache)
            else:
                loaded = datasets.load_dataset(kind, data_files=splits, cache_dir=cache)
    except Exception as err:  # the library raises many types for a damaged folder; all mean unreadable
        raise DataError("datasets_unreadable", "The data set in {folder} cannot be read ({detail}).",
                        folder=folder.name, detail=f"{type(err).__name__}: {err}"[:300]) from None
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded, ""
    splits = list(loaded)
    if context.pick in splits:
        return loaded[context.pick], context.pick
    if len(splits) == 1:
        return loaded[splits[0]], splits[0]
    raise SeveralDataSets("datasets_several", "The data set in {folder} has {count} splits ({names}); pick one.",
                          [(name, name) for name in splits], folder=folder.name, count=len(splits),
                          names=", ".join(splits))


def _splits_of(files: list[str]) -> dict[str, list[str]]:
    """{split: files}: a file named "<split>-..." (the Hub's "train-00000-of-00002.parquet") belongs to that
    split, any other to "train"."""
    splits: dict[str, list[str]] = {}
    for file in files:
        name = Path(file).name
        split = name.split("-", 1)[0] if "-" in name else ""
        splits.setdefault(split if split in _SPLIT_NAMES else "train", []).append(file)
    return splits


def _image_columns(datasets, features) -> dict[str, bool]:
    """Image columns: name -> whether the column holds a list of pictures."""
    found = {}
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            found[name] = False
        elif isinstance(feature, (datasets.List, datasets.LargeList, datasets.Sequence)) and isinstance(
                getattr(feature, "feature", None), datasets.Image):
            found[name] = True
    return found


def _draft(row: dict[str, Any], index: int, columns: dict[str, bool], context: ReadContext,
           caption: str | None = None) -> Draft:
    faults = RowFaults()
    pictures = []
    for name, is_list in columns.items():
        values = row.get(name) if is_list else [row.get(name)]
        for position, value in enumerate(values or [], start=1):
            if value is None:
                continue
            try:
                if value.get("bytes"):
                    pictures.append(context.pictures.store(value["bytes"]))
                else:
                    pictures.append(context.pictures.resolve(value.get("path")))
            except UnsafePath as err:
                faults.error(picture_refused(Problem("row_picture_numbered", "picture {position}", position=position),
                                             err.problem))
    data = {key: value for key, value in row.items() if key not in columns}
    if _is_exchanges(data.get("texts")):
        turns = _exchange_turns(data["texts"], len(pictures))
        return Draft(index, data, turns, [], faults, known_keys=("texts",), ready_pictures=tuple(pictures))
    if openai.has_parts(data):  # the image parts name no address: the image column's pictures stand for them
        made = openai.draft(data, index)
        made.faults.errors[:0] = faults.errors
        made.pictures, made.ready_pictures = [], tuple(pictures)
        return made
    mapping = sharegpt.mapping_of({**data, "images": []})
    if mapping is not None:
        made = sharegpt.draft({**data, mapping.images: []}, index, mapping)
        made.faults.errors[:0] = faults.errors
        made.ready_pictures = tuple(pictures)
        return made
    named = {table._CANONICAL.get(k.strip().lower(), k): v for k, v in data.items()}
    if caption:
        named.update(question=imagefolder.DEFAULT_QUESTION, answer=data.get(caption))
    question = named.get("question")
    turns = [(HUMAN, table.question_text(question.strip(), len(pictures)) if isinstance(question, str) else question),
             (GPT, named.get("answer"))]
    return Draft(index, named, turns, [], faults, known_keys=tuple(table.ALIASES), ready_pictures=tuple(pictures))


def _is_exchanges(texts: Any) -> bool:
    return isinstance(texts, list) and bool(texts) and all(isinstance(t, dict) and "user" in t for t in texts)


def _exchange_turns(texts: list[dict], pictures: int) -> list[tuple[str, Any]]:
    """The Cauldron's exchanges as turns; its first question names no picture, so they go in front of it."""
    turns: list[tuple[str, Any]] = []
    for exchange in texts:
        turns += [(HUMAN, exchange.get("user")), (GPT, exchange.get("assistant"))]
    if isinstance(turns[0][1], str):
        turns[0] = (HUMAN, table.question_text(turns[0][1].strip(), pictures))
    return turns
