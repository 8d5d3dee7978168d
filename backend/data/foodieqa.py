"""FoodieQA's layout: a folder with sivqa_tidy.json, mivqa_tidy.json, textqa_tidy.json and images/.

The same row parser serves the folder reader, the hub reader (rows through `datasets`) and the
bundled sample, so a row means the same thing wherever it came from. Each row is checked on its
own; a bad row becomes a report row and the next one is read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backend.bundled import EXAMPLES_DIR
from backend.data.data_files import json_kind, read_json_list
from backend.data.image_checks import ImageCheck, ImageChecker
from backend.data.rows import (
    RowFaults,
    answer_index,
    id_missing,
    id_taken,
    identifier,
    ignored,
    not_an_object,
    optional_text,
    picture_paths,
    present,
    report,
    required_text,
    row_origin,
    text_list,
)
from backend.data.safe_paths import ConfinedPaths, relative_name
from backend.data.schema import (
    MIVQA,
    SIVQA,
    SOURCE_FOODIEQA,
    SOURCE_SAMPLE,
    TEXTQA,
    DataError,
    ReadResult,
    Record,
    ReportLine,
    region_of_cuisine,
)
from backend.problems import Problem

log = logging.getLogger(__name__)

FOODIEQA_FILES = {SIVQA: "sivqa_tidy.json", MIVQA: "mivqa_tidy.json", TEXTQA: "textqa_tidy.json"}
FOODIEQA_FILE_LIST = ", ".join(FOODIEQA_FILES.values())
CHOICES_PER_QUESTION = 4
PICTURES_PER_MIVQA = 4
# The kind of question a list of choices belongs to, as the report names it (schema.TASK_LABELS).
_QUESTION_KINDS = {SIVQA: Problem("row_kind_sivqa", "single-image"), TEXTQA: Problem("row_kind_textqa", "text")}


@dataclass
class _DishIndex:
    """What sivqa rows tell about pictures and dishes, used to give mivqa and textqa rows (which
    carry no food_meta) the dish ids the held-out split needs."""

    by_image: dict[Path, tuple[str, str, str]] = field(default_factory=dict)  # dish id, name, cuisine
    by_name: dict[str, str] = field(default_factory=dict)

    def learn(self, record: Record) -> None:
        if record.dish_id and record.images:
            self.by_image.setdefault(record.images[0], (record.dish_id, record.food_name, record.cuisine))
        if record.dish_id and record.food_name:
            self.by_name.setdefault(record.food_name, record.dish_id)


@dataclass
class _ReadContext:
    root: Path
    source: str
    checker: ImageChecker
    paths: ConfinedPaths
    problems: list[ReportLine] = field(default_factory=list)
    seen_ids: dict[str, Problem] = field(default_factory=dict)  # id -> where it was first read
    dishes: _DishIndex = field(default_factory=_DishIndex)


def parse_foodieqa_rows(rows_by_task: Mapping[str, Iterable[Any]], root: Path, *,
                        source: str = SOURCE_FOODIEQA, file_names: Mapping[str, str] | None = None,
                        image_check: ImageCheck = "quick") -> ReadResult:
    """Records from FoodieQA rows already loaded (from files or the hub), pictures under `root`.

    `rows_by_task` maps "sivqa" / "mivqa" / "textqa" to its rows; `file_names` names each task's
    file in the report (default: FoodieQA's own file names).
    """
    root = Path(root).resolve()
    names = {**FOODIEQA_FILES, **(file_names or {})}
    ctx = _ReadContext(root=root, source=source, checker=ImageChecker(image_check),
                       paths=ConfinedPaths(root))
    records: list[Record] = []
    # sivqa first: its food_meta tells which dish each picture shows, which the others need.
    for task in (SIVQA, MIVQA, TEXTQA):
        if task not in rows_by_task:
            continue
        for index, row in enumerate(rows_by_task[task]):
            record = _parse_row(row, task, index, names[task], ctx)
            if record is not None:
                records.append(record)
                if task == SIVQA:
                    ctx.dishes.learn(record)
    log.info("read %d FoodieQA records from %s (%d problems)", len(records), root, len(ctx.problems))
    return ReadResult(tuple(records), tuple(ctx.problems), root, source)


def read_foodieqa_folder(folder: str | Path, *, source: str = SOURCE_FOODIEQA,
                         image_check: ImageCheck = "quick") -> ReadResult:
    """Read a folder in FoodieQA's layout; any of the three files may be missing, not all."""
    root = _existing_folder(folder)
    problems: list[ReportLine] = []
    rows_by_task: dict[str, list] = {}
    for task, name in FOODIEQA_FILES.items():
        if (root / name).exists() or (root / name).is_symlink():
            rows = read_json_list(root, name, problems)
            rows_by_task[task] = rows if rows is not None else []
    if not rows_by_task:
        if not any(root.iterdir()):
            raise DataError("foodieqa_folder_empty", "The folder {folder} is empty; it should hold "
                            "FoodieQA's {files} and images/.", folder=root, files=FOODIEQA_FILE_LIST)
        raise DataError("foodieqa_files_missing", "The folder {folder} holds none of FoodieQA's files "
                        "({files}); is it the right folder?", folder=root, files=FOODIEQA_FILE_LIST)
    result = parse_foodieqa_rows(rows_by_task, root, source=source, image_check=image_check)
    return ReadResult(result.records, tuple(problems) + result.problems, result.root, source)


def read_bundled_sample(image_check: ImageCheck = "quick") -> ReadResult:
    """The sample in examples/, written by the project about its own pictures: free to train on."""
    return read_foodieqa_folder(EXAMPLES_DIR, source=SOURCE_SAMPLE, image_check=image_check)


def _existing_folder(folder: str | Path) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise DataError("no_folder", "There is no folder at {path}.", path=path)
    if not path.is_dir():
        raise DataError("folder_is_file", "{path} is a file, not a folder; give the folder that holds the "
                        "data.", path=path)
    return path.resolve()


# --- one row ----------------------------------------------------------------------------------

def _parse_row(row: Any, task: str, index: int, file_name: str, ctx: _ReadContext) -> Record | None:
    if not isinstance(row, dict):
        ctx.problems.append(ReportLine(file_name, index, None, not_an_object(json_kind(row))))
        return None
    faults = RowFaults()
    record_id = identifier(row.get("question_id"))
    if not record_id:
        record_id = f"{task}-row{index}"
        faults.warn(id_missing("question_id", record_id))
    parse = {SIVQA: _sivqa, MIVQA: _mivqa, TEXTQA: _textqa}[task]
    record = parse(row, record_id, faults, ctx)
    origin = row_origin(file_name, index)
    if record is not None and not faults.errors:
        earlier = ctx.seen_ids.get(record_id)
        if earlier is not None:
            faults.error(id_taken(record_id, earlier))
        else:
            ctx.seen_ids[record_id] = origin
    report(ctx.problems, file_name, index, record_id, faults, unusable=record is None)
    if faults.errors or record is None:
        return None
    return replace(record, origin=origin)


def _sivqa(row: dict, record_id: str, faults: RowFaults, ctx: _ReadContext) -> Record | None:
    question = required_text(row, "question", faults)
    choices = text_list(row.get("choices"), "choices", CHOICES_PER_QUESTION, faults, required=True,
                        task_label=_QUESTION_KINDS[SIVQA])
    answer = answer_index(row.get("answer"), len(choices) or CHOICES_PER_QUESTION, faults)
    meta = row.get("food_meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        faults.warn(ignored(Problem("row_field_not_object", "{field} is not an object", field="food_meta")))
        meta = {}
    picture = meta.get("food_file") if present(meta, "food_file") else row.get("image")
    if picture is None:
        faults.error(Problem("row_no_picture", "the picture is missing (no food_meta.food_file)"))
        images: tuple[Path, ...] = ()
    else:
        images = picture_paths([picture], ctx.paths, ctx.checker, faults)
    food_name = optional_text(row, "food_name", faults) or optional_text(meta, "food_name", faults)
    cuisine = optional_text(meta, "food_type", faults) or optional_text(row, "cuisine_type", faults)
    dish_id = (identifier(meta.get("id")) or ctx.dishes.by_name.get(food_name, "")
               or (f"name:{food_name}" if food_name else ""))
    if faults.errors:
        return None
    return Record(
        id=record_id, task=SIVQA, source=ctx.source, question=question,
        question_en=optional_text(row, "question_en", faults),
        choices=choices, choices_en=_english_choices(row, faults), answer=answer, images=images,
        question_type=optional_text(row, "question_type", faults), cuisine=cuisine,
        region=_region(row, meta, cuisine, faults), food_name=food_name, dish_id=dish_id)


def _mivqa(row: dict, record_id: str, faults: RowFaults, ctx: _ReadContext) -> Record | None:
    question = required_text(row, "question", faults)
    raw_images = row.get("images")
    if not isinstance(raw_images, list):
        faults.error(Problem("row_images_bad", "images is missing or not a list of pictures"))
        raw_images = []
    elif len(raw_images) != PICTURES_PER_MIVQA:
        faults.error(Problem("row_images_count", "images has {count} pictures instead of {expected}",
                            count=len(raw_images), expected=PICTURES_PER_MIVQA))
    images = picture_paths(raw_images, ctx.paths, ctx.checker, faults) if raw_images else ()
    if row.get("choices") not in (None, "", []):
        faults.warn(ignored(Problem("row_mivqa_choices", "choices should be \"\" for a multi-image question "
                                   "(the pictures are the choices)")))
    answer = answer_index(row.get("answer"), len(raw_images) or PICTURES_PER_MIVQA, faults)
    if faults.errors:
        return None
    # The dish of the right picture names the question; the others still count for the split.
    keys = [ctx.dishes.by_image.get(p, (f"image:{relative_name(ctx.root, p)}", "", ""))
            for p in images]
    dish_id, dish_name, dish_cuisine = keys[answer]
    cuisine = optional_text(row, "cuisine_type", faults) or dish_cuisine
    return Record(
        id=record_id, task=MIVQA, source=ctx.source, question=question,
        question_en=optional_text(row, "question_en", faults), answer=answer, images=images,
        question_type=optional_text(row, "question_type", faults), cuisine=cuisine,
        region=_region(row, {}, cuisine, faults),
        food_name=optional_text(row, "food_name", faults) or dish_name, dish_id=dish_id,
        related_dish_ids=tuple(dict.fromkeys(k[0] for i, k in enumerate(keys)
                                             if i != answer and k[0] != dish_id)))


def _textqa(row: dict, record_id: str, faults: RowFaults, ctx: _ReadContext) -> Record | None:
    question = required_text(row, "question", faults)
    choices = text_list(row.get("choices"), "choices", CHOICES_PER_QUESTION, faults, required=True,
                        task_label=_QUESTION_KINDS[TEXTQA])
    answer = answer_index(row.get("answer"), len(choices) or CHOICES_PER_QUESTION, faults)
    if faults.errors:
        return None
    food_name = optional_text(row, "food_name", faults)
    cuisine = optional_text(row, "cuisine_type", faults)
    dish_id = ctx.dishes.by_name.get(food_name, "") or (f"name:{food_name}" if food_name else "")
    return Record(
        id=record_id, task=TEXTQA, source=ctx.source, question=question,
        question_en=optional_text(row, "question_en", faults), choices=choices,
        choices_en=_english_choices(row, faults), answer=answer,
        question_type=optional_text(row, "question_type", faults), cuisine=cuisine,
        region=_region(row, {}, cuisine, faults), food_name=food_name, dish_id=dish_id)


# --- helpers ------------------------------------------------------------------------------------

def _english_choices(row: dict, faults: RowFaults) -> tuple[str, ...]:
    return text_list(row.get("choices_en"), "choices_en", CHOICES_PER_QUESTION, faults,
                     required=False, task_label=Problem("row_kind_translated", "translated"))


def _region(row: dict, meta: dict, cuisine: str, faults: RowFaults) -> str:
    explicit = (optional_text(row, "region", faults) or optional_text(row, "ann_group", faults)
                or optional_text(meta, "region", faults))
    return explicit or region_of_cuisine(cuisine)
