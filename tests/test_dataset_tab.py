"""The Dataset tab as a person (or a script) uses it: a real `python app.py`, spoken to with
gradio_client through the tab's endpoints (dataset_load, dataset_browse, dataset_record,
dataset_save, dataset_sets)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.conftest import EXAMPLES, AppProcess

# What the endpoints return, in order (gr.State is kept on the server and never returned).
BROWSE = ("task", "question_type", "cuisine", "region", "source", "gallery", "table", "page", "page_label")
LOAD = (*BROWSE, "record_id", "pictures", "detail", "sample", "dish", "summary", "report", "accept", "name")
RECORD = ("record_id", "pictures", "detail", "sample")
NO_FILTER = ("", "", "", "", "", "")
SAVE_DEFAULTS = dict(tasks=["sivqa"], lang="zh", heldout=0.2, seed=0, only_filtered=False,
                     filters=NO_FILTER, replace=False, accept=False, group_by="auto", column=None)
# dataset_load's later outputs: the data sets to pick from, the columns a split may keep together
LOAD_MORE = (*LOAD, "pick", "column")


def load(client: Client, source: str, path: str = "", files: list[str] = (), *, pick: str | None = None,
         listing: list[dict] | None = None) -> dict:
    out = client.predict(source, path, [handle_file(f) for f in files], pick, None,
                         json.dumps(listing) if listing else "", api_name="/dataset_load")
    return dict(zip(LOAD_MORE, out))


def browse(client: Client, *, task="", question_type="", cuisine="", region="", source="", dish="",
           page=1) -> dict:
    out = client.predict(task, question_type, cuisine, region, source, dish, page, api_name="/dataset_browse")
    return dict(zip(BROWSE, out))


def record(client: Client, record_id: str, prompt_lang: str = "zh") -> dict:
    return dict(zip(RECORD, client.predict(record_id, prompt_lang, api_name="/dataset_record")))


def save(client: Client, name: str, **changes) -> dict:
    args = {**SAVE_DEFAULTS, **changes}
    out = client.predict(args["tasks"], args["lang"], args["heldout"], args["seed"], name,
                         args["only_filtered"], *args["filters"], args["replace"], args["accept"],
                         args["group_by"], args["column"], api_name="/dataset_save")
    return {"saved": out[0], "sets": out[1]}


def rows(table: dict) -> list[list]:
    return table["value"]["data"]


def choices(dropdown: dict) -> dict[str, str]:
    """value -> label of a filter dropdown's choices."""
    return {value: label for label, value in dropdown["choices"]}


