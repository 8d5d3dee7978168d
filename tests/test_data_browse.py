"""What the Dataset tab shows: filters, counts, pages, table, detail, cached thumbnails, uploads."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from backend.data import (
    FACETS,
    MIVQA,
    PAGE_SIZE,
    SIVQA,
    TEXTQA,
    DataError,
    Record,
    RecordFilter,
    ThumbnailCache,
    detail_view,
    facet_counts,
    filter_records,
    find_record,
    gallery_page,
    paginate,
    read_bundled_own_data,
    read_bundled_sample,
    read_own_data,
    table_rows,
    unpack_upload,
)


@pytest.fixture(scope="module")
def records():
    return read_bundled_sample().records + read_bundled_own_data().records


# --- filters and counts --------------------------------------------------------------------------------

def test_filters_narrow_by_each_facet_and_dish_name(records) -> None:
    single = filter_records(records, RecordFilter(task=SIVQA))
    assert len(single) == 36 and all(r.task == SIVQA for r in single)
    sichuan = filter_records(records, RecordFilter(region="川"))
    assert sichuan and all(r.cuisine == "川菜" for r in sichuan)
    noodles = filter_records(records, RecordFilter(dish_name="牛肉面"))
    assert {r.food_name for r in noodles} == {"兰州牛肉面"}
    assert {r.task for r in noodles} == {SIVQA, MIVQA, TEXTQA, "conversation"}
    both = filter_records(records, RecordFilter(task=TEXTQA, question_type="region"))
    assert [r.question_type for r in both] == ["region"] * 3
    assert filter_records(records, RecordFilter(dish_name="no such dish")) == []


def test_dish_name_match_ignores_case() -> None:
    duck = Record(id="x", task="conversation", source="own", food_name="Peking Duck")
    assert filter_records([duck], RecordFilter(dish_name="  peking duck ")) == [duck]


def test_counts_say_what_each_choice_would_show(records) -> None:
    flt = RecordFilter(task=SIVQA)
    counts = facet_counts(records, flt)
    assert set(counts) == set(FACETS)
    # the task dropdown is counted without its own choice, the others under it
    assert dict(counts["task"]) == {SIVQA: 36, MIVQA: 12, TEXTQA: 15, "conversation": 36}
    assert sum(n for _, n in counts["cuisine"]) == 36
    for value, n in counts["question_type"]:
        assert len(filter_records(records, RecordFilter(task=SIVQA, question_type=value))) == n
    assert counts["cuisine"][0][1] >= counts["cuisine"][-1][1]  # most common first


def test_pages_are_clamped_and_labelled(records) -> None:
    first = paginate(records, 1)
    assert len(first.items) == PAGE_SIZE and first.count == 5 and first.total == 99
    last = paginate(records, 99)
    assert last.number == 5 and len(last.items) == 99 - 4 * PAGE_SIZE
    assert paginate(records, 0).number == 1
    empty = paginate([], 3)
    assert (empty.number, empty.count, empty.items, empty.label) == (1, 1, (), "Nothing matches.")
    assert first.label == "Page 1 of 5 (99 in all)"


def test_table_rows_show_the_answer(records) -> None:
    row = table_rows([find_record(records, "sample-sivqa-0")])[0]
    assert row[:4] == ["sample-sivqa-0", "single-image", "图片中的食物通常属于哪个菜系？", "(A) 西北菜"]
    conversation = table_rows([find_record(records, "own-0001")])[0]
    assert conversation[3] == "这是兰州牛肉面，西北菜。"


# --- detail view --------------------------------------------------------------------------------------

def test_detail_marks_the_answer_in_both_languages(records) -> None:
    detail = detail_view(find_record(records, "sample-sivqa-1"))
    marked = [c for c in detail.choices if c.is_answer]
    assert len(marked) == 1 and marked[0].letter == detail.answer_letter == "B"
    assert marked[0].text == "牛肉和拉面" and marked[0].text_en == "beef and hand-pulled noodles"
    text = detail.markdown()
    assert "(B) 牛肉和拉面 / beef and hand-pulled noodles ✅" in text
    assert "What is the food in the picture mainly made of?" in text
    assert len(detail.pictures) == 1 and detail.pictures[0].is_file()


def test_detail_of_multi_image_question_offers_pictures_as_choices(records) -> None:
    detail = detail_view(find_record(records, "sample-mivqa-0"))
    assert len(detail.pictures) == 4 and all(c.picture for c in detail.choices)
    right = [c for c in detail.choices if c.is_answer]
    assert len(right) == 1 and right[0].picture.name.startswith("yangrouchuan")


def test_detail_of_a_conversation_shows_its_turns(records) -> None:
    text = detail_view(find_record(records, "own-0001")).markdown()
    assert "**Q**: 这是什么菜？" in text and "**A**: 汤清味鲜，辣油香而不燥。" in text


# --- thumbnails -----------------------------------------------------------------------------------------

def picture(path: Path, color: tuple[int, int, int], size: int = 600) -> Path:
    Image.new("RGB", (size, size // 2), color).save(path, "JPEG")
    return path


def test_thumbnails_are_made_once_and_remade_when_the_picture_changes(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "cache", size=64)
    source = picture(tmp_path / "dish.jpg", (200, 30, 30))
    thumb = cache.thumbnail(source)
    assert thumb is not None and thumb.parent == tmp_path / "cache"
    with Image.open(thumb) as small:
        assert max(small.size) == 64 and small.getpixel((10, 10))[0] > 150
    made = thumb.stat().st_mtime_ns
    assert cache.thumbnail(source) == thumb and thumb.stat().st_mtime_ns == made  # not redrawn
    picture(source, (30, 30, 200), size=500)  # the person replaces the picture
    new = cache.thumbnail(source)
    assert new != thumb
    with Image.open(new) as small:
        assert small.getpixel((10, 10))[2] > 150
    assert cache.clear() == 2 and cache.thumbnail(source) is not None


def test_unusable_pictures_get_no_thumbnail(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "cache")
    (tmp_path / "bad.jpg").write_text("not a picture")
    assert cache.thumbnail(tmp_path / "bad.jpg") is None
    assert cache.thumbnail(tmp_path / "gone.jpg") is None


def test_a_cached_page_is_fast(tmp_path: Path, records) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs")
    page = paginate(filter_records(records, RecordFilter(task=SIVQA)), 1)
    first = gallery_page(page.items, cache)
    assert len(first) == 24 and all(item.thumbnail and item.thumbnail.is_file() for item in first)
    start = time.perf_counter()
    again = gallery_page(page.items, cache)
    elapsed = time.perf_counter() - start
    assert [i.thumbnail for i in again] == [i.thumbnail for i in first]
    assert elapsed < 0.3, f"a cached page took {elapsed * 1000:.0f} ms"
    text = gallery_page([find_record(records, "sample-textqa-0")], cache)[0]
    assert text.thumbnail is None and "text" in text.caption


# --- uploads ---------------------------------------------------------------------------------------------

def test_uploaded_zip_is_unpacked_inside_the_folder_only(tmp_path: Path) -> None:
    archive = tmp_path / "mine.zip"
    jpg = tmp_path / "a.jpg"
    picture(jpg, (10, 200, 10), 64)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(jpg, "mine/images/a.jpg")
        zf.writestr("mine/data.csv", "image,question,answer\nimages/a.jpg,这是什么？,青菜\n")
        zf.writestr("../../evil.txt", "gotcha")
        zf.writestr("/abs.txt", "gotcha")
        link = zipfile.ZipInfo("mine/link.jpg")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
        zf.writestr("__MACOSX/._a.jpg", "resource fork")
    unpacked = unpack_upload([archive], tmp_path / "upload")
    assert unpacked.files == 2 and len(unpacked.skipped) == 3
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert not (tmp_path / "upload" / "mine" / "link.jpg").exists()
    result = read_own_data(unpacked.folder / "mine")
    assert [r.turns[1].text for r in result.records] == ["青菜"]


def test_uploads_are_capped_and_never_mixed(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * 2_000_000)  # a few KB packed, 2 MB unpacked
    with pytest.raises(DataError, match=r"unpacks to 2\.0 MB"):
        unpack_upload([archive], tmp_path / "one", max_bytes=1_000_000)
    assert not (tmp_path / "one").exists()  # a refused upload leaves nothing behind
    (tmp_path / "two").mkdir()
    with pytest.raises(DataError, match="already exists"):
        unpack_upload([archive], tmp_path / "two")
    loose = picture(tmp_path / "b.jpg", (1, 2, 3), 32)
    assert unpack_upload([loose], tmp_path / "three").files == 1
    assert os.listdir(tmp_path / "three") == ["b.jpg"]
