"""The Dataset tab: load questions and pictures, check them, browse them, save a training set.

Each visitor's loaded data lives in their own gr.State (a DatasetSession); nothing per visitor is
global. Everything shown comes from backend.data (readers, browse, split) and backend.data.library
(where uploads and training sets live); this module only lays out widgets, wires events and puts
server-made sentences into the visitor's language.

Pictures reach the page only as cached copies under the work folder (gallery thumbnails and larger
previews), so a folder typed in by path is browsable without being served as it is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gradio as gr

from backend.data import (
    FACETS,
    MIVQA,
    SOURCE_FOODIEQA,
    DataError,
    RecordFilter,
    ThumbnailCache,
    detail_view,
    filter_records,
    find_record,
    gallery_page,
    paginate,
)
from backend.data.formats import SeveralDataSets
from backend.data.library import remove_upload, whole_number
from backend.data.sources import (
    SOURCE_KINDS,
    SourceIncomplete,
    first_source,
    read_source,
    suggested_name,
    upload_names,
)
from backend.markdown_text import as_text
from backend.services import Services
from ui import dataset_save
from ui.dataset_views import (
    DatasetSession,
    caption,
    detail_markdown,
    facet_choices,
    left_out_sentence,
    opening_summary,
    page_table,
    placeholder_picture,
    report_table,
    sample_markdown,
    sets_table,
    source_gone,
    summary_markdown,
)
from ui.i18n import request_lang, text
from ui.problems import say
from ui.tab import Handler, Tab
from ui.toasts import failure, inform, warn
from ui.upload_guard import foreign_uploads

log = logging.getLogger(__name__)

PREVIEW_SIZE = 768  # longest side of the pictures in the detail view
PREVIEW_HEIGHT = 400  # pixels the detail view gives one picture (several share "auto")


# --- the tab --------------------------------------------------------------------------------------

def remove_uploads_of(workdir: Path, ended: DatasetSession | None) -> None:
    """A closed tab's uploads: the one its data showed, and one it was picking a data set from."""
    for folder in {getattr(ended, "upload", None), getattr(ended, "pending_upload", None)}:
        remove_upload(workdir, folder)