def llava_row(row_id: str, image: str, question: str = "<image>\n这是什么菜？", answer: str = "北京烤鸭。") -> dict:
    return {"id": row_id, "image": image,
            "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}


@pytest.fixture()
def bad_own_data(tmp_path) -> Path:
    """An own-data folder with one good row and five kinds of bad row."""
    folder = tmp_path / "my-dishes"
    (folder / "images").mkdir(parents=True)
    shutil.copy(EXAMPLES / "images" / "peking-duck-0.jpg", folder / "images" / "duck.jpg")
    (folder / "images" / "empty.jpg").write_bytes(b"")
    rows_ = [llava_row("good", "images/duck.jpg"),
             llava_row("no-picture", "images/missing.jpg"),
             llava_row("escapes", "../../../../etc/passwd"),
             llava_row("empty-picture", "images/empty.jpg"),
             llava_row("no-answer", "images/duck.jpg", answer=""),
             llava_row("no-placeholder", "images/duck.jpg", question="这是什么菜？")]
    (folder / "data.json").write_text(json.dumps(rows_, ensure_ascii=False), encoding="utf-8")
    return folder


# --- the bundled sample: counts, filters, pages, details ---------------------------------------------

def test_the_bundled_sample_loads_and_the_filters_count(app_server):
    client = Client(app_server.url, verbose=False)
    loaded = load(client, "sample")
    assert "Read 63 records (36 single-image, 12 multi-image, 15 text)" in loaded["summary"]
    assert not rows(loaded["report"]), "the bundled sample has no problems"
    assert choices(loaded["cuisine"])["京菜"] == "京菜 (11)"
    assert choices(loaded["task"])[""] == "Any (63)"
    assert len(loaded["gallery"]["value"]) == 24 and len(rows(loaded["table"])) == 24

    beijing = browse(client, cuisine="京菜")
    assert "(11 in all)" in beijing["page_label"]
    assert {row[5] for row in rows(beijing["table"])} == {"京菜"}
    assert len(beijing["gallery"]["value"]) == 11
    # Each other filter counts what it would show within Beijing cuisine.
    assert choices(beijing["task"]) == {"": "Any (11)", "sivqa": "single-image (6)",
                                        "textqa": "text (3)", "mivqa": "multi-image (2)"}

    duck = browse(client, cuisine="京菜", task="sivqa", dish="烤鸭")
    assert "(3 in all)" in duck["page_label"]
    assert {row[6] for row in rows(duck["table"])} == {"北京烤鸭"}


def test_pages_of_24_and_a_page_past_the_end_shows_the_last(app_server):
    client = Client(app_server.url, verbose=False)
    assert "Page 2 of 3" in browse(client, page=2)["page_label"]
    last = browse(client, page=99)
    assert "Page 3 of 3" in last["page_label"] and last["page"] == 3
    assert len(rows(last["table"])) == 63 - 48
    nothing = browse(client, dish="没有这道菜")
    assert nothing["page_label"] == "**Nothing matches these filters.**" and not rows(nothing["table"])


def test_a_record_shows_its_pictures_and_choices_with_the_answer_marked(app_server):
    client = Client(app_server.url, verbose=False)
    single = record(client, "sample-sivqa-0")
    assert single["record_id"] == "sample-sivqa-0"
    assert "- (A) 西北菜 / Northwestern ✅ **answer**" in single["detail"]
    assert "Which cuisine does the food in the picture usually belong to?" in single["detail"]
    assert single["pictures"]["visible"] and len(single["pictures"]["value"]) == 1

    multi = record(client, "sample-mivqa-4")
    captions = [cell["caption"] for cell in multi["pictures"]["value"]]
    assert len(captions) == 4 and sum("✅" in c for c in captions) == 1

    text_only = record(client, "sample-textqa-1")
    assert not text_only["pictures"]["visible"] and "✅ **answer**" in text_only["detail"]

    missing = record(client, "no-such-id")
    assert not missing["pictures"]["visible"] and "Click a picture" in missing["detail"]


def test_a_record_shows_the_training_sample_a_saved_set_would_hold(app_server, demo_workdir):
    client = Client(app_server.url, verbose=False)
    load(client, "sample")
    zh = record(client, "sample-sivqa-0")["sample"]
    assert "答案：(A) 西北菜。这道菜是兰州牛肉面。" in zh
    assert "Answer: (A) Northwestern. The dish is 兰州牛肉面." in record(client, "sample-sivqa-0", "en")["sample"]
    # the preview is what saving writes, turn for turn
    save(client, "preview-check", tasks=["sivqa"], heldout=0.0, replace=True)
    train = json.loads((demo_workdir / "datasets" / "preview-check" / "train.json").read_text(encoding="utf-8"))
    [saved] = [row for row in train if row["id"] == "sample-sivqa-0"]
    for turn in saved["conversations"]:
        assert f"text\n{turn['value']}\n```" in zh, turn
    assert record(client, "no-such-id")["sample"] == ""
    load(client, "own_example")  # conversations: the detail shows their turns already
    own = browse(client)["table"]["value"]["data"][0][0]
    assert record(client, own)["sample"] == ""


# --- own data: a report of bad rows, the good rows kept -------------------------------------------------

def test_a_bad_own_data_folder_gets_a_report_and_keeps_the_good_row(app_server, bad_own_data):
    client = Client(app_server.url, verbose=False)
    loaded = load(client, "folder", str(bad_own_data))
    assert "Read 1 records (1 conversation)" in loaded["summary"] and "5 rows skipped" in loaded["summary"]
    report = rows(loaded["report"])
    assert loaded["report"]["value"]["headers"] == ["file", "row", "id", "what is wrong", "skipped?"]
    by_id = {row[2]: row for row in report}
    assert set(by_id) == {"no-picture", "escapes", "empty-picture", "no-answer", "no-placeholder"}
    assert all(row[0] == "data.json" and row[4] == "yes" for row in report)
    assert by_id["escapes"][1] == "2"
    assert by_id["no-picture"][3] == "Picture 'images/missing.jpg' is missing. The row was skipped."
    assert [row[0] for row in rows(loaded["table"])] == ["good"]
    assert loaded["name"] == "my-dishes"


def test_an_uploaded_zip_is_unpacked_into_the_work_folder_and_read(app_server, bad_own_data, tmp_path,
                                                                  demo_workdir):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in bad_own_data.rglob("*"):
            zf.write(path, Path("my-dishes") / path.relative_to(bad_own_data))
    client = Client(app_server.url, verbose=False)
    loaded = load(client, "upload", files=[str(archive)])
    assert "Read 1 records" in loaded["summary"]
    assert str(demo_workdir.resolve() / "uploads") in loaded["summary"]
    assert len(rows(loaded["report"])) == 5


def test_a_source_that_cannot_be_read_says_why_and_keeps_the_data(app_server, tmp_path):
    client = Client(app_server.url, verbose=False)
    load(client, "sample")
    nowhere = load(client, "folder", str(tmp_path / "nowhere"))
    assert nowhere["summary"].startswith("⚠️ This source cannot be read: There is nothing at")
    assert "Read 63 records" in nowhere["summary"], "the summary still says what is loaded"
    assert load(client, "folder", "  ")["summary"].startswith("⚠️ Type the path")
    assert load(client, "upload")["summary"].startswith("⚠️ Choose the files to upload")
    with pytest.raises(Exception, match="not in the list of choices"):
        load(client, "data")  # without --data the choice is not offered
    assert "(63 in all)" in browse(client)["page_label"], "the sample is still there"


# --- training sets --------------------------------------------------------------------------------------

def test_saving_a_training_set_writes_the_layout_the_train_tab_reads(app_server, demo_workdir):
    client = Client(app_server.url, verbose=False)
    load(client, "sample")
    result = save(client, "sample-all-tasks", tasks=["sivqa", "mivqa", "textqa"], heldout=0.25, seed=3)
    folder = demo_workdir.resolve() / "datasets" / "sample-all-tasks"
    assert f"in `{folder}`" in result["saved"]
    assert {p.name for p in folder.iterdir()} == {"train.json", "heldout.json", "train_questions.json",
                                                  "heldout_questions.json", "split.json"}
    manifest = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    train, heldout = manifest["train"], manifest["heldout"]
    assert not set(train["dish_ids"]) & set(heldout["dish_ids"]), "no dish on both sides"
    assert manifest["seed"] == 3 and manifest["heldout_ratio"] == 0.25 and manifest["sources"] == ["sample"]
    assert len(json.loads((folder / "train.json").read_text(encoding="utf-8"))) == train["samples"]
    assert f"{train['samples']} training samples" in result["saved"]
    assert f"{heldout['samples']} held-out samples" in result["saved"]
    listed = {row[0]: row for row in rows(result["sets"])}
    assert listed["sample-all-tasks"][1:3] == [train["samples"], heldout["samples"]]

    refused = save(client, "sample-all-tasks")
    assert refused["saved"].startswith("⚠️ A training set named sample-all-tasks already exists")
    again = save(client, "sample-all-tasks", replace=True, tasks=["sivqa"])
    assert json.loads((folder / "split.json").read_text(encoding="utf-8"))["tasks"] == ["sivqa"]
    assert "Saved **sample-all-tasks**" in again["saved"]
    sets = client.predict(api_name="/dataset_sets")
    assert "sample-all-tasks" in [row[0] for row in rows(sets)]


def test_a_training_set_of_the_filtered_records_only(app_server, demo_workdir):
    client = Client(app_server.url, verbose=False)
    load(client, "own_example")
    save(client, "beijing-talks", only_filtered=True, filters=("", "", "京菜", "", "", ""), heldout=0.0)
    folder = demo_workdir.resolve() / "datasets" / "beijing-talks"
    questions = json.loads((folder / "train_questions.json").read_text(encoding="utf-8"))
    assert len(questions) == 6 and {q["cuisine"] for q in questions} == {"京菜"}


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "has space", ""])
def test_a_bad_name_is_refused_and_nothing_is_written(app_server, demo_workdir, name):
    client = Client(app_server.url, verbose=False)
    refused = save(client, name)["saved"]
    assert refused.startswith("⚠️ The training set was not saved:") and "name" in refused
    assert not (demo_workdir.resolve() / "escape").exists()
    assert not (demo_workdir.resolve() / "datasets" / "a").exists()


