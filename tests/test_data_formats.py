"""Data in every format people already have (issue 27): for each format, a file written the way that
project's documentation shows it, with pictures (the bundled examples/images), read by content, and
every sample checked: its roles in order, its text, its pictures attached, its turns kept. Each test
names the page it follows; the files are our own, in the documented shape, never copied.

test_data_formats_training.py trains the demo model on a set saved from each of them.
"""

from __future__ import annotations

import base64
import csv
import json
import shutil
from pathlib import Path

import pytest

from backend.data import DataError, read_data_folder
from backend.data.formats import SeveralDataSets, detect
from backend.data.formats.loading import load_sample
from tests.conftest import EXAMPLES

DUCK, NOODLES = "peking-duck-0.jpg", "lanzhou-noodles-0.jpg"
DUMPLINGS, HOTPOT = "jiaozi-0.jpg", "chongqing-hotpot-0.jpg"


def photos(folder: Path, sub: str = "images", names=(DUCK, NOODLES, DUMPLINGS, HOTPOT)) -> Path:
    (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(EXAMPLES / "images" / name, folder / sub / name)
    return folder


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def conversation(record) -> list[tuple[str, str]]:
    return [(t.role, t.text) for t in record.turns]


def names(record) -> list[str]:
    return [p.name for p in record.images]


def read(path: Path, **kwargs):
    """A file or folder as the Dataset tab reads a path on the server (absolute picture paths allowed)."""
    return read_data_folder(path, allow_absolute=True, **kwargs)


# --- LLaVA / XTuner -------------------------------------------------------------------------------------
# LLaVA's docs/Finetune_Custom_Data.md and XTuner's docs (dataset_prepare: llava): a JSON list of
# {"id", "image", "conversations": [{"from": "human", "value": "<image>\n..."}, {"from": "gpt", ...}]};
# "id" optional; XTuner's repeat.py writes rows with the same id many times.

def llava_file(folder: Path) -> Path:
    photos(folder)
    rows = [
        {"id": "0001", "image": f"images/{DUCK}", "conversations": [
            {"from": "human", "value": "<image>\n这是什么菜？"}, {"from": "gpt", "value": "这是北京烤鸭。"},
            {"from": "human", "value": "它是什么味道？"}, {"from": "gpt", "value": "皮脆肉嫩，蘸甜面酱。"}]},
        {"image": f"images/{NOODLES}", "conversations": [
            {"from": "human", "value": "What dish is this?\n<image>"},
            {"from": "gpt", "value": "Lanzhou beef noodles."}]},
        {"id": "0001", "image": f"images/{DUCK}", "conversations": [
            {"from": "human", "value": "<image>\n这是什么菜？"}, {"from": "gpt", "value": "这是北京烤鸭。"}]},
        {"id": "0003", "conversations": [
            {"from": "human", "value": "饺子是哪里的传统食物？"}, {"from": "gpt", "value": "中国北方。"}]},
    ]
    return write_json(folder / "llava_instruct.json", rows)


def test_llava_xtuner_json(tmp_path):
    result = read(llava_file(tmp_path / "llava"))
    assert result.problems == () and result.format_label == "LLaVA/XTuner JSON"
    first, second, repeated, text_only = result.records
    assert first.id == "0001" and names(first) == [DUCK]
    assert conversation(first) == [("human", "<image>\n这是什么菜？"), ("gpt", "这是北京烤鸭。"),
                                   ("human", "它是什么味道？"), ("gpt", "皮脆肉嫩，蘸甜面酱。")]
    assert second.id == "llava_instruct-1" and names(second) == [NOODLES]  # no id: named, no warning
    assert conversation(second) == [("human", "What dish is this?\n<image>"), ("gpt", "Lanzhou beef noodles.")]
    assert repeated.id == "0001-2" and result.renamed == (("0001", "0001-2"),)
    assert text_only.images == () and conversation(text_only)[1] == ("gpt", "中国北方。")
    assert "1 repeated id was renamed" in result.summary()


# --- InternVL ---------------------------------------------------------------------------------------------
# InternVL's documentation, "Chat Data Format" (internvl.readthedocs.io/en/latest/get_started/
# chat_data_format.html): JSON lines; pure text data has no "image"; single-image data has "image" (a
# string) and "width"/"height"; multi-image data has "image" (a list), "width_list"/"height_list", and
# one "<image>" per picture across the questions. Its schema writes answers as "text", its examples as
# "value".

def internvl_file(folder: Path) -> Path:
    photos(folder)
    rows = [
        {"id": 0, "conversations": [{"from": "human", "value": "北京烤鸭是哪里的菜？"},
                                    {"from": "gpt", "value": "北京菜。"}]},
        {"id": 1, "image": f"images/{DUCK}", "width": 256, "height": 256, "conversations": [
            {"from": "human", "value": "<image>\n这是什么菜？"}, {"from": "gpt", "value": "北京烤鸭。"},
            {"from": "human", "value": "怎么吃？"}, {"from": "gpt", "text": "用薄饼卷着吃。"}]},
        {"id": 2, "image": [f"images/{NOODLES}", f"images/{DUMPLINGS}", f"images/{HOTPOT}"],
         "width_list": [256, 256, 256], "height_list": [256, 256, 256], "conversations": [
             {"from": "human", "value": "<image>\n第一张 <image>\n第二张，哪个是面？"},
             {"from": "gpt", "value": "第一张。"},
             {"from": "human", "value": "<image>\n这一张呢？"}, {"from": "gpt", "value": "重庆火锅。"}]},
    ]
    return write_jsonl(folder / "food_sft.jsonl", rows)


def test_internvl_jsonl(tmp_path):
    result = read(internvl_file(tmp_path / "internvl"))
    assert result.problems == () and result.format_label == "InternVL jsonl"
    assert "Read as InternVL jsonl: 3 samples (food_sft.jsonl)." in result.summary()
    text, single, multi = result.records
    assert (text.id, text.images) == ("0", ())
    assert conversation(text) == [("human", "北京烤鸭是哪里的菜？"), ("gpt", "北京菜。")]
    assert names(single) == [DUCK] and [r for r, _ in conversation(single)] == ["human", "gpt", "human", "gpt"]
    assert conversation(single)[3] == ("gpt", "用薄饼卷着吃。")
    assert names(multi) == [NOODLES, DUMPLINGS, HOTPOT]
    assert conversation(multi)[2] == ("human", "<image>\n这一张呢？") and len(multi.turns) == 4


def test_internvl_meta_file_offers_its_data_sets(tmp_path):
    # the same page: a meta JSON naming data sets by "root" and "annotation"
    folder = tmp_path / "meta"
    internvl_file(folder / "food")
    write_jsonl(folder / "food" / "other.jsonl", [{"id": 9, "conversations": [
        {"from": "human", "value": "饺子怎么包？"}, {"from": "gpt", "value": "擀皮、放馅、捏紧。"}]}])
    meta = {"food-sft": {"root": "food/", "annotation": "food/food_sft.jsonl", "data_augment": False,
                         "repeat_time": 1, "length": 3},
            "food-text": {"root": "food/", "annotation": "food/other.jsonl", "repeat_time": 1, "length": 1}}
    write_json(folder / "meta.json", meta)
    with pytest.raises(SeveralDataSets) as several:
        read(folder / "meta.json")
    assert [key for _, key in several.value.choices] == ["food-sft", "food-text"]
    picked = read(folder / "meta.json", pick="food-sft")
    assert len(picked.records) == 3 and names(picked.records[2]) == [NOODLES, DUMPLINGS, HOTPOT]
    assert picked.format_label == "InternVL meta file → food-sft (InternVL jsonl)"


# --- ShareGPT and LLaMA-Factory's dataset_info.json -----------------------------------------------------------
# LLaMA-Factory's data/README.md ("Sharegpt Format", "Multimodal Image Dataset": one <image> per picture,
# "OpenAI Format") and data/mllm_demo.json + its dataset_info.json entry (messages with role/content and
# the tags user/assistant; the <image> may stand in a later question; a picture may be named twice).

def sharegpt_folder(folder: Path) -> Path:
    photos(folder, "mllm_demo_data")
    demo = [
        {"messages": [{"content": "<image>他们在吃什么？", "role": "user"},
                      {"content": "北京烤鸭。", "role": "assistant"},
                      {"content": "这道菜呢？<image>", "role": "user"},
                      {"content": "还是北京烤鸭，换了个角度。", "role": "assistant"}],
         "images": [f"mllm_demo_data/{DUCK}", f"mllm_demo_data/{DUCK}"]},
        {"messages": [{"content": "<image>Who made this?", "role": "user"},
                      {"content": "A noodle master in Lanzhou.", "role": "assistant"}],
         "images": [f"mllm_demo_data/{NOODLES}"]},
    ]
    write_json(folder / "mllm_demo.json", demo)
    sharegpt = [{"conversations": [{"from": "human", "value": "<image>这是什么？"}, {"from": "gpt", "value": "饺子。"}],
                 "system": "你是一位美食家。", "images": [f"mllm_demo_data/{DUMPLINGS}"]}]
    write_json(folder / "food_sharegpt.json", sharegpt)
    renamed = [{"dialog": [{"speaker": "diner", "text": "<image>辣吗？"}, {"speaker": "chef", "text": "很辣。"}],
                "photos": [f"mllm_demo_data/{HOTPOT}"], "prompt_of_system": "回答要简短。"}]
    write_json(folder / "renamed.json", renamed)
    info = {
        "mllm_demo": {"file_name": "mllm_demo.json", "formatting": "sharegpt",
                      "columns": {"messages": "messages", "images": "images"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant"}},
        "food_sharegpt": {"file_name": "food_sharegpt.json", "formatting": "sharegpt",
                          "columns": {"messages": "conversations", "system": "system", "images": "images"}},
        "hotpot_renamed": {"file_name": "renamed.json", "formatting": "sharegpt",
                           "columns": {"messages": "dialog", "images": "photos", "system": "prompt_of_system"},
                           "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "diner",
                                    "assistant_tag": "chef"}},
        "alpaca_en_demo": {"hf_hub_url": "llamafactory/alpaca_en"},
    }
    write_json(folder / "dataset_info.json", info)
    return folder


def test_sharegpt_mllm_demo_file_alone(tmp_path):
    folder = sharegpt_folder(tmp_path / "data")
    result = read(folder / "mllm_demo.json")
    assert result.problems == () and result.format_label == "ShareGPT (LLaMA-Factory)"
    first, second = result.records
    assert conversation(first) == [("human", "<image>他们在吃什么？"), ("gpt", "北京烤鸭。"),
                                   ("human", "这道菜呢？<image>"), ("gpt", "还是北京烤鸭，换了个角度。")]
    assert names(first) == [DUCK, DUCK] and names(second) == [NOODLES]


def test_dataset_info_json_offers_its_data_sets_and_honours_their_columns_and_tags(tmp_path):
    folder = sharegpt_folder(tmp_path / "data")
    with pytest.raises(SeveralDataSets) as several:
        read(folder)  # the folder: dataset_info.json says what it holds
    assert [key for _, key in several.value.choices] == ["mllm_demo", "food_sharegpt", "hotpot_renamed"]
    assert "names 3 data sets" in str(several.value)  # the hub-only one is not offered
    demo = read(folder, pick="mllm_demo")
    assert len(demo.records) == 2 and demo.format_label == "LLaMA-Factory dataset_info.json → mllm_demo (ShareGPT)"
    system = read(folder, pick="food_sharegpt").records[0]
    assert system.system == "你是一位美食家。"
    assert conversation(system) == [("human", "<image>这是什么？"), ("gpt", "饺子。")]
    renamed = read(folder, pick="hotpot_renamed").records[0]
    assert conversation(renamed) == [("human", "<image>辣吗？"), ("gpt", "很辣。")] and names(renamed) == [HOTPOT]
    assert renamed.system == "回答要简短。"


def alpaca_file(folder: Path) -> Path:
    """LLaMA-Factory's alpaca rows (data/README.md, "Alpaca Format") in a file of their own, no dataset_info.json."""
    photos(folder)
    return write_json(folder / "alpaca_zh.json", [
        {"instruction": "<image>这是什么菜？", "input": "", "output": "北京烤鸭。", "images": [f"images/{DUCK}"]},
        {"instruction": "它辣吗？", "input": "用一个字回答。", "output": "辣。", "system": "你是美食家。",
         "history": [["<image>这是什么菜？", "重庆火锅。"]], "images": [f"images/{HOTPOT}"]},
        {"instruction": "饺子怎么包？", "input": "", "output": "擀皮、放馅、捏紧。"}])


def test_alpaca_rows_without_a_dataset_info_json(tmp_path):
    result = read(alpaca_file(tmp_path / "alpaca"))
    assert result.problems == () and result.format_label == "Alpaca (LLaMA-Factory)"
    duck, spicy, text = result.records
    assert conversation(duck) == [("human", "<image>这是什么菜？"), ("gpt", "北京烤鸭。")] and names(duck) == [DUCK]
    assert spicy.system == "你是美食家。" and names(spicy) == [HOTPOT]
    assert conversation(spicy) == [("human", "<image>这是什么菜？"), ("gpt", "重庆火锅。"),
                                   ("human", "它辣吗？\n用一个字回答。"), ("gpt", "辣。")]
    assert conversation(text) == [("human", "饺子怎么包？"), ("gpt", "擀皮、放馅、捏紧。")] and text.images == ()


# --- ms-swift -----------------------------------------------------------------------------------------------------
# ms-swift's docs/source_en/Customization/Custom-dataset.md: the standard "messages" format (system
# optional), "Multimodal": "images" with absolute paths preferred, "<image>" tags, several pictures;
# "image" is taken for "images"; AutoPreprocessor also reads ShareGPT ({"system", "conversation":
# [{"human", "assistant"}]}) and query/response rows with a history.

def swift_file(folder: Path) -> Path:
    photos(folder)
    pics = (folder / "images").resolve()
    rows = [
        {"messages": [{"role": "system", "content": "You are a helpful and harmless assistant."},
                      {"role": "user", "content": "<image><image>What is the difference between the two dishes?"},
                      {"role": "assistant", "content": "The first is roast duck, the second beef noodles."}],
         "images": [str(pics / DUCK), str(pics / NOODLES)]},
        {"messages": [{"role": "user", "content": "浙江的省会是哪里？"}, {"role": "assistant", "content": "杭州。"}]},
        {"messages": [{"role": "user", "content": "<image>这是什么？"}, {"role": "assistant", "content": "饺子。"}],
         "image": str(pics / DUMPLINGS)},
        {"system": "你是厨师。", "conversation": [{"human": "<image>辣不辣？", "assistant": "很辣。"},
                                                 {"human": "配什么喝？", "assistant": "酸梅汤。"}],
         "images": [str(pics / HOTPOT)]},
        {"query": "<image>这是哪里的菜？", "response": "北京。", "history": [["你好", "你好！"]],
         "images": [str(pics / DUCK)]},
    ]
    return write_jsonl(folder / "train.jsonl", rows)


def test_ms_swift_messages_with_absolute_paths(tmp_path):
    result = read(swift_file(tmp_path / "swift"))
    assert result.problems == () and result.format_label == "ms-swift messages"
    two, text, alias, sharegpt, query = result.records
    assert two.system == "You are a helpful and harmless assistant." and names(two) == [DUCK, NOODLES]
    assert conversation(two)[0] == ("human", "<image><image>What is the difference between the two dishes?")
    assert text.images == () and conversation(text) == [("human", "浙江的省会是哪里？"), ("gpt", "杭州。")]
    assert names(alias) == [DUMPLINGS]
    assert sharegpt.system == "你是厨师。" and [r for r, _ in conversation(sharegpt)] == ["human", "gpt"] * 2
    assert conversation(query) == [("human", "你好"), ("gpt", "你好！"), ("human", "<image>这是哪里的菜？"),
                                   ("gpt", "北京。")]


def test_absolute_paths_in_an_upload_never_leave_it(tmp_path):
    from backend.data.sources import read_source

    swift_file(tmp_path / "swift")
    loaded = read_source("upload", None, [str(tmp_path / "swift" / "train.jsonl")], tmp_path / "work", None, "v")
    assert [r.id for r in loaded.result.records] == ["train-1"]  # the text-only row; the others name /...
    assert all("absolute path" in p.message for p in loaded.result.problems)


# --- OpenAI-style content parts ---------------------------------------------------------------------------------------
# OpenAI's Chat Completions documentation (vision: a user message's content as a list of
# {"type": "text", "text"} and {"type": "image_url", "image_url": {"url"}} parts; a url may be a
# base64 data: address) and ms-swift's Custom-dataset.md ("OpenAI Chat Completions multimodal").

def openai_file(folder: Path) -> Path:
    photos(folder)
    inline = "data:image/jpeg;base64," + base64.b64encode((EXAMPLES / "images" / HOTPOT).read_bytes()).decode()
    rows = [
        {"messages": [{"role": "system", "content": "Answer in one sentence."},
                      {"role": "user", "content": [{"type": "text", "text": "What's in this image?"},
                                                   {"type": "image_url", "image_url": {"url": f"images/{DUCK}"}}]},
                      {"role": "assistant", "content": "A roast duck, sliced."}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": inline}},
                                                   {"type": "text", "text": "\n辣吗？"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "很辣。"}]},
                      {"role": "user", "content": [{"type": "text", "text": "和这个比呢？"},
                                                   {"type": "image_url", "image_url": f"images/{NOODLES}"}]},
                      {"role": "assistant", "content": "面不辣。"}]},
    ]
    return write_jsonl(folder / "chat.jsonl", rows)


