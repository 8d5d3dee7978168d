"""The Dataset tab: load questions and pictures, check them, browse them, save a training set.

Each visitor's loaded data lives in their own gr.State (a DatasetSession); nothing per visitor is
global. Everything shown comes from backend.data (readers, browse, split) and backend.data.library
(where uploads and training sets live); this module only lays out widgets, wires events and puts
server-made sentences into the visitor's language.

Pictures reach the page only as cached copies under the work folder (gallery thumbnails and larger
previews), so a folder typed in by path is browsable without being served as it is.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from PIL import Image, ImageDraw, ImageFont

from backend.data import (CONVERSATION, FACETS, FOODIEQA_TERMS, MIVQA, SIVQA, SOURCE_FOODIEQA, TABLE_COLUMNS,
                          TEXTQA, DataError, ReadResult, Record, RecordFilter, TermsNotAccepted,
                          ThumbnailCache, build_training_set, detail_view, facet_counts,
                          filter_records, find_record, gallery_page, paginate, read_bundled_own_data,
                          read_bundled_sample, read_data_folder, read_foodieqa_hub, table_rows,
                          to_training_sample, unpack_upload)
from backend.data.library import (check_name, list_training_sets, new_upload_folder, training_set_folder,
                                  upload_data_root)
from backend.markdown_text import as_text
from backend.services import Services
from ui.i18n import add_strings, question_type_word, request_lang, task_word, text, value_word
from ui.problems import say

log = logging.getLogger(__name__)

PREVIEW_SIZE = 768  # longest side of the pictures in the detail view
PREVIEW_HEIGHT = 400  # pixels the detail view gives one picture (several share "auto")
SOURCE_KEYS = ("sample", "own_example", "data", "folder", "upload", "hub")
TRAINING_TASKS = (SIVQA, MIVQA, TEXTQA)
# Column keys (ds_col_*) of the three tables, in order.
TABLE_KEYS = ("id", "task", "question", "answer", "question_type", "cuisine", "dish")
FACT_KEYS = {"id": "ds_fact_id", "dish": "ds_fact_dish", "cuisine": "ds_fact_cuisine",
             "region": "ds_fact_region", "question type": "ds_fact_question_type",
             "source": "ds_fact_source", "from": "ds_fact_from"}
FACT_FACETS = {"source": "source", "question type": "question_type"}  # facts whose values are said in words
REPORT_KEYS = ("file", "row", "id", "message", "skipped")
SETS_KEYS = ("name", "train", "heldout", "dishes", "tasks", "lang", "sources", "terms", "created")
assert len(TABLE_KEYS) == len(TABLE_COLUMNS)

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "ds_intro": ("Load questions and pictures, see what is wrong with them, browse them, and save "
                     "a training set with whole dishes held out for scoring."),
        "ds_source": "Load from",
        "ds_src_sample": "Bundled sample (FoodieQA layout)",
        "ds_src_own_example": "Bundled own-data example (conversations)",
        "ds_src_data": "The --data folder",
        "ds_src_folder": "A folder or file on the server",
        "ds_src_upload": "Upload (files or a .zip)",
        "ds_src_hub": "FoodieQA from the Hugging Face hub",
        "ds_folder": "Path on the server",
        "ds_folder_hint": "/data/FoodieQA, or a folder with data.json / data.csv and its pictures",
        "ds_upload": "A .zip of your folder, or a .json / .csv with its pictures",
        "ds_hub_note": ("FoodieQA is gated and about 864 MB: accept its terms on the hub, set HF_TOKEN "
                        "(or run `hf auth login`) on this server, then press Load."),
        "ds_load": "📂 Load",
        "ds_report": "Problems found (the good rows are kept)",
        "ds_col_file": "file",
        "ds_col_row": "row",
        "ds_col_id": "id",
        "ds_col_message": "what is wrong",
        "ds_col_skipped": "skipped?",
        "ds_yes": "yes",
        "ds_no": "no (kept)",
        "ds_f_task": "Task",
        "ds_f_question_type": "Question type",
        "ds_f_cuisine": "Cuisine",
        "ds_f_region": "Region",
        "ds_f_source": "Source",
        "ds_f_dish": "Dish name",
        "ds_f_dish_hint": "e.g. 烤鸭",
        "ds_any": "Any ({count})",
        "ds_count": "{label} ({count})",
        "ds_origin_foodieqa": "FoodieQA",
        "ds_origin_sample": "bundled sample",
        "ds_origin_own": "own data",
        "ds_prev": "◀ Previous",
        "ds_next": "Next ▶",
        "ds_page": "Page",
        "ds_page_label": "Page {number} of {count} ({total} in all)",
        "ds_nothing": "Nothing matches these filters.",
        "ds_col_task": "task",
        "ds_col_question": "question",
        "ds_col_answer": "answer",
        "ds_col_question_type": "question type",
        "ds_col_cuisine": "cuisine",
        "ds_col_dish": "dish",
        "ds_gallery": "Pictures (click one for its details)",
        "ds_table": "This page as a table (click a row for its details)",
        "ds_detail": "### Details",
        "ds_detail_empty": "Click a picture or a table row to see its question, its choices and the answer.",
        "ds_sample": ("**As a training sample** (prompt language as chosen under *Make training samples*): "
                      "what the model reads, then the answer it learns; the loss is on the answer alone."),
        "ds_record_id": "Record id (type one and press Enter)",
        "ds_pictures": "Pictures",
        "ds_not_found": "There is no record with the id {id} in the loaded data.",
        "ds_answer": "answer",
        "ds_picture": "picture {letter}",
        "ds_fact_id": "id",
        "ds_fact_dish": "dish",
        "ds_fact_cuisine": "cuisine",
        "ds_fact_region": "region",
        "ds_fact_question_type": "question type",
        "ds_fact_source": "source",
        "ds_fact_from": "from",
        "ds_summary_read": "Read {count} records ({what}) from `{root}`.",
        "ds_summary_nothing": "nothing usable",
        "ds_summary_skipped": "{count} rows skipped",
        "ds_summary_files": "{count} files unreadable",
        "ds_summary_warnings": "{count} warnings",
        "ds_summary_see": "{details}: see the report below.",
        "ds_make": "Make training samples",
        "ds_make_help": (
            "Conversations always go in as they are. Multiple-choice questions of the tasks you tick "
            "become a question with lettered choices, answered with the right choice and the dish's "
            "name. **Whole dishes are held out**, so no dish is on both sides, and scoring on the "
            "held-out part later is fair."),
        "ds_tasks": "Multiple-choice tasks to include",
        "ds_lang": "Prompt language",
        "ds_heldout": "Held-out share of the dishes",
        "ds_seed": "Seed (the same seed gives the same split)",
        "ds_name": "Name (a folder under <work folder>/datasets/)",
        "ds_only_filtered": "Only the records the filters above show",
        "ds_overwrite": "Replace a training set of the same name",
        "ds_terms_intro": (
            "**Some of these records come from FoodieQA.** Its license and its dataset card (below) "
            "say research and evaluation only, not training. To train on it anyway, read them and "
            "tick the box."),
        "ds_accept": "I have read FoodieQA's license and terms and accept them",
        "ds_save": "💾 Save training set",
        "ds_saved": ("Saved **{name}**: {train} training samples (dishes: {train_dishes}) and {heldout} "
                     "held-out samples (dishes: {heldout_dishes}), in `{folder}`."),
        "ds_dropped": "{count} multi-image questions showing dishes of both sides were left out.",
        "ds_sets": "Saved training sets (the Train tab lists these)",
        "ds_refresh": "🔄 Refresh",
        "ds_col_name": "name",
        "ds_col_train": "train samples",
        "ds_col_heldout": "held-out samples",
        "ds_col_dishes": "dishes (train / held-out)",
        "ds_col_tasks": "tasks",
        "ds_col_lang": "language",
        "ds_col_sources": "sources",
        "ds_col_terms": "FoodieQA terms",
        "ds_accepted": "accepted",
        "ds_not_accepted": "not accepted",
        "ds_col_created": "created",
        "ds_load_failed": "This source cannot be read: {detail}",
        "ds_no_folder": "Type the path of a folder or a file on this server first.",
        "ds_no_upload": "Choose the files to upload first (a .zip of your folder, or a .json / .csv with its pictures).",
        "ds_no_data": "This app was started without --data; pick another source.",
        "ds_unknown_source": "Unknown source {source!r}; pick one of the listed sources.",
        "ds_upload_skipped": "Some uploaded files were left out: {detail}",
        "ds_bad_page": "The page must be a whole number.",
        "ds_bad_heldout": "The held-out share must be between 0 and 0.5.",
        "ds_bad_seed": "The seed must be a whole number.",
        "ds_exists": ("A training set named {name} already exists; tick “Replace a training set of the "
                      "same name” to overwrite it, or pick another name."),
        "ds_save_failed": "The training set was not saved: {detail}",
        "ds_terms_refused": "The training set was not saved: {detail}",
        "ds_source_gone": ("⚠️ The folder these records were read from ({root}) is no longer there: the "
                           "questions still show, pictures not seen before do not. Load it again once it is back."),
    },
    "zh": {
        "ds_intro": "加载问题和图片，查看其中的问题，浏览它们，并保存训练集：整道菜留出用于评测。",
        "ds_source": "数据来源",
        "ds_src_sample": "内置示例（FoodieQA 格式）",
        "ds_src_own_example": "内置自有数据示例（对话）",
        "ds_src_data": "--data 指定的文件夹",
        "ds_src_folder": "服务器上的文件夹或文件",
        "ds_src_upload": "上传（文件或 .zip）",
        "ds_src_hub": "从 Hugging Face Hub 获取 FoodieQA",
        "ds_folder": "服务器上的路径",
        "ds_folder_hint": "/data/FoodieQA，或包含 data.json / data.csv 及图片的文件夹",
        "ds_upload": "你的文件夹打包成的 .zip，或一个 .json / .csv 及其图片",
        "ds_hub_note": ("FoodieQA 需申请访问，约 864 MB：先在 Hub 上接受其条款，在本服务器上设置 HF_TOKEN"
                        "（或运行 `hf auth login`），再点击“加载”。"),
        "ds_load": "📂 加载",
        "ds_report": "发现的问题（有效的行已保留）",
        "ds_col_file": "文件",
        "ds_col_row": "行",
        "ds_col_id": "编号",
        "ds_col_message": "问题所在",
        "ds_col_skipped": "已跳过？",
        "ds_yes": "是",
        "ds_no": "否（已保留）",
        "ds_f_task": "任务",
        "ds_f_question_type": "题型",
        "ds_f_cuisine": "菜系",
        "ds_f_region": "地区",
        "ds_f_source": "来源",
        "ds_f_dish": "菜名",
        "ds_f_dish_hint": "例如：烤鸭",
        "ds_any": "全部（{count}）",
        "ds_count": "{label}（{count}）",
        "ds_origin_foodieqa": "FoodieQA",
        "ds_origin_sample": "内置示例",
        "ds_origin_own": "自有数据",
        "ds_prev": "◀ 上一页",
        "ds_next": "下一页 ▶",
        "ds_page": "页码",
        "ds_page_label": "第 {number} / {count} 页 · 共 {total} 条",
        "ds_nothing": "没有符合这些筛选条件的记录。",
        "ds_col_task": "任务",
        "ds_col_question": "问题",
        "ds_col_answer": "答案",
        "ds_col_question_type": "题型",
        "ds_col_cuisine": "菜系",
        "ds_col_dish": "菜名",
        "ds_gallery": "图片（点击查看详情）",
        "ds_table": "本页表格（点击一行查看详情）",
        "ds_detail": "### 详情",
        "ds_detail_empty": "点击一张图片或表格中的一行，查看问题、选项和答案。",
        "ds_sample": "**作为训练样本**（提示语言按“生成训练样本”中的选择）：模型读到的内容，以及它要学会的回答；损失只算在回答上。",
        "ds_record_id": "记录编号（输入后按回车）",
        "ds_pictures": "图片",
        "ds_not_found": "已加载的数据中没有编号为 {id} 的记录。",
        "ds_answer": "答案",
        "ds_picture": "图 {letter}",
        "ds_fact_id": "编号",
        "ds_fact_dish": "菜名",
        "ds_fact_cuisine": "菜系",
        "ds_fact_region": "地区",
        "ds_fact_question_type": "题型",
        "ds_fact_source": "来源",
        "ds_fact_from": "出处",
        "ds_summary_read": "从 `{root}` 读取了 {count} 条记录（{what}）。",
        "ds_summary_nothing": "没有可用的记录",
        "ds_summary_skipped": "跳过 {count} 行",
        "ds_summary_files": "{count} 个文件无法读取",
        "ds_summary_warnings": "{count} 条警告",
        "ds_summary_see": "{details}：请查看下方报告。",
        "ds_make": "生成训练样本",
        "ds_make_help": (
            "对话原样加入。勾选的任务中的选择题会变成带字母选项的问题，答案为正确选项和菜名。"
            "**按整道菜留出**，同一道菜不会同时出现在两边，之后在留出部分上评测才公平。"),
        "ds_tasks": "要加入的选择题任务",
        "ds_lang": "提示语言",
        "ds_heldout": "留出菜品的比例",
        "ds_seed": "随机种子（相同种子得到相同划分）",
        "ds_name": "名称（<工作目录>/datasets/ 下的文件夹）",
        "ds_only_filtered": "只用上方筛选出的记录",
        "ds_overwrite": "替换同名的训练集",
        "ds_terms_intro": (
            "**其中有些记录来自 FoodieQA。** 它的许可和数据集卡片（见下文原文）写明仅供研究和评测，"
            "不用于训练。如仍要用它训练，请阅读后勾选确认。"),
        "ds_accept": "我已阅读并接受 FoodieQA 的许可和条款",
        "ds_save": "💾 保存训练集",
        "ds_saved": ("已保存 **{name}**：{train} 条训练样本（{train_dishes} 道菜），{heldout} 条留出样本"
                     "（{heldout_dishes} 道菜），位于 `{folder}`。"),
        "ds_dropped": "有 {count} 道多图题同时包含两边的菜，已略去。",
        "ds_sets": "已保存的训练集（“训练”页会列出它们）",
        "ds_refresh": "🔄 刷新",
        "ds_col_name": "名称",
        "ds_col_train": "训练样本",
        "ds_col_heldout": "留出样本",
        "ds_col_dishes": "菜品（训练 / 留出）",
        "ds_col_tasks": "任务",
        "ds_col_lang": "语言",
        "ds_col_sources": "来源",
        "ds_col_terms": "FoodieQA 条款",
        "ds_accepted": "已接受",
        "ds_not_accepted": "未接受",
        "ds_col_created": "创建时间",
        "ds_load_failed": "无法读取该数据源：{detail}",
        "ds_no_folder": "请先输入本服务器上文件夹或文件的路径。",
        "ds_no_upload": "请先选择要上传的文件（文件夹打包成的 .zip，或 .json / .csv 及其图片）。",
        "ds_no_data": "本应用启动时没有指定 --data；请选择其他数据来源。",
        "ds_unknown_source": "未知的数据来源 {source!r}；请从列出的来源中选择。",
        "ds_upload_skipped": "部分上传的文件未被采用：{detail}",
        "ds_bad_page": "页码必须是整数。",
        "ds_bad_heldout": "留出比例必须在 0 到 0.5 之间。",
        "ds_bad_seed": "随机种子必须是整数。",
        "ds_exists": "名为 {name} 的训练集已存在；勾选“替换同名的训练集”以覆盖，或换一个名称。",
        "ds_save_failed": "训练集未保存：{detail}",
        "ds_terms_refused": "训练集未保存：{detail}",
        "ds_source_gone": "⚠️ 读取这些记录的文件夹（{root}）已不存在：问题仍可浏览，之前未显示过的图片无法显示。文件夹恢复后请重新加载。",
    },
}
add_strings(STRINGS)


@dataclass
class DatasetSession:
    """One visitor's data: what was loaded, and the ids shown on the current page (in gallery and
    table order, so a click on cell i means page_ids[i])."""

    result: ReadResult
    page_ids: list[str] = field(default_factory=list)


@dataclass
class DatasetTab:
    session: gr.State
    gallery: gr.Gallery
    table: gr.Dataframe
    detail: gr.Markdown


class Refusal(Exception):
    """A request the tab turns down, with a sentence for the person (already in their language)."""


# --- turning backend values into what the widgets show, in the visitor's language -------------------

def summary_markdown(result: ReadResult, lang: str) -> str:
    """ReadResult.summary(), in the visitor's language."""
    if lang == "en":
        return result.summary()
    counts = result.counts_by_task()
    what = "、".join(f"{task_word(task, lang)} {n}" for task, n in counts.items())
    sentence = text("ds_summary_read", lang, count=len(result.records),
                    what=what or text("ds_summary_nothing", lang), root=result.root)
    if result.problems:
        details = []
        if result.skipped_rows:
            details.append(text("ds_summary_skipped", lang, count=result.skipped_rows))
        broken = sum(1 for p in result.problems if p.row is None and p.skipped)
        if broken:
            details.append(text("ds_summary_files", lang, count=broken))
        kept = sum(1 for p in result.problems if not p.skipped)
        if kept:
            details.append(text("ds_summary_warnings", lang, count=kept))
        sentence += " " + text("ds_summary_see", lang, details="；".join(details))
    return sentence