# --- FoodieQA from --data: the terms gate, a broken row, --lang zh ------------------------------------

@pytest.fixture(scope="module")
def foodieqa_app(tmp_path_factory, demo_workdir):
    """`python app.py --lang zh --data <a FoodieQA-layout folder with one broken row>` with its own
    work folder (the demo model copied in) and the hub made unreachable at once."""
    root = tmp_path_factory.mktemp("foodieqa-app")
    data = root / "FoodieQA"
    shutil.copytree(EXAMPLES / "images", data / "images")
    for name in ("sivqa_tidy.json", "mivqa_tidy.json", "textqa_tidy.json"):
        shutil.copy(EXAMPLES / name, data / name)
    sivqa = json.loads((data / "sivqa_tidy.json").read_text(encoding="utf-8"))
    broken = dict(sivqa[0], question_id="broken-answer", answer="7")
    (data / "sivqa_tidy.json").write_text(json.dumps(sivqa + [broken], ensure_ascii=False), encoding="utf-8")
    workdir = root / "work"
    shutil.copytree(demo_workdir / "models", workdir / "models")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")  # the hub's sentence without its half minute of retries
        app = AppProcess(["--workdir", str(workdir), "--data", str(data), "--lang", "zh"], root / "app.log")
    try:
        app.wait_ready()
        app.workdir = workdir
        yield app
    finally:
        app.stop()