def build(services: Services, i18n: gr.I18n, forced_lang: str | None) -> Tab:
    workdir = services.settings.workdir
    data_folder = services.settings.data
    thumbs = ThumbnailCache(workdir / "cache" / "thumbs")
    previews = ThumbnailCache(workdir / "cache" / "previews", size=PREVIEW_SIZE)
    roots = services.settings.path_roots()  # where a server path may be loaded from (None: anywhere)
    # Started with --data: the tab opens on that folder (its person chose it), else on the bundled sample.
    first_kind, first_loaded, first_problem = first_source(workdir, data_folder)
    default_result = first_loaded.result
    # A visitor's unpacked upload lives as long as their data shows it: until they load something
    # else, or their session ends (the tab closed).
    session = gr.State(DatasetSession(default_result, unread=first_problem),
                       delete_callback=lambda ended: remove_uploads_of(workdir, ended))
    initial_lang = forced_lang or "en"

    gr.Markdown(i18n("ds_intro"))

    # Source: where the records come from, and what is wrong with them.
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            source_choices = [(i18n(f"ds_src_{key}"), key) for key in SOURCE_KINDS
                              if (key != "data" or data_folder is not None) and (key != "folder" or roots != ())]
            source = gr.Radio(source_choices, value=first_kind, label=i18n("ds_source"), elem_id="ds-source")
            folder = gr.Textbox(label=i18n("ds_folder"), placeholder=i18n("ds_folder_hint"),
                                visible=False, elem_id="ds-folder")
            upload = gr.File(label=i18n("ds_upload"), file_count="multiple", visible=False,
                             elem_id="ds-upload")
            upload_folder = gr.File(label=i18n("ds_upload_folder"), file_count="directory", visible=False,
                                    elem_id="ds-upload-folder")
            # What the page's script lists when a folder is picked (relative names and sizes): the upload
            # itself keeps base names only. Shown nowhere; read on Load.
            folder_listing = gr.Textbox(elem_id="ds-upload-names", elem_classes=["ds-hidden"], container=False)
            hub_note = gr.Markdown(i18n("ds_hub_note"), visible=False, elem_classes=["notice"])
            pick = gr.Dropdown([], label=i18n("ds_pick"), visible=False, elem_id="ds-pick")
            load_button = gr.Button(i18n("ds_load"), variant="primary", elem_id="ds-load")
        with gr.Column(scale=3):
            summary = gr.Markdown(opening_summary(DatasetSession(default_result, unread=first_problem),
                                                  initial_lang), elem_id="ds-summary")
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

    filter_inputs = [*filters.values(), dish]
    save = dataset_save.build(workdir, i18n, forced_lang, session, filter_inputs, suggested_name(first_kind, None))
    prompt_lang, name, terms_group, accept = save.prompt_lang, save.name, save.terms_group, save.accept

    browse_outputs = [session, *filters.values(), gallery, table, page_number, page_label]
    detail_outputs = [record_id, pictures, detail, sample]

    # --- handlers ---------------------------------------------------------------------------------

    def render(state: DatasetSession, flt: RecordFilter, page: int, lang: str) -> dict:
        """The filters, the gallery, the table and the page label for `flt` and page `page`."""
        records = state.result.records
        shown = paginate(filter_records(records, flt), page)
        state.page_ids = [r.id for r in shown.items]
        cells = gallery_page(shown.items, thumbs)
        pictures_ = [(str(cell.thumbnail) if cell.thumbnail else placeholder_picture(), caption(r))
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
                    picked: str | None = None, folder_files: list[str] | None = None, listing: str | None = None,
                    request: gr.Request = None, progress=gr.Progress()) -> dict:
        """Inputs: the source key (sample, own_example, data, folder, upload, hub), a server path
        (for folder), uploaded files (for upload: loose files or a .zip, or a whole folder with the
        page's listing of its relative names), the data set picked where the source offers several.
        Outputs: the session, the summary, the problem report, the filters (reset), the first page
        (gallery, table, page), the detail (cleared), the FoodieQA terms (shown if needed), a suggested
        training-set name, the data sets to pick from and the columns a split may keep together. A
        source that cannot be read changes nothing but the summary, which then starts with the reason
        (and a warning says it too); one that holds several data sets offers them to pick from."""
        lang = request_lang(request, forced_lang)
        progress(None, desc="reading")
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or []) + (folder_files or [])]
        if foreign_uploads(paths, request):  # named by path in an API call: refused, as the files route does
            warn(text("upload_not_yours", lang))
            return {summary: f"⚠️ {text('upload_not_yours', lang)}\n\n{summary_markdown(state.result, lang)}"}
        try:
            listed = json.loads(listing) if listing else []
        except ValueError:
            listed = []
        names = upload_names(paths, listed if isinstance(listed, list) else [])
        try:
            loaded = read_source(chosen, path, paths, workdir, data_folder, request.session_hash, roots,
                                 pick=picked or "", names=names,
                                 upload_folder=state.pending_upload if chosen == "upload" and picked else None)
        except SeveralDataSets as err:
            if state.pending_upload != getattr(err, "folder", None):
                remove_upload(workdir, state.pending_upload)
            state.pending_upload = getattr(err, "folder", None)
            sentence = say(err, lang)
            inform(sentence)
            return {session: state, summary: f"👉 {as_text(sentence)}\n\n{summary_markdown(state.result, lang)}",
                    pick: gr.Dropdown(choices=list(err.choices), value=None, visible=True)}
        except (DataError, OSError) as err:  # OSError: a full disk, a vanished upload, ...
            detail = say(err, lang)
            sentence = detail if isinstance(err, SourceIncomplete) else text("ds_load_failed", lang, detail=detail)
            warn(sentence)
            return {summary: f"⚠️ {as_text(sentence)}\n\n{summary_markdown(state.result, lang)}"}
        if loaded.left_out:
            warn(left_out_sentence(loaded.left_out, lang))
        result = loaded.result
        for shown in {state.upload, state.pending_upload} - {loaded.upload_folder}:
            remove_upload(workdir, shown)  # the pictures shown (or offered) until now are no longer needed
        state = DatasetSession(result, upload=loaded.upload_folder)
        has_foodieqa = any(r.source == SOURCE_FOODIEQA for r in result.records)
        return {**render(state, empty_filter, 1, lang), **cleared_detail(lang),
                dish: "", summary: summary_markdown(result, lang), report: report_table(result, lang),
                terms_group: gr.Group(visible=has_foodieqa), accept: False,
                name: suggested_name(chosen, path), pick: gr.Dropdown(visible=bool(picked)),
                save.column: dataset_save.column_choices(state)}

    def browse(state: DatasetSession, task: str, question_type: str, cuisine: str, region: str,
               record_source: str, dish_name: str, page: float, request: gr.Request) -> dict:
        """Inputs: the five filters ("" for any: task, question_type, cuisine, region, source), a
        dish-name substring and the page (1-based; clamped into range).
        Outputs: the session, the filters with counts, the page's gallery and table, the page
        number and its label."""
        lang = request_lang(request, forced_lang)
        flt = RecordFilter(task or "", question_type or "", cuisine or "", region or "", record_source or "",
                           dish_name or "")
        number = whole_number(page or 1)
        if number is None:
            raise failure(text("ds_bad_page", lang))
        return render(state, flt, number, lang)

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
                warn(text("ds_not_found", lang, id=wanted))
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

    def on_open(state: DatasetSession, task: str, question_type: str, cuisine: str, region: str,
                record_source: str, dish_name: str, page: float, request: gr.Request) -> dict:
        """The visitor's page as it was (the same data, filters and page), its words in the page's
        language, and the saved sets with those saved meanwhile."""
        lang = request_lang(request, forced_lang)
        flt = RecordFilter(task or "", question_type or "", cuisine or "", region or "", record_source or "",
                           dish_name or "")
        return {**render(state, flt, whole_number(page or 1) or 1, lang),
                summary: opening_summary(state, lang), save.sets: sets_table(workdir, lang),
                save.column: dataset_save.column_choices(state)}

    def show_source_fields(chosen: str):
        return (gr.Textbox(visible=chosen == "folder"), gr.File(visible=chosen == "upload"),
                gr.File(visible=chosen == "upload"), gr.Markdown(visible=chosen == "hub"),
                gr.Dropdown(choices=[], value=None, visible=False))

    # --- wiring -----------------------------------------------------------------------------------

    source.change(show_source_fields, [source], [folder, upload, upload_folder, hub_note, pick], api_name=False,
                  queue=False)
    for changed in (folder, upload, upload_folder):  # another choice: the data sets offered are another's
        changed.change(lambda: gr.Dropdown(choices=[], value=None, visible=False), None, [pick], api_name=False,
                       queue=False)
    load_inputs = [session, source, folder, upload, pick, upload_folder, folder_listing]
    load_outputs = [*browse_outputs, *detail_outputs, dish, summary, report, terms_group, accept, name, pick,
                    save.column]
    load_button.click(load_source, load_inputs, load_outputs, api_name="dataset_load", concurrency_limit=2)
    folder.submit(load_source, load_inputs, load_outputs, api_name=False, concurrency_limit=2)

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

    return Tab(widgets={"session": session, "gallery": gallery, "table": table, "detail": detail},
               on_open=Handler(on_open, [session, *filter_inputs, page_number],
                               [*browse_outputs, summary, save.sets, save.column]))