def test_openai_content_parts(tmp_path):
    result = read(openai_file(tmp_path / "openai"))
    assert result.problems == () and result.format_label == "OpenAI-style messages"
    duck, spicy = result.records
    assert duck.system == "Answer in one sentence." and names(duck) == [DUCK]
    assert conversation(duck) == [("human", "What's in this image?<image>"), ("gpt", "A roast duck, sliced.")]
    assert conversation(spicy) == [("human", "<image>\n辣吗？"), ("gpt", "很辣。"), ("human", "和这个比呢？<image>"),
                                   ("gpt", "面不辣。")]
    inline, noodles = spicy.images
    assert inline.read_bytes() == (EXAMPLES / "images" / HOTPOT).read_bytes() and noodles.name == NOODLES


# --- MiniCPM-V ------------------------------------------------------------------------------------------------------
# OpenBMB/MiniCPM-V's finetune/readme.md: a JSON list of {"id", "image", "conversations": [{"role", "content"}]};
# no "<image>" in the text puts the picture in front; several pictures: {"<image_00>": path, ...} named in the text.


def minicpm_file(folder: Path) -> Path:
    photos(folder)
    return write_json(folder / "train.json", [
        {"id": "0", "image": f"images/{DUCK}", "conversations": [
            {"role": "user", "content": "<image>\n这是什么菜？"}, {"role": "assistant", "content": "北京烤鸭。"},
            {"role": "user", "content": "怎么吃？"}, {"role": "assistant", "content": "卷饼吃。"}]},
        {"id": "1", "image": f"images/{NOODLES}", "conversations": [
            {"role": "user", "content": "What is this?"}, {"role": "assistant", "content": "Beef noodles."}]},
        {"id": "2", "image": {"<image_00>": f"images/{DUMPLINGS}", "<image_01>": f"images/{HOTPOT}"},
         "conversations": [{"role": "user", "content": "<image_00>\n<image_01>\n哪个辣？"},
                           {"role": "assistant", "content": "第二个。"}]},
        {"id": "3", "image": {"<image_00>": f"images/{DUMPLINGS}", "<image_01>": f"images/{HOTPOT}"},
         "conversations": [{"role": "user", "content": "<image_00>\n哪个辣？"},
                           {"role": "assistant", "content": "第二个。"}]}])


