"""Teaching from a wrong answer: "Correct it" (in Chat and in Compare), the taste notes, "Train on my
notes", the job's progress, and "Compare" once it is done. The Chat and Compare tabs place these
widgets; the notes and the job are backend's (backend/taste_notes.py, backend/training/teach.py).

The visitor's correction in progress lives in their own gr.State, so two visitors correcting at once
never see each other's unsaved edit; a saved note is everyone's (the notes are one training set).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from backend.data import DataError
from backend.evaluation.taught import target_note
from backend.images import ImageError
from backend.markdown_text import as_text
from backend.services import Services
from backend.taste_notes import Correction, NoteError, dish_answer
from backend.training import views
from backend.training.jobs import JobError
from backend.training.spec import SpecError
from backend.training.teach import replay_choices, teach_spec
from backend.training.worker import gpu_shortfall, visible_gpus
from ui.i18n import request_lang, text
from ui.problems import say, say_all
from ui.toasts import inform, warn

log = logging.getLogger(__name__)

NOTE_COLUMNS = ("note", "question", "answer", "photo")
SHOWN_ANSWER = 120  # characters of the answer being corrected shown above the form


# ---- "Correct it": a form under an answer --------------------------------------------------------


@dataclass(frozen=True)
class CorrectionForm:
    correction: gr.State  # this visitor's correction in progress: a Correction, or None
    outputs: list  # what opening the form sets: [correction, form, target line, answer box]
    saved: object  # the save event, for what should follow it (.then)


def opened(found: Correction, lang: str) -> tuple:
    """The form's outputs when it opens on `found` (CorrectionForm.outputs)."""
    answer = found.answer if len(found.answer) <= SHOWN_ANSWER else found.answer[:SHOWN_ANSWER] + "…"
    shown = text("teach_correcting", lang, question=as_text(found.question), answer=as_text(answer))
    return found, gr.Group(visible=True), shown, ""


def correction_form(services: Services, i18n: gr.I18n, forced_lang: str | None, place: str) -> CorrectionForm:
    """The hidden form "Correct it" opens: the right answer as free text, or a dish and its cuisine."""
    correction = gr.State(None)
    with gr.Group(visible=False, elem_id=f"{place}-correct-form") as form:
        target = gr.Markdown()
        mode = gr.Radio([(i18n("teach_mode_text"), "text"), (i18n("teach_mode_dish"), "dish")], value="text",
                        label=i18n("teach_mode"), elem_id=f"{place}-correct-mode")
        answer = gr.Textbox(label=i18n("teach_answer"), lines=2, elem_id=f"{place}-correct-answer")
        with gr.Row(visible=False) as dish_row:
            dish = gr.Textbox(label=i18n("teach_dish"), elem_id=f"{place}-correct-dish")
            cuisine = gr.Textbox(label=i18n("teach_cuisine"), elem_id=f"{place}-correct-cuisine")
        with gr.Row():
            save = gr.Button(i18n("teach_save"), variant="primary", size="sm", elem_id=f"{place}-correct-save")
            cancel = gr.Button(i18n("teach_cancel"), size="sm")

    mode.change(lambda how: (gr.Textbox(visible=how == "text"), gr.Row(visible=how == "dish")), [mode],
                [answer, dish_row], api_name=False, queue=False)
    cancel.click(lambda: (None, gr.Group(visible=False)), None, [correction, form], api_name=False, queue=False)

    def save_note(found: Correction | None, how: str, written: str, dish_name: str, cuisine_name: str,
                  request: gr.Request):
        """Inputs: the correction, how the answer is given (text or dish), the text, the dish and the
        cuisine. Outputs: the correction (cleared once saved) and the form (hidden once saved)."""
        lang = request_lang(request, forced_lang)
        if found is None:
            warn(text("teach_nothing_to_save", lang))
            return None, gr.skip()
        by_dish = how == "dish" and bool((dish_name or "").strip())
        right = dish_answer(dish_name, cuisine_name or "", lang) if by_dish else (written or "")
        try:
            note = services.notes.add(found.photo, found.question, right, dish=dish_name if by_dish else "",
                                      cuisine=cuisine_name or "" if by_dish else "")
        except (NoteError, ImageError, DataError, OSError) as err:
            warn(say(err, lang))
            return found, gr.skip()
        inform(text("teach_saved", lang, note=note.id))
        return None, gr.Group(visible=False)

    saved = save.click(save_note, [correction, mode, answer, dish, cuisine], [correction, form],
                       api_name=f"{place}_correct_save", concurrency_limit=1)
    return CorrectionForm(correction, [correction, form, target, answer], saved)


