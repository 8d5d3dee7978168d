"""The Compare tab's scores: both models on a set of multiple-choice questions (trained and held-out
kept apart), the general-ability probe beside them, and what changed between the two: the questions
that flipped, accuracy per dish, and which dish each model called a photo. Built inside the Compare
tab (ui/compare.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from backend.data import ThumbnailCache
from backend.evaluation import scoring
from backend.evaluation.flips import FIXED, confusion, filtered, flips, per_dish
from backend.evaluation.question_sets import PROBE_SET
from backend.evaluation.score_request import ScoredModels, ScoringRequestError, probe_run, score_models
from backend.markdown_text import Markdown
from backend.services import Services
from ui.i18n import markdown, model_label, request_lang, set_label, text, value_word
from ui.messages import MODEL_CONCURRENCY_ID
from ui.problems import say
from ui.toasts import failure, warn

log = logging.getLogger(__name__)

BREAKDOWNS = ("task", "question_type", "cuisine")
FLIP_COLUMNS = ("kind", "id", "question", "right", "before", "after", "before_reply", "after_reply")


@dataclass(frozen=True)
class Scored:
    """A visitor's last scoring, kept in their gr.State: the flips are filtered again from it."""

    scored: ScoredModels
    set_name: str
    lang: str  # the prompts' language
    batch_size: int
    method: str  # how each choice was read (scoring.REPLY or LETTER)


@dataclass(frozen=True)
class ScoringSection:
    question_set: gr.Dropdown
    prompt_lang: gr.Radio


def run_scores(left_key: str, right_key: str, set_name: str, lang: str, batch_size: float,
               services: Services, progress=gr.Progress(), page_lang: str = "en",
               method: str = scoring.REPLY) -> tuple:
    """Inputs: two model keys, a question set, prompt language (what the models are asked in), batch
    size, how each choice is read; `page_lang` is the page's, for what goes wrong.
    Outputs: summary, three breakdown tables, the per-question table, a CSV file."""
    return score_and_show(left_key, right_key, set_name, lang, batch_size, services, progress, page_lang,
                          method)[0]


def score_and_show(left_key: str, right_key: str, set_name: str, lang: str, batch_size: float,
                   services: Services, progress, page_lang: str,
                   method: str = scoring.REPLY) -> tuple[tuple, ScoredModels]:
    """run_scores' outputs, and the scores they show."""
    def report(index: int, count: int, choice, done: int, total: int) -> None:
        name = model_label(choice, page_lang)
        desc = (text("cmp_scoring_model", page_lang, model=name) if done == 0 and index == 0 else
                text("cmp_scoring_step", page_lang, index=index + 1, count=count, model=name))
        progress((done, total), desc=desc)

    try:
        scored = score_models(services.engine, services.jobs, services.settings.workdir, services.settings.data,
                              (left_key, right_key), set_name, lang, int(batch_size), report,
                              method=method or scoring.REPLY)
    except (ScoringRequestError, ValueError, OSError) as err:
        raise failure(say(err, page_lang)) from None
    except RuntimeError as err:  # the engine failed (LMDeploy's server died or refused; out of memory)
        log.exception("scoring failed")
        raise failure(text("scoring_failed", page_lang, detail=say(err, page_lang))) from None

    names = [model_label(choice, page_lang) for choice in scored.models]  # each model as the page names it
    # Gradio's upload folder: under the work folder (app.py), and a folder Gradio agrees to serve
    # from wherever the work folder is
    exports = Path(gr.utils.get_upload_folder()) / "scores"
    summary, *tables = score_tables(scored.runs, names, set_label(set_name, page_lang), scored.questions, page_lang)
    if len(scored.runs) == 1:
        summary += " " + text("cmp_scored_once", page_lang)
    shown = (summary, *tables, csv_download(scored.runs, question_headers(names, page_lang), exports, page_lang))
    return shown, scored


def score_tables(runs: list, names: list[str], set_name: str, count: int, lang: str) -> tuple:
    """The summary line, the breakdown tables and the per-question table, said in `lang`."""
    scores = " · ".join(markdown("cmp_model_score", lang, model=name, accuracy=100 * r.accuracy, unparsed=r.unparsed)
                        for r, name in zip(runs, names))
    how = text(f"cmp_method_{runs[0].method}", lang) if runs else ""
    summary = markdown("cmp_summary", lang, set=set_name, count=count, how=how, scores=Markdown(scores))
    words = dict(total=text("cmp_total", lang), unparsed=text("cmp_unparsed", lang, count="{count}"))
    tables = [gr.Dataframe(value=breakdown_rows(runs, by, words, lang),
                           headers=[text(f"cmp_col_{by}", lang), *names], visible=True) for by in BREAKDOWNS]
    # the short columns wide enough for their headers (which wrapped a character per line)
    widths = ["140px", "240px", "80px"] + ["90px", "280px", "80px"] * len(names)
    return (summary, *tables, gr.Dataframe(value=scoring.per_question(runs), headers=question_headers(names, lang),
                                           column_widths=widths, visible=True))


