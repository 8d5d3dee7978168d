"""The Dataset tab's last part: make training samples from the loaded records (what stays together on
one side of the held-out split, the FoodieQA terms), save them as a training set, list the saved sets,
and export the loaded conversations in another tool's format. ui/dataset.py lays out the rest of the
tab and calls `build` where this part goes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from backend.data import FOODIEQA_TERMS, MIVQA, SIVQA, TEXTQA, DataError, RecordFilter, TermsNotAccepted, filter_records
from backend.data.formats import EXPORTS
from backend.data.library import SaveRefused, export_records, save_training_set
from backend.data.split import columns_to_split_by
from backend.markdown_text import as_text
from backend.problems import problem_from_json
from ui.dataset_views import DatasetSession, grouping_words, sets_table
from ui.i18n import markdown, request_lang, text
from ui.problems import say
from ui.toasts import warn

log = logging.getLogger(__name__)

TRAINING_TASKS = (SIVQA, MIVQA, TEXTQA)
GROUP_CHOICES = ("auto", "picture", "answer", "column")


@dataclass
class SaveSection:
    """The widgets of this part that loading a source updates."""

    name: gr.Textbox
    terms_group: gr.Group
    accept: gr.Checkbox
    column: gr.Dropdown
    sets: gr.Dataframe
    prompt_lang: gr.Radio


def column_choices(state: DatasetSession) -> gr.Dropdown:
    """The columns of the loaded records a split may keep together."""
    columns = columns_to_split_by(state.result.records)
    return gr.Dropdown(choices=columns, value=columns[0] if columns else None)


def build(workdir: Path, i18n: gr.I18n, forced_lang: str | None, session: gr.State, filter_inputs: list,
          suggested: str) -> SaveSection:
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
            group_by = gr.Radio([(i18n(f"ds_group_{g}"), g) for g in GROUP_CHOICES], value="auto",
                                label=i18n("ds_group"), elem_id="ds-group")
            column = gr.Dropdown([], label=i18n("ds_group_by_column"), allow_custom_value=True,
                                 elem_id="ds-group-column")
        with gr.Row():
            name = gr.Textbox(value=suggested, label=i18n("ds_name"), elem_id="ds-name")
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
        with gr.Row(equal_height=True):
            export_as = gr.Dropdown([(f.label, key) for key, f in EXPORTS.items()], value="internvl",
                                    label=i18n("ds_export_as"), elem_id="ds-export-as")
            export_button = gr.Button(i18n("ds_export"), elem_id="ds-export")
        exported = gr.Markdown(elem_id="ds-exported")
        exported_file = gr.File(label=i18n("ds_export_file"), visible=False, elem_id="ds-export-file")

    def chosen(state: DatasetSession, only_shown: bool, *facets: str):
        if not only_shown:
            return state.result.records
        return tuple(filter_records(state.result.records, RecordFilter(*(f or "" for f in facets))))

    def save_set(state: DatasetSession, chosen_tasks: list[str], lang_choice: str, heldout_share: float,
                 seed_value: float, set_name: str, only_shown: bool, task: str, question_type: str, cuisine: str,
                 region: str, record_source: str, dish_name: str, replace_existing: bool, accept_terms: bool,
                 grouping: str, group_column: str | None = None, request: gr.Request = None) -> dict:
        """Inputs: tasks (sivqa / mivqa / textqa; conversations always go), prompt language (zh / en),
        held-out share (0..0.5), seed, name, whether to use only the filtered records, the filters,
        whether to replace a set of that name, whether FoodieQA's terms are accepted, what stays together
        (auto: dishes where the data names them, else photos; picture; answer; column) and the column.
        Outputs: a sentence with the counts, what was kept together and the folder, and the saved sets;
        a refusal (bad name, existing set, terms not accepted, ...) is a "⚠️" sentence and a warning."""
        lang = request_lang(request, forced_lang)
        records = chosen(state, only_shown, task, question_type, cuisine, region, record_source, dish_name)
        try:
            made = save_training_set(workdir, records, name=set_name, tasks=chosen_tasks or (), lang=lang_choice,
                                     heldout_share=heldout_share, seed=seed_value, replace=bool(replace_existing),
                                     accept_terms=bool(accept_terms), group_by=grouping or "auto",
                                     column=group_column or "")
        except (DataError, ValueError, OSError) as err:
            if not isinstance(err, (SaveRefused, TermsNotAccepted)):
                log.warning("saving a training set failed: %s", err)
            sentence = say(err, lang)
            if not isinstance(err, SaveRefused):  # the set could not be made: said as such
                sentence = text("ds_terms_refused" if isinstance(err, TermsNotAccepted) else "ds_save_failed", lang,
                                detail=sentence)
            warn(sentence)
            return {saved: f"⚠️ {as_text(sentence)}"}
        manifest = made.manifest
        sentence = markdown("ds_saved", lang, name=made.folder.name, train=manifest["train"]["samples"],
                        heldout=manifest["heldout"]["samples"], folder=made.folder,
                        together=grouping_words(manifest, lang))
        if manifest.get("dropped_ids"):
            sentence += " " + text("ds_dropped", lang, count=len(manifest["dropped_ids"]))
        if manifest.get("left_out"):
            first = manifest["left_out"][0]
            sentence += " " + markdown("ds_left_out", lang, count=len(manifest["left_out"]),
                                   first=f"{first['id']}: {say(problem_from_json(first['problem']), lang)}")
        return {saved: sentence, sets: sets_table(workdir, lang)}

    def training_sets(request: gr.Request) -> gr.Dataframe:
        """Inputs: none. Outputs: the saved training sets under <workdir>/datasets/."""
        return sets_table(workdir, request_lang(request, forced_lang))

    def export_loaded(state: DatasetSession, key: str, set_name: str, only_shown: bool, task: str,
                      question_type: str, cuisine: str, region: str, record_source: str, dish_name: str,
                      request: gr.Request) -> dict:
        """Inputs: the format (one of backend.data.formats.EXPORTS), a name, whether to use only the
        filtered records, the filters. Outputs: a sentence saying where the file went, and the file."""
        lang = request_lang(request, forced_lang)
        records = chosen(state, only_shown, task, question_type, cuisine, region, record_source, dish_name)
        try:
            path, count = export_records(workdir, records, key, set_name)
        except (DataError, ValueError, OSError) as err:
            sentence = text("ds_export_failed", lang, detail=say(err, lang))
            warn(sentence)
            return {exported: f"⚠️ {as_text(sentence)}", exported_file: gr.File(visible=False)}
        return {exported: markdown("ds_exported", lang, count=count, label=EXPORTS[key].label, path=path),
                exported_file: gr.File(value=str(path), visible=True)}

    save_button.click(
        save_set,
        [session, tasks, prompt_lang, heldout, seed, name, only_filtered, *filter_inputs, overwrite, accept,
         group_by, column],
        [saved, sets], api_name="dataset_save", concurrency_limit=1)
    refresh_sets.click(training_sets, None, [sets], api_name="dataset_sets")
    export_button.click(export_loaded, [session, export_as, name, only_filtered, *filter_inputs],
                        [exported, exported_file], api_name="dataset_export", concurrency_limit=1)
    return SaveSection(name, terms_group, accept, column, sets, prompt_lang)