def test_minicpm_v_one_picture_several_and_none_named(tmp_path):
    result = read(minicpm_file(tmp_path / "minicpm"))
    assert result.format_label == "MiniCPM-V JSON"
    duck, noodles, two = result.records
    assert conversation(duck) == [("human", "<image>\n这是什么菜？"), ("gpt", "北京烤鸭。"), ("human", "怎么吃？"),
                                  ("gpt", "卷饼吃。")] and names(duck) == [DUCK]
    assert conversation(noodles)[0] == ("human", "<image>\nWhat is this?") and names(noodles) == [NOODLES]
    assert conversation(two)[0] == ("human", "<image>\n<image>\n哪个辣？") and names(two) == [DUMPLINGS, HOTPOT]
    [problem] = result.problems  # a picture its text never names: the row is said, with both counts
    assert problem.record_id == "3" and problem.skipped and "1" in problem.message and "2" in problem.message

    folder = tmp_path / "minicpm"
    write_json(folder / "bad.json", [{"id": "9", "image": 3, "conversations": [
        {"role": "user", "content": "<image>\n什么？"}, {"role": "assistant", "content": "饺子。"}]}])
    [bad] = read(folder / "bad.json").problems
    assert bad.record_id == "9" and "<image_00>" in bad.message


# --- Qwen-VL ---------------------------------------------------------------------------------------------------------
# Qwen-VL's README, "Finetuning / Data preparation": a JSON list of {"id", "conversations": [{"from":
# "user", "value"}, {"from": "assistant", "value"}]}, each picture in the question as
# "Picture n: <img>path</img>\n"; <ref>/<box> are plain text; a path may be a web link.