def breakdown_rows(runs: list, by: str, words: dict, lang: str) -> list[list[str]]:
    """scoring.side_by_side's rows, with tasks and question types named as the Dataset tab names them
    (单图 and 菜系 on a Chinese page, not sivqa and cuisine_type)."""
    rows = scoring.side_by_side(runs, by, **words)
    for row in rows[:-1]:  # the last is the total row, already in words
        row[0] = value_word(by, row[0], lang)
    return rows


def question_headers(names: list[str], lang: str) -> list[str]:
    """The per-question table's columns (and the CSV's), said in `lang`."""
    headers = [text("cmp_col_id", lang), text("cmp_col_question", lang), text("cmp_col_right", lang)]
    for name in names:
        headers += [text(f"cmp_col_{part}", lang, model=name) for part in ("picked", "reply", "correct")]
    return headers


def csv_download(runs: list, headers: list[str], folder: Path, lang: str) -> gr.File:
    """The CSV file to download; if it cannot be written (a full disk), a warning, and the scores
    on the page stand (they are saved beside the checkpoint already)."""
    try:
        return gr.File(value=str(scoring.write_csv(runs, headers, folder)), visible=True)
    except OSError as err:
        log.warning("the scores' CSV was not written: %s", err)
        warn(text("cmp_csv_failed", lang, detail=err.strerror or err))
        return gr.File(value=None, visible=False)


# ---- the probe, and what flipped --------------------------------------------------------------------


def probe_line(services: Services, kept: Scored, lang: str) -> str:
    """The general-ability probe's scores beside the food scores (scored now where not kept)."""
    if kept.set_name == PROBE_SET:
        return ""
    runs = [probe_run(services.engine, choice, services.settings.workdir, kept.lang, kept.batch_size, kept.method)
            for choice in kept.scored.models]
    scores = " · ".join(text("cmp_model_score", lang, model=model_label(choice, lang), accuracy=100 * run.accuracy,
                             unparsed=run.unparsed) for choice, run in zip(kept.scored.models, runs))
    line = text("cmp_probe", lang, count=len(runs[0].questions), scores=scores)
    if services.source.is_demo or services.source.is_tiny:
        line += " " + text("cmp_probe_random", lang)
    return line


def flip_rows(kept: Scored, cuisine: str, question_type: str, thumbs: ThumbnailCache, lang: str) -> tuple:
    """(the flips' line, their photos, their table) for one cuisine and question type ("" for any)."""
    before, after = kept.scored.runs
    found = filtered(flips(before, after, kept.scored.records), cuisine, question_type)
    fixed = sum(f.kind == FIXED for f in found)
    line = text("cmp_flips_count", lang, fixed=fixed, broken=len(found) - fixed)
    words = {kind: text(f"cmp_flip_{kind}", lang) for kind in ("fixed", "broken")}
    photos = [(str(thumbs.thumbnail(f.picture) or f.picture), f"{words[f.kind]} · {f.before.record_id}")
              for f in found if f.picture is not None]
    table = pd.DataFrame([[words[f.kind], f.before.record_id, f.before.question, f.before.right,
                           f.before.picked or "?", f.after.picked or "?", f.before.reply, f.after.reply]
                          for f in found],
                         columns=[text(f"cmp_flip_col_{c}", lang) for c in FLIP_COLUMNS])
    return line, photos, table


