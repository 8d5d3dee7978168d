"""What changed between two scorings of the same questions: the questions that went wrong to right
and right to wrong, accuracy per dish before and after, and, for "which dish is this" questions,
which dish each model called it. Two runs of one model on the same set give no flips."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from backend.data.schema import LETTERS, MIVQA, Record
from backend.evaluation.scoring import ScoredQuestion, ScoreRun

FIXED, BROKEN = "fixed", "broken"  # wrong -> right, right -> wrong
DISH_QUESTION_TYPE = "food_name"  # FoodieQA's "which dish is this" questions


@dataclass(frozen=True)
class Flip:
    kind: str  # FIXED or BROKEN
    before: ScoredQuestion
    after: ScoredQuestion
    record: Record | None  # the question's record (its pictures, dish, choices), when still known

    @property
    def picture(self) -> Path | None:
        return self.record.images[0] if self.record is not None and self.record.images else None


def flips(before: ScoreRun, after: ScoreRun, records: dict[str, Record]) -> list[Flip]:
    """The questions both runs answered whose outcome changed: fixed ones first, in question order."""
    answered = {q.record_id: q for q in after.questions}
    found = []
    for old in before.questions:
        new = answered.get(old.record_id)
        if new is None or old.correct == new.correct:
            continue
        found.append(Flip(FIXED if new.correct else BROKEN, old, new, records.get(old.record_id)))
    return sorted(found, key=lambda f: f.kind != FIXED)


def filtered(found: list[Flip], cuisine: str = "", question_type: str = "") -> list[Flip]:
    """The flips of one cuisine and one question type ("" for any)."""
    return [f for f in found if (not cuisine or f.before.cuisine == cuisine)
            and (not question_type or f.before.question_type == question_type)]


def dish_of(record: Record | None) -> str:
    return (record.food_name or record.dish_id) if record is not None else ""


def per_dish(before: ScoreRun, after: ScoreRun, records: dict[str, Record]) -> list[tuple[str, int, float, float]]:
    """(dish, questions, accuracy before, accuracy after) for every dish both runs were asked about,
    the largest change first. Questions without a dish are left out."""
    answered = {q.record_id: q for q in after.questions}
    tally: dict[str, list[int]] = {}
    for old in before.questions:
        new, dish = answered.get(old.record_id), dish_of(records.get(old.record_id))
        if new is None or not dish:
            continue
        counts = tally.setdefault(dish, [0, 0, 0])
        counts[0] += 1
        counts[1] += old.correct
        counts[2] += new.correct
    rows = [(dish, n, right_before / n, right_after / n) for dish, (n, right_before, right_after) in tally.items()]
    return sorted(rows, key=lambda row: (-abs(row[3] - row[2]), row[0]))


def confusion(run: ScoreRun, records: dict[str, Record]) -> list[tuple[str, str, int]]:
    """(the dish, what the model called it, how often) over the run's "which dish is this"
    questions: the picked choice's text, or "?" for a reply that named none. Most frequent first."""
    called: Counter = Counter()
    for q in run.questions:
        record = records.get(q.record_id)
        if record is None or q.question_type != DISH_QUESTION_TYPE or record.task == MIVQA:
            continue
        right = _choice_text(record, q.right)
        called[(right or dish_of(record), _choice_text(record, q.picked) or "?")] += 1
    return [(dish, picked, n) for (dish, picked), n in called.most_common()]


def _choice_text(record: Record, letter: str) -> str:
    if not letter or letter not in LETTERS:
        return ""
    index = LETTERS.index(letter)
    return record.choices[index] if index < len(record.choices) else ""