def qwen_file(folder: Path) -> Path:
    photos(folder, "assets/mm_tutorial")
    rows = [
        {"id": "identity_0", "conversations": [{"from": "user", "value": "你好"},
                                               {"from": "assistant", "value": "我是美食助手。"}]},
        {"id": "identity_1", "conversations": [
            {"from": "user", "value": f"Picture 1: <img>assets/mm_tutorial/{DUCK}</img>\n图中是什么菜？"},
            {"from": "assistant", "value": "图中是北京烤鸭。"},
            {"from": "user", "value": "框出图中的鸭皮"},
            {"from": "assistant", "value": "<ref>鸭皮</ref><box>(588,499),(725,789)</box>"}]},
        {"id": "identity_2", "conversations": [
            {"from": "user", "value": f"Picture 1: <img>assets/mm_tutorial/{NOODLES}</img>\n"
                                      f"Picture 2: <img>assets/mm_tutorial/{DUMPLINGS}</img>\n图中都是什么"},
            {"from": "assistant", "value": "第一张是兰州牛肉面，第二张是饺子。"}]},
        {"id": "identity_3", "conversations": [
            {"from": "user", "value": "Picture 1: <img>https://example.com/demo.jpeg</img>\n这是什么？"},
            {"from": "assistant", "value": "一只狗。"}]},
    ]
    return write_json(folder / "qwen_sft.json", rows)


