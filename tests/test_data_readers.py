"""The dataset readers on good and bad input: FoodieQA folders, the hub row path, own data.

Every bad case checks two things a person would notice: the report names the file, the row, the id
and what is wrong; and the good rows beside it still come through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from backend.data import (
    FOODIEQA_FILES,
    MIVQA,
    SIVQA,
    SOURCE_SAMPLE,
    TEXTQA,
    DataError,
    parse_foodieqa_rows,
    read_bundled_own_data,
    read_bundled_sample,
    read_csv_file,
    read_data_folder,
    read_foodieqa_folder,
    read_llava_json,
    read_own_data,
)

REPO = Path(__file__).resolve().parents[1]


# --- helpers ------------------------------------------------------------------------------------

def jpeg(path: Path, color: tuple[int, int, int] = (200, 80, 40), size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, "JPEG")
    return path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def sivqa_row(n: int, image: object = "images/a.jpg", **changes: object) -> dict:
    row = {"question": "图片中的食物通常属于哪个菜系?", "choices": ["京菜", "徽菜", "新疆菜", "桂菜"],
           "answer": "2", "question_type": "cuisine_type", "food_name": "大盘鸡",
           "question_id": f"vqa-{n}", "question_en": "Which cuisine?",
           "choices_en": ["Beijing", "Anhui", "Xinjiang", "Guangxi"],
           "food_meta": {"main_ingredient": ["鸡肉"], "id": 217, "food_name": "大盘鸡",
                         "food_type": "新疆菜", "food_location": "餐馆", "food_file": image}}
    row.update(changes)
    return row


def mivqa_row(n: int, images: object = None, **changes: object) -> dict:
    row = {"question": "哪一道菜中含有鸡肉？", "choices": "", "answer": "0", "question_type": "ingredients",
           "question_id": f"m-{n}", "ann_group": "新疆",
           "images": images if images is not None else [f"images/{c}.jpg" for c in "abcd"]}
    row.update(changes)
    return row


def textqa_row(n: int, **changes: object) -> dict:
    row = {"question": "大盘鸡是基于以下哪一种食材制作的?", "choices": ["鸭肉", "鸡肉", "牛肉", "羊肉"],
           "answer": "1", "question_type": "main-ingredient", "food_name": "大盘鸡",
           "cuisine_type": "新疆菜", "question_id": f"textqa-{n}"}
    row.update(changes)
    return row


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A FoodieQA-shaped folder with four pictures and no question files yet."""
    root = tmp_path / "foodieqa"
    for i, name in enumerate("abcd"):
        jpeg(root / "images" / f"{name}.jpg", (60 * i, 100, 150))
    return root


def make(root: Path, sivqa: list | None = None, mivqa: list | None = None,
         textqa: list | None = None) -> Path:
    for task, rows in ((SIVQA, sivqa), (MIVQA, mivqa), (TEXTQA, textqa)):
        if rows is not None:
            write_json(root / FOODIEQA_FILES[task], rows)
    return root


def only_problem(result, file: str | None = None):
    rows = [p for p in result.problems if p.skipped]
    assert len(rows) == 1, result.problems
    if file:
        assert rows[0].file == file
    return rows[0]


# --- FoodieQA folders: good input -----------------------------------------------------------------

def test_reads_all_three_tasks_with_one_schema(folder: Path) -> None:
    other_dish = sivqa_row(1, "images/b.jpg")
    other_dish["food_meta"] = {**other_dish["food_meta"], "id": 5, "food_name": "锅包肉"}
    make(folder, [sivqa_row(0), other_dish], [mivqa_row(0)], [textqa_row(0)])
    result = read_foodieqa_folder(folder)
    assert result.problems == ()
    by_id = {r.id: r for r in result.records}
    first = by_id["vqa-0"]
    assert first.task == SIVQA and first.answer == 2 and first.choices[2] == "新疆菜"
    assert first.images == ((folder / "images/a.jpg").resolve(),)
    assert (first.cuisine, first.region, first.food_name, first.dish_id) == ("新疆菜", "新疆", "大盘鸡", "217")
    assert first.choices_en == ("Beijing", "Anhui", "Xinjiang", "Guangxi")
    multi = by_id["m-0"]
    assert multi.task == MIVQA and len(multi.images) == 4 and multi.choices == ()
    # the right picture (a.jpg) is dish 217 according to sivqa; the others are keyed by picture
    assert multi.dish_id == "217" and multi.related_dish_ids == ("5", "image:images/c.jpg", "image:images/d.jpg")
    text = by_id["textqa-0"]
    assert text.task == TEXTQA and text.images == () and text.dish_id == "217"  # matched by name
    assert result.summary().startswith("Read 4 records")


