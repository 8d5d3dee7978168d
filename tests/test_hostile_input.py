"""Hostile input: random uploads, oversized datasets, garbled EXIF, and markup in questions and chat
that must be shown as text and never run (the last in a real chromium)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.data import (
    DataError,
    RecordFilter,
    detail_view,
    filter_records,
    paginate,
    read_data_folder,
    table_rows,
    unpack_upload,
)
from backend.data.library import upload_data_root
from backend.data.rows import MAX_TEXT_CHARS
from backend.images import ImageError, open_image
from tests.conftest import ARTIFACTS, EXAMPLES, needs_chromium
from tests.test_dataset_tab import browse, load, rows

# --- uploads: random names, random bytes, hostile archives ------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["data.json", "data.csv", "a.zip", "sivqa_tidy.json", "images", ".hidden", "x.jpg",
                     "../up.json", "..", "con", "名字.json", " space .csv", "a\\b.zip"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=40),
)
MEMBER_NAMES = st.one_of(
    st.sampled_from(["data.json", "images/a.jpg", "../evil.txt", "../../evil.txt", "/abs.txt", "C:/win.txt",
                     "..\\evil.txt", "a/../../evil.txt", "dir/", "__MACOSX/._x", "link.jpg", "a", "a/b",
                     "x" * 300]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40),
)
CONTENT = st.one_of(st.binary(max_size=2000),
                    st.just(json.dumps([{"id": "r", "image": "images/a.jpg", "conversations": [
                        {"from": "human", "value": "<image>\n?"}, {"from": "gpt", "value": "!"}]}]).encode()))


@st.composite
def zip_bytes(draw) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data, link in draw(st.lists(st.tuples(MEMBER_NAMES, CONTENT, st.booleans()), max_size=6)):
            info = zipfile.ZipInfo(name)
            if link:
                info.external_attr = 0o120777 << 16  # a symbolic link whose target is `data`
            zf.writestr(info, data)
    raw = buffer.getvalue()
    cut = draw(st.integers(0, len(raw)))
    return raw if draw(st.booleans()) else raw[:cut]  # whole, or truncated anywhere


UPLOADED = st.lists(st.tuples(NAMES, st.one_of(CONTENT, zip_bytes())), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(UPLOADED)
def test_any_upload_is_unpacked_inside_its_folder_or_refused_with_a_sentence(uploaded) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp)
        sent = sandbox / "sent"
        sent.mkdir()
        paths = []
        for index, (name, data) in enumerate(uploaded):
            try:
                path = sent / str(index) / name
                path.parent.mkdir()
                path.write_bytes(data)
            except OSError:  # a name the file system refuses never reaches the app either
                continue
            paths.append(path)
        destination = sandbox / "deep" / "er" / "upload"
        try:
            unpacked = unpack_upload(paths, destination)
        except DataError as err:
            assert str(err).endswith(".") and not destination.exists()
        else:
            assert unpacked.files >= 1
            for found in destination.rglob("*"):
                assert not found.is_symlink() and found.resolve().is_relative_to(destination.resolve())
            with contextlib.suppress(DataError):
                read_data_folder(upload_data_root(unpacked.folder))
        written = {p for p in sandbox.rglob("*") if p.is_file()}
        assert all(p.is_relative_to(sent) or p.is_relative_to(destination) for p in written), written


def test_members_that_cannot_be_written_are_left_out_with_a_reason(tmp_path) -> None:
    archive = tmp_path / "clash.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a", "a file...")
        zf.writestr("a/b", "...and a folder of the same name")
        zf.writestr("x" * 300, "a name no file system takes")
        zf.writestr("data.csv", "image,question,answer\n")
    unpacked = unpack_upload([archive], tmp_path / "upload")
    assert unpacked.files == 2 and sorted(os.listdir(unpacked.folder)) == ["a", "data.csv"]
    assert [line.split(":")[0] for line in unpacked.skipped] == ["a/b", "x" * 300]
    assert "cannot be written here (File name too long)" in unpacked.skipped[1]


# --- a big dataset with huge rows ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory) -> Path:
    """10,000 text questions, 20 of them with a 1 MB question and 2 with a 90,000-character one."""
    folder = tmp_path_factory.mktemp("big") / "FoodieQA"
    folder.mkdir()
    template = json.loads((EXAMPLES / "textqa_tidy.json").read_text(encoding="utf-8"))[0]
    rows_ = []
    for index in range(10_000):
        question = f"第 {index} 题：{template['question']}"
        if index % 500 == 0:
            question = "长" * 1_048_576
        elif index in (7, 9_999):
            question = "问" * 90_000
        rows_.append(dict(template, question_id=f"big-{index}", question=question))
    (folder / "textqa_tidy.json").write_text(json.dumps(rows_, ensure_ascii=False), encoding="utf-8")
    return folder


def test_ten_thousand_rows_with_huge_questions_load_and_browse_in_bounded_time(big_dataset) -> None:
    started = time.monotonic()
    result = read_data_folder(big_dataset)
    assert time.monotonic() - started < 30
    too_big = [p for p in result.problems if "characters long" in p.message]
    assert len(too_big) == 20 and len(result.records) == 9_980
    assert f"more than the {MAX_TEXT_CHARS:,} a field may hold" in too_big[0].message and too_big[0].skipped
    started = time.monotonic()
    last = paginate(filter_records(result.records, RecordFilter()), 10_000)
    assert last.number == last.count and len(table_rows(last.items)) == len(last.items)
    assert len(detail_view(result.records[-1]).markdown()) > 90_000  # the 90,000-character row is kept
    assert time.monotonic() - started < 5


def test_the_big_dataset_through_the_app(app_server, big_dataset) -> None:
    client = Client(app_server.url, verbose=False, download_files=False)
    started = time.monotonic()
    loaded = load(client, "folder", str(big_dataset))
    assert "9980 records" in loaded["summary"] and "20 rows skipped" in loaded["summary"]
    assert len(rows(browse(client, page=417)["table"])) == 20  # 9,980 = 415 × 24 + 20: page 416 is the last
    assert time.monotonic() - started < 60


# --- pictures with bogus EXIF -----------------------------------------------------------------------------------

def jpeg_with_exif(exif: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), "orange").save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [0, 9, 255, 65535])
def test_an_impossible_orientation_is_ignored(tmp_path, orientation) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "odd.jpg"
    path.write_bytes(jpeg_with_exif(exif.tobytes()))
    assert open_image(path, 10_000).size == (64, 32)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=60_000), st.binary(max_size=200).map(lambda b: b"Exif\x00\x00MM\x00*" + b)))
def test_a_garbled_exif_block_opens_or_is_a_sentence(exif) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "garbled.jpg"
        path.write_bytes(jpeg_with_exif(exif))
        try:
            assert open_image(path, 10_000).size[0] > 0
        except ImageError as err:
            assert "garbled.jpg" in str(err)


def test_a_huge_exif_chunk_in_a_png_opens_quickly(tmp_path) -> None:
    path = tmp_path / "huge-exif.png"
    Image.new("RGB", (64, 32), "orange").save(path, exif=b"Exif\x00\x00" + os.urandom(8_000_000))
    started = time.monotonic()
    assert open_image(path, 10_000).size == (64, 32)
    assert time.monotonic() - started < 5


# --- markup in questions and chat: shown as text, never run (chromium) --------------------------------------

PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


@pytest.fixture()
def hostile_folder(tmp_path) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "duck.jpg").write_bytes((EXAMPLES / "images" / "peking-duck-0.jpg").read_bytes())
    row = {"id": "xss-1", "image": "duck.jpg", "conversations": [
        {"from": "human", "value": f"<image>\n{PAYLOAD} 这是什么菜？"},
        {"from": "gpt", "value": '<b onmouseover="window.__pwned=3">北京烤鸭</b><svg onload="window.__pwned=4">'}]}
    (folder / "data.json").write_text(json.dumps([row], ensure_ascii=False), encoding="utf-8")
    return folder


@needs_chromium
def test_markup_in_chat_and_in_a_dataset_is_shown_as_text_and_never_run(browser, app_server, hostile_folder):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page.goto(app_server.url)
    page.locator("#chat-input textarea").wait_for(timeout=30_000)
    page.locator("#chat-input textarea").fill(f"{PAYLOAD} what?")
    page.locator("#chat-input textarea").press("Enter")
    # It once timed out here at 30 s in a full run on the 2-core box (cause not found; it did not
    # recur): wait for the page to be ready before typing, and give the reply longer.
    page.wait_for_function("() => document.querySelector('#chatbot').innerText.includes('what?')",
                           timeout=90_000)
    assert f"{PAYLOAD} what?" in page.locator("#chatbot").inner_text()

    page.get_by_role("tab", name="Dataset").click()
    page.get_by_label("A folder or file on the server").check()
    page.locator("#ds-folder textarea, #ds-folder input").first.fill(str(hostile_folder))
    page.locator("#ds-load").click()
    page.wait_for_function("() => document.querySelector('#ds-summary').innerText.includes('hostile')",
                           timeout=30_000)
    page.locator("#ds-record-id textarea, #ds-record-id input").first.fill("xss-1")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#ds-detail').innerText.includes('北京烤鸭')",
                           timeout=30_000)
    detail = page.locator("#ds-detail").inner_text()
    assert f"{PAYLOAD} 这是什么菜？" in detail and '<svg onload="window.__pwned=4">' in detail
    assert PAYLOAD in page.locator("#ds-table").inner_text()
    page.locator("#ds-detail").hover()  # an onmouseover that survived would fire now
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#chatbot img[src='x'], #ds-detail img[src='x'], #ds-detail svg").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hostile-markup.png"), full_page=True)
    page.close()


# --- issue 27: data in any format, hostile all the same -------------------------------------------------------

def test_a_2_gb_data_file_is_refused_with_a_sentence_and_never_read(tmp_path) -> None:
    folder = tmp_path / "huge"
    folder.mkdir()
    with open(folder / "train.jsonl", "wb") as handle:  # sparse: 2 GB on paper, nothing on the disk
        handle.truncate(2 * 1024 ** 3)
    started = time.monotonic()
    result = read_data_folder(folder)
    assert time.monotonic() - started < 5 and result.records == ()
    assert "is 2147 MB, over the 268 MB limit for a data file" in result.problems[0].message
    uploaded = unpack_upload([folder / "train.jsonl", EXAMPLES / "images" / "jiaozi-0.jpg"], tmp_path / "upload")
    assert not (uploaded.folder / "train.jsonl").exists(), "left out before a byte was copied"
    assert "a data file of 2.1 GB, more than the 0.3 GB one may be" in uploaded.skipped[0]


def test_a_2_gb_file_through_the_app_is_a_sentence_and_the_app_stays_up(app_server, tmp_path) -> None:
    folder = tmp_path / "huge"
    folder.mkdir()
    with open(folder / "data.json", "wb") as handle:
        handle.truncate(2 * 1024 ** 3)
    client = Client(app_server.url, verbose=False)
    loaded = load(client, "folder", str(folder))
    assert "over the 268 MB limit for a data file" in rows(loaded["report"])[0][3]
    assert "Read 63 records" in load(client, "sample")["summary"], "the app is still up"


def _declared_sizes(raw: bytes, size: int) -> bytes:
    """A zip whose central directory declares every member `size` bytes long (a bomb's honest header)."""
    import struct

    out = bytearray(raw)
    at = out.find(b"PK\x01\x02")
    while at != -1:
        struct.pack_into("<I", out, at + 24, size)
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def test_zip_bombs_are_refused_before_anything_is_written(tmp_path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(3):
            zf.writestr(f"layer/{n}.json", b"\0" * 1_000_000)
    honest = tmp_path / "honest.zip"  # says it unpacks to 3 x 4 GB
    honest.write_bytes(_declared_sizes(buffer.getvalue(), 0xFFFFFFF0))
    with pytest.raises(DataError, match=r"unpacks to 12\.9 GB, more than the 4\.3 GB"):
        unpack_upload([honest], tmp_path / "one")
    assert not (tmp_path / "one").exists()
    liar = tmp_path / "liar.zip"  # says 10 bytes, holds a megabyte: zipfile stops at 10 and the CRC fails
    liar.write_bytes(_declared_sizes(buffer.getvalue(), 10))
    unpacked = unpack_upload([liar, EXAMPLES / "images" / "jiaozi-0.jpg"], tmp_path / "two")
    assert all("damaged in the archive" in reason for reason in unpacked.skipped)
    assert sum(p.stat().st_size for p in unpacked.folder.rglob("*") if p.is_file()) < 100_000


def test_relative_names_that_climb_out_of_an_upload_are_left_out(tmp_path) -> None:
    data = tmp_path / "data.json"
    data.write_text("[]", encoding="utf-8")
    photo = EXAMPLES / "images" / "jiaozi-0.jpg"
    names = {str(data): "../../.bashrc", str(photo): "照片/饺子.jpg"}
    unpacked = unpack_upload([data, photo], tmp_path / "upload", names=names)
    assert (unpacked.folder / "照片" / "饺子.jpg").is_file() and not (tmp_path / ".bashrc").exists()
    assert unpacked.skipped[0] == "../../.bashrc: the path leads outside the folder"


def test_symbolic_links_out_of_a_folder_are_refused_in_every_format(tmp_path) -> None:
    from tests.test_data_formats import internvl_file, qwen_file

    secret = tmp_path / "secret.jpg"
    secret.write_bytes((EXAMPLES / "images" / "jiaozi-0.jpg").read_bytes())
    for make, sub in ((internvl_file, "images"), (qwen_file, "assets/mm_tutorial")):
        path = make(tmp_path / make.__name__)
        (path.parent / sub / "peking-duck-0.jpg").unlink()
        (path.parent / sub / "peking-duck-0.jpg").symlink_to(secret)
        result = read_data_folder(path)
        refused = [p for p in result.problems if "outside the data folder (through a symbolic link)" in p.message]
        assert refused and all(secret not in r.images for r in result.records)
        assert result.records, "the other rows are kept"
    outside = tmp_path / "outside.jsonl"
    outside.write_text('{"conversations": [{"from": "human", "value": "?"}, {"from": "gpt", "value": "!"}]}\n')
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "train.jsonl").symlink_to(outside)
    with pytest.raises(DataError, match="leads outside the data folder"):
        read_data_folder(linked)


def test_deeply_nested_and_garbage_rows_in_any_format_are_report_lines(tmp_path) -> None:
    folder = tmp_path / "garbage"
    folder.mkdir()
    lines = ["[" * 100_000 + "]" * 100_000, "not json", '{"messages": 7}', '"text"',
             '{"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]}']
    (folder / "train.jsonl").write_text("\n".join(lines), encoding="utf-8")
    result = read_data_folder(folder)
    assert [r.turns[1].text for r in result.records] == ["你好！"]
    assert len([p for p in result.problems if p.skipped]) == 4