def test_foodieqa_from_data_is_read_with_its_report_in_chinese(foodieqa_app):
    client = Client(foodieqa_app.url, verbose=False)
    loaded = load(client, "data")
    assert "读取了 63 条记录（单图 36、多图 12、纯文本 15）" in loaded["summary"]
    assert "跳过 1 行" in loaded["summary"]
    assert [row[2] for row in rows(loaded["report"])] == ["broken-answer"]
    assert loaded["report"]["value"]["headers"][3] == "问题所在"
    assert rows(loaded["report"])[0][3] == "answer 7 超出范围（0 到 3）。该行已跳过。"
    assert choices(loaded["source"]) == {"": "全部（63）", "foodieqa": "FoodieQA（63）"}
    assert choices(loaded["task"])["sivqa"] == "单图（36）"


def test_foodieqa_records_become_training_samples_only_with_the_terms_accepted(foodieqa_app):
    client = Client(foodieqa_app.url, verbose=False)
    load(client, "data")
    folder = foodieqa_app.workdir.resolve() / "datasets" / "foodieqa-sivqa"
    refused = save(client, "foodieqa-sivqa")["saved"]
    assert refused.startswith("⚠️ 训练集未保存：所选记录中有 63 条来自 FoodieQA")
    assert "CC BY-NC-ND 4.0" in refused
    assert not folder.exists(), "nothing is written before the terms are accepted"
    result = save(client, "foodieqa-sivqa", accept=True)
    assert "已保存 **foodieqa-sivqa**" in result["saved"]
    manifest = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    assert manifest["terms_accepted"] is True and manifest["sources"] == ["foodieqa"]
    assert rows(result["sets"])[0][7] == "已接受"


def test_the_hub_says_why_it_cannot_be_reached(foodieqa_app):
    client = Client(foodieqa_app.url, verbose=False)
    summary = load(client, "hub")["summary"]
    assert summary.startswith("⚠️ 无法读取该数据源：这台服务器连不上 Hugging Face Hub，无法在这里下载 lyan62/FoodieQA。")


def test_a_folder_that_is_not_there_is_said_in_chinese(foodieqa_app, tmp_path):
    client = Client(foodieqa_app.url, verbose=False)
    nowhere = tmp_path / "nowhere"
    summary = load(client, "folder", str(nowhere))["summary"]
    assert summary.startswith(f"⚠️ 无法读取该数据源：{nowhere} 不存在。")


def test_started_with_data_the_tab_opens_on_that_folder(foodieqa_app):
    """issue 27: the tab opened on the bundled sample, and the person had to find --data and press Load."""
    client = Client(foodieqa_app.url, verbose=False)
    opened = browse(client)  # a fresh visitor, nothing loaded
    assert choices(opened["source"]) == {"": "全部（63）", "foodieqa": "FoodieQA（63）"}
    assert "(63 in all)" in opened["page_label"] or "共 63" in opened["page_label"]