# ---- the notes, and "Train on my notes" (Chat) ------------------------------------------------------


@dataclass(frozen=True)
class NotesPanel:
    job: gr.Textbox  # the teaching job this page watches (hidden)
    compare: gr.Button  # shown once that job has succeeded
    refresh: tuple  # (fn, outputs): the notes as they are now
    on_open: tuple  # (fn, inputs, outputs): the notes and the newest teaching job


def notes_table(services: Services, lang: str) -> pd.DataFrame:
    return pd.DataFrame([[n.id, n.question, n.answer, n.photo.rsplit("/", 1)[-1]] for n in services.notes.notes()],
                        columns=[text(f"teach_col_{c}", lang) for c in NOTE_COLUMNS])


def notes_line(services: Services, lang: str) -> str:
    count = len(services.notes.notes())
    if not count:
        return text("teach_none", lang)
    replay = services.notes.replay()
    return text("teach_count", lang, count=count) + " · " + (
        text("teach_replay", lang, name=as_text(replay)) if replay else text("teach_no_replay", lang))


def newest_teaching_job(services: Services) -> str:
    """The newest job trained on taste notes ("" when there is none)."""
    return next((job.id for job in services.jobs.list() if job.spec.notes), "")


def progress_markdown(services: Services, job_id: str, lang: str) -> tuple[str, bool, bool]:
    """(what the teaching job is doing, in words; whether to keep polling; whether it succeeded)."""
    try:
        row = views.job_row(services.jobs.get(job_id)) if job_id else None
    except JobError:
        row = None
    if row is None:
        return "", False, False
    line = f"**{as_text(row.name)}**: {text(f'tr_state_{row.state}', lang)}"
    if row.total_steps:
        line += " · " + text("tr_p_step", lang, step=row.step, total=row.total_steps)
    if row.loss is not None:
        line += " · " + text("tr_p_loss", lang, loss=row.loss)
    if row.error:
        line += f"\n\n⚠️ {as_text(say(row.error, lang))} {text('teach_notes_kept', lang)}"
    if row.state == "succeeded":
        line += "\n\n" + text("teach_done", lang)
    return line, row.state in ("queued", "running"), row.state == "succeeded"


