"""A held-out split by dish (or by another grouping), and the training-set folder that records it.

Holding out questions at random would leave the held-out dishes' pictures in training (FoodieQA asks
several questions about each picture), so any score on them would be contaminated. We hold out whole
dishes instead: no dish id appears on both sides. A multi-image question that shows dishes from both
sides belongs to neither and is dropped (and counted in the manifest).

Where the data names no dish (a LLaVA file or a table without dish_id, dish or food_name), the
person picks what stays together instead (GROUPINGS): identical and near-identical photos
(picture_hash.py), the same answer text, or the same value of a column. The manifest says which
grouping was used ("split_by"), so no page says "dishes" of a split that kept pictures together.

The split depends only on the set of dish ids, the ratio and the seed, never on record order, so
the same inputs always give the same split.

A training-set folder holds:
    train.json, heldout.json                    LLaVA conversations (what the training program reads)
    train_questions.json, heldout_questions.json the records they came from (what scoring reads)
    split.json                                  the manifest: seed, ratio, dish ids, sources, image root
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.data.conversion import Language, to_training_samples
from backend.data.data_files import write_json_atomic
from backend.data.image_checks import decoded_problem
from backend.data.llava_format import export_llava, record_from_dict, record_to_dict
from backend.data.own_data import read_llava_json
from backend.data.picture_hash import photo_groups
from backend.data.schema import CONVERSATION, GPT, SIVQA, TASK_LABELS, DataError, Record
from backend.data.terms import require_terms
from backend.problems import Problem, problem_to_json

log = logging.getLogger(__name__)

MANIFEST = "split.json"
TRAIN_FILE, HELDOUT_FILE = "train.json", "heldout.json"
TRAIN_QUESTIONS, HELDOUT_QUESTIONS = "train_questions.json", "heldout_questions.json"
MANIFEST_VERSION = 2
# What a held-out split keeps together: "auto" is "dish" when the data names dishes, else "picture".
GROUPINGS = ("auto", "dish", "picture", "answer", "column")


@dataclass(frozen=True)
class DishSplit:
    train: tuple[Record, ...]
    heldout: tuple[Record, ...]
    dropped: tuple[Record, ...]  # multi-image questions showing dishes of both sides
    train_dishes: tuple[str, ...]
    heldout_dishes: tuple[str, ...]
    seed: int
    heldout_ratio: float


def split_by_dish(records: Iterable[Record], heldout_ratio: float = 0.2, seed: int = 0) -> DishSplit:
    """Hold out about `heldout_ratio` of the dishes (at least one, never all) with their records."""
    return split_by_keys(records, lambda r: r.dish_keys, heldout_ratio, seed)


def split_by_keys(records: Iterable[Record], keys_of, heldout_ratio: float = 0.2, seed: int = 0) -> DishSplit:
    """Hold out about `heldout_ratio` of the groups that `keys_of(record)` names (at least one, never
    all) with their records; a record naming groups of both sides is dropped."""
    if not 0.0 <= heldout_ratio < 1.0:
        raise ValueError("the held-out share must be at least 0 and below 1")
    records = list(records)
    keys = {r.id: keys_of(r) for r in records}
    dishes = sorted({key for r in records for key in keys[r.id]})
    count = 0
    if heldout_ratio > 0 and len(dishes) >= 2:
        count = min(len(dishes) - 1, max(1, round(heldout_ratio * len(dishes))))
    shuffled = list(dishes)
    random.Random(seed).shuffle(shuffled)
    held = set(shuffled[:count])
    train, heldout, dropped = [], [], []
    for record in records:
        sides = {key in held for key in keys[record.id]}
        (heldout if sides == {True} else train if sides == {False} else dropped).append(record)
    if dropped:
        log.info("dropped %d multi-dish records that straddle the split", len(dropped))
    used_train = sorted({k for r in train for k in keys[r.id]})
    used_held = sorted({k for r in heldout for k in keys[r.id]})
    return DishSplit(tuple(train), tuple(heldout), tuple(dropped), tuple(used_train), tuple(used_held),
                     seed, heldout_ratio)


@dataclass(frozen=True)
class TrainingSet:
    """A saved split: samples for the trainer, questions for the scorer, and the manifest."""

    folder: Path
    manifest: dict[str, Any]
    train: tuple[Record, ...]
    heldout: tuple[Record, ...]
    train_questions: tuple[Record, ...]
    heldout_questions: tuple[Record, ...]

    @property
    def image_root(self) -> Path:
        return Path(self.manifest["image_root"])


def grouping_for(records: Sequence[Record], wanted: str = "auto") -> str:
    """The grouping a split of `records` uses: `wanted`, or for "auto" "dish" when the data names a
    dish (dish_id, a dish column, FoodieQA's food_name) and "picture" when it does not. "dish" asked of
    data that names none is "picture" too: a picture is no dish."""
    if wanted not in GROUPINGS:
        raise ValueError(f"unknown grouping {wanted!r}; choose from {', '.join(GROUPINGS)}")
    if wanted in ("auto", "dish"):
        return "dish" if any(r.names_dish for r in records) else "picture"
    return wanted


def group_keys(records: Sequence[Record], grouping: str, column: str = ""):
    """keys_of(record) for split_by_keys under `grouping` (one of GROUPINGS but "auto")."""
    if grouping == "dish":
        return lambda r: r.dish_keys
    if grouping == "picture":
        photo = photo_groups(p for r in records for p in r.images)
        return lambda r: tuple(dict.fromkeys(f"photo:{photo[p].name}:{_short(photo[p])}" for p in r.images)) or (
            f"record:{r.id}",)
    if grouping == "answer":
        return lambda r: (f"answer:{_normal(answer_text(r))}",) if answer_text(r) else (f"record:{r.id}",)
    if grouping == "column":
        def value(r: Record) -> str:
            return dict(r.facts).get(column) or (getattr(r, column) if column in _FIELD_COLUMNS else "")

        return lambda r: (f"{column}:{value(r)}",) if value(r) else (f"record:{r.id}",)
    raise ValueError(f"unknown grouping {grouping!r}")


_FIELD_COLUMNS = ("food_name", "cuisine", "region", "question_type", "dish_id")


def answer_text(record: Record) -> str:
    """The answer a record teaches: a conversation's first answer, a question's right choice."""
    if record.turns:
        return next((t.text for t in record.turns if t.role == GPT), "")
    if record.answer is not None and record.answer < len(record.choices):
        return record.choices[record.answer]
    return ""


def _normal(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _short(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()[:8]


def columns_to_split_by(records: Sequence[Record]) -> list[str]:
    """The columns a person may split by: the facts most records have, and the metadata fields used."""
    counts: dict[str, int] = {}
    for record in records:
        for key, _ in record.facts:
            counts[key] = counts.get(key, 0) + 1
    named = [key for key in ("food_name", "cuisine", "region", "question_type")
             if any(getattr(r, key) for r in records)]
    return named + sorted(k for k, n in counts.items() if n >= max(1, len(records) // 2) and k not in named)


def holdings(records: Sequence[Record]) -> dict[str, int]:
    """What a set holds, for the saved-sets table: conversations (and how many of them are multi-turn),
    and the pictures per sample (text, single-image, multi-image)."""
    held: dict[str, int] = {}
    for record in records:
        kind = "conversation" if record.task == CONVERSATION else TASK_LABELS.get(record.task, record.task)
        held[kind] = held.get(kind, 0) + 1
        if record.task == CONVERSATION and sum(t.role == GPT for t in record.turns) > 1:
            held["multi-turn"] = held.get("multi-turn", 0) + 1
        pictures = "text" if not record.images else "single-image" if len(record.images) == 1 else "multi-image"
        held[f"pictures:{pictures}"] = held.get(f"pictures:{pictures}", 0) + 1
    return held


def broken_pictures(records: Sequence[Record]) -> dict[str, Problem]:
    """Records whose pictures do not decode (checked now if reading only looked at their first bytes),
    by id, each with the reason: they are left out of a saved set rather than failing a training run."""
    broken = {}
    for record in records:
        for path in record.images:
            problem = decoded_problem(path)
            if problem is not None:
                broken[record.id] = Problem("row_picture_bad", "{picture} {problem}", problem=problem,
                                            picture=Problem("row_picture_named", "picture {path!r:.80}",
                                                            path=path.name))
                break
    return broken


def samples_file(folder: Path, manifest: dict[str, Any], side: str) -> Path:
    """Where a saved set keeps the chat samples of `side` ("train" or "heldout"): its split.json says."""
    return Path(folder) / manifest[side]["file"]


def build_training_set(records: Iterable[Record], folder: str | Path, *, heldout_ratio: float = 0.2,
                       seed: int = 0, tasks: Sequence[str] = (SIVQA,), lang: Language = "zh",
                       accept_terms: bool = False, image_root: Path | None = None, group_by: str = "auto",
                       column: str = "", left_out: dict[str, str] | None = None) -> TrainingSet:
    """Split `records` by dish (or by `group_by`: GROUPINGS), convert both sides, and save everything in
    `folder`, picture paths relative to `image_root` (default: the folder all the pictures share).
    `left_out`: records the caller left out (id -> why), listed in the manifest.

    FoodieQA records need `accept_terms=True` (see terms.py). Files are written one by one through
    temporary names, the manifest last, so a folder with a manifest is complete.
    """
    records = list(records)
    require_terms(records, accept_terms)
    chosen = [r for r in records if r.task == CONVERSATION or r.task in set(tasks)]
    if not chosen:
        raise DataError("no_samples", "None of the chosen records can become a training sample; pick "
                        "other tasks or another source.")
    grouping = grouping_for(chosen, group_by)
    if grouping == "column" and not column:
        raise DataError("split_no_column", "Pick the column whose values stay together on one side.")
    split = split_by_keys(chosen, group_keys(chosen, grouping, column), heldout_ratio, seed)
    train = to_training_samples(split.train, tasks=tasks, lang=lang, accept_terms=accept_terms)
    heldout = to_training_samples(split.heldout, tasks=tasks, lang=lang, accept_terms=accept_terms)
    image_root = Path(image_root).resolve() if image_root else _common_image_root(chosen) or Path(folder).resolve()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until the manifest is back
    export_llava(train, folder / TRAIN_FILE, image_root)
    export_llava(heldout, folder / HELDOUT_FILE, image_root)
    write_json_atomic(folder / TRAIN_QUESTIONS, [record_to_dict(r, image_root) for r in split.train])
    write_json_atomic(folder / HELDOUT_QUESTIONS, [record_to_dict(r, image_root) for r in split.heldout])
    manifest = {
        "version": MANIFEST_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed, "heldout_ratio": heldout_ratio,
        "split_by": f"column:{column}" if grouping == "column" else grouping,
        "holds": holdings(split.train + split.heldout),
        "left_out": [{"id": key, "reason": str(reason), "problem": problem_to_json(reason)}
                     for key, reason in (left_out or {}).items()],
        "sources": sorted({r.source for r in chosen}), "tasks": sorted(set(tasks)), "lang": lang,
        "terms_accepted": accept_terms, "image_root": str(image_root),
        "train": {"file": TRAIN_FILE, "questions": TRAIN_QUESTIONS, "samples": len(train),
                  "dish_ids": list(split.train_dishes)},
        "heldout": {"file": HELDOUT_FILE, "questions": HELDOUT_QUESTIONS, "samples": len(heldout),
                    "dish_ids": list(split.heldout_dishes)},
        "dropped_ids": [r.id for r in split.dropped],
    }
    write_json_atomic(folder / MANIFEST, manifest)
    log.info("saved %d training and %d held-out samples in %s", len(train), len(heldout), folder)
    return TrainingSet(folder.resolve(), manifest, tuple(train), tuple(heldout), split.train,
                       split.heldout)


def load_training_set(folder: str | Path) -> TrainingSet:
    """Read a folder saved by build_training_set (DataError with a sentence if it is not one)."""
    folder = Path(folder).resolve()
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        image_root = Path(manifest["image_root"])
        parts = {side: manifest[side] for side in ("train", "heldout")}
    except FileNotFoundError:
        raise DataError("set_no_manifest", "{folder} holds no {manifest}; it is not a saved training set "
                        "(or saving it did not finish).", folder=folder, manifest=MANIFEST) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError("set_manifest_damaged", "The manifest {path} is damaged ({detail}).",
                        path=folder / MANIFEST, detail=str(err)) from None
    if not image_root.is_dir():
        raise DataError("set_pictures_gone", "The pictures of this training set were in {folder}, which "
                        "is gone.", folder=image_root)
    samples, questions = {}, {}
    for side, part in parts.items():
        result = read_llava_json(samples_file(folder, manifest, side), image_root, image_check="quick")
        if result.problems:
            first = result.problems[0]
            raise DataError("set_samples_bad", "{file} in {folder} has {count} problems, the first: row "
                            "{row}: {message}", file=part["file"], folder=folder, count=len(result.problems),
                            row=first.row, message=first.message)
        samples[side] = result.records
        try:
            rows = json.loads((folder / part["questions"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError("set_questions_unreadable", "{file} in {folder} cannot be read ({detail}).",
                            file=part["questions"], folder=folder, detail=str(err)) from None
        questions[side] = tuple(record_from_dict(row, image_root) for row in rows)
    return TrainingSet(folder, manifest, samples["train"], samples["heldout"], questions["train"],
                       questions["heldout"])


def _common_image_root(records: Sequence[Record]) -> Path | None:
    parents = {str(p.parent) for r in records for p in r.images}
    if not parents:
        return None
    return Path(os.path.commonpath(sorted(parents)))
