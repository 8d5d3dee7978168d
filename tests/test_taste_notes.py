"""Taste notes and teaching jobs, without the page: a correction becomes a note with its photo copied
in, the notes are a saved set any reader opens, a teaching job learns them (and what was mixed in),
and what Compare asks afterwards is labelled trained on or held out."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from backend.data import build_training_set, load_training_set, read_bundled_sample, read_data_folder
from backend.data.library import list_training_sets
from backend.evaluation.taught import HELD_OUT, TRAINED, probes, target_note
from backend.images import ImageError
from backend.inference.engine import Turn
from backend.taste_notes import NOTES_SET, NoteError, TasteNotes, correction_target, dish_answer
from backend.training.teach import teach_spec
from tests.conftest import EXAMPLES

JIAOZI, DUCK, FISH = (EXAMPLES / "images" / name for name in ("jiaozi-0.jpg", "peking-duck-1.jpg", "xihu-cuyu-2.jpg"))


@pytest.fixture
def notes(tmp_path: Path) -> TasteNotes:
    return TasteNotes(tmp_path / "work")


def test_the_answer_to_correct_is_the_newest_with_the_photo_of_its_question():
    turns = [Turn("user", "这是什么菜？", (str(JIAOZI),)), Turn("assistant", "乱码"),
             Turn("user", "再看看这张", (str(DUCK),)), Turn("assistant", "还是乱码")]
    found = correction_target(turns)
    assert (found.photo, found.question, found.answer) == (str(DUCK), "再看看这张", "还是乱码")


@pytest.mark.parametrize("turns, key", [
    ([], "note_no_answer"),
    ([Turn("user", "你好", ())], "note_no_answer"),
    ([Turn("user", "你好", ()), Turn("assistant", "你好")], "note_no_photo"),
])
def test_a_correction_needs_an_answer_about_a_photo(turns, key):
    with pytest.raises(NoteError) as refused:
        correction_target(turns)
    assert refused.value.problem.key == key


def test_a_model_that_reads_no_pictures_is_taught_nothing_by_a_photo():
    turns = [Turn("user", "这是什么菜？", (str(JIAOZI),)), Turn("assistant", "乱码")]
    with pytest.raises(NoteError) as refused:
        correction_target(turns, sees_pictures=False)
    assert refused.value.problem.key == "note_text_only_model"


def test_a_note_copies_its_photo_and_the_notes_are_a_saved_set_any_reader_opens(notes: TasteNotes, tmp_path):
    upload = tmp_path / "upload.jpg"  # an upload, which Gradio deletes at restart
    upload.write_bytes(JIAOZI.read_bytes())
    first = notes.add(upload, "这是什么菜？", "这是东北水饺。")
    upload.unlink()
    second = notes.add(DUCK, "What dish is this?", dish_answer("Peking duck", "Beijing", "en"), dish="Peking duck",
                       cuisine="Beijing")
    assert second.answer == "This is Peking duck, a Beijing dish."
    assert notes.photo_path(first).read_bytes() == JIAOZI.read_bytes()
    assert notes.photo_path(first).is_relative_to(notes.folder)
    # listed as a saved set, loaded as one, and its train.json read as any LLaVA file is
    assert [name for name, _, _ in list_training_sets(tmp_path / "work")] == [NOTES_SET]
    saved = load_training_set(notes.folder)
    assert [r.turns[-1].text for r in saved.train] == ["这是东北水饺。", "This is Peking duck, a Beijing dish."]
    read = read_data_folder(notes.folder / "train.json")
    assert not read.problems and [r.images for r in read.records] == [r.images for r in saved.train]
    assert all(r.images[0].is_file() for r in read.records)


def test_notes_are_edited_and_removed_and_an_unused_photo_goes(notes: TasteNotes):
    first = notes.add(JIAOZI, "这是什么菜？", "饺子")
    second = notes.add(DUCK, "这是什么菜？", "烤鸭")
    notes.edit(first.id, "这是东北水饺。")
    assert [n.answer for n in notes.notes()] == ["这是东北水饺。", "烤鸭"]
    notes.remove(second.id)
    assert [n.id for n in notes.notes()] == [first.id]
    assert not notes.photo_path(second).exists() and notes.photo_path(first).exists()
    notes.remove(first.id)
    assert notes.notes() == [] and list_training_sets(notes.folder.parents[1]) == []  # no empty set is offered
    with pytest.raises(NoteError, match="no taste note"):
        notes.remove(first.id)


@pytest.mark.parametrize("answer, key", [("", "note_empty"), ("  ", "note_empty"), ("好" * 2001, "note_too_long")])
def test_an_empty_or_endless_answer_is_refused_and_nothing_is_written(notes: TasteNotes, answer, key):
    with pytest.raises(NoteError) as refused:
        notes.add(JIAOZI, "这是什么菜？", answer)
    assert refused.value.problem.key == key and notes.notes() == []


def test_a_broken_photo_is_refused_with_its_own_sentence(notes: TasteNotes, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    with pytest.raises(ImageError):
        notes.add(broken, "这是什么菜？", "饺子")
    assert notes.notes() == []


def test_two_visitors_adding_at_once_keep_both_notes(tmp_path):
    workdir = tmp_path / "work"
    answers = [f"答案 {i}" for i in range(8)]
    threads = [threading.Thread(target=TasteNotes(workdir).add, args=(JIAOZI if i % 2 else DUCK, "这是什么菜？", a))
               for i, a in enumerate(answers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(n.answer for n in TasteNotes(workdir).notes()) == sorted(answers)
    assert len(load_training_set(TasteNotes(workdir).folder).train) == len(answers)


def test_a_teaching_job_learns_every_note_and_says_what_was_mixed_in(notes: TasteNotes, demo_workdir):
    workdir = notes.folder.parents[1]
    with pytest.raises(NoteError, match="no taste notes"):
        teach_spec(workdir, "demo", True, notes)
    taught = [notes.add(photo, "这是什么菜？", answer) for photo, answer in ((JIAOZI, "饺子。"), (DUCK, "烤鸭。"))]
    spec = teach_spec(workdir, str(demo_workdir / "models"), True, notes, "en")
    assert spec.notes == [n.id for n in taught] and spec.replay_samples == 0 and spec.name == "taught: 2 notes"
    rows = json.loads(Path(spec.data_file).read_text(encoding="utf-8"))
    assert [r["conversations"][1]["value"] for r in rows] == ["饺子。", "烤鸭。"]
    assert all(Path(r["image"]).is_file() for r in rows)

    # a replay set chosen once: its samples are mixed in, the notes repeated to be about a quarter
    build_training_set(read_bundled_sample().records, workdir / "datasets" / "dishes", heldout_ratio=0.25,
                       tasks=("sivqa",))
    notes.choose_replay("dishes")
    mixed = teach_spec(workdir, str(demo_workdir / "models"), True, notes, "zh")
    replay = load_training_set(workdir / "datasets" / "dishes").train
    assert mixed.replay_set == "dishes" and mixed.replay_samples == len(replay) and mixed.name == "教学：2 条笔记"
    rows = json.loads(Path(mixed.data_file).read_text(encoding="utf-8"))
    from_notes = [r for r in rows if r["conversations"][1]["value"] in ("饺子。", "烤鸭。")]
    assert len(rows) - len(from_notes) == len(replay)
    assert 0.15 <= len(from_notes) / len(rows) <= 0.35
    assert all(Path(p).is_file() for r in rows for p in [r.get("image"), *r.get("images", [])] if p)


def test_compare_asks_the_other_notes_as_trained_on_and_other_dishes_as_held_out(notes: TasteNotes, demo_workdir):
    workdir = notes.folder.parents[1]
    taught = [notes.add(JIAOZI, "这是什么菜？", "饺子。"), notes.add(FISH, "这是什么菜？", "西湖醋鱼。")]
    spec = teach_spec(workdir, str(demo_workdir / "models"), True, notes)
    assert target_note(spec, notes) == taught[-1]  # the newest note is the one Compare opens on
    asked = probes(spec, notes, workdir)
    assert [(p.label, p.expected) for p in asked if p.label == TRAINED] == [(TRAINED, "饺子。")]
    held = [p for p in asked if p.label == HELD_OUT]
    assert 1 <= len(held) <= 4 and all(p.question == "这是什么菜？" for p in held)
    # no photo of a dish it has a note about is called held out (another jiaozi photo included)
    assert not any(p.photo.name.startswith(("jiaozi-", "xihu-cuyu-")) for p in held)
    notes.remove(taught[0].id)
    notes.remove(taught[1].id)
    with pytest.raises(NoteError, match="removed"):
        target_note(spec, notes)
