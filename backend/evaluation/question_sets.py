"""The question sets Compare scores on: the bundled sample, a --data FoodieQA folder, and for each
picked checkpoint its training set's trained and held-out questions, kept apart. A score on the
trained questions says "it learned"; only the held-out ones (whole dishes it never saw) say "it
generalises"."""

from __future__ import annotations

import logging
from pathlib import Path

from backend.bundled import PROBE_DIR
from backend.catalog import ModelChoice
from backend.data import DataError, Record, load_training_set, read_bundled_sample, read_foodieqa_folder
from backend.data.schema import SOURCE_SAMPLE

log = logging.getLogger(__name__)

PROBE_SET = "general (probe)"  # colours, counts, shapes and words: what a food LoRA may cost elsewhere
BUNDLED_SET = "bundled sample (all)"  # the question set of the sample bundled with the app
TRAINED, HELD_OUT = "trained", "held-out"  # the two sets of a saved training set


def set_name(kind: str, training_set: str) -> str:
    """A question set's name, which is also its key: "held-out · my-dishes"."""
    return f"{kind} · {training_set}"


def set_kind(name: str) -> tuple[str, str]:
    """(kind, training set) of a name made by set_name; ("", name) for any other set."""
    kind, _, rest = name.partition(" · ")
    return (kind, rest) if kind in (TRAINED, HELD_OUT) and rest else ("", name)


def question_sets(picked: list[ModelChoice], data_dir: Path | None) -> dict[str, tuple[Record, ...]]:
    """Named sets of scorable questions for the picked models, trained and held-out kept apart."""
    sets: dict[str, tuple[Record, ...]] = {}
    for choice in picked:
        if choice.training_set is None or set_name(HELD_OUT, choice.training_set.name) in sets:
            continue
        try:
            training = load_training_set(choice.training_set)
        except DataError as err:
            log.info("no question sets from %s: %s", choice.training_set, err)
            continue
        sets[set_name(HELD_OUT, choice.training_set.name)] = training.heldout_questions
        sets[set_name(TRAINED, choice.training_set.name)] = training.train_questions
    sets[BUNDLED_SET] = read_bundled_sample().records
    sets[PROBE_SET] = probe_questions()
    if data_dir is not None:
        try:
            sets[f"FoodieQA · {data_dir.name}"] = read_foodieqa_folder(data_dir).records
        except DataError as err:
            log.info("no FoodieQA questions from %s: %s", data_dir, err)
    return sets


def probe_questions() -> tuple[Record, ...]:
    """The general-ability probe's 200 questions (never in any training set the app makes)."""
    return read_foodieqa_folder(PROBE_DIR, source=SOURCE_SAMPLE).records
