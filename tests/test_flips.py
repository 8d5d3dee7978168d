"""What changed between two scorings of the same questions: flips, accuracy per dish, and which dish a
model called a photo. A checkpoint against itself flips nothing."""

from __future__ import annotations

from backend.data import read_bundled_sample
from backend.evaluation.flips import BROKEN, FIXED, confusion, filtered, flips, per_dish
from backend.evaluation.question_sets import probe_questions
from backend.evaluation.scoring import ScoredQuestion, ScoreRun, scorable


def run_of(picks: dict[str, str], records) -> ScoreRun:
    """A run answering each record with the letter `picks` gives it (the right one otherwise)."""
    run = ScoreRun(model="m", adapter=None, split="s", lang="zh")
    for r in records:
        picked = picks.get(r.id, r.answer_letter)
        run.questions.append(ScoredQuestion(r.id, r.task, r.question_type, r.cuisine, r.question, r.answer_letter,
                                            picked, f"({picked})"))
    return run


def test_a_checkpoint_against_itself_flips_nothing():
    records = scorable(read_bundled_sample().records)
    wrong = {r.id: "B" if r.answer_letter != "B" else "A" for r in records[::3]}
    run = run_of(wrong, records)
    assert flips(run, run, {r.id: r for r in records}) == []


def test_wrong_to_right_and_right_to_wrong_are_told_apart_and_filtered():
    records = scorable(read_bundled_sample().records)
    by_id = {r.id: r for r in records}
    first, second, third = records[:3]
    other = {r.id: ("A" if r.answer_letter != "A" else "B") for r in records}
    before = run_of({first.id: other[first.id], third.id: ""}, records)  # first wrong, third unparsed
    after = run_of({second.id: other[second.id]}, records)  # second wrong now
    found = flips(before, after, by_id)
    assert [(f.kind, f.before.record_id) for f in found] == [(FIXED, first.id), (FIXED, third.id),
                                                             (BROKEN, second.id)]
    assert found[0].picture == first.images[0]
    assert filtered(found, cuisine=second.cuisine, question_type=second.question_type)[-1].kind == BROKEN
    assert filtered(found, cuisine="no such cuisine") == []


def test_accuracy_per_dish_and_what_each_dish_was_called():
    records = [r for r in scorable(read_bundled_sample().records) if r.food_name][:8]
    by_id = {r.id: r for r in records}
    target = records[0]
    dishes_of_target = [r for r in records if r.food_name == target.food_name]
    wrong = {r.id: ("A" if r.answer_letter != "A" else "B") for r in dishes_of_target}
    rows = per_dish(run_of(wrong, records), run_of({}, records), by_id)
    assert rows[0] == (target.food_name, len(dishes_of_target), 0.0, 1.0)  # the largest change first
    probe = scorable(probe_questions())
    assert len(probe) == 200 and {r.question_type for r in probe} == {"color", "shape", "count", "text"}
    # the bundled sample's single-image "which dish is this" questions say what each dish was called
    everything = scorable(read_bundled_sample().records)
    named = [r for r in everything if r.question_type == "food_name" and r.task != "mivqa"]
    assert named
    called = confusion(run_of({}, everything), {r.id: r for r in everything})
    assert sum(n for _, _, n in called) == len(named)
    assert all(dish == picked for dish, picked, _ in called)  # every answer right: each dish called itself
    wrong = named[0]
    letter = "A" if wrong.answer_letter != "A" else "B"
    called = confusion(run_of({wrong.id: letter}, everything), {r.id: r for r in everything})
    assert (wrong.choices[wrong.answer], wrong.choices["ABCD".index(letter)], 1) in called
