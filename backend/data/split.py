"""A held-out split by dish, and the training-set folder that records it.

Holding out questions at random would leave the held-out dishes' pictures in training (FoodieQA asks
several questions about each picture), so any score on them would be contaminated. We hold out whole
dishes instead: no dish id appears on both sides. A multi-image question that shows dishes from both
sides belongs to neither and is dropped (and counted in the manifest).

The split depends only on the set of dish ids, the ratio and the seed, never on record order, so
the same inputs always give the same split.

A training-set folder holds:
    train.json, heldout.json                    LLaVA conversations (what the training program reads)
    train_questions.json, heldout_questions.json the records they came from (what scoring reads)
    split.json                                  the manifest: seed, ratio, dish ids, sources, image root
"""

from __future__ import annotations

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
from backend.data.llava_format import export_llava, record_from_dict, record_to_dict, write_json_atomic
from backend.data.own_data import read_llava_json
from backend.data.schema import CONVERSATION, SIVQA, DataError, Record
from backend.data.terms import require_terms

log = logging.getLogger(__name__)

MANIFEST = "split.json"
TRAIN_FILE, HELDOUT_FILE = "train.json", "heldout.json"
TRAIN_QUESTIONS, HELDOUT_QUESTIONS = "train_questions.json", "heldout_questions.json"
MANIFEST_VERSION = 1


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
    if not 0.0 <= heldout_ratio < 1.0:
        raise ValueError("the held-out share must be at least 0 and below 1")
    records = list(records)
    dishes = sorted({key for r in records for key in r.dish_keys})
    count = 0
    if heldout_ratio > 0 and len(dishes) >= 2:
        count = min(len(dishes) - 1, max(1, round(heldout_ratio * len(dishes))))
    shuffled = list(dishes)
    random.Random(seed).shuffle(shuffled)
    held = set(shuffled[:count])
    train, heldout, dropped = [], [], []
    for record in records:
        sides = {key in held for key in record.dish_keys}
        (heldout if sides == {True} else train if sides == {False} else dropped).append(record)
    if dropped:
        log.info("dropped %d multi-dish records that straddle the split", len(dropped))
    used_train = sorted({k for r in train for k in r.dish_keys})
    used_held = sorted({k for r in heldout for k in r.dish_keys})
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


def samples_file(folder: Path, manifest: dict[str, Any], side: str) -> Path:
    """Where a saved set keeps the chat samples of `side` ("train" or "heldout"): its split.json says."""
    return Path(folder) / manifest[side]["file"]


def build_training_set(records: Iterable[Record], folder: str | Path, *, heldout_ratio: float = 0.2,
                       seed: int = 0, tasks: Sequence[str] = (SIVQA,), lang: Language = "zh",
                       accept_terms: bool = False, image_root: Path | None = None) -> TrainingSet:
    """Split `records` by dish, convert both sides, and save everything in `folder`, picture paths
    relative to `image_root` (default: the folder all the pictures share).

    FoodieQA records need `accept_terms=True` (see terms.py). Files are written one by one through
    temporary names, the manifest last, so a folder with a manifest is complete.
    """
    records = list(records)
    require_terms(records, accept_terms)
    chosen = [r for r in records if r.task == CONVERSATION or r.task in set(tasks)]
    if not chosen:
        raise DataError("no_samples", "None of the chosen records can become a training sample; pick "
                        "other tasks or another source.")
    split = split_by_dish(chosen, heldout_ratio, seed)
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
        "seed": seed, "heldout_ratio": heldout_ratio, "split_by": "dish",
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
