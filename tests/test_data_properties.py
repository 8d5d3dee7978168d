"""Property-based tests of the readers: whatever rows arrive, reading never crashes, every row is
either a record or a report row, ids stay unique, and no record points outside the data folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.data import (
    FOODIEQA_FILES,
    MIVQA,
    SIVQA,
    TEXTQA,
    parse_foodieqa_rows,
    parse_llava_rows,
    read_csv_file,
    read_foodieqa_folder,
)
from backend.data.safe_paths import UnsafePath, resolve_inside

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Paths a hostile or sloppy file might hold, mixed with good ones and random text.
PATHS = st.one_of(
    st.sampled_from(["images/a.jpg", "images/b.jpg", "images/link-out.jpg", "images/empty.jpg",
                     "../secret.jpg", "../../etc/passwd", "/etc/passwd", "images/../../secret.jpg",
                     "images/../images/a.jpg", "..\\secret.jpg", "images/", "", "images/nope.jpg",
                     "images/a.jpg\x00", "~/secret.jpg", "./images/a.jpg"]),
    st.text(max_size=30),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10), st.floats(allow_nan=False),
                    st.text(max_size=20), PATHS)
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=6)
KEYS = ["question", "choices", "answer", "question_type", "food_name", "question_id", "question_en",
        "choices_en", "food_meta", "images", "image", "cuisine_type", "ann_group", "id",
        "conversations", "dish_id", "source"]


def field_values(key: str) -> st.SearchStrategy:
    """Mostly plausible values for known keys, so rows get deep into the parser, plus junk."""
    plausible = {
        "choices": st.one_of(st.just(""), st.lists(st.text(max_size=6), min_size=2, max_size=5)),
        "answer": st.one_of(st.sampled_from(["0", "1", "2", "3", "4", "-1", "x", " 2 "]), st.integers(-2, 5)),
        "images": st.lists(PATHS, min_size=3, max_size=5),
        "image": st.one_of(PATHS, st.lists(PATHS, max_size=3)),
        "food_meta": st.fixed_dictionaries({}, optional={"food_file": PATHS, "id": SCALARS,
                                                         "food_type": SCALARS, "food_name": SCALARS}),
        "question_id": st.sampled_from(["q-1", "q-2", "q-3", 7, None]),
        "id": st.sampled_from(["r-1", "r-2", 3, None, ""]),
        "conversations": st.lists(st.fixed_dictionaries(
            {"from": st.sampled_from(["human", "gpt", "user", "assistant", "system", 5]),
             "value": st.one_of(st.sampled_from(["<image>\n这是什么？", "饺子。", "", "<image><image>"]),
                                st.text(max_size=12))}), max_size=4),
    }.get(key, st.none())
    return st.one_of(plausible, plausible, JSONISH)


# Valid rows of each kind; most generated rows are one of these with a few fields changed or
# removed, so they get deep into the parsers instead of failing at the first check.
BASES = [
    {"question": "哪个菜系?", "choices": ["京菜", "徽菜", "新疆菜", "桂菜"], "answer": "2",
     "question_id": "q-1", "food_meta": {"id": 217, "food_name": "大盘鸡", "food_file": "images/a.jpg"}},
    {"question": "哪一道?", "choices": "", "answer": "1", "question_id": "q-2",
     "images": ["images/a.jpg", "images/b.jpg", "images/c.jpg", "images/d.jpg"]},
    {"question": "食材?", "choices": ["鸭肉", "鸡肉", "牛肉", "羊肉"], "answer": "1", "question_id": "q-3",
     "food_name": "大盘鸡"},
    {"id": "r-1", "image": "images/b.jpg", "conversations": [{"from": "human", "value": "<image>\n这是什么？"},
                                                            {"from": "gpt", "value": "饺子。"}]},
]
DELETE = object()
CHANGES = st.lists(st.sampled_from(KEYS).flatmap(
    lambda key: st.tuples(st.just(key), st.one_of(st.just(DELETE), field_values(key)))), max_size=3)


def apply(base: dict, changes: list) -> dict:
    row = json.loads(json.dumps(base))
    for key, value in changes:
        if value is DELETE:
            row.pop(key, None)
        else:
            row[key] = value
    return row


ROW = st.one_of(
    st.builds(apply, st.sampled_from(BASES), CHANGES),
    st.builds(apply, st.sampled_from(BASES), CHANGES),
    st.fixed_dictionaries({}, optional={k: field_values(k) for k in KEYS}),
    SCALARS,
)
ROWS = st.lists(ROW, max_size=6)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("prop")
    root = base / "data"
    (root / "images").mkdir(parents=True)
    for name in "abcd":
        Image.new("RGB", (8, 8), (10, 200, 30)).save(root / "images" / f"{name}.jpg")
    Image.new("RGB", (8, 8)).save(base / "secret.jpg")
    (root / "images" / "link-out.jpg").symlink_to(base / "secret.jpg")
    (root / "images" / "empty.jpg").write_bytes(b"")
    return root


def assert_confined(result, root: Path) -> None:
    resolved = root.resolve()
    for record in result.records:
        for image in record.images:
            assert image.is_relative_to(resolved) and not image.is_symlink()
            assert image.name != "secret.jpg"
    ids = [r.id for r in result.records]
    assert len(ids) == len(set(ids))


@SETTINGS
@given(sivqa=ROWS, mivqa=ROWS, textqa=ROWS)
def test_foodieqa_folder_never_crashes_or_escapes(data_folder: Path, sivqa, mivqa, textqa) -> None:
    for task, rows in ((SIVQA, sivqa), (MIVQA, mivqa), (TEXTQA, textqa)):
        (data_folder / FOODIEQA_FILES[task]).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    result = read_foodieqa_folder(data_folder)
    event(f"records kept: {min(len(result.records), 2)}")  # shows in --hypothesis-show-statistics
    assert_confined(result, data_folder)
    # every row became a record or exactly one "skipped" report row, never both, never neither
    skipped = [p for p in result.problems if p.skipped]
    assert len(result.records) + len(skipped) == len(sivqa) + len(mivqa) + len(textqa)
    assert all(p.message.strip() for p in result.problems)


@SETTINGS
@given(rows=ROWS)
def test_hub_rows_never_crash_or_escape(data_folder: Path, rows) -> None:
    result = parse_foodieqa_rows({SIVQA: rows, MIVQA: rows, TEXTQA: rows}, data_folder)
    assert_confined(result, data_folder)


@SETTINGS
@given(rows=ROWS)
def test_llava_rows_never_crash_or_escape(data_folder: Path, rows) -> None:
    result = parse_llava_rows(rows, data_folder, file_name="own.json", image_check="quick")
    event(f"records kept: {min(len(result.records), 2)}")
    assert_confined(result, data_folder)
    assert len(result.records) + sum(p.skipped for p in result.problems) == len(rows)
    for record in result.records:  # what is kept is trainable
        assert record.turns[0].role == "human" and any(t.role == "gpt" for t in record.turns)
        assert all(t.text.strip() for t in record.turns)


@SETTINGS
@given(content=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_csv_text_never_crashes(data_folder: Path, content) -> None:
    path = data_folder / "own.csv"
    if isinstance(content, str):
        content = ("image,question,answer\n" + content).encode("utf-8", "surrogatepass")
    path.write_bytes(content)
    result = read_csv_file(path, image_check="quick")
    assert_confined(result, data_folder)


@settings(max_examples=300, deadline=None)
@given(relative=st.one_of(PATHS, st.lists(st.sampled_from(["..", ".", "a", "images", "/", "\\", "~"]),
                                          max_size=6).map("/".join)))
def test_resolve_inside_never_leaves_the_root(tmp_path_factory: pytest.TempPathFactory, relative) -> None:
    root = Path("/srv/data/foodieqa")
    try:
        resolved = resolve_inside(root, relative)
    except UnsafePath:
        return
    assert resolved.is_relative_to(root)
