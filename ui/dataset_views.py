"""The Dataset tab's views: backend values (a read result, records, saved sets) turned into what its
widgets show, in the visitor's language. ui/dataset.py lays the tab out and wires its events."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr
from PIL import Image, ImageDraw, ImageFont

from backend.data import (
    CONVERSATION,
    MIVQA,
    SOURCE_FOODIEQA,
    TABLE_COLUMNS,
    TEXTQA,
    ReadResult,
    Record,
    RecordFilter,
    detail_view,
    facet_counts,
    table_rows,
    to_training_sample,
)
from backend.data.library import list_training_sets
from backend.markdown_text import as_text
from ui.i18n import STRINGS, format_label, markdown, question_type_word, task_word, text, value_word
from ui.problems import say

TABLE_KEYS = ("id", "task", "question", "answer", "question_type", "cuisine", "dish")
FACT_KEYS = {"id": "ds_fact_id", "dish": "ds_fact_dish", "cuisine": "ds_fact_cuisine",
             "region": "ds_fact_region", "question type": "ds_fact_question_type",
             "source": "ds_fact_source", "from": "ds_fact_from"}
FACT_FACETS = {"source": "source", "question type": "question_type"}  # facts whose values are said in words
REPORT_KEYS = ("file", "row", "id", "message", "skipped")
SETS_KEYS = ("name", "train", "heldout", "together", "holds", "lang", "sources", "terms", "created")
assert len(TABLE_KEYS) == len(TABLE_COLUMNS)


@dataclass
class DatasetSession:
    """One visitor's data: what was loaded, and the ids shown on the current page (in gallery and
    table order, so a click on cell i means page_ids[i]). `pending_upload`: an upload unpacked but not
    read yet, because it holds several data sets and the visitor picks one next."""

    result: ReadResult
    page_ids: list[str] = field(default_factory=list)
    upload: Path | None = None  # the unpacked upload whose pictures this data shows (removed with it)
    pending_upload: Path | None = None  # an upload offering several data sets, while one is picked
    unread: str | None = None  # why the --data folder was not opened (the sample was instead)

    def __deepcopy__(self, memo: dict) -> DatasetSession:
        # gr.State copies its first value for each visitor: the records are immutable and shared (a
        # --data folder of 100,000 samples must not be copied per visitor), the page is each one's own.
        return DatasetSession(self.result, list(self.page_ids), self.upload, self.pending_upload, self.unread)


# --- turning backend values into what the widgets show, in the visitor's language -------------------

def summary_markdown(result: ReadResult, lang: str) -> str:
    """ReadResult.summary(), in the visitor's language, with the format it was read as on a line of its own."""
    sentence = counts_sentence(result, lang)
    if result.format_label:
        sentence += "\n\n" + text("ds_summary_format", lang, label=format_label(result.format_label, lang),
                                   count=len(result.records), file=result.data_file)
    if result.renamed:
        sentence += " " + text("ds_summary_renamed", lang, count=len(result.renamed), old=result.renamed[0][0],
                               new=result.renamed[0][1])
    return sentence