def test_qwen_vl_img_tags_attach_their_pictures(tmp_path):
    result = read(qwen_file(tmp_path / "qwen"))
    assert result.format_label == "Qwen-VL JSON"
    hello, duck, two = result.records  # the web link is refused with its row, never fetched
    assert hello.images == () and conversation(hello) == [("human", "你好"), ("gpt", "我是美食助手。")]
    assert names(duck) == [DUCK] and conversation(duck)[0] == ("human", "<image>\n图中是什么菜？")
    assert conversation(duck)[3] == ("gpt", "<ref>鸭皮</ref><box>(588,499),(725,789)</box>")
    assert names(two) == [NOODLES, DUMPLINGS] and conversation(two)[0] == ("human", "<image>\n<image>\n图中都是什么")
    [refused] = result.problems
    assert refused.record_id == "identity_3" and "web address" in refused.message


# --- Hugging Face datasets: ImageFolder and any data set with an image column -----------------------------------------
# The datasets documentation, "Create an image dataset" (ImageFolder with metadata.jsonl / metadata.csv,
# file_name relative to the metadata file) and the Hub's "Image Dataset" guide (docs/hub/datasets-image.md).

def test_imagefolder_metadata_jsonl_and_csv(tmp_path):
    folder = photos(tmp_path / "imagefolder" / "train")
    write_jsonl(folder / "metadata.jsonl", [
        {"file_name": f"images/{DUCK}", "question": "这是什么菜？", "answer": "北京烤鸭。", "dish": "peking-duck"},
        {"file_name": f"images/{NOODLES}", "question": "这是什么菜？", "answer": "兰州牛肉面。", "dish": "noodles"}])
    result = read(folder.parent)  # the split folder train/ holds the metadata
    assert result.problems == () and result.format_label == "Hugging Face ImageFolder metadata"
    duck, noodles = result.records
    assert conversation(duck) == [("human", "<image>\n这是什么菜？"), ("gpt", "北京烤鸭。")] and names(duck) == [DUCK]
    assert names(noodles) == [NOODLES] and noodles.dish_id == "noodles"

    captions = photos(tmp_path / "captions")
    (captions / "metadata.csv").write_text(f"file_name,text\nimages/{DUMPLINGS},a plate of dumplings\n"
                                           f"images/{HOTPOT},a bubbling red hotpot\n", encoding="utf-8")
    result = read(captions)
    assert [conversation(r) for r in result.records] == [
        [("human", "<image>\nDescribe this picture."), ("gpt", "a plate of dumplings")],
        [("human", "<image>\nDescribe this picture."), ("gpt", "a bubbling red hotpot")]]
    assert [p.skipped for p in result.problems] == [False]  # said once, as a warning