# --- data in other tools' formats, through the app (issue 27) ------------------------------------------------

def test_a_folder_in_internvl_format_is_read_and_said_so(app_server, tmp_path):
    from tests.test_data_formats import internvl_file

    client = Client(app_server.url, verbose=False)
    loaded = load(client, "folder", str(internvl_file(tmp_path / "internvl").parent))
    assert "Read as **InternVL jsonl**: 3 samples (`food_sft.jsonl`)." in loaded["summary"]
    assert not rows(loaded["report"]) and len(rows(loaded["table"])) == 3


def test_dataset_info_json_offers_its_data_sets_to_pick_from(app_server, tmp_path):
    from tests.test_data_formats import sharegpt_folder

    folder = sharegpt_folder(tmp_path / "data")
    client = Client(app_server.url, verbose=False)
    offered = load(client, "folder", str(folder))
    assert offered["summary"].startswith("👉 dataset_info.json names 3 data sets (mllm_demo, food_sharegpt, "
                                         "hotpot_renamed); pick one.")
    assert [value for _, value in offered["pick"]["choices"]] == ["mllm_demo", "food_sharegpt", "hotpot_renamed"]
    picked = load(client, "folder", str(folder), pick="mllm_demo")
    assert "LLaMA-Factory dataset_info.json → mllm_demo (ShareGPT)" in picked["summary"]
    assert len(rows(picked["table"])) == 2


def test_loose_files_keep_their_folders_and_a_gbk_zip_its_names(app_server, tmp_path):
    import zipfile

    client = Client(app_server.url, verbose=False)
    photo = EXAMPLES / "images" / "peking-duck-0.jpg"
    data = tmp_path / "loose" / "data.json"
    data.parent.mkdir()
    data.write_text(json.dumps([llava_row("duck", "照片/北京烤鸭.jpg")], ensure_ascii=False), encoding="utf-8")
    named = tmp_path / "loose" / "北京烤鸭.jpg"
    shutil.copy(photo, named)
    # several files picked at once: the browser sends base names; the data file says where the photo goes
    loaded = load(client, "upload", files=[str(data), str(named)])
    assert "Read 1 records" in loaded["summary"] and not rows(loaded["report"])
    # a folder picked: the page lists the relative names, which the upload itself does not keep
    listing = [{"name": "my-dishes/data.json", "size": data.stat().st_size},
               {"name": "my-dishes/照片/北京烤鸭.jpg", "size": named.stat().st_size}]
    assert "Read 1 records" in load(client, "upload", files=[str(data), str(named)], listing=listing)["summary"]
    # a zip made by an older tool: GBK names without the UTF-8 flag (zipfile itself writes UTF-8 names)
    gbk = tmp_path / "gbk-names.zip"
    gbk.write_bytes(_gbk_zip({"data.json": data.read_bytes(), "照片/北京烤鸭.jpg": photo.read_bytes()}))
    with zipfile.ZipFile(gbk) as zf:
        assert not zf.infolist()[1].flag_bits & 0x800 and zf.namelist()[1] != "照片/北京烤鸭.jpg"  # cp437 mojibake
    loaded = load(client, "upload", files=[str(gbk)])
    assert "Read 1 records" in loaded["summary"] and not rows(loaded["report"]), loaded["summary"]


def _gbk_zip(members: dict[str, bytes]) -> bytes:
    """A zip whose names are GBK bytes without the UTF-8 flag, as WinRAR or Windows' own zip wrote them."""
    import io
    import struct
    import zlib

    out, central = io.BytesIO(), []
    for name, data in members.items():
        raw, crc, offset = name.encode("gbk"), zlib.crc32(data), out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(data), len(data), len(raw), 0))
        out.write(raw + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, len(data), len(data),
                                   len(raw), 0, 0, 0, 0, 0, offset) + raw)
    start = out.tell()
    for entry in central:
        out.write(entry)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), out.tell() - start, start, 0))
    return out.getvalue()