def counts_sentence(result: ReadResult, lang: str) -> str:
    """How much was read and whether the report needs a look, in the visitor's language."""
    if lang == "en":
        return as_text(replace(result, format_label="", renamed=()).summary())
    counts = result.counts_by_task()
    what = "、".join(f"{task_word(task, lang)} {n}" for task, n in counts.items())
    sentence = markdown("ds_summary_read", lang, count=len(result.records),
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


def opening_summary(state: DatasetSession, lang: str) -> str:
    """The summary, after why the --data folder was not opened when it could not be read."""
    said = summary_markdown(state.result, lang)
    if state.unread is None:
        return said
    return f"⚠️ {markdown('ds_data_unread', lang, detail=say(state.unread, lang))}\n\n{said}"


GROUP_WORDS = {"dish": "ds_together_dish", "picture": "ds_together_picture", "answer": "ds_together_answer"}


def grouping_words(manifest: dict, lang: str) -> str:
    """What a saved set's split kept together, with the groups on each side: "12 / 3 dishes",
    "29 / 7 groups of identical or near-identical photos". Never "dishes" for a split of pictures."""
    split_by = str(manifest.get("split_by") or "dish")
    train, heldout = (manifest.get(side) if isinstance(manifest.get(side), dict) else {}
                      for side in ("train", "heldout"))
    counts = dict(train=len(train.get("dish_ids") or []), heldout=len(heldout.get("dish_ids") or []))
    if split_by.startswith("column:"):
        return text("ds_together_column", lang, column=split_by.removeprefix("column:"), **counts)
    return text(GROUP_WORDS.get(split_by, "ds_together_dish"), lang, **counts)


HOLDS = (("conversation", "ds_holds_conversation"), ("multi-turn", "ds_holds_multi_turn"),
         ("single-image", "ds_holds_sivqa"), ("multi-image", "ds_holds_mivqa"), ("text", "ds_holds_textqa"),
         ("pictures:single-image", "ds_holds_single"), ("pictures:multi-image", "ds_holds_multi"),
         ("pictures:text", "ds_holds_text"))


def holds_words(manifest: dict, lang: str) -> str:
    """What a saved set holds ("36 conversations (12 multi-turn) · 30 single-image · 6 multi-image"); a
    set saved before the manifest said so is described by its tasks, as then."""
    held = manifest.get("holds")
    if not isinstance(held, dict):
        return ", ".join(value_label("task", t, lang) for t in manifest.get("tasks") or [])
    return " · ".join(text(key, lang, count=held[name]) for name, key in HOLDS if held.get(name))


def report_table(result: ReadResult, lang: str) -> gr.Dataframe:
    rows = [[p.file, "" if p.row is None else str(p.row), p.record_id or "", say(p.message, lang),
             text("ds_yes" if p.skipped else "ds_no", lang)] for p in result.problems]
    return gr.Dataframe(value=rows, headers=[text(f"ds_col_{k}", lang) for k in REPORT_KEYS],
                        visible=bool(rows))


def left_out_sentence(skipped: tuple[str, ...], lang: str) -> str:
    """The warning naming the files an upload left out (the first five), each with why."""
    detail = ("；" if lang == "zh" else "; ").join(say(reason, lang) for reason in skipped[:5])
    return text("ds_upload_skipped", lang, detail=detail)


def value_label(facet: str, value: str, lang: str) -> str:
    if facet == "source":
        return text(f"ds_origin_{value}", lang) if f"ds_origin_{value}" in STRINGS["en"] else value
    return value_word(facet, value, lang)


def facet_choices(records: tuple[Record, ...], flt: RecordFilter, lang: str) -> dict[str, list[tuple[str, str]]]:
    """Each filter's (label, value) choices with how many records picking it would show; "" is Any."""
    choices_by_facet = {}
    for facet, counts in facet_counts(records, flt).items():
        current = getattr(flt, facet)
        choices = [(text("ds_any", lang, count=sum(n for _, n in counts)), "")]
        choices += [(text("ds_count", lang, label=value_label(facet, value, lang), count=n), value)
                    for value, n in counts if value]
        if current and current not in {value for _, value in choices}:
            choices.append((text("ds_count", lang, label=value_label(facet, current, lang), count=0), current))
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


def task_label(record: Record, lang: str) -> str:
    return value_label("task", record.task, lang)


TASK_MARKS = {MIVQA: "🖼️×4 ", TEXTQA: "📝 ", "conversation": "💬 "}


def caption(record: Record) -> str:
    """A gallery caption: the dish (or the start of the question), marked with the kind of task."""
    name = record.food_name or (record.question[:14] + ("…" if len(record.question) > 14 else ""))
    return TASK_MARKS.get(record.task, "") + name


def page_table(records: tuple[Record, ...], lang: str) -> gr.Dataframe:
    rows = table_rows(records)
    for row, record in zip(rows, records):
        row[1] = task_label(record, lang)
        row[4] = question_type_word(record.question_type, lang)
        if record.task == MIVQA and record.answer_letter:
            row[3] = text("ds_picture", lang, letter=record.answer_letter)
    return gr.Dataframe(value=rows, headers=[text(f"ds_col_{k}", lang) for k in TABLE_KEYS])


def detail_markdown(record: Record, lang: str) -> str:
    """detail_view(record).markdown(), with its words in the visitor's language."""
    detail = detail_view(record)
    facts = [task_label(record, lang)]
    facts += [f"{text(FACT_KEYS[k], lang) if k in FACT_KEYS else k}: "
              f"{value_label(FACT_FACETS[k], v, lang) if k in FACT_FACETS else as_text(say(v, lang))}"
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
            name, train.get("samples", ""), heldout.get("samples", ""), grouping_words(manifest, lang),
            holds_words(manifest, lang),
            manifest.get("lang", ""),
            ", ".join(value_label("source", s, lang) for s in manifest.get("sources") or []),
            text("ds_accepted" if manifest.get("terms_accepted") else "ds_not_accepted", lang)
            if any(s == SOURCE_FOODIEQA for s in manifest.get("sources") or []) else "",
            str(manifest.get("created", "")).replace("T", " ").replace("+00:00", " UTC"),
        ])
    return gr.Dataframe(value=rows, headers=[text(f"ds_col_{k}", lang) for k in SETS_KEYS])


def source_gone(result: ReadResult, lang: str) -> str:
    """A sentence when the loaded data's folder has vanished (deleted, unmounted) since it was read;
    the records stay in memory, so browsing goes on without the pictures not yet cached."""
    return "" if Path(result.root).exists() else markdown("ds_source_gone", lang, root=result.root)