def test_a_datasets_folder_with_an_image_column_is_read_by_the_datasets_library(tmp_path):
    import datasets

    photos(tmp_path / "src")
    rows = {"image": [str(tmp_path / "src" / "images" / n) for n in (DUCK, NOODLES)],
            "question": ["这是什么菜？", "What is this?"], "answer": ["北京烤鸭。", "Beef noodles."]}
    data = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    data = data.cast_column("image", datasets.Image(decode=True))
    data.save_to_disk(str(tmp_path / "saved"))
    result = read(tmp_path / "saved", scratch=tmp_path / "scratch")
    assert result.problems == () and result.format_label.startswith("Hugging Face datasets (image")
    duck, noodles = result.records
    assert conversation(duck) == [("human", "<image>\n这是什么菜？"), ("gpt", "北京烤鸭。")]
    assert duck.images[0].read_bytes() == (EXAMPLES / "images" / DUCK).read_bytes()
    assert conversation(noodles)[1] == ("gpt", "Beef noodles.")

    # LLaMA-Factory's mllm_example_dataset shape: Parquet with "messages" and a list of pictures
    chats = datasets.Dataset.from_dict({
        "messages": [[{"role": "user", "content": "<image>这是什么？"}, {"role": "assistant", "content": "饺子。"}]],
        "images": [[str(tmp_path / "src" / "images" / DUMPLINGS)]]}).cast_column(
        "images", datasets.List(datasets.Image()))
    (tmp_path / "parquet" / "data").mkdir(parents=True)
    chats.to_parquet(str(tmp_path / "parquet" / "data" / "train-0.parquet"))
    [dumplings] = read(tmp_path / "parquet", scratch=tmp_path / "scratch").records
    assert conversation(dumplings) == [("human", "<image>这是什么？"), ("gpt", "饺子。")]
    assert dumplings.images[0].read_bytes() == (EXAMPLES / "images" / DUMPLINGS).read_bytes()


def test_the_cauldron_trl_vision_rows_vqav2_captions_and_the_hubs_split_files(tmp_path):
    """Shapes published on the Hub: The Cauldron (HuggingFaceM4/the_cauldron; "texts" of {"user",
    "assistant", "source"}, its pictures before the first question) and TRL's vision examples
    (HuggingFaceH4/llava-instruct-mix-vsft; content parts, {"type": "image"} where a picture of "images"
    goes), the latter in the Hub's file names: data/train-... and data/test-..., splits to pick from."""
    import datasets

    pictures = photos(tmp_path / "src") / "images"
    image_list = datasets.List(datasets.Image())
    exchange = {"user": datasets.Value("string"), "assistant": datasets.Value("string"),
                "source": datasets.Value("string")}
    cauldron = datasets.Dataset.from_dict({
        "images": [[str(pictures / DUCK)], [str(pictures / NOODLES), str(pictures / DUMPLINGS)]],
        "texts": [[{"user": "What dish is this?", "assistant": "Peking duck.", "source": "foodie"}],
                  [{"user": "Which is noodles?", "assistant": "The first.", "source": "foodie"},
                   {"user": "And the second?", "assistant": "Dumplings.", "source": "foodie"}]]},
        features=datasets.Features({"images": image_list, "texts": datasets.List(exchange)}))
    cauldron.to_parquet(str(tmp_path / "cauldron" / "train-00000-of-00001.parquet"))
    duck, two = read(tmp_path / "cauldron", scratch=tmp_path / "scratch").records
    assert conversation(duck) == [("human", "<image>\nWhat dish is this?"), ("gpt", "Peking duck.")]
    assert duck.images[0].read_bytes() == (EXAMPLES / "images" / DUCK).read_bytes()
    assert conversation(two) == [("human", "<image><image>\nWhich is noodles?"), ("gpt", "The first."),
                                 ("human", "And the second?"), ("gpt", "Dumplings.")]
    assert [p.read_bytes() for p in two.images] == [(pictures / n).read_bytes() for n in (NOODLES, DUMPLINGS)]
    one_file = read(tmp_path / "cauldron" / "train-00000-of-00001.parquet", scratch=tmp_path / "scratch")
    assert [conversation(r) for r in one_file.records] == [conversation(duck), conversation(two)]  # named alone

    part = {"index": datasets.Value("int64"), "text": datasets.Value("string"), "type": datasets.Value("string")}
    features = datasets.Features({"messages": datasets.List({"content": datasets.List(part),
                                                             "role": datasets.Value("string")}),
                                  "images": image_list})

    def chat(question: str, answer: str, picture: str) -> dict:
        return {"messages": [[{"role": "user", "content": [{"index": 0, "text": None, "type": "image"},
                                                           {"index": None, "text": question, "type": "text"}]},
                              {"role": "assistant", "content": [{"index": None, "text": answer, "type": "text"}]}]],
                "images": [[str(pictures / picture)]]}

    (tmp_path / "vsft" / "data").mkdir(parents=True)
    for split, question, answer, picture in (("train", "这是什么菜？", "饺子。", DUMPLINGS),
                                             ("test", "这是什么菜？", "火锅。", HOTPOT)):
        datasets.Dataset.from_dict(chat(question, answer, picture), features=features).to_parquet(
            str(tmp_path / "vsft" / "data" / f"{split}-00000-of-00001.parquet"))
    with pytest.raises(SeveralDataSets) as several:
        read(tmp_path / "vsft", scratch=tmp_path / "scratch")
    assert sorted(key for _, key in several.value.choices) == ["test", "train"]
    [hotpot] = read(tmp_path / "vsft", scratch=tmp_path / "scratch", pick="test").records
    assert conversation(hotpot) == [("human", "<image>这是什么菜？"), ("gpt", "火锅。")]
    assert hotpot.images[0].read_bytes() == (pictures / HOTPOT).read_bytes()

    # VQAv2 as the Hub holds it (HuggingFaceM4/VQAv2): the answer under "multiple_choice_answer"
    vqa = datasets.Dataset.from_dict({"question_id": [7], "question": ["What dish is this?"],
                                      "multiple_choice_answer": ["noodles"], "image": [str(pictures / NOODLES)]})
    vqa.cast_column("image", datasets.Image()).to_parquet(str(tmp_path / "vqa" / "validation-00000-of-00001.parquet"))
    [noodles] = read(tmp_path / "vqa", scratch=tmp_path / "scratch").records
    assert conversation(noodles) == [("human", "<image>\nWhat dish is this?"), ("gpt", "noodles")]

    # a captioning set, as Unsloth's vision examples use them (unsloth/LaTeX_OCR: "image" and "text"): each picture
    # is asked the default question, said once
    captions = datasets.Dataset.from_dict({"image": [str(pictures / DUCK)], "text": ["A roast duck, sliced."]})
    captions.cast_column("image", datasets.Image()).to_parquet(str(tmp_path / "captions" / "train.parquet"))
    result = read(tmp_path / "captions", scratch=tmp_path / "scratch")
    assert conversation(result.records[0]) == [("human", "<image>\nDescribe this picture."),
                                               ("gpt", "A roast duck, sliced.")]
    assert [p.skipped for p in result.problems] == [False] and "text" in result.problems[0].message