def test_a_set_of_photos_without_dishes_is_split_by_photo_and_never_called_dishes(app_server, demo_workdir, tmp_path):
    folder = tmp_path / "photos"
    (folder / "images").mkdir(parents=True)
    names = sorted(p.name for p in (EXAMPLES / "images").glob("*.jpg"))[:12]
    rows_ = []
    for n, name in enumerate(names):
        shutil.copy(EXAMPLES / "images" / name, folder / "images" / name)
        shutil.copy(EXAMPLES / "images" / name, folder / "images" / f"copy-{name}")  # the same photo twice
        rows_ += [llava_row(f"a{n}", f"images/{name}"), llava_row(f"b{n}", f"images/copy-{name}")]
    (folder / "data.json").write_text(json.dumps(rows_, ensure_ascii=False), encoding="utf-8")
    client = Client(app_server.url, verbose=False)
    load(client, "folder", str(folder))
    result = save(client, "photo-set", heldout=0.25, replace=True)
    assert "Kept together: 9 / 3 groups of identical or near-identical photos." in result["saved"]
    assert "dishes" not in result["saved"]
    manifest = json.loads((demo_workdir / "datasets" / "photo-set" / "split.json").read_text(encoding="utf-8"))
    assert manifest["split_by"] == "picture" and manifest["holds"]["conversation"] == 24
    train = {row["id"][1:] for row in json.loads((demo_workdir / "datasets" / "photo-set" / "train.json").read_text())}
    held = {row["id"][1:] for row in json.loads((demo_workdir / "datasets" / "photo-set" / "heldout.json").read_text())}
    assert not train & held, "a photo and its copy are on one side"
    listed = {row[0]: row for row in rows(result["sets"])}
    assert listed["photo-set"][3] == "9 / 3 groups of identical or near-identical photos"
    assert listed["photo-set"][4] == "24 conversations · 24 single-image"
    by_answer = save(client, "photo-set", heldout=0.25, replace=True, group_by="answer")
    # every answer is 北京烤鸭。: one group, which is never held out whole
    assert "Kept together: 1 / 0 groups with the same answer." in by_answer["saved"]


def test_the_loaded_data_exports_as_internvl_jsonl(app_server, demo_workdir, tmp_path):
    client = Client(app_server.url, verbose=False)
    load(client, "own_example")
    said, file = client.predict("internvl", "own-export", False, *NO_FILTER, api_name="/dataset_export")
    path = demo_workdir.resolve() / "exports" / "own-export" / "own-export.jsonl"
    assert f"Wrote 36 samples as InternVL jsonl to `{path}`" in said
    offered = file["value"] if isinstance(file, dict) and "value" in file else file
    assert Path(offered if isinstance(offered, str) else offered["path"]).read_bytes() == path.read_bytes()
    again = load(client, "folder", str(path))
    assert "Read as **InternVL jsonl**: 36 samples" in again["summary"] and not rows(again["report"])


# --- the library in the work folder (no app needed) -----------------------------------------------------

def test_training_set_names_stay_inside_the_datasets_folder(tmp_path):
    from backend.data import DataError
    from backend.data.library import training_set_folder

    assert training_set_folder(tmp_path, " 川菜-练习_1.v2 ") == (tmp_path / "datasets" / "川菜-练习_1.v2").resolve()
    for bad in ("..", "../x", "a/b", "a\\b", ".x", "_x", "x" * 65, "", None):
        with pytest.raises(DataError):
            training_set_folder(tmp_path, bad)


def test_only_complete_training_sets_are_listed(tmp_path):
    from backend.data.library import list_training_sets

    assert list_training_sets(tmp_path) == []
    (tmp_path / "datasets" / "done").mkdir(parents=True)
    (tmp_path / "datasets" / "done" / "split.json").write_text('{"seed": 1}', encoding="utf-8")
    (tmp_path / "datasets" / "half-written").mkdir()
    (tmp_path / "datasets" / "damaged").mkdir()
    (tmp_path / "datasets" / "damaged" / "split.json").write_text("{", encoding="utf-8")
    assert [(name, manifest) for name, _, manifest in list_training_sets(tmp_path)] == [("done", {"seed": 1})]


def test_an_upload_of_one_folder_is_read_from_inside_it(tmp_path):
    from backend.data.library import upload_data_root

    (tmp_path / "my-dishes" / "images").mkdir(parents=True)
    (tmp_path / "my-dishes" / "data.csv").write_text("image,question,answer\n", encoding="utf-8")
    (tmp_path / "__MACOSX").mkdir()
    assert upload_data_root(tmp_path) == tmp_path / "my-dishes"
    (tmp_path / "loose.json").write_text("[]", encoding="utf-8")
    assert upload_data_root(tmp_path) == tmp_path