def notes_panel(services: Services, i18n: gr.I18n, forced_lang: str | None) -> NotesPanel:
    with gr.Group(elem_id="teach-panel"):
        count = gr.Markdown(elem_id="teach-count")
        train = gr.Button(i18n("teach_train"), variant="primary", interactive=False, elem_id="teach-train")
        # the disabled button's tooltip: the page script (ui/app.py) copies this text to its title
        gr.Markdown(i18n("teach_train_why"), elem_id="teach-train-why", elem_classes=["tooltip-text"])
        progress = gr.Markdown(elem_id="teach-progress")
        compare = gr.Button(i18n("teach_compare"), variant="primary", visible=False, elem_id="teach-compare")
    with gr.Accordion(i18n("teach_notes"), open=False, elem_id="teach-notes"):
        table = gr.Dataframe(interactive=False, wrap=True, max_height=220, elem_id="teach-table")
        with gr.Row():
            picked = gr.Dropdown([], label=i18n("teach_pick"), allow_custom_value=True, elem_id="teach-pick")
            changed = gr.Textbox(label=i18n("teach_new_answer"), elem_id="teach-new-answer")
        with gr.Row():
            save_change = gr.Button(i18n("teach_save_change"), size="sm", elem_id="teach-save-change")
            remove = gr.Button(i18n("teach_remove"), size="sm", variant="stop", elem_id="teach-remove")
        replay = gr.Dropdown([], label=i18n("teach_replay_set"), info=i18n("teach_replay_info"),
                             allow_custom_value=True, elem_id="teach-replay")
    job = gr.Textbox(visible=False, elem_id="teach-job")
    timer = gr.Timer(1.0, active=False)
    notes_outputs = [count, table, picked, replay, train]

    def notes_view(request: gr.Request) -> tuple:
        lang = request_lang(request, forced_lang)
        notes = services.notes.notes()
        sets = replay_choices(services.settings.workdir)
        chosen = services.notes.replay()
        return (notes_line(services, lang), notes_table(services, lang),
                gr.Dropdown(choices=[(f"{n.id} · {n.answer[:40]}", n.id) for n in notes],
                            value=notes[-1].id if notes else None),
                gr.Dropdown(choices=[(text("teach_replay_none", lang), ""), *[(s, s) for s in sets]],
                            value=chosen if chosen in sets else ""),
                gr.Button(interactive=bool(notes)))

    def change_note(note_id: str, new_answer: str, request: gr.Request):
        try:
            services.notes.edit(note_id or "", new_answer or "")
        except NoteError as err:
            warn(say(err, request_lang(request, forced_lang)))
        return notes_view(request)

    def remove_note(note_id: str, request: gr.Request):
        try:
            services.notes.remove(note_id or "")
        except NoteError as err:
            warn(say(err, request_lang(request, forced_lang)))
        return notes_view(request)

    save_change.click(change_note, [picked, changed], notes_outputs, api_name="note_edit", concurrency_limit=1)
    remove.click(remove_note, [picked], notes_outputs, api_name="note_remove", concurrency_limit=1)

    def choose_replay(name: str, request: gr.Request):
        services.notes.choose_replay(name or "")
        return notes_line(services, request_lang(request, forced_lang))

    replay.input(choose_replay, [replay], [count], api_name="note_replay")
    worker_gpus = visible_gpus()

    def train_on_notes(request: gr.Request):
        """Inputs: none (every note, and the chosen replay set). Outputs: the job watched, its
        progress, the timer, the Compare button (hidden until it is done)."""
        lang = request_lang(request, forced_lang)
        unchanged = (gr.skip(),) * 4
        try:
            spec = teach_spec(services.settings.workdir, services.source.location, services.source.is_tiny,
                              services.notes, lang)
            shortfall = gpu_shortfall(spec, worker_gpus)
            if shortfall:
                raise JobError(shortfall)
            queued = services.jobs.submit(spec)
        except SpecError as err:
            warn(say_all(err.problems, lang))
            return unchanged
        except (NoteError, JobError, DataError, OSError) as err:
            warn(say(err.args[0] if isinstance(err, JobError) else err, lang))
            return unchanged
        line, _, _ = progress_markdown(services, queued.id, lang)
        return queued.id, line, gr.Timer(active=True), gr.Button(visible=False)

    train.click(train_on_notes, None, [job, progress, timer, compare], api_name="teach_train", concurrency_limit=1)

    def poll(job_id: str, request: gr.Request):
        line, active, succeeded = progress_markdown(services, job_id, request_lang(request, forced_lang))
        return line, gr.Timer(active=active), gr.Button(visible=succeeded)

    timer.tick(poll, [job], [progress, timer, compare], api_name=False)

    def on_open(job_id: str, request: gr.Request):
        """The notes, the replay sets, and the newest teaching job (one started before a reload or a
        restart is watched again)."""
        watched = job_id or newest_teaching_job(services)
        line, active, succeeded = progress_markdown(services, watched, request_lang(request, forced_lang))
        return (*notes_view(request), watched, line, gr.Timer(active=active), gr.Button(visible=succeeded))

    return NotesPanel(job=job, compare=compare, refresh=(notes_view, notes_outputs),
                      on_open=(on_open, [job], [*notes_outputs, job, progress, timer, compare]))


def teaching_target(services: Services, job_id: str) -> tuple[str, str, str]:
    """(photo, question, the job's checkpoint key) that Compare opens a teaching job on. NoteError or
    JobError with a sentence when the job or its notes are gone."""
    job = services.jobs.get(job_id)
    note = target_note(job.spec, services.notes)
    return str(services.notes.photo_path(note)), note.question, f"{job.id}:final"