def test_any_of_the_three_files_may_be_missing(folder: Path) -> None:
    make(folder, textqa=[textqa_row(0)])
    result = read_foodieqa_folder(folder)
    assert [r.task for r in result.records] == [TEXTQA] and result.problems == ()


def test_hub_rows_with_nulls_go_through_the_same_parser(folder: Path) -> None:
    # Arrow fills keys a row lacks with None; the parser must treat None as "absent".
    sivqa = sivqa_row(0, question_en=None, choices_en=None)
    textqa = textqa_row(0, cuisine_type=None, food_name=None)
    mivqa = mivqa_row(0, choices=None)
    result = parse_foodieqa_rows({SIVQA: [sivqa], MIVQA: [mivqa], TEXTQA: [textqa]}, folder)
    assert [p for p in result.problems if p.skipped] == []
    assert {r.id for r in result.records} == {"vqa-0", "m-0", "textqa-0"}
    assert result.records[0].question_en == "" and result.records[0].choices_en == ()


def test_hub_unreachable_says_so_in_a_sentence(tmp_path: Path) -> None:
    script = ("from backend.data import read_foodieqa_hub, DataError\n"
              "try:\n    read_foodieqa_hub(r'%s')\nexcept DataError as e:\n    print('SENTENCE:', e)\n"
              % (tmp_path / "hub"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert "SENTENCE: The Hugging Face hub cannot be reached" in done.stdout, done.stdout + done.stderr
    assert "--data" in done.stdout and "Traceback" not in done.stdout


# --- FoodieQA folders: bad input --------------------------------------------------------------------

def test_malformed_json_is_reported_and_other_files_still_read(folder: Path) -> None:
    make(folder, sivqa=[sivqa_row(0)])
    (folder / FOODIEQA_FILES[MIVQA]).write_text('[{"question": "x",', encoding="utf-8")
    result = read_foodieqa_folder(folder)
    problem = only_problem(result, "mivqa_tidy.json")
    assert problem.row is None and "not valid JSON" in problem.message and "line 1" in problem.message
    assert [r.id for r in result.records] == ["vqa-0"]


def test_a_file_that_is_not_a_list_is_reported(folder: Path) -> None:
    make(folder, sivqa=[sivqa_row(0)])
    write_json(folder / FOODIEQA_FILES[TEXTQA], {"question": "?"})
    result = read_foodieqa_folder(folder)
    assert "JSON object, not a list" in only_problem(result, "textqa_tidy.json").message
    assert len(result.records) == 1


def test_an_empty_file_is_reported(folder: Path) -> None:
    make(folder, sivqa=[sivqa_row(0)])
    (folder / FOODIEQA_FILES[MIVQA]).write_bytes(b"")
    result = read_foodieqa_folder(folder)
    assert only_problem(result, "mivqa_tidy.json").message == "mivqa_tidy.json is empty; it should hold a JSON list."
    assert len(result.records) == 1
    assert result.summary().endswith("1 file unreadable: see the report.")


def test_non_utf8_file_is_reported(folder: Path) -> None:
    make(folder, sivqa=[sivqa_row(0)])
    (folder / FOODIEQA_FILES[TEXTQA]).write_bytes(json.dumps([textqa_row(0)], ensure_ascii=False).encode("gbk"))
    result = read_foodieqa_folder(folder)
    problem = only_problem(result, "textqa_tidy.json")
    assert "not UTF-8" in problem.message and "save it as UTF-8" in problem.message
    assert [r.id for r in result.records] == ["vqa-0"]


@pytest.mark.parametrize("change, words", [
    ({"question": None}, "question is missing"),
    ({"question": "  "}, "question is empty"),
    ({"choices": ""}, 'choices is "" but a single-image question needs 4 choices'),
    ({"choices": ["京菜", "徽菜", "新疆菜"]}, "choices has 3 entries instead of 4"),
    ({"choices": ["京菜", "", "新疆菜", "桂菜"]}, "choices entry 2 is empty"),
    ({"answer": "4"}, "answer 4 is out of range (0 to 3)"),
    ({"answer": "-1"}, "not a choice number"),
    ({"answer": None}, "answer is missing"),
    ({"food_meta": None}, "the picture is missing"),
])
def test_bad_sivqa_rows_are_reported_and_skipped(folder: Path, change: dict, words: str) -> None:
    make(folder, sivqa=[sivqa_row(0), sivqa_row(1, **change), sivqa_row(2)])
    result = read_foodieqa_folder(folder)
    problem = only_problem(result, "sivqa_tidy.json")
    assert (problem.row, problem.record_id) == (1, "vqa-1")
    assert words.lower() in problem.message.lower() and problem.message.endswith("The row was skipped.")
    assert [r.id for r in result.records] == ["vqa-0", "vqa-2"]


def test_choices_as_empty_text_are_fine_for_multi_image_only(folder: Path) -> None:
    make(folder, mivqa=[mivqa_row(0), mivqa_row(1, choices=["a", "b", "c", "d"]),
                        mivqa_row(2, images=["images/a.jpg", "images/b.jpg", "images/c.jpg"])],
         textqa=[textqa_row(0, choices="")])
    result = read_foodieqa_folder(folder)
    kept = [p for p in result.problems if not p.skipped]
    assert len(kept) == 1 and kept[0].record_id == "m-1" and "should be" in kept[0].message
    skipped = {p.record_id: p.message for p in result.problems if p.skipped}
    assert set(skipped) == {"m-2", "textqa-0"}
    assert "3 pictures instead of 4" in skipped["m-2"]
    assert {r.id for r in result.records} == {"m-0", "m-1"}


def test_duplicated_ids_keep_the_first(folder: Path) -> None:
    make(folder, sivqa=[sivqa_row(0), sivqa_row(0, "images/b.jpg")], textqa=[textqa_row(5, question_id="vqa-0")])
    result = read_foodieqa_folder(folder)
    skipped = [p for p in result.problems if p.skipped]
    assert [(p.file, p.row, p.record_id) for p in skipped] == [
        ("sivqa_tidy.json", 1, "vqa-0"), ("textqa_tidy.json", 0, "vqa-0")]
    assert all("already used by sivqa_tidy.json row 0" in p.message for p in skipped)
    assert [r.images[0].name for r in result.records] == ["a.jpg"]


def test_missing_id_is_named_and_kept(folder: Path) -> None:
    make(folder, textqa=[textqa_row(0, question_id=None)])
    result = read_foodieqa_folder(folder)
    assert [r.id for r in result.records] == ["textqa-row0"]
    assert result.problems[0].skipped is False and "question_id is missing" in result.problems[0].message


def test_rows_that_are_not_objects_are_reported(folder: Path) -> None:
    make(folder, textqa=["just text", 42, None, textqa_row(1)])
    result = read_foodieqa_folder(folder)
    assert [p.row for p in result.problems] == [0, 1, 2]
    assert "JSON string, not an object" in result.problems[0].message
    assert [r.id for r in result.records] == ["textqa-1"]


@pytest.mark.parametrize("setup, words", [
    (lambda root: None, "is missing"),
    (lambda root: (root / "images/x.jpg").write_bytes(b""), "empty (0-byte)"),
    (lambda root: (root / "images/x.jpg").write_text("not a picture"), "not a picture"),
    (lambda root: (root / "images/x.jpg").mkdir(), "not a regular file"),
    (lambda root: os.mkfifo(root / "images/x.jpg"), "not a regular file"),
])
def test_unusable_pictures_are_reported(folder: Path, setup, words: str) -> None:
    setup(folder)
    make(folder, sivqa=[sivqa_row(0), sivqa_row(1, "images/x.jpg")])
    result = read_foodieqa_folder(folder)
    problem = only_problem(result, "sivqa_tidy.json")
    assert problem.row == 1 and "images/x.jpg" in problem.message and words in problem.message
    assert [r.id for r in result.records] == ["vqa-0"]


def test_truncated_picture_is_caught_by_the_full_check(folder: Path) -> None:
    data = (folder / "images/a.jpg").read_bytes()
    (folder / "images/half.jpg").write_bytes(data[: len(data) // 2])
    make(folder, sivqa=[sivqa_row(0), sivqa_row(1, "images/half.jpg")])
    quick = read_foodieqa_folder(folder)  # indexing never decodes, so it cannot see this
    assert len(quick.records) == 2
    full = read_foodieqa_folder(folder, image_check="full")
    assert "damaged or truncated" in only_problem(full).message
    assert [r.id for r in full.records] == ["vqa-0"]


def test_paths_that_escape_the_folder_are_refused(folder: Path, tmp_path: Path) -> None:
    secret = jpeg(tmp_path / "secret.jpg")
    (folder / "images/link.jpg").symlink_to(secret)
    (folder / "images/inner-link.jpg").symlink_to(folder / "images/b.jpg")
    (folder / "images/loop.jpg").symlink_to(folder / "images/loop.jpg")
    bad = ["../secret.jpg", "../../etc/passwd", "/etc/passwd", str(secret), "images/../../secret.jpg",
           "images/link.jpg", "..\\secret.jpg", "images/loop.jpg", "images/\x00.jpg", 42]
    make(folder, sivqa=[sivqa_row(i, path) for i, path in enumerate(bad)]
         + [sivqa_row(99, "images/inner-link.jpg")])
    result = read_foodieqa_folder(folder)
    assert [r.id for r in result.records] == ["vqa-99"]
    assert result.records[0].images == ((folder / "images/b.jpg").resolve(),)
    assert sorted(p.row for p in result.problems) == list(range(len(bad)))
    messages = " ".join(p.message for p in result.problems)
    assert "outside the data folder" in messages and "absolute path" in messages
    assert "climbs out" in messages


def test_a_fifo_outside_the_folder_is_never_opened(folder: Path, tmp_path: Path) -> None:
    # Opening a FIFO blocks until someone writes: had the reader touched it, this test would hang
    # (pytest-timeout turns that into a failure).
    os.mkfifo(tmp_path / "trap.jpg")
    (folder / "images/trap.jpg").symlink_to(tmp_path / "trap.jpg")
    make(folder, sivqa=[sivqa_row(0, "../trap.jpg"), sivqa_row(1, "images/trap.jpg"), sivqa_row(2)])
    result = read_foodieqa_folder(folder, image_check="full")
    assert [r.id for r in result.records] == ["vqa-2"]


def test_a_question_file_linked_from_outside_is_not_read(folder: Path, tmp_path: Path) -> None:
    outside = write_json(tmp_path / "elsewhere.json", [textqa_row(0)])
    (folder / FOODIEQA_FILES[TEXTQA]).symlink_to(outside)
    make(folder, sivqa=[sivqa_row(0)])
    result = read_foodieqa_folder(folder)
    problem = only_problem(result, "textqa_tidy.json")
    assert problem.row is None and "outside the data folder" in problem.message
    assert [r.id for r in result.records] == ["vqa-0"]


def test_empty_and_wrong_folders_get_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        read_foodieqa_folder(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="holds none of FoodieQA's files"):
        read_foodieqa_folder(tmp_path / "other")
    with pytest.raises(DataError, match="There is no folder"):
        read_foodieqa_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="is a file, not a folder"):
        read_foodieqa_folder(tmp_path / "other" / "notes.txt")


# --- own data -------------------------------------------------------------------------------------

def llava(n: int, image: object = "images/a.jpg", turns: list | None = None, **extra: object) -> dict:
    row = {"id": f"own-{n}", "image": image,
           "conversations": turns or [{"from": "human", "value": "<image>\n这是什么菜？"},
                                      {"from": "gpt", "value": "这是大盘鸡，新疆菜。"}]}
    row.update(extra)
    return row


def test_llava_json_multi_turn_and_multi_image(folder: Path) -> None:
    multi_turn = [{"from": "human", "value": "<image>\n这是什么菜？"}, {"from": "gpt", "value": "锅包肉。"},
                  {"from": "human", "value": "什么味道？"}, {"from": "gpt", "value": "酸甜酥脆。"}]
    two = {"id": "two", "images": ["images/a.jpg", "images/b.jpg"],
           "conversations": [{"from": "user", "value": "<image><image>\n哪个是鸡？"},
                             {"from": "assistant", "value": "第一张。"}]}
    path = write_json(folder / "mine.json", [llava(0, turns=multi_turn), two, llava(2, dish_id=7)])
    result = read_llava_json(path)
    assert result.problems == ()
    first, second, third = result.records
    assert [t.role for t in first.turns] == ["human", "gpt", "human", "gpt"]
    assert first.question == "这是什么菜？" and first.dish_id == "image:images/a.jpg"
    assert len(second.images) == 2 and second.turns[1].role == "gpt"
    assert third.dish_id == "7"


@pytest.mark.parametrize("row, words", [
    (llava(1, turns=[{"from": "human", "value": "这是什么菜？"}, {"from": "gpt", "value": "鸡"}]),
     "no <image> placeholder"),
    (llava(1, turns=[{"from": "human", "value": "<image>\n?"}, {"from": "gpt", "value": "  "}]),
     "turn 2 (the answer) is empty"),
    (llava(1, turns=[{"from": "human", "value": "<image>\n?"}]), "has no answer"),
    (llava(1, turns=[{"from": "gpt", "value": "x"}, {"from": "human", "value": "<image>"}]), "starts with an answer"),
    (llava(1, turns=[{"from": "robot", "value": "<image>"}, {"from": "gpt", "value": "x"}]), "not human or gpt"),
    (llava(1, "images/gone.jpg"), "'images/gone.jpg' is missing"),
    (llava(1, "../../etc/passwd"), "climbs out of the data folder"),
    (llava(1, "/etc/passwd"), "absolute path"),
    ({"id": "own-1", "image": "images/a.jpg"}, "conversations is missing"),
    (llava(1, turns=[{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "x"}]),
     "2 <image> placeholders for 1 pictures"),
])
def test_bad_llava_rows_are_reported(folder: Path, row: dict, words: str) -> None:
    path = write_json(folder / "mine.json", [llava(0), row, llava(2)])
    result = read_llava_json(path)
    problem = only_problem(result, "mine.json")
    assert problem.row == 1 and words.lower() in problem.message.lower()
    assert [r.id for r in result.records] == ["own-0", "own-2"]


def test_a_repeated_id_is_renamed_and_said_once_and_a_missing_id_is_no_warning(folder: Path) -> None:
    # issue 27: XTuner's repeat.py writes the same id many times (the rows are kept, renamed), and
    # LLaVA and XTuner need no id at all (no warning line for each row).
    rows = [llava(0), llava(0), {k: v for k, v in llava(5).items() if k != "id"}, llava(0), llava(9, id="own-0-2")]
    result = read_llava_json(write_json(folder / "mine.json", rows))
    assert result.problems == ()
    assert [r.id for r in result.records] == ["own-0", "own-0-3", "mine-2", "own-0-4", "own-0-2"]
    assert result.renamed == (("own-0", "own-0-3"), ("own-0", "own-0-4"))
    assert "2 repeated ids were renamed, the rows kept (the first: own-0 → own-0-3)." in result.summary()


def test_unreadable_own_picture_is_caught_before_training(folder: Path) -> None:
    data = (folder / "images/a.jpg").read_bytes()
    (folder / "images/broken.jpg").write_bytes(data[:200])
    path = write_json(folder / "mine.json", [llava(0), llava(1, "images/broken.jpg")])
    result = read_llava_json(path)  # own data is checked fully by default
    assert "unreadable" in only_problem(result).message
    assert [r.id for r in result.records] == ["own-0"]


def test_csv_folder_reads_and_reports(folder: Path) -> None:
    (folder / "data.csv").write_text(
        "\ufeffImage,Question,Answer,dish_id\n"
        "images/a.jpg,这是什么菜？,大盘鸡,217\n"
        "images/b.jpg,这是什么菜？,\n"
        "images/missing.jpg,这是什么菜？,锅包肉\n"
        ",这是什么菜？,锅包肉\n"
        "images/c.jpg,\"多行\n问题\",\"答案, 有逗号\"\n\n", encoding="utf-8")
    result = read_own_data(folder)
    assert [r.id for r in result.records] == ["data-0", "data-4"]
    assert result.records[0].turns[0].text == "<image>\n这是什么菜？" and result.records[0].dish_id == "217"
    assert result.records[1].turns[1].text == "答案, 有逗号"
    reasons = {p.row: p.message for p in result.problems}
    assert "the answer" in reasons[1] and "missing" in reasons[2] and "empty" in reasons[3]


@pytest.mark.parametrize("content, words", [
    ("picture,text\nimages/a.jpg,hi\n", "lacks the columns image, question, answer"),
    ("", "is empty"),
])
def test_csv_without_the_columns_is_reported(folder: Path, content: str, words: str) -> None:
    (folder / "data.csv").write_text(content, encoding="utf-8")
    result = read_csv_file(folder / "data.csv")
    assert result.records == () and words in result.problems[0].message


def test_a_gbk_csv_from_excel_on_chinese_windows_is_read(folder: Path) -> None:
    # issue 27 turned this around: a GBK file (Excel's "CSV" on Chinese Windows) was refused as "not UTF-8"
    (folder / "data.csv").write_bytes("image,question,answer\nimages/a.jpg,这是什么菜？,大盘鸡\n".encode("gbk"))
    result = read_csv_file(folder / "data.csv")
    assert result.problems == () and result.records[0].turns[1].text == "大盘鸡"
    (folder / "data.csv").write_bytes(b"\x81\x30\xff\xfe image,question,answer\n")  # neither UTF-8 nor GBK
    assert "neither UTF-8 nor GBK" in read_csv_file(folder / "data.csv").problems[0].message


def test_own_data_folder_must_hold_exactly_one_data_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        read_own_data(tmp_path / "empty")
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.csv").write_text("image,question,answer\n")
    (two / "b.json").write_text("[]")
    with pytest.raises(DataError, match="several data files"):
        read_own_data(two)


def test_data_folder_picks_the_right_reader(folder: Path) -> None:
    make(folder, sivqa=[sivqa_row(0)])
    assert read_data_folder(folder).records[0].task == SIVQA
    other = folder.parent / "own"
    jpeg(other / "x.jpg")
    (other / "data.csv").write_text("image,question,answer\nx.jpg,这是什么？,饺子\n", encoding="utf-8")
    assert read_data_folder(other).records[0].task == "conversation"


# --- the bundled sample -----------------------------------------------------------------------------

def test_bundled_sample_is_clean_and_balanced() -> None:
    result = read_bundled_sample(image_check="full")
    assert result.problems == () and result.source == SOURCE_SAMPLE
    counts = result.counts_by_task()
    assert counts[SIVQA] == 36 and counts[MIVQA] == 12 and counts[TEXTQA] == 15
    sivqa = [r for r in result.records if r.task == SIVQA]
    assert len({r.images[0] for r in sivqa}) == 36  # every bundled picture is asked about
    assert {r.dish_id for r in sivqa} == {str(n) for n in range(1, 13)}
    answers = Counter(r.answer for r in result.records)
    assert set(answers) == {0, 1, 2, 3} and min(answers.values()) >= len(result.records) // 5
    assert all(r.question_en and len(r.choices_en) == 4 for r in sivqa)


def test_bundled_own_data_has_multi_turn_rows_and_a_csv() -> None:
    own = read_bundled_own_data(image_check="full")
    assert own.problems == () and len(own.records) == 36
    assert sum(1 for r in own.records if len(r.turns) > 2) >= 12
    assert {r.dish_id for r in own.records} == {str(n) for n in range(1, 13)}
    csv_rows = read_csv_file(REPO / "examples" / "own_data.csv")
    assert csv_rows.problems == () and len(csv_rows.records) == 12