def report_table(result: ReadResult, lang: str) -> gr.Dataframe:
    rows = [[p.file, "" if p.row is None else str(p.row), p.record_id or "", say(p.message, lang),
             text("ds_yes" if p.skipped else "ds_no", lang)] for p in result.problems]
    return gr.Dataframe(value=rows, headers=[text(f"ds_col_{k}", lang) for k in REPORT_KEYS],
                        visible=bool(rows))


def left_out_sentence(skipped: tuple[str, ...], lang: str) -> str:
    """The warning naming the files an upload left out (the first five), each with why."""
    detail = ("；" if lang == "zh" else "; ").join(say(reason, lang) for reason in skipped[:5])
    return text("ds_upload_skipped", lang, detail=detail)


def _value_label(facet: str, value: str, lang: str) -> str:
    if facet == "source":
        return text(f"ds_origin_{value}", lang) if f"ds_origin_{value}" in STRINGS["en"] else value
    return value_word(facet, value, lang)


def facet_choices(records: tuple[Record, ...], flt: RecordFilter, lang: str) -> dict[str, list[tuple[str, str]]]:
    """Each filter's (label, value) choices with how many records picking it would show; "" is Any."""
    choices_by_facet = {}
    for facet, counts in facet_counts(records, flt).items():
        current = getattr(flt, facet)
        choices = [(text("ds_any", lang, count=sum(n for _, n in counts)), "")]
        choices += [(text("ds_count", lang, label=_value_label(facet, value, lang), count=n), value)
                    for value, n in counts if value]
        if current and current not in {value for _, value in choices}:
            choices.append((text("ds_count", lang, label=_value_label(facet, current, lang), count=0), current))
        choices_by_facet[facet] = choices
    return choices_by_facet