# --- question rows in JSON -------------------------------------------------------------------------------------------
# What a person writes by hand (a table's columns as JSON keys), and PaliGemma's JSONL ({"image", "prefix",
# "suffix"}) as Roboflow's export writes it.


def question_rows_file(folder: Path) -> Path:
    photos(folder)
    return write_json(folder / "dishes.json", [
        {"image": f"images/{DUCK}", "question": "这是什么菜？", "answer": "北京烤鸭。", "cuisine": "京菜"},
        {"图片": [f"images/{NOODLES}", f"images/{DUMPLINGS}"], "问题": "哪个是面？", "答案": "第一张。"}])


def test_question_rows_in_json_and_paligemma_jsonl(tmp_path):
    result = read(question_rows_file(tmp_path / "rows"))
    assert result.problems == () and result.format_label == "JSON question rows"
    duck, two = result.records
    assert conversation(duck) == [("human", "<image>\n这是什么菜？"), ("gpt", "北京烤鸭。")] and duck.cuisine == "京菜"
    assert conversation(two)[0] == ("human", "<image><image>\n哪个是面？") and names(two) == [NOODLES, DUMPLINGS]

    folder = photos(tmp_path / "paligemma")
    write_jsonl(folder / "dataset.jsonl", [{"image": f"images/{HOTPOT}", "prefix": "answer en Is it spicy?",
                                            "suffix": "yes"}])
    [hotpot] = read(folder).records
    assert conversation(hotpot) == [("human", "<image>\nanswer en Is it spicy?"), ("gpt", "yes")]

    # alpaca rows also name a question (instruction) and an answer (output): read as alpaca, history and all
    alpaca = json.loads(alpaca_file(tmp_path / "alpaca").read_text(encoding="utf-8"))
    write_jsonl(tmp_path / "alpaca" / "alpaca.jsonl", alpaca)
    result = read(tmp_path / "alpaca" / "alpaca.jsonl")
    assert result.format_label == "Alpaca (LLaMA-Factory)" and len(conversation(result.records[1])) == 4


# --- tables as people write them --------------------------------------------------------------------------------------
# No project owns these: CSV as Excel writes it (UTF-8 with a BOM, or GBK on Chinese Windows), TSV, and
# .xlsx; headers in English or Chinese.

TABLE = [["图片", "问题", "答案", "菜系"], [f"images/{DUCK}", "这是什么菜？", "北京烤鸭。", "京菜"],
         [f"images/{NOODLES};images/{DUMPLINGS}", "哪个是面？", "第一张。", "西北菜"]]


def check_table(result) -> None:
    assert result.problems == (), result.problems
    duck, two = result.records
    assert conversation(duck) == [("human", "<image>\n这是什么菜？"), ("gpt", "北京烤鸭。")] and names(duck) == [DUCK]
    assert duck.cuisine == "京菜" and names(two) == [NOODLES, DUMPLINGS]
    assert conversation(two)[0] == ("human", "<image><image>\n哪个是面？")


@pytest.mark.parametrize("kind", ["utf-8-sig", "gbk", "tsv", "xlsx"])
def test_tables_with_chinese_headers_in_any_encoding(tmp_path, kind):
    folder = photos(tmp_path / kind)
    if kind == "xlsx":
        import openpyxl

        book = openpyxl.Workbook()
        for row in TABLE:
            book.active.append(row)
        book.save(folder / "dishes.xlsx")
    elif kind == "tsv":
        (folder / "dishes.tsv").write_text("\n".join("\t".join(r) for r in TABLE) + "\n", encoding="utf-8")
    else:
        with open(folder / "dishes.csv", "w", encoding=kind, newline="") as handle:
            csv.writer(handle).writerows(TABLE)
    check_table(read(folder))


