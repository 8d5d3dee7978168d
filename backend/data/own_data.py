"""Own data: the entry points the rest of the app (and people's scripts) call by name, on top of the
format readers in formats/.

`read_own_data` reads a file or a folder in whatever format its content shows (formats/__init__.py:
read_path); `read_llava_json` and `read_csv_file` read a file as LLaVA JSON or as a table without
asking; `parse_llava_rows` checks LLaVA rows already loaded. Pictures are checked fully by default
(decoded at a small scale): a broken picture found here costs a report row, found during training it
would cost the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from backend.bundled import EXAMPLES_DIR
from backend.data.data_files import json_kind
from backend.data.formats import ReadContext, Sample, read_path, read_sample
from backend.data.formats import llava as llava_reader
from backend.data.formats.loading import load_sample
from backend.data.image_checks import ImageCheck
from backend.data.schema import SOURCE_OWN, SOURCE_SAMPLE, DataError, ReadResult, ReportLine
from backend.problems import Problem

log = logging.getLogger(__name__)

BUNDLED_OWN_DATA = "own_data.json"
CSV_COLUMNS = ("image", "question", "answer")


def parse_llava_rows(rows: Iterable[Any], root: Path, *, file_name: str, source: str = SOURCE_OWN,
                     image_check: ImageCheck = "full") -> ReadResult:
    """Records from LLaVA conversation rows already loaded, pictures relative to `root`."""
    rows = list(rows)
    sample = Sample(Path(file_name), file_name, "json", rows, list(range(1, len(rows) + 1)))
    return llava_reader.read(sample, ReadContext(root, image_check=image_check, source=source))


def read_llava_json(json_path: str | Path, image_root: str | Path | None = None, *,
                    source: str = SOURCE_OWN, image_check: ImageCheck = "full") -> ReadResult:
    """Read a LLaVA / XTuner JSON file; pictures are relative to `image_root` (default: its folder)."""
    path = _existing_file(json_path)
    sample = load_sample(path, path.name)
    context = ReadContext(_image_root(image_root, path), image_check=image_check, source=source)
    if sample.value is not None and not llava_reader.fits(sample.value):
        return ReadResult((), (ReportLine(path.name, None, None, Problem(
            "json_not_list", "{file} holds a JSON {json_type}, not a list of records.", file=path.name,
            json_type=json_kind(sample.value))),), context.root, source)
    return read_sample(sample, context, "llava")


def read_csv_file(csv_path: str | Path, image_root: str | Path | None = None, *,
                  source: str = SOURCE_OWN, image_check: ImageCheck = "full") -> ReadResult:
    """Read a table (CSV, TSV or .xlsx) with the columns image, question, answer (and optionally id,
    dish_id, food_name, cuisine, ...); each row becomes a one-question conversation about its picture."""
    path = _existing_file(csv_path)
    sample = load_sample(path, path.name)
    context = ReadContext(_image_root(image_root, path), image_check=image_check, source=source)
    if sample.layout != "table":
        sample = replace(sample, layout="table", rows=[], lines=[])
    return read_sample(sample, context, "table")


def read_own_data(path: str | Path, image_root: str | Path | None = None, *,
                  image_check: ImageCheck = "full", allow_absolute: bool = False, scratch: Path | None = None,
                  pick: str = "") -> ReadResult:
    """Own data from a file in any format Foodie Studio reads, or from a folder holding one (or
    several: SeveralDataSets names them; read again with `pick`)."""
    target = Path(path).expanduser()
    if not target.exists():
        raise DataError("nothing_at", "There is nothing at {path}.", path=target)
    target = target.resolve()  # the person named it: following their symlink is fine; pictures stay confined
    folder = target if target.is_dir() else target.parent
    root = _image_root(image_root, target) if image_root is not None else folder
    context = ReadContext(root, allow_absolute=allow_absolute, image_check=image_check, scratch=scratch, pick=pick)
    return read_path(target, context)


def read_bundled_own_data(image_check: ImageCheck = "quick") -> ReadResult:
    """examples/own_data.json: conversations about the bundled pictures, free to train on."""
    return read_llava_json(EXAMPLES_DIR / BUNDLED_OWN_DATA, EXAMPLES_DIR, source=SOURCE_SAMPLE,
                           image_check=image_check)


def _existing_file(path: str | Path) -> Path:
    target = Path(path).expanduser()
    if not target.exists():
        raise DataError("no_file", "There is no file at {path}.", path=target)
    if not target.is_file():
        raise DataError("not_a_file", "{path} is not a file.", path=target)
    # The person named this file, so following their symlink is fine; its pictures stay confined.
    return target.resolve()


def _image_root(image_root: str | Path | None, data_file: Path) -> Path:
    root = Path(image_root).expanduser() if image_root is not None else data_file.parent
    if not root.is_dir():
        raise DataError("image_folder_missing", "The image folder {folder} does not exist.", folder=root)
    return root.resolve()