@functools.cache
def placeholder_picture() -> Image.Image:
    """The gallery cell of a question without a usable picture (text questions, broken pictures):
    one picture for everyone, drawn on first use and never changed."""
    picture = Image.new("RGB", (256, 256), (244, 240, 232))
    draw = ImageDraw.Draw(picture)
    try:
        font = ImageFont.truetype("NotoColorEmoji.ttf", 109)
        draw.text((128, 128), "📝", font=font, anchor="mm", embedded_color=True)
    except OSError:
        draw.text((128, 128), "Q&A", font=ImageFont.load_default(size=48), anchor="mm", fill=(150, 140, 120))
    return picture


def _task_label(record: Record, lang: str) -> str:
    return _value_label("task", record.task, lang)


TASK_MARKS = {MIVQA: "🖼️×4 ", TEXTQA: "📝 ", "conversation": "💬 "}


def _caption(record: Record) -> str:
    """A gallery caption: the dish (or the start of the question), marked with the kind of task."""
    name = record.food_name or (record.question[:14] + ("…" if len(record.question) > 14 else ""))
    return TASK_MARKS.get(record.task, "") + name


def page_table(records: tuple[Record, ...], lang: str) -> gr.Dataframe:
    rows = table_rows(records)
    for row, record in zip(rows, records):
        row[1] = _task_label(record, lang)
        row[4] = question_type_word(record.question_type, lang)
        if record.task == MIVQA and record.answer_letter:
            row[3] = text("ds_picture", lang, letter=record.answer_letter)
    return gr.Dataframe(value=rows, headers=[text(f"ds_col_{k}", lang) for k in TABLE_KEYS])