def dish_tables(kept: Scored, lang: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy per dish before and after, and which dish each model called a photo."""
    before, after = kept.scored.runs
    dishes = pd.DataFrame([[dish, n, f"{100 * a:.0f}%", f"{100 * b:.0f}%"]
                           for dish, n, a, b in per_dish(before, after, kept.scored.records)],
                          columns=[text(f"cmp_dish_col_{c}", lang) for c in ("dish", "questions", "before", "after")])
    names = [model_label(choice, lang) for choice in kept.scored.models]
    rows = [[name, dish, called, n] for name, run in zip(names, (before, after))
            for dish, called, n in confusion(run, kept.scored.records)]
    called = pd.DataFrame(rows, columns=[text(f"cmp_called_col_{c}", lang)
                                         for c in ("model", "dish", "called", "times")])
    return dishes, called


def facet_options(kept: Scored, facet: str, lang: str) -> list[tuple[str, str]]:
    values = sorted({getattr(q, facet) for q in kept.scored.runs[0].questions if getattr(q, facet)})
    return [(text("cmp_any", lang), ""), *[(value_word(facet, v, lang), v) for v in values]]


def scoring_section(services: Services, i18n: gr.I18n, forced_lang: str | None, left: gr.Dropdown,
                    right: gr.Dropdown, lang_state: gr.State) -> ScoringSection:
    thumbs = ThumbnailCache(services.settings.workdir / "cache" / "thumbs")
    with gr.Accordion(i18n("cmp_scoring"), open=True):
        gr.Markdown(i18n("cmp_scoring_help"))
        with gr.Row():
            question_set = gr.Dropdown([], label=i18n("cmp_question_set"), allow_custom_value=True,
                                       elem_id="compare-set")
            prompt_lang = gr.Radio(["zh", "en"], value="zh", label=i18n("cmp_prompt_lang"))
            batch = gr.Slider(1, 64, value=16, step=1, label=i18n("cmp_batch"), info=i18n("cmp_batch_info"))
            method = gr.Radio([(i18n(f"cmp_method_{m}"), m) for m in (scoring.REPLY, scoring.LETTER)],
                              value=scoring.REPLY, label=i18n("cmp_method"), info=i18n("cmp_method_info"),
                              elem_id="compare-method")
        with gr.Row():
            score_button = gr.Button(i18n("cmp_score"), variant="primary", elem_id="compare-score", scale=3)
            with_probe = gr.Checkbox(True, label=i18n("cmp_with_probe"), elem_id="compare-with-probe", scale=1)
        summary = gr.Markdown(elem_id="compare-summary")
        probe = gr.Markdown(elem_id="compare-probe")
        # hidden until there are scores: empty, Gradio would head them with column numbers. Two to a
        # line at most (the row wraps below their min_width): three squeezed the second model's column out
        with gr.Row():
            tables = [gr.Dataframe(label=i18n(f"cmp_by_{by}"), interactive=False, visible=False, min_width=560)
                      for by in BREAKDOWNS]
        with gr.Group(visible=False, elem_id="compare-flips") as flips_group:
            gr.Markdown(i18n("cmp_flips_title"))
            with gr.Row():
                flip_cuisine = gr.Dropdown([], label=i18n("cmp_col_cuisine"), elem_id="compare-flip-cuisine")
                flip_type = gr.Dropdown([], label=i18n("cmp_col_question_type"), elem_id="compare-flip-type")
            flips_line = gr.Markdown(elem_id="compare-flips-line")
            flip_photos = gr.Gallery(columns=10, height=130, object_fit="contain", allow_preview=False, buttons=[],
                                     show_label=False, elem_id="compare-flip-photos")
            flip_table = gr.Dataframe(interactive=False, wrap=True, elem_id="compare-flip-table")
            with gr.Row():
                dish_table = gr.Dataframe(label=i18n("cmp_by_dish"), interactive=False, elem_id="compare-by-dish")
                called_table = gr.Dataframe(label=i18n("cmp_called"), interactive=False, elem_id="compare-called")
        per_question = gr.Dataframe(label=i18n("cmp_per_question"), interactive=False, wrap=True, visible=False,
                                    elem_id="compare-per-question")
        csv_file = gr.File(label=i18n("cmp_csv"), visible=False, elem_id="compare-csv")
    kept_scores = gr.State(None)  # this visitor's last scoring (a Scored)

    def score(left_key, right_key, set_name, asked_lang, batch_size, how, lang, request: gr.Request,
              progress=gr.Progress()):
        how = how or scoring.REPLY
        shown, scored = score_and_show(left_key, right_key, set_name, asked_lang, batch_size, services, progress,
                                       request_lang(request, lang), how)
        *scores, per_question_, csv_ = shown  # the last two stay last: API clients read them there
        kept = Scored(scored, set_name, asked_lang, int(batch_size), how)
        return *scores, "", gr.Group(visible=False), kept, per_question_, csv_

    def extras(kept: Scored | None, probe_too: bool, lang, request: gr.Request):
        """Inputs: the scoring just shown, whether to score the probe. Outputs: the probe's line, and
        what flipped between the two models (when two were scored)."""
        page = request_lang(request, lang)
        if kept is None:
            return "", gr.Group(visible=False), *([gr.skip()] * 7)
        try:
            line = probe_line(services, kept, page) if probe_too else ""
        except (ValueError, OSError, RuntimeError) as err:
            line = text("scoring_failed", page, detail=say(err, page))
        if len(kept.scored.runs) < 2:
            return line, gr.Group(visible=False), *([gr.skip()] * 7)
        shown, photos, table = flip_rows(kept, "", "", thumbs, page)
        return (line, gr.Group(visible=True), gr.Dropdown(choices=facet_options(kept, "cuisine", page), value=""),
                gr.Dropdown(choices=facet_options(kept, "question_type", page), value=""), shown, photos, table,
                *dish_tables(kept, page))

    def refilter(kept: Scored | None, cuisine, question_type, lang, request: gr.Request):
        if kept is None or len(kept.scored.runs) < 2:
            return gr.skip(), gr.skip(), gr.skip()
        return flip_rows(kept, cuisine or "", question_type or "", thumbs, request_lang(request, lang))

    (score_button.click(score, [left, right, question_set, prompt_lang, batch, method, lang_state],
                        [summary, *tables, probe, flips_group, kept_scores, per_question, csv_file],
                        api_name="score", concurrency_limit=1, concurrency_id=MODEL_CONCURRENCY_ID)
     .success(extras, [kept_scores, with_probe, lang_state],
              [probe, flips_group, flip_cuisine, flip_type, flips_line, flip_photos, flip_table, dish_table,
               called_table], api_name="score_extras", concurrency_limit=1, concurrency_id=MODEL_CONCURRENCY_ID))
    for filter_ in (flip_cuisine, flip_type):
        filter_.input(refilter, [kept_scores, flip_cuisine, flip_type, lang_state],
                      [flips_line, flip_photos, flip_table], api_name=False)
    return ScoringSection(question_set, prompt_lang)
