"""Own data: the LLaVA / XTuner conversation JSON with its image folder, or images with a CSV.

LLaVA rows may carry extra keys; we read (and write back on export) `dish_id`, `food_name`,
`cuisine`, `region`, `question_type` and `source`, so samples exported by the converter come back
as the same records. Pictures are checked fully by default (decoded at a small scale): a broken
picture found here costs a report row, found during training it would cost the run.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from backend.bundled import EXAMPLES_DIR
from backend.data.data_files import json_kind, read_json_list, read_text_file
from backend.data.foodieqa import FOODIEQA_FILES
from backend.data.image_checks import ImageCheck, ImageChecker
from backend.data.rows import (
    RowFaults,
    fits,
    id_missing,
    id_taken,
    identifier,
    ignored,
    not_an_object,
    optional_text,
    picture_paths,
    report,
    row_origin,
)
from backend.data.safe_paths import ConfinedPaths, UnsafePath, relative_name, resolve_inside
from backend.data.schema import (
    GPT,
    HUMAN,
    IMAGE_PLACEHOLDER,
    SOURCE_OWN,
    SOURCE_SAMPLE,
    SOURCES,
    DataError,
    ReadResult,
    Record,
    ReportLine,
    Turn,
    conversation_record,
)
from backend.problems import Problem

log = logging.getLogger(__name__)

BUNDLED_OWN_DATA = "own_data.json"
_ROLE_NAMES = {"human": HUMAN, "user": HUMAN, "gpt": GPT, "assistant": GPT}
CSV_COLUMNS = ("image", "question", "answer")


def parse_llava_rows(rows: Iterable[Any], root: Path, *, file_name: str, source: str = SOURCE_OWN,
                     image_check: ImageCheck = "full") -> ReadResult:
    """Records from LLaVA conversation rows already loaded, pictures relative to `root`."""
    root = Path(root).resolve()
    checker = ImageChecker(image_check)
    paths = ConfinedPaths(root)
    problems: list[ReportLine] = []
    records: list[Record] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(ReportLine(file_name, index, None, not_an_object(json_kind(row))))
            continue
        faults = RowFaults()
        record_id = identifier(row.get("id"))
        if not record_id:
            record_id = f"row-{index}"
            faults.warn(id_missing("id", record_id))
        record = _llava_record(row, record_id, paths, checker, faults, source)
        if record is not None and not faults.errors:
            if record_id in seen:
                faults.error(id_taken(record_id, Problem("row_number", "row {row}", row=seen[record_id])))
            else:
                seen[record_id] = index
        report(problems, file_name, index, record_id, faults)
        if record is not None and not faults.errors:
            records.append(replace(record, origin=row_origin(file_name, index)))
    log.info("read %d conversations from %s (%d problems)", len(records), file_name, len(problems))
    return ReadResult(tuple(records), tuple(problems), root, source)


def read_llava_json(json_path: str | Path, image_root: str | Path | None = None, *,
                    source: str = SOURCE_OWN, image_check: ImageCheck = "full") -> ReadResult:
    """Read a LLaVA / XTuner JSON file; pictures are relative to `image_root` (default: its folder)."""
    path = _existing_file(json_path)
    root = _image_root(image_root, path)
    problems: list[ReportLine] = []
    rows = read_json_list(path.parent, path.name, problems)
    result = parse_llava_rows(rows or [], root, file_name=path.name, source=source,
                              image_check=image_check)
    return replace(result, problems=tuple(problems) + result.problems)


def read_csv_file(csv_path: str | Path, image_root: str | Path | None = None, *,
                  source: str = SOURCE_OWN, image_check: ImageCheck = "full") -> ReadResult:
    """Read a CSV with the columns image, question, answer (and optionally id, dish_id, food_name,
    cuisine); each row becomes a one-question conversation about its picture."""
    path = _existing_file(csv_path)
    root = _image_root(image_root, path)
    problems: list[ReportLine] = []
    text = read_text_file(path.parent, path.name, problems)
    rows: list[dict[str, Any]] = []
    if text is not None:
        rows = _csv_rows(text, path.name, problems)
    llava_rows = [_csv_row_as_llava(row, f"{path.stem}-{index}") for index, row in enumerate(rows)]
    result = parse_llava_rows(llava_rows, root, file_name=path.name, source=source,
                              image_check=image_check)
    return replace(result, problems=tuple(problems) + result.problems)


def read_own_data(path: str | Path, image_root: str | Path | None = None, *,
                  image_check: ImageCheck = "full") -> ReadResult:
    """Own data from a .json or .csv file, or from a folder holding exactly one of them."""
    target = Path(path).expanduser()
    if target.is_dir():
        target = _find_own_data_file(target.resolve())
    elif not target.exists():
        raise DataError("nothing_at", "There is nothing at {path}.", path=target)
    if target.suffix.lower() == ".csv":
        return read_csv_file(target, image_root, image_check=image_check)
    if target.suffix.lower() == ".json":
        return read_llava_json(target, image_root, image_check=image_check)
    raise DataError("own_data_kind", "{file} is neither a .json (LLaVA conversations) nor a .csv "
                    "(image, question, answer) file.", file=target.name)


def read_bundled_own_data(image_check: ImageCheck = "quick") -> ReadResult:
    """examples/own_data.json: conversations about the bundled pictures, free to train on."""
    return read_llava_json(EXAMPLES_DIR / BUNDLED_OWN_DATA, EXAMPLES_DIR, source=SOURCE_SAMPLE,
                           image_check=image_check)


# --- LLaVA rows ----------------------------------------------------------------------------------

def _llava_record(row: dict, record_id: str, paths: ConfinedPaths, checker: ImageChecker,
                  faults: RowFaults, default_source: str) -> Record | None:
    raw_images = _raw_images(row, faults)
    images = picture_paths(raw_images, paths, checker, faults)
    turns = _turns(row.get("conversations"), len(raw_images), faults)
    if faults.errors:
        return None
    source = optional_text(row, "source", faults)
    if source and source not in SOURCES:
        faults.warn(ignored(Problem("row_source_unknown", "source {source!r} is unknown", source=source)))
        source = ""
    food_name = optional_text(row, "food_name", faults)
    dish_id = (identifier(row.get("dish_id")) or (f"name:{food_name}" if food_name else "")
               or (f"image:{relative_name(paths.root, images[0])}" if images else ""))
    return conversation_record(
        record_id, turns, images, source=source or default_source, dish_id=dish_id,
        food_name=food_name, cuisine=optional_text(row, "cuisine", faults),
        region=optional_text(row, "region", faults),
        question_type=optional_text(row, "question_type", faults))


def _raw_images(row: dict, faults: RowFaults) -> list[Any]:
    image, images = row.get("image"), row.get("images")
    if image is not None and images is not None:
        faults.error(Problem("row_image_and_images", "the row has both image and images; keep one"))
        return []
    value = image if image is not None else images
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    faults.error(Problem("row_image_bad", "image is neither a path nor a list of paths"))
    return []


def _turns(value: Any, picture_count: int, faults: RowFaults) -> tuple[Turn, ...]:
    if not isinstance(value, list) or not value:
        faults.error(Problem("row_conversations_bad", "conversations is missing, empty or not a list"))
        return ()
    turns: list[Turn] = []
    errors_before = len(faults.errors)  # a bad picture is reported beside bad turns, not instead
    for position, turn in enumerate(value, start=1):
        if not isinstance(turn, dict):
            faults.error(Problem("row_turn_not_object", "turn {position} is not an object", position=position))
            continue
        role = _ROLE_NAMES.get(str(turn.get("from", "")).strip().lower())
        text = turn.get("value")
        if role is None:
            faults.error(Problem("row_turn_role", "turn {position} is from {role!r:.30}, not human or gpt",
                                position=position, role=turn.get("from")))
            continue
        if not isinstance(text, str) or not text.strip():
            if role == GPT:
                faults.error(Problem("row_turn_answer_empty", "turn {position} (the answer) is empty",
                                    position=position))
            else:
                faults.error(Problem("row_turn_question_empty", "turn {position} (the question) is empty",
                                    position=position))
            continue
        if not fits(text, Problem("row_turn", "turn {position}", position=position), faults):
            continue
        if role == GPT and IMAGE_PLACEHOLDER in text:
            faults.error(Problem("row_turn_answer_placeholder", "turn {position} is an answer with an <image> "
                                "placeholder", position=position))
        turns.append(Turn(role, text))
    if len(faults.errors) > errors_before:
        return ()
    if turns[0].role != HUMAN:
        faults.error(Problem("row_starts_with_answer", "the conversation starts with an answer, not a question"))
    if not any(t.role == GPT for t in turns):
        faults.error(Problem("row_no_answer", "the conversation has no answer"))
    placeholders = sum(t.text.count(IMAGE_PLACEHOLDER) for t in turns if t.role == HUMAN)
    if picture_count and IMAGE_PLACEHOLDER not in turns[0].text:
        faults.error(Problem("row_no_placeholder", "the first question has no <image> placeholder for its picture"))
    elif placeholders != picture_count:
        faults.error(Problem("row_placeholder_count", "the questions hold {placeholders} <image> placeholders for "
                            "{pictures} pictures", placeholders=placeholders, pictures=picture_count))
    return tuple(turns)


# --- CSV -----------------------------------------------------------------------------------------

def _csv_rows(text: str, file_name: str, problems: list[ReportLine]) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as err:
        problems.append(ReportLine(file_name, None, None, Problem(
            "csv_unreadable", "{file} is not a readable CSV file ({detail}).", file=file_name, detail=str(err))))
        return []
    if header is None:
        problems.append(ReportLine(file_name, None, None, Problem(
            "csv_empty", "{file} is empty; it needs the columns image, question, answer.", file=file_name)))
        return []
    columns = [c.strip().lower() for c in header]
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if missing:
        found = ", ".join(columns) or Problem("csv_no_columns", "none")
        problems.append(ReportLine(file_name, None, None, Problem(
            "csv_column_missing", "{file} lacks the column {missing} (found: {found}).", file=file_name,
            missing=missing[0], found=found) if len(missing) == 1 else Problem(
            "csv_columns_missing", "{file} lacks the columns {missing} (found: {found}).", file=file_name,
            missing=", ".join(missing), found=found)))
        return []
    rows = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank lines at the end of a hand-edited file
            rows.append({name: value for name, value in zip(columns, values) if name})
    except csv.Error as err:
        problems.append(ReportLine(file_name, len(rows), None, Problem(
            "csv_broken", "{file} stops being readable CSV at line {line} ({detail}); the rows before it were "
            "read.", file=file_name, line=reader.line_num, detail=str(err))))
    return rows


def _csv_row_as_llava(row: dict[str, Any], default_id: str) -> dict[str, Any]:
    """A CSV row as the LLaVA row it stands for, so one parser checks both formats."""
    question = (row.get("question") or "").strip()
    llava: dict[str, Any] = {
        "id": (row.get("id") or "").strip() or default_id,
        "conversations": [{"from": "human", "value": f"{IMAGE_PLACEHOLDER}\n{question}" if question else ""},
                          {"from": "gpt", "value": row.get("answer") or ""}],
    }
    # An empty cell stays an (empty) path, so the report says the picture is missing.
    llava["image"] = row.get("image") or ""
    for key in ("dish_id", "food_name", "cuisine", "region", "question_type"):
        if (row.get(key) or "").strip():
            llava[key] = row[key]
    if "dish_id" not in llava and (row.get("dish") or "").strip():
        llava["dish_id"] = row["dish"]
    return llava


# --- locating files ------------------------------------------------------------------------------

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


def _find_own_data_file(folder: Path) -> Path:
    ignored = set(FOODIEQA_FILES.values()) | {"dishes.json"}
    candidates = sorted(p for p in folder.iterdir()
                        if p.suffix.lower() in (".json", ".csv") and p.name not in ignored
                        and not p.name.startswith("."))
    if not candidates:
        if not any(folder.iterdir()):
            raise DataError("own_folder_empty", "The folder {folder} is empty; put a LLaVA .json or an "
                            "image/question/answer .csv in it with the pictures.", folder=folder)
        raise DataError("own_folder_no_data_file", "The folder {folder} holds no .json or .csv file "
                        "describing the pictures.", folder=folder)
    if len(candidates) > 1:
        raise DataError("own_folder_several", "The folder {folder} holds several data files ({files}); "
                        "pick one.", folder=folder, files=", ".join(p.name for p in candidates))
    try:
        return resolve_inside(folder, candidates[0].name)
    except UnsafePath as err:
        raise DataError("data_file_unsafe", "{file} was not read: {reason}.", file=candidates[0].name,
                        reason=err.problem) from None