def detail_markdown(record: Record, lang: str) -> str:
    """detail_view(record).markdown(), with its words in the visitor's language."""
    detail = detail_view(record)
    facts = [_task_label(record, lang)]
    facts += [f"{text(FACT_KEYS[k], lang) if k in FACT_KEYS else k}: "
              f"{_value_label(FACT_FACETS[k], v, lang) if k in FACT_FACETS else as_text(say(v, lang))}"
              for k, v in detail.facts if v]  # "from" is a Problem ("sivqa_tidy.json row 3"), said in `lang`
    return detail.markdown(picture=lambda letter: text("ds_picture", lang, letter=letter),
                           answer=text("ds_answer", lang), facts=" · ".join(facts))


def sample_markdown(record: Record, prompt_lang: str, lang: str) -> str:
    """A question as a training set saved now would hold it (backend.data.conversion), so that what the
    model will learn is seen before it is saved. Conversations are shown as they are already."""
    if record.task == CONVERSATION or record.answer is None:
        return ""
    question, answer = to_training_sample(record, "en" if prompt_lang == "en" else "zh").turns
    # a fence longer than any run of backticks in the data, so the data cannot end it
    longest = max((len(run) for run in re.findall(r"`+", question.text + answer.text)), default=0)
    fence = "`" * max(3, longest + 1)
    return (f"{text('ds_sample', lang)}\n\n{fence}text\n{question.text}\n{fence}\n\n"
            f"{fence}text\n{answer.text}\n{fence}")


