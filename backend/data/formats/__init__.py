"""Every data format Foodie Studio reads, one small module each, behind one interface (base.py).

    read_path(path, context)      a data file, or a folder holding one (or several to pick from)
    detect(sample)                the format a parsed file is written in, and how sure that is
    export(records, key, path, image_root)   write records in one of EXPORTS

Detection reads content: each format's `detect` looks at the first rows and says how sure it is;
the surest wins (ties go to the earlier one below). A file no format accepts is refused with one
sentence naming the formats tried and the first line that fits none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from backend.data.formats import (
    alpaca,
    hf_datasets,
    imagefolder,
    internvl,
    internvl_meta,
    llamafactory,
    llava,
    minicpm,
    openai,
    question_rows,
    qwenvl,
    sharegpt,
    swift,
    table,
)
from backend.data.formats.base import Format, ReadContext, Sample, SeveralDataSets
from backend.data.formats.conversation import no_collection
from backend.data.formats.loading import DATA_SUFFIXES, load_sample
from backend.data.safe_paths import UnsafePath, relative_name, resolve_inside
from backend.data.schema import DataError, ReadResult, Record

# In the order ties are broken: the more particular shapes first.
FORMATS: tuple[Format, ...] = (
    llamafactory.FORMAT, internvl_meta.FORMAT, qwenvl.FORMAT, openai.FORMAT, imagefolder.FORMAT,
    internvl.FORMAT, llava.FORMAT, minicpm.FORMAT, sharegpt.FORMAT, swift.FORMAT, alpaca.FORMAT,
    question_rows.FORMAT, table.FORMAT,
)
# The formats records can be written in (the Dataset tab's export, and the round trips tests prove).
EXPORTS: dict[str, Format] = {f.key: f for f in (llava.FORMAT, internvl.FORMAT, sharegpt.FORMAT, swift.FORMAT,
                                                 openai.FORMAT, qwenvl.FORMAT)}
# Files in a folder that are never a data set of their own.
_NOT_DATA = {"sivqa_tidy.json", "mivqa_tidy.json", "textqa_tidy.json", "dishes.json", "split.json",
             "state.json", "dataset_dict.json"}

__all__ = ["EXPORTS", "FORMATS", "ReadContext", "Sample", "SeveralDataSets", "data_files", "detect", "export",
           "read_path", "read_sample"]


def detect(sample: Sample) -> tuple[Format | None, float]:
    """The format `sample` is surest written in, and how sure (None, 0.0 when none accepts it)."""
    best, score = None, 0.0
    for candidate in FORMATS:
        sure = candidate.detect(sample)
        if sure > score:
            best, score = candidate, sure
    return best, score


def read_sample(sample: Sample, context: ReadContext, format_key: str = "") -> ReadResult:
    """The records of a parsed file, in the format named (`format_key`) or the one detected."""
    if not sample.rows and sample.value is None:  # the file could not be parsed: its report says why
        return ReadResult((), sample.problems, context.root, context.source, data_file=sample.name)
    chosen = next((f for f in FORMATS if f.key == format_key), None) if format_key else detect(sample)[0]
    if chosen is None:
        raise no_format(sample)
    return chosen.read(sample, context)


def no_format(sample: Sample) -> DataError:
    """One sentence: the formats tried and the first line that none of them accepts."""
    line, text = 1, ""
    for number, row in zip(sample.lines, sample.head()):
        alone = Sample(sample.path, sample.name, sample.layout, [row], [number], sample.columns,
                       value=row if isinstance(row, dict) and sample.value is not None else None)
        if not any(f.detect(alone) > 0 for f in FORMATS):
            line, text = number, json.dumps(row, ensure_ascii=False)[:120]
            break
    return DataError("no_format", "{file} matches none of the formats Foodie Studio reads ({formats}); line {line} "
                     "fits none of them: {text}", file=sample.name, formats=", ".join(f.label for f in FORMATS),
                     line=line, text=text)


def data_files(folder: Path) -> list[str]:
    """The data files a folder offers, relative to it: its .json/.jsonl/.csv/.tsv/.xlsx files, and the
    metadata files of an ImageFolder split (train/metadata.jsonl)."""
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
             and p.name not in _NOT_DATA and not p.name.startswith((".", "~$"))]
    found += [p for pattern in ("*/metadata.jsonl", "*/metadata.csv") for p in folder.glob(pattern)
              if not p.parent.name.startswith(".")]
    return sorted(relative_name(folder, p) for p in found)


def read_path(path: Path, context: ReadContext) -> ReadResult:
    """A data file, or a folder: a `datasets` folder, a folder whose dataset_info.json (LLaMA-Factory) or
    single data file says what to read, or one whose several data files are offered to pick from
    (SeveralDataSets; read again with context.pick set to one)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in hf_datasets.TABLE_SUFFIXES:  # one file of a datasets folder
        return hf_datasets.read_folder(path.parent, context, only=path)
    if path.is_file():  # named by the person: its pictures are relative to context.root (its folder, usually)
        return _read_file(path, path.name, context)
    folder = path.resolve()
    if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():  # save_to_disk's
        return hf_datasets.read_folder(folder, context)
    if (folder / "dataset_info.json").is_file():
        return _read_file(_inside(folder, "dataset_info.json"), "dataset_info.json", context)
    if hf_datasets.is_dataset_folder(folder) and not data_files(folder):
        return hf_datasets.read_folder(folder, context)
    names = data_files(folder)
    if not names:
        if not any(folder.iterdir()):
            raise DataError("own_folder_empty", "The folder {folder} is empty; put a LLaVA .json or an "
                            "image/question/answer .csv in it with the pictures.", folder=folder)
        raise DataError("own_folder_no_data_file", "The folder {folder} holds no .json or .csv file "
                        "describing the pictures.", folder=folder)
    if context.pick in names:
        names = [context.pick]
    if len(names) > 1:
        raise SeveralDataSets("own_folder_several", "The folder {folder} holds several data files ({files}); "
                              "pick one.", [(name, name) for name in names], folder=folder, files=", ".join(names))
    target = _inside(folder, names[0])
    return _read_file(target, names[0], context.for_root(target.parent))


def _inside(folder: Path, name: str) -> Path:
    try:
        return resolve_inside(folder, name)
    except UnsafePath as err:
        raise DataError("data_file_unsafe", "{file} was not read: {reason}.", file=name, reason=err.problem) from None


def _read_file(path: Path, name: str, context: ReadContext) -> ReadResult:
    with no_collection():  # parsing and checking 100,000 rows: see conversation.no_collection
        sample = load_sample(path, name)
        result = read_sample(sample, context)
    return result if result.data_file else replace(result, data_file=name)


def export(records: Sequence[Record], key: str, path: Path, image_root: Path) -> Path:
    """Write conversation records in the format `key` (one of EXPORTS), pictures relative to image_root."""
    chosen = EXPORTS.get(key)
    if chosen is None:
        raise ValueError(f"unknown export format {key!r}; choose from {', '.join(EXPORTS)}")
    return chosen.write(records, Path(path), Path(image_root))