def test_header_aliases_image_path_and_img(tmp_path):
    folder = photos(tmp_path / "aliases")
    (folder / "a.csv").write_text(f"image_path,question,answer\nimages/{DUCK},这是什么？,烤鸭。\n", encoding="utf-8")
    (folder / "b.csv").write_text(f"img,问题,答案\nimages/{DUCK},这是什么？,烤鸭。\n", encoding="utf-8")
    for name in ("a.csv", "b.csv"):
        [record] = read(folder, pick=name).records
        assert names(record) == [DUCK] and conversation(record)[1] == ("gpt", "烤鸭。")


# --- detection --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, key", [(llava_file, "llava"), (internvl_file, "internvl"), (swift_file, "swift"),
                                       (openai_file, "openai"), (qwen_file, "qwenvl")])
def test_detection_reads_content_not_the_file_name(tmp_path, make, key):
    path = make(tmp_path / key)
    renamed = path.with_name("data.txt")
    path.rename(renamed)
    found, sure = detect(load_sample(renamed, renamed.name))
    assert found.key == key and sure > 0.5


def test_a_file_that_matches_no_format_says_which_were_tried_and_the_first_line_that_did_not_fit(tmp_path):
    path = write_jsonl(tmp_path / "notes.jsonl", [{"title": "烤鸭", "stars": 5}, {"title": "饺子"}])
    with pytest.raises(DataError) as refused:
        read(path)
    said = str(refused.value)
    assert said.startswith("notes.jsonl matches none of the formats Foodie Studio reads (")
    assert "InternVL jsonl" in said and "Qwen-VL JSON" in said and 'line 1 fits none of them: {"title": "烤鸭"' in said


# --- a bad row, in any format: its reason in the report in both languages, the other rows kept ------------------

def add_row(path: Path, row) -> Path:
    if path.suffix == ".jsonl":
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        write_json(path, [*json.loads(path.read_text(encoding="utf-8")), row])
    return path


def mllm_demo(folder: Path) -> Path:
    return sharegpt_folder(folder) / "mllm_demo.json"


BAD_ROWS = {
    "llava": (llava_file, {"id": "bad", "image": "images/gone.jpg", "conversations": [
        {"from": "human", "value": "<image>\n?"}, {"from": "gpt", "value": "!"}]}, "'images/gone.jpg' is missing"),
    "internvl": (internvl_file, {"id": 7, "image": [f"images/{DUCK}", f"images/{NOODLES}"], "conversations": [
        {"from": "human", "value": "<image>\n?"}, {"from": "gpt", "value": "!"}]},
        "the questions hold 1 <image> placeholders for 2 pictures"),
    "sharegpt": (mllm_demo, {"messages": [{"role": "user", "content": "<image><image>?"},
                                          {"role": "assistant", "content": "!"}], "images": [f"mllm_demo_data/{DUCK}"]},
                 "the questions hold 2 <image> placeholders for 1 pictures"),
    "swift": (swift_file, {"messages": [{"role": "user", "content": "天气？"}, {"role": "tool", "content": "晴"}]},
              "turn 2 is from 'tool', not human or gpt"),
    "openai": (openai_file, {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
                                          {"role": "assistant", "content": "!"}]}, "is neither text nor a picture"),
    "qwenvl": (qwen_file, {"id": "x", "conversations": [{"from": "user", "value": "?"}, {
        "from": "assistant", "value": f"Picture 1: <img>assets/mm_tutorial/{DUCK}</img>"}]},
        "is an answer with a picture"),
}


@pytest.mark.parametrize("key", list(BAD_ROWS))
def test_a_bad_row_in_any_format_is_said_in_both_languages_and_the_rest_is_kept(tmp_path, key):
    from tests.test_data_problems import CHINESE, english_left
    from ui.problems import say

    make, bad, words = BAD_ROWS[key]
    path = make(tmp_path / key)
    good = read(path)
    result = read(add_row(path, bad))
    assert result.records == good.records, "nothing that loaded is lost"
    [reported] = [p for p in result.problems if p not in good.problems]
    assert reported.skipped and reported.row == len(result.records) + len(good.problems)
    assert words.lower() in reported.message.lower() and reported.message.endswith("The row was skipped.")
    chinese = say(reported.message, "zh")
    assert CHINESE.search(chinese) and english_left(chinese, reported.message) == [], chinese


def test_json_and_jsonl_alike_the_content_decides(tmp_path):
    # ms-swift's page: "jsonl (or json)"; a JSON-lines file named .json, and a JSON list named .jsonl
    lines = internvl_file(tmp_path / "a")
    as_json = lines.rename(lines.with_suffix(".json"))
    assert read(as_json).format_label == "InternVL jsonl" and len(read(as_json).records) == 3
    listed = llava_file(tmp_path / "b")
    as_jsonl = listed.rename(listed.with_suffix(".jsonl"))
    assert read(as_jsonl).format_label == "LLaVA/XTuner JSON" and len(read(as_jsonl).records) == 4