def sets_table(workdir: Path, lang: str) -> gr.Dataframe:
    rows = []
    for name, _folder, manifest in list_training_sets(workdir):
        train, heldout = (manifest.get(side) if isinstance(manifest.get(side), dict) else {}
                          for side in ("train", "heldout"))
        rows.append([
            name, train.get("samples", ""), heldout.get("samples", ""),
            f"{len(train.get('dish_ids') or [])} / {len(heldout.get('dish_ids') or [])}",
            ", ".join(_value_label("task", t, lang) for t in manifest.get("tasks") or []),
            manifest.get("lang", ""),
            ", ".join(_value_label("source", s, lang) for s in manifest.get("sources") or []),
            text("ds_accepted" if manifest.get("terms_accepted") else "ds_not_accepted", lang)
            if any(s == SOURCE_FOODIEQA for s in manifest.get("sources") or []) else "",
            str(manifest.get("created", "")).replace("T", " ").replace("+00:00", " UTC"),
        ])
    return gr.Dataframe(value=rows, headers=[text(f"ds_col_{k}", lang) for k in SETS_KEYS])


def source_gone(result: ReadResult, lang: str) -> str:
    """A sentence when the loaded data's folder has vanished (deleted, unmounted) since it was read;
    the records stay in memory, so browsing goes on without the pictures not yet cached."""
    return "" if Path(result.root).exists() else text("ds_source_gone", lang, root=result.root)


