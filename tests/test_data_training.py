"""Turning records into training samples: the course's format, the terms gate, the split by dish,
the saved training-set folder, and the LLaVA export round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.data import (
    CONVERSATION,
    FOODIEQA_TERMS,
    MIVQA,
    SIVQA,
    SOURCE_FOODIEQA,
    TEXTQA,
    DataError,
    Record,
    TermsNotAccepted,
    build_training_set,
    export_llava,
    load_training_set,
    read_bundled_own_data,
    read_bundled_sample,
    read_foodieqa_folder,
    read_llava_json,
    split_by_dish,
    to_training_samples,
)


@pytest.fixture(scope="module")
def sample():
    return read_bundled_sample().records


@pytest.fixture(scope="module")
def own():
    return read_bundled_own_data().records


def record(task: str = SIVQA, **changes) -> Record:
    base = Record(id="vqa-0", task=task, source="sample", question="图片中的食物通常属于哪个菜系?",
                  question_en="Which cuisine does the food belong to?",
                  choices=("京菜", "徽菜", "新疆菜", "桂菜"), choices_en=("Beijing", "Anhui", "Xinjiang", "Guangxi"),
                  answer=2, images=(Path("/data/images/a.jpg"),), food_name="大盘鸡", dish_id="217")
    return replace(base, **changes)


# --- conversion -------------------------------------------------------------------------------------

def test_single_image_question_becomes_the_course_exchange() -> None:
    [sample] = to_training_samples([record()])
    assert sample.task == CONVERSATION and sample.images == record().images and sample.dish_id == "217"
    human, gpt = sample.turns
    assert human.role == "human" and gpt.role == "gpt"
    assert human.text == ("<image>\n图片中的食物通常属于哪个菜系?\n(A) 京菜\n(B) 徽菜\n(C) 新疆菜\n(D) 桂菜\n"
                          "请从所提供的选项中选择一个正确答案。")
    assert gpt.text == "答案：(C) 新疆菜。这道菜是大盘鸡。"


def test_english_prompts_use_the_translations() -> None:
    [sample] = to_training_samples([record()], lang="en")
    assert "Which cuisine" in sample.turns[0].text and "(C) Xinjiang" in sample.turns[0].text
    assert sample.turns[1].text == "Answer: (C) Xinjiang. The dish is 大盘鸡."


def test_multi_image_and_text_questions_are_optional() -> None:
    pictures = tuple(Path(f"/data/images/{c}.jpg") for c in "abcd")
    multi = record(MIVQA, id="m-0", choices=(), choices_en=(), images=pictures, answer=1)
    text = record(TEXTQA, id="t-0", images=())
    own = Record(id="own-1", task=CONVERSATION, source="own", turns=record().turns)
    assert [s.id for s in to_training_samples([record(), multi, text, own])] == ["vqa-0", "own-1"]
    samples = {s.id: s for s in to_training_samples([multi, text], tasks=(MIVQA, TEXTQA))}
    assert samples["m-0"].turns[0].text.count("<image>") == 4 and samples["m-0"].images == pictures
    assert samples["m-0"].turns[1].text == "答案：(B)。这道菜是大盘鸡。"
    assert "<image>" not in samples["t-0"].turns[0].text and samples["t-0"].images == ()
    assert samples["t-0"].turns[1].text == "答案：(C) 新疆菜。"
    with pytest.raises(ValueError, match="unknown task"):
        to_training_samples([record()], tasks=("vqa",))


def test_own_conversations_go_through_as_they_are(own) -> None:
    assert to_training_samples(own) == list(own)


# --- terms -----------------------------------------------------------------------------------------

def test_foodieqa_needs_an_explicit_yes(tmp_path: Path) -> None:
    foodieqa = [record(source=SOURCE_FOODIEQA), record(id="vqa-1", source=SOURCE_FOODIEQA, dish_id="9")]
    with pytest.raises(TermsNotAccepted) as refused:
        to_training_samples(foodieqa)
    message = str(refused.value)
    assert "2 of the chosen records come from FoodieQA" in message and "CC BY-NC-ND 4.0" in message
    assert "evaluation only" in message
    with pytest.raises(TermsNotAccepted):
        build_training_set(foodieqa, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # nothing written before the person agreed
    assert len(to_training_samples(foodieqa, accept_terms=True)) == 2
    saved = build_training_set(foodieqa, tmp_path / "agreed", accept_terms=True)
    assert saved.manifest["terms_accepted"] is True


def test_sample_and_own_data_need_no_confirmation(sample, own) -> None:
    assert to_training_samples(list(sample) + list(own))


def test_terms_text_says_what_matters() -> None:
    for words in ("CC BY-NC-ND 4.0", "research and evaluation only", "not meant to be used for training",
                  "https://creativecommons.org/licenses/by-nc-nd/4.0/"):
        assert words in FOODIEQA_TERMS


# --- split by dish -----------------------------------------------------------------------------------

def test_no_dish_on_both_sides(sample, own) -> None:
    split = split_by_dish(list(sample) + list(own), heldout_ratio=0.25, seed=3)
    train_dishes = {k for r in split.train for k in r.dish_keys}
    held_dishes = {k for r in split.heldout for k in r.dish_keys}
    assert train_dishes and held_dishes and not train_dishes & held_dishes
    assert len(held_dishes) == 3  # a quarter of the 12 dishes
    # a multi-image question showing dishes from both sides is on neither
    for dropped in split.dropped:
        assert set(dropped.dish_keys) & train_dishes and set(dropped.dish_keys) & held_dishes
    assert len(split.train) + len(split.heldout) + len(split.dropped) == len(sample) + len(own)


def test_same_seed_same_split_whatever_the_order(sample) -> None:
    first = split_by_dish(sample, seed=7)
    again = split_by_dish(list(reversed(sample)), seed=7)
    assert first.heldout_dishes == again.heldout_dishes
    assert {r.id for r in first.heldout} == {r.id for r in again.heldout}
    others = {split_by_dish(sample, seed=s).heldout_dishes for s in range(8)}
    assert len(others) > 1  # the seed matters


def test_split_edges(sample) -> None:
    assert split_by_dish(sample, heldout_ratio=0.0).heldout == ()
    one = [r for r in sample if r.task == SIVQA and r.dish_id == "1"]
    assert split_by_dish(one, heldout_ratio=0.5).heldout == ()  # never hold out the only dish
    with pytest.raises(ValueError):
        split_by_dish(sample, heldout_ratio=1.0)


@settings(max_examples=60, deadline=None)
@given(dishes=st.lists(st.lists(st.sampled_from("abcdefgh"), min_size=0, max_size=3), max_size=25),
       ratio=st.floats(0.0, 0.9), seed=st.integers(0, 2 ** 32))
def test_split_invariants(dishes, ratio, seed) -> None:
    records = [Record(id=f"r{i}", task=MIVQA, source="own", dish_id=(keys or [""])[0],
                      related_dish_ids=tuple(keys[1:])) for i, keys in enumerate(dishes)]
    split = split_by_dish(records, ratio, seed)
    train = {k for r in split.train for k in r.dish_keys}
    held = {k for r in split.heldout for k in r.dish_keys}
    assert not train & held
    assert sorted(r.id for r in split.train + split.heldout + split.dropped) == sorted(r.id for r in records)
    reordered = split_by_dish(list(reversed(records)), ratio, seed)
    assert {r.id for r in reordered.heldout} == {r.id for r in split.heldout}


# --- saved training sets and the LLaVA round trip --------------------------------------------------

def test_training_set_folder_holds_samples_questions_and_manifest(tmp_path: Path, sample, own) -> None:
    folder = tmp_path / "set"
    saved = build_training_set(list(sample) + list(own), folder, heldout_ratio=0.25, seed=11,
                               tasks=(SIVQA, MIVQA, TEXTQA))
    manifest = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 11 and manifest["heldout_ratio"] == 0.25 and manifest["split_by"] == "dish"
    assert manifest["sources"] == ["sample"]
    assert not set(manifest["train"]["dish_ids"]) & set(manifest["heldout"]["dish_ids"])
    image_root = Path(manifest["image_root"])
    rows = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    assert len(rows) == manifest["train"]["samples"] == len(saved.train)
    for row in rows:
        assert set(row) >= {"id", "conversations"} and ("image" in row or "images" in row or
                                                          "<image>" not in row["conversations"][0]["value"])
        pictures = [row["image"]] if "image" in row else row.get("images", [])
        assert all(not Path(p).is_absolute() and (image_root / p).is_file() for p in pictures)
        assert row["conversations"][0]["from"] == "human" and row["conversations"][-1]["from"] == "gpt"
    # the held-out questions keep their choices and answers for scoring
    held = saved.heldout_questions
    assert held and all(r.task == CONVERSATION or r.answer is not None for r in held)
    assert {r.dish_id for r in held} <= set(manifest["heldout"]["dish_ids"])

    loaded = load_training_set(folder)
    assert loaded.train == saved.train and loaded.heldout == saved.heldout
    assert loaded.train_questions == saved.train_questions
    assert loaded.heldout_questions == saved.heldout_questions


def test_same_seed_saves_the_same_split(tmp_path: Path, sample) -> None:
    one = build_training_set(sample, tmp_path / "one", seed=5)
    two = build_training_set(list(reversed(sample)), tmp_path / "two", seed=5)
    assert one.manifest["heldout"]["dish_ids"] == two.manifest["heldout"]["dish_ids"]
    assert {r.id for r in one.heldout} == {r.id for r in two.heldout}


def test_own_data_export_round_trip(tmp_path: Path, own) -> None:
    path = export_llava(own, tmp_path / "own.json", image_root=own[0].images[0].parent.parent)
    again = read_llava_json(path, own[0].images[0].parent.parent)
    assert again.problems == () and again.records == own


def test_converted_samples_round_trip_with_multi_image(tmp_path: Path, sample) -> None:
    samples = to_training_samples(sample, tasks=(SIVQA, MIVQA, TEXTQA))
    root = sample[0].images[0].parent
    path = export_llava(samples, tmp_path / "samples.json", image_root=root)
    again = read_llava_json(path, root)
    assert again.problems == () and list(again.records) == samples
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert any(len(r.get("images", [])) == 4 for r in rows)


def test_questions_cannot_be_exported_unconverted(tmp_path: Path, sample) -> None:
    with pytest.raises(ValueError, match="convert it to a training sample first"):
        export_llava(sample[:1], tmp_path / "x.json", image_root=sample[0].images[0].parent)


def test_loading_something_that_is_not_a_training_set(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a saved training set"):
        load_training_set(tmp_path)
    (tmp_path / "split.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(DataError, match="damaged"):
        load_training_set(tmp_path)


def test_foodieqa_folder_to_training_set_end_to_end(tmp_path: Path) -> None:
    """A FoodieQA-layout folder (here a copy of the sample's files) is gated, then split and saved."""
    import shutil
    examples = Path(__file__).resolve().parents[1] / "examples"
    data = tmp_path / "foodieqa"
    shutil.copytree(examples / "images", data / "images")
    for name in ("sivqa_tidy.json", "mivqa_tidy.json", "textqa_tidy.json"):
        shutil.copy(examples / name, data / name)
    records = read_foodieqa_folder(data).records
    assert {r.source for r in records} == {SOURCE_FOODIEQA}
    with pytest.raises(TermsNotAccepted):
        build_training_set(records, tmp_path / "out")
    saved = build_training_set(records, tmp_path / "out", accept_terms=True, seed=1)
    assert saved.manifest["sources"] == [SOURCE_FOODIEQA] and saved.train and saved.heldout


def test_each_bundled_quick_example_is_a_question_the_demo_set_teaches() -> None:
    """A person who trains the demo model and then clicks a quick example asks exactly a trained
    question about a trained picture, in either language, so the tuned model can answer it (the
    examples once asked "What dish is this, and which cuisine is it from?", which the demo set
    never taught, and the tuned model named the wrong dish)."""
    from backend.bundled import EXAMPLES_DIR
    from backend.quick_examples import bundled_examples
    from backend.training.demo_data import demo_records

    taught = {(record["image"], turn_pair[0]["value"].replace("<image>\n", ""), turn_pair[1]["value"])
              for record in demo_records() for turn_pair in [record["conversations"]]}
    examples = bundled_examples()
    assert examples
    for example in examples:
        image = example.image.relative_to(EXAMPLES_DIR).as_posix()
        assert (image, example.question_zh, example.answer_zh) in taught, example
        assert (image, example.question_en, example.answer_en) in taught, example


def test_a_picture_reading_only_glanced_at_is_decoded_when_the_set_is_saved(tmp_path: Path) -> None:
    """A large data set's pictures are checked by their first bytes past the first 1,000 (image_checks
    "auto"); saving decodes them, and a record whose picture does not is left out, said in the manifest."""
    import shutil

    from backend.data import read_data_folder
    from backend.data.library import save_training_set

    examples = Path(__file__).resolve().parents[1] / "examples" / "images"
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    shutil.copy(examples / "jiaozi-0.jpg", data / "images" / "good.jpg")
    whole = (examples / "yuebing-0.jpg").read_bytes()
    (data / "images" / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    turns = [{"from": "human", "value": "<image>\n这是什么？"}, {"from": "gpt", "value": "点心。"}]
    rows = [{"id": name, "image": f"images/{name}.jpg", "conversations": turns} for name in ("good", "cut")]
    (data / "data.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    glanced = read_data_folder(data, image_check="quick")
    assert len(glanced.records) == 2  # the first bytes of a cut JPEG look like a JPEG's
    saved = save_training_set(tmp_path / "work", glanced.records, name="decoded", tasks=(), lang="zh",
                              heldout_share=0.0, seed=0)
    assert [r.id for r in saved.train] == ["good"]
    assert [(e["id"], "unreadable" in e["reason"]) for e in saved.manifest["left_out"]] == [("cut", True)]