def _whole_number(value: object, error_key: str, lang: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Refusal(text(error_key, lang)) from None
    if not number.is_integer():
        raise Refusal(text(error_key, lang))
    return int(number)


def _read_source(chosen: str, path: str, files: list[str] | None, lang: str, workdir: Path,
                 data_folder: Path | None, visitor: str) -> ReadResult:
    """The records of the chosen source (see load_source); `visitor` names the upload's folder."""
    if chosen == "sample":
        return read_bundled_sample()
    if chosen == "own_example":
        return read_bundled_own_data()
    if chosen == "data":
        if data_folder is None:
            raise Refusal(text("ds_no_data", lang))
        return read_data_folder(data_folder)
    if chosen == "folder":
        if not (path or "").strip():
            raise Refusal(text("ds_no_folder", lang))
        return read_data_folder(Path(path.strip()).expanduser())
    if chosen == "upload":
        if not files:
            raise Refusal(text("ds_no_upload", lang))
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
        unpacked = unpack_upload(paths, new_upload_folder(workdir, visitor))
        if unpacked.skipped:
            gr.Warning(left_out_sentence(unpacked.skipped, lang))
        return read_data_folder(upload_data_root(unpacked.folder))
    if chosen == "hub":
        return read_foodieqa_hub(workdir / "foodieqa-hub")
    raise Refusal(text("ds_unknown_source", lang, source=chosen))


def _write_training_set(workdir: Path, state: DatasetSession, chosen_tasks: list[str], lang_choice: str,
                        heldout_share: float, seed_value: float, set_name: str, only_shown: bool, flt: RecordFilter,
                        replace_existing: bool, accept_terms: bool, lang: str):
    """The training set built and written (see save_training_set), or a Refusal saying why not."""
    try:
        share = float(heldout_share)
    except (TypeError, ValueError):
        raise Refusal(text("ds_bad_heldout", lang)) from None
    if not 0.0 <= share <= 0.5:
        raise Refusal(text("ds_bad_heldout", lang))
    seed_number = _whole_number(seed_value if seed_value is not None else 0, "ds_bad_seed", lang)
    records = state.result.records
    if only_shown:
        records = tuple(filter_records(records, flt))
    try:
        target = training_set_folder(workdir, set_name)
        if target.exists() and any(target.iterdir()) and not replace_existing:
            raise Refusal(text("ds_exists", lang, name=target.name))
        return build_training_set(records, target, heldout_ratio=share, seed=seed_number,
                                  tasks=tuple(chosen_tasks or ()), lang=lang_choice or "zh",
                                  accept_terms=bool(accept_terms))
    except TermsNotAccepted as err:
        raise Refusal(text("ds_terms_refused", lang, detail=say(err, lang))) from None
    except (DataError, ValueError, OSError) as err:
        log.warning("saving a training set failed: %s", err)
        raise Refusal(text("ds_save_failed", lang, detail=say(err, lang))) from None


# --- the tab --------------------------------------------------------------------------------------

def build(services: Services, i18n: gr.I18n, forced_lang: str | None) -> DatasetTab:
    workdir = services.settings.workdir
    data_folder = services.settings.data
    thumbs = ThumbnailCache(workdir / "cache" / "thumbs")
    previews = ThumbnailCache(workdir / "cache" / "previews", size=PREVIEW_SIZE)
    default_result = read_bundled_sample()
    session = gr.State(DatasetSession(default_result))
    initial_lang = forced_lang or "en"

    gr.Markdown(i18n("ds_intro"))

    # Source: where the records come from, and what is wrong with them.
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            source_choices = [(i18n(f"ds_src_{key}"), key) for key in SOURCE_KEYS
                              if key != "data" or data_folder is not None]
            source = gr.Radio(source_choices, value="sample", label=i18n("ds_source"), elem_id="ds-source")
            folder = gr.Textbox(label=i18n("ds_folder"), placeholder=i18n("ds_folder_hint"),
                                visible=False, elem_id="ds-folder")
            upload = gr.File(label=i18n("ds_upload"), file_count="multiple", visible=False,
                             elem_id="ds-upload")
            hub_note = gr.Markdown(i18n("ds_hub_note"), visible=False, elem_classes=["notice"])
            load_button = gr.Button(i18n("ds_load"), variant="primary", elem_id="ds-load")
        with gr.Column(scale=3):
            summary = gr.Markdown(summary_markdown(default_result, initial_lang), elem_id="ds-summary")
            report = gr.Dataframe(label=i18n("ds_report"), interactive=False, wrap=True, visible=False,
                                  max_height=320, column_widths=["16%", "7%", "17%", "48%", "12%"],
                                  elem_id="ds-report")

    # Browse: filters with counts, a page of thumbnails and the same page as a table, a detail view.
    empty_filter = RecordFilter()
    initial_choices = facet_choices(default_result.records, empty_filter, initial_lang)
    with gr.Row():
        filters = {facet: gr.Dropdown(choices=initial_choices[facet], value="",
                                      label=i18n(f"ds_f_{facet}"), elem_id=f"ds-filter-{facet}",
                                      min_width=140)
                   for facet in FACETS}
        dish = gr.Textbox(label=i18n("ds_f_dish"), placeholder=i18n("ds_f_dish_hint"), min_width=140,
                          elem_id="ds-filter-dish")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            gallery = gr.Gallery(label=i18n("ds_gallery"), columns=6, height="auto", allow_preview=False,
                                 object_fit="cover", buttons=[], elem_id="ds-gallery")
            with gr.Row(equal_height=False, elem_id="ds-pager"):
                prev_button = gr.Button(i18n("ds_prev"), size="sm", scale=0, min_width=110, elem_id="ds-prev")
                page_number = gr.Number(value=1, precision=0, label=i18n("ds_page"),
                                        show_label=False, min_width=80, scale=0, elem_id="ds-page")
                page_label = gr.Markdown(elem_id="ds-page-label")
                next_button = gr.Button(i18n("ds_next"), size="sm", scale=0, min_width=110, elem_id="ds-next")
        with gr.Column(scale=2, min_width=320):
            gr.Markdown(i18n("ds_detail"))
            record_id = gr.Textbox(label=i18n("ds_record_id"), elem_id="ds-record-id")
            pictures = gr.Gallery(label=i18n("ds_pictures"), columns=2, height=PREVIEW_HEIGHT, visible=False,
                                  object_fit="contain", elem_id="ds-detail-pictures")
            detail = gr.Markdown(i18n("ds_detail_empty"), elem_id="ds-detail")
            sample = gr.Markdown(elem_id="ds-sample")
    table = gr.Dataframe(label=i18n("ds_table"), interactive=False, wrap=True, max_height=520,
                         column_widths=["13%", "10%", "31%", "20%", "12%", "7%", "7%"], elem_id="ds-table")

    # Make training samples.
    with gr.Accordion(i18n("ds_make"), open=True, elem_id="ds-make"):
        gr.Markdown(i18n("ds_make_help"))
        with gr.Row():
            tasks = gr.CheckboxGroup([(i18n(f"task_{t}"), t) for t in TRAINING_TASKS], value=[SIVQA],
                                     label=i18n("ds_tasks"), elem_id="ds-tasks")
            prompt_lang = gr.Radio([("中文", "zh"), ("English", "en")], value="zh", label=i18n("ds_lang"),
                                   elem_id="ds-lang")
            heldout = gr.Slider(0.0, 0.5, value=0.2, step=0.05, label=i18n("ds_heldout"), elem_id="ds-heldout")
            seed = gr.Number(value=0, precision=0, label=i18n("ds_seed"), elem_id="ds-seed")
        with gr.Row():
            name = gr.Textbox(value=_suggested_name("sample", None), label=i18n("ds_name"), elem_id="ds-name")
            with gr.Column():
                only_filtered = gr.Checkbox(False, label=i18n("ds_only_filtered"), elem_id="ds-only-filtered")
                overwrite = gr.Checkbox(False, label=i18n("ds_overwrite"), elem_id="ds-overwrite")
        with gr.Group(visible=False, elem_id="ds-terms") as terms_group:
            gr.Markdown(i18n("ds_terms_intro"), elem_classes=["notice"])
            gr.Markdown(FOODIEQA_TERMS.replace("\n- ", "\n\n- ").replace("\n\nTerms", "\n\n**Terms**")
                        .replace("License:", "**License:**"), elem_id="ds-terms-text")
            accept = gr.Checkbox(False, label=i18n("ds_accept"), elem_id="ds-accept")
        save_button = gr.Button(i18n("ds_save"), variant="primary", elem_id="ds-save")
        saved = gr.Markdown(elem_id="ds-saved")
        sets = gr.Dataframe(label=i18n("ds_sets"), interactive=False, wrap=True, elem_id="ds-sets")
        refresh_sets = gr.Button(i18n("ds_refresh"), size="sm", elem_id="ds-refresh-sets")

    browse_outputs = [session, *filters.values(), gallery, table, page_number, page_label]
    detail_outputs = [record_id, pictures, detail, sample]

    # --- handlers ---------------------------------------------------------------------------------

    def render(state: DatasetSession, flt: RecordFilter, page: int, lang: str) -> dict:
        """The filters, the gallery, the table and the page label for `flt` and page `page`."""
        records = state.result.records
        shown = paginate(filter_records(records, flt), page)
        state.page_ids = [r.id for r in shown.items]
        cells = gallery_page(shown.items, thumbs)
        pictures_ = [(str(cell.thumbnail) if cell.thumbnail else placeholder_picture(), _caption(r))
                     for cell, r in zip(cells, shown.items)]
        label = (text("ds_page_label", lang, number=shown.number, count=shown.count, total=shown.total)
                 if shown.total else text("ds_nothing", lang))
        choices = facet_choices(records, flt, lang)
        return {session: state, **{filters[f]: gr.Dropdown(choices=choices[f], value=getattr(flt, f))
                                   for f in FACETS},
                gallery: gr.Gallery(value=pictures_, selected_index=None), table: page_table(shown.items, lang),
                page_number: shown.number,
                page_label: "\n\n".join(filter(None, (f"**{label}**", source_gone(state.result, lang))))}

    def cleared_detail(lang: str) -> dict:
        return {record_id: "", pictures: gr.Gallery(value=None, visible=False),
                detail: text("ds_detail_empty", lang), sample: ""}

    def load_source(state: DatasetSession, chosen: str, path: str, files: list[str] | None,
                    request: gr.Request, progress=gr.Progress()) -> dict:
        """Inputs: the source key (sample, own_example, data, folder, upload, hub), a server path
        (for folder), uploaded files (for upload).
        Outputs: the session, the summary, the problem report, the filters (reset), the first page
        (gallery, table, page), the detail (cleared), the FoodieQA terms (shown if needed) and a
        suggested training-set name. A source that cannot be read changes nothing but the summary,
        which then starts with the reason (and a warning says it too)."""
        lang = request_lang(request, forced_lang)
        progress(None, desc="reading")
        try:
            result = _read_source(chosen, path, files, lang, workdir, data_folder, request.session_hash)
        except (DataError, Refusal, OSError) as err:  # OSError: a full disk, a vanished upload, ...
            detail = say(err, lang)  # a Refusal is said in the visitor's language already
            sentence = detail if isinstance(err, Refusal) else text("ds_load_failed", lang, detail=detail)
            gr.Warning(sentence)
            return {summary: f"⚠️ {sentence}\n\n{summary_markdown(state.result, lang)}"}
        state = DatasetSession(result)
        has_foodieqa = any(r.source == SOURCE_FOODIEQA for r in result.records)
        return {**render(state, empty_filter, 1, lang), **cleared_detail(lang),
                dish: "", summary: summary_markdown(result, lang), report: report_table(result, lang),
                terms_group: gr.Group(visible=has_foodieqa), accept: False,
                name: _suggested_name(chosen, path)}

    def browse(state: DatasetSession, task: str, question_type: str, cuisine: str, region: str,
               record_source: str, dish_name: str, page: float, request: gr.Request) -> dict:
        """Inputs: the five filters ("" for any: task, question_type, cuisine, region, source), a
        dish-name substring and the page (1-based; clamped into range).
        Outputs: the session, the filters with counts, the page's gallery and table, the page
        number and its label."""
        lang = request_lang(request, forced_lang)
        flt = RecordFilter(task or "", question_type or "", cuisine or "", region or "", record_source or "",
                           dish_name or "")
        try:
            number = _whole_number(page or 1, "ds_bad_page", lang)
        except Refusal as err:
            raise gr.Error(str(err)) from None
        return render(state, flt, number, lang)

    filter_inputs = [*filters.values(), dish]

    def first_page(state: DatasetSession, task: str, question_type: str, cuisine: str, region: str,
                   record_source: str, dish_name: str, request: gr.Request) -> dict:
        return browse(state, task, question_type, cuisine, region, record_source, dish_name, 1, request)

    def step_page(delta: int):
        def step(state: DatasetSession, task: str, question_type: str, cuisine: str, region: str,
                 record_source: str, dish_name: str, page: float, request: gr.Request) -> dict:
            return browse(state, task, question_type, cuisine, region, record_source, dish_name,
                          (page or 1) + delta, request)
        return step

    def show_record(state: DatasetSession, wanted: str, prompt_language: str, request: gr.Request) -> dict:
        """Inputs: a record id, the prompt language of training samples (zh or en). Outputs: the id, the
        record's pictures, its question, choices (Chinese / English) with the answer marked and its
        facts, and the record as a training sample."""
        lang = request_lang(request, forced_lang)
        wanted = (wanted or "").strip()
        record = find_record(state.result.records, wanted) if wanted else None
        if record is None:
            if wanted:
                gr.Warning(text("ds_not_found", lang, id=wanted))
            return cleared_detail(lang) | {record_id: wanted}
        view = detail_view(record)
        shown = []
        for index, path in enumerate(view.pictures):
            preview = previews.thumbnail(path)
            if record.task == MIVQA and index < len(view.choices):
                choice = view.choices[index]
                caption = f"({choice.letter})" + (f" ✅ {text('ds_answer', lang)}" if choice.is_answer else "")
            else:
                caption = record.food_name or ""
            shown.append((str(preview) if preview else placeholder_picture(), caption))
        return {record_id: record.id,
                pictures: gr.Gallery(value=shown or None, visible=bool(shown),
                                     columns=1 if len(shown) == 1 else 2,
                                     height=PREVIEW_HEIGHT if len(shown) == 1 else "auto"),
                detail: "\n\n".join(filter(None, (source_gone(state.result, lang), detail_markdown(record, lang)))),
                sample: sample_markdown(record, prompt_language, lang)}

    def pick_cell(state: DatasetSession, prompt_language: str, event: gr.SelectData, request: gr.Request) -> dict:
        index = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not isinstance(index, int) or not 0 <= index < len(state.page_ids):
            return {}
        return show_record(state, state.page_ids[index], prompt_language, request)

    def resample(state: DatasetSession, shown_id: str, prompt_language: str, request: gr.Request) -> dict:
        """The shown record's training sample again, in the prompt language just chosen."""
        record = find_record(state.result.records, shown_id) if shown_id else None
        return {sample: sample_markdown(record, prompt_language, request_lang(request, forced_lang))
                if record else ""}

    def save_training_set(state: DatasetSession, chosen_tasks: list[str], lang_choice: str,
                          heldout_share: float, seed_value: float, set_name: str, only_shown: bool,
                          task: str, question_type: str, cuisine: str, region: str, record_source: str,
                          dish_name: str, replace_existing: bool, accept_terms: bool,
                          request: gr.Request) -> dict:
        """Inputs: tasks (sivqa / mivqa / textqa; conversations always go), prompt language
        (zh / en), held-out share (0..0.5), seed, name, whether to use only the filtered records,
        the filters, whether to replace a set of that name, whether FoodieQA's terms are accepted.
        Outputs: a sentence with the counts and the folder, and the list of saved sets; a refusal
        (bad name, existing set, terms not accepted, ...) is a "⚠️" sentence and a warning."""
        lang = request_lang(request, forced_lang)
        try:
            made = _write_training_set(workdir, state, chosen_tasks, lang_choice, heldout_share, seed_value, set_name,
                                       only_shown, RecordFilter(task or "", question_type or "", cuisine or "",
                                                                region or "", record_source or "", dish_name or ""),
                                       replace_existing, accept_terms, lang)
        except Refusal as err:
            gr.Warning(str(err))
            return {saved: f"⚠️ {err}"}
        manifest = made.manifest
        sentence = text("ds_saved", lang, name=made.folder.name, train=manifest["train"]["samples"],
                        train_dishes=len(manifest["train"]["dish_ids"]),
                        heldout=manifest["heldout"]["samples"],
                        heldout_dishes=len(manifest["heldout"]["dish_ids"]), folder=made.folder)
        if manifest.get("dropped_ids"):
            sentence += " " + text("ds_dropped", lang, count=len(manifest["dropped_ids"]))
        return {saved: sentence, sets: sets_table(workdir, lang)}

    def training_sets(request: gr.Request) -> gr.Dataframe:
        """Inputs: none. Outputs: the saved training sets under <workdir>/datasets/."""
        return sets_table(workdir, request_lang(request, forced_lang))

    def on_page_load(request: gr.Request) -> dict:
        lang = request_lang(request, forced_lang)
        return {**render(DatasetSession(default_result), empty_filter, 1, lang),
                summary: summary_markdown(default_result, lang), sets: sets_table(workdir, lang)}

    def show_source_fields(chosen: str):
        return (gr.Textbox(visible=chosen == "folder"), gr.File(visible=chosen == "upload"),
                gr.Markdown(visible=chosen == "hub"))

    # --- wiring -----------------------------------------------------------------------------------

    source.change(show_source_fields, [source], [folder, upload, hub_note], api_name=False, queue=False)
    load_button.click(
        load_source, [session, source, folder, upload],
        [*browse_outputs, *detail_outputs, dish, summary, report, terms_group, accept, name],
        api_name="dataset_load", concurrency_limit=2)
    folder.submit(load_source, [session, source, folder, upload],
                  [*browse_outputs, *detail_outputs, dish, summary, report, terms_group, accept, name],
                  api_name=False, concurrency_limit=2)

    page_number.submit(browse, [session, *filter_inputs, page_number], browse_outputs,
                       api_name="dataset_browse", show_progress="minimal")
    for dropdown in filters.values():
        dropdown.input(first_page, [session, *filter_inputs], browse_outputs, api_name=False,
                       show_progress="minimal", trigger_mode="always_last")
    # .change, not .input: text typed through an input method (Chinese) may raise no input event.
    dish.change(first_page, [session, *filter_inputs], browse_outputs, api_name=False,
                show_progress="minimal", trigger_mode="always_last")
    prev_button.click(step_page(-1), [session, *filter_inputs, page_number], browse_outputs,
                      api_name=False, show_progress="minimal")
    next_button.click(step_page(+1), [session, *filter_inputs, page_number], browse_outputs,
                      api_name=False, show_progress="minimal")

    record_id.submit(show_record, [session, record_id, prompt_lang], detail_outputs, api_name="dataset_record")
    gallery.select(pick_cell, [session, prompt_lang], detail_outputs, api_name=False)
    table.select(pick_cell, [session, prompt_lang], detail_outputs, api_name=False)
    prompt_lang.change(resample, [session, record_id, prompt_lang], [sample], api_name=False)

    save_button.click(
        save_training_set,
        [session, tasks, prompt_lang, heldout, seed, name, only_filtered, *filter_inputs, overwrite, accept],
        [saved, sets], api_name="dataset_save", concurrency_limit=1)
    refresh_sets.click(training_sets, None, [sets], api_name="dataset_sets")

    gr.on(None, on_page_load, inputs=[],
          outputs=[*browse_outputs, summary, sets], api_name=False, show_progress="hidden")

    return DatasetTab(session=session, gallery=gallery, table=table, detail=detail)


def _suggested_name(chosen: str, path: str | None) -> str:
    """A default name for the training set of a freshly loaded source (the person may change it)."""
    if chosen == "folder" and path:
        stem = Path(path.strip()).expanduser().stem
        try:
            return check_name(stem)
        except DataError:
            return "folder"
    return {"sample": "sample", "own_example": "own-example", "data": "data", "upload": "upload",
            "hub": "foodieqa"}.get(chosen, "my-set")
