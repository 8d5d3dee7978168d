"""The Train tab: pick data and settings, queue a LoRA job, watch it learn, manage jobs.

Everything shown is read from the job store and the job folders (backend.training.views), so a
reloaded page, or a restarted app, shows the same jobs and curves as a page that never closed.
A gr.Timer polls while a job is queued or running and switches itself off when none is.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from backend.data import DataError
from backend.data.library import list_training_sets
from backend.disk import FolderSize, free_bytes, human_size
from backend.evaluation.scoring import METHODS
from backend.markdown_text import as_text
from backend.models.loading import ModelLoadError
from backend.services import Services
from backend.training import views
from backend.training.errors import TrainingError
from backend.training.job_folder import clock
from backend.training.job_form import (
    DEMO_SOURCE,
    FIELDS,
    FOODIEQA_SCORING,
    build_spec,
    form_from_spec,
    preset_values,
    queue_jobs,
    score_choices,
)
from backend.training.jobs import JobError
from backend.training.memory import picker_rows, start_shortfall
from backend.training.qlora import qlora_shortfall, why_not_offered
from backend.training.spec import PRESETS, TRAINS_CHOICES, JobSpec, SpecError
from backend.training.worker import gpu_shortfall, visible_gpus
from ui import train_export
from ui.i18n import markdown, request_lang, task_word, text
from ui.problems import say, say_all
from ui.tab import Handler, Tab
from ui.toasts import failure, inform, warn
from ui.train_curves import accuracy_plot, best_words, loss_plot

log = logging.getLogger(__name__)


def form_labels(lang: str) -> dict[str, str]:
    """The form's own names for the settings it shows, for sentences about their values."""
    return {field: text(f"tr_{field}", lang) for field in FIELDS}


def scoring_choices(services: Services, lang: str = "en") -> list[tuple[str, str]]:
    """The evaluation sets a job can score its checkpoints on, named with their size."""
    words = {"none": lambda key, size: text("tr_scoring_none", lang),
             "heldout": lambda key, size: text("tr_scoring_heldout", lang, name=Path(key).name, count=size),
             "foodieqa": lambda key, size: text("tr_scoring_foodieqa", lang,
                                                task=task_word(key.removeprefix(FOODIEQA_SCORING), lang))}
    return [(words[kind](key, size), key) for kind, key, size in score_choices(services.settings.workdir,
                                                                                services.settings.data)]


def data_choices(services: Services, lang: str = "en") -> list[tuple[str, str]]:
    choices = [(text("tr_demo_data", lang), DEMO_SOURCE)]
    for name, folder, manifest in list_training_sets(services.settings.workdir):
        choices.append((text("tr_saved_set", lang, name=name, train=manifest["train"]["samples"],
                             heldout=manifest["heldout"]["samples"]), str(folder)))
    return choices


JOB_COLUMNS = ("id", "name", "state", "progress", "device", "error")
CHECKPOINT_COLUMNS = ("checkpoint", "step", "loss", "folder")


def columns(names: tuple[str, ...], lang: str) -> list[str]:
    return [text(f"tr_col_{name}", lang) for name in names]


def state_word(state: str, lang: str) -> str:
    return text(f"tr_state_{state}", lang)


def progress_words(row: views.JobRow, lang: str) -> str:
    """Where a job stands, in the page's language: step, epoch, speed, time left, loss."""
    if not row.total_steps:
        if row.state == "queued" and row.spec.after_job:  # LLaVA's stage 2, until stage 1 has succeeded
            return text("tr_waiting_for", lang, job=row.spec.after_job)
        return text("tr_waiting" if row.state == "queued" else "tr_starting", lang)
    parts = [text("tr_p_step", lang, step=row.step, total=row.total_steps), text("tr_p_epoch", lang, epoch=row.epoch)]
    if row.samples_per_s is not None:
        parts.append(text("tr_p_rate", lang, rate=row.samples_per_s))
    if row.eta_s is not None and row.state == "running":
        parts.append(text("tr_p_eta", lang, eta=clock(row.eta_s)))
    if row.loss is not None:
        parts.append(text("tr_p_loss", lang, loss=row.loss))
    return " · ".join(parts)


def settings_words(spec: JobSpec, lang: str) -> str:
    """The settings a job runs with, in a line, to compare jobs without opening their spec.json."""
    checkpointing_key = "tr_settings_checkpointing" if spec.gradient_checkpointing else "tr_settings_plain"
    line = text("tr_settings", lang, r=spec.lora_r, alpha=spec.lora_alpha, lr=f"{spec.learning_rate:g}",
                epochs=spec.epochs, batch=spec.batch_size, accum=spec.grad_accum,
                checkpointing=text(checkpointing_key, lang))
    if spec.notes:  # a teaching job: what it learned, and what was mixed in
        mix = (text("tr_settings_mix", lang, notes=len(spec.notes), replay=spec.replay_samples, set=spec.replay_set)
               if spec.replay_samples else text("tr_settings_notes", lang, notes=len(spec.notes)))
        line = f"{mix} · {line}"
    return line


def job_table(rows: list[views.JobRow], lang: str) -> pd.DataFrame:
    return pd.DataFrame([[r.id, r.name, state_word(r.state, lang), progress_words(r, lang), r.device,
                          say(r.error, lang)[:200] if r.error else r.error]
                         for r in rows], columns=columns(JOB_COLUMNS, lang))


def checkpoint_table(services: Services, job_id: str | None, lang: str) -> pd.DataFrame:
    found = services.jobs.checkpoints(job_id) if job_id else []
    return pd.DataFrame(
        [[text("tr_checkpoint_final" if c.final else "tr_checkpoint_step", lang, job=c.job_id, step=c.step), c.step,
          round(c.metrics["loss"], 4) if isinstance(c.metrics.get("loss"), (int, float)) else None, str(c.path)]
         for c in found], columns=columns(CHECKPOINT_COLUMNS, lang))


_SIZES: dict[str, FolderSize] = {}  # the work folder's size, measured at most every 15 s


def worker_line(services: Services, lang: str) -> tuple[str, bool]:
    """(Markdown, whether it is worth watching): whether a training worker runs, and if not why and
    when the next one starts; then the work folder's size and the free space on its disk."""
    worker = services.worker.status() if services.worker is not None else None
    when = (lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else "?")
    watch_it = False
    if worker is None:
        line = text("tr_worker_none", lang)
    elif worker.state == "down":
        line = markdown("tr_worker_down", lang, why=say(worker.last_exit or "", lang), time=when(worker.last_exit_at),
                        wait=math.ceil(worker.restart_in_s or 0))
        watch_it = True
    elif worker.state == "storage":
        line = markdown("tr_worker_storage", lang, detail=worker.detail, wait=math.ceil(worker.retry_s or 0))
        watch_it = True
    elif worker.state == "waiting":
        line = markdown("tr_worker_waiting", lang, holder=worker.detail)
    elif worker.state == "stopped":
        line = text("tr_worker_stopped", lang)
    else:
        line = markdown("tr_worker_running", lang, pid=worker.pid)
        watch_it = worker.state == "starting"
        if worker.restarts and worker.last_exit:
            line += " " + markdown("tr_worker_restarted", lang, count=worker.restarts, why=say(worker.last_exit, lang),
                                   time=when(worker.last_exit_at))
    folder = services.settings.workdir
    size = _SIZES.setdefault(str(folder), FolderSize(folder))
    free = free_bytes(folder)
    line += "\n\n" + markdown("tr_workdir", lang, folder=folder, size=human_size(size.bytes()),
                               free=human_size(free) if free is not None else "?")
    return line, watch_it


def models_table(lang: str) -> pd.DataFrame:
    """The model picker: every family's published sizes with the memory a LoRA job on each needs
    (backend.training.memory.picker_rows)."""
    def gb(value: float | None) -> str:
        return f"{value:.0f}" if value is not None else text("tr_models_at_start", lang)

    return pd.DataFrame([[r.family, r.hub_id, r.params_b, gb(r.with_checkpointing_gb), gb(r.without_checkpointing_gb)]
                         for r in picker_rows()],
                        columns=[text(f"tr_models_{name}", lang)
                                 for name in ("family", "checkpoint", "params", "with_gc", "without_gc")])


def watch(services: Services, job_id: str | None, lang: str = "en") -> tuple:
    """Outputs: jobs table, job picker, progress markdown, loss plot, accuracy plot, log, checkpoints,
    timer, and the worker's line (worker_line)."""
    rows = views.job_rows(services.jobs)
    ids = [r.id for r in rows]
    if job_id not in ids:
        job_id = ids[0] if ids else None
    worker, worker_trouble = worker_line(services, lang)
    active = any(r.state in ("queued", "running") for r in rows) or worker_trouble
    picker = gr.Dropdown(choices=[(f"{r.id} · {r.name} · {state_word(r.state, lang)}", r.id) for r in rows],
                         value=job_id)
    if job_id is None:
        return (job_table(rows, lang), picker, "", loss_plot([], lang), accuracy_plot([], lang), "",
                checkpoint_table(services, None, lang), gr.Timer(active=active), worker)
    row = next(r for r in rows if r.id == job_id)
    bar = "█" * int(20 * row.fraction) + "░" * (20 - int(20 * row.fraction))
    progress = f"**{state_word(row.state, lang)}** `{bar}` {100 * row.fraction:.0f}% · {progress_words(row, lang)}"
    progress += f"\n\n<sub>{as_text(settings_words(row.spec, lang))}</sub>"
    if row.error:
        progress += f"\n\n⚠️ {as_text(say(row.error, lang))}"
    memory = views.gpu_memory()
    if memory:
        progress += "\n\n" + " · ".join(as_text(m.text) for m in memory)
    scored = views.accuracy_curve(services.jobs, job_id)
    if scored:
        progress += "\n\n" + best_words(scored, lang)
    curve = loss_plot(views.loss_curve(services.jobs, job_id).rows(), lang)
    return (job_table(rows, lang), picker, progress, curve, accuracy_plot(scored, lang),
            views.log_tail(services.jobs, job_id, 30), checkpoint_table(services, job_id, lang),
            gr.Timer(active=active), worker)


# How the form lays out the settings a person edits (backend.training.job_form.FIELDS), row by row.
FORM_ROWS = (("lora_r", "lora_alpha", "learning_rate", "epochs", "batch_size"),
             ("grad_accum", "max_image_pixels", "save_every", "gradient_checkpointing", "device"),
             ("gpus", "pack_tokens", "trains", "qlora"), ("keep_best", "early_stop_patience", "score_method"))
assert sorted(field for row in FORM_ROWS for field in row) == sorted(FIELDS)
# settings whose label has a line of explanation (tr_<field>_info)
WITH_INFO = ("gpus", "pack_tokens", "trains", "qlora", "early_stop_patience", "score_method")


def trains_key(choice: str) -> str:
    """The words of one "what trains" choice: tr_trains_language_lora_projector for language-lora+projector."""
    return "tr_trains_" + choice.replace("-", "_").replace("+", "_")


def setting_widget(field: str, value, i18n: gr.I18n, qlora_why: str | None = None):
    """The widget of one setting: a checkbox (QLoRA's switched off, with the reason `qlora_why`, a
    Problem key, where this machine cannot run it), the device's or what-trains' choices, or a number
    (whole where the spec's field is an int)."""
    label = i18n(f"tr_{field}")
    info = i18n(f"tr_{field}_info") if field in WITH_INFO else None
    if field == "qlora" and qlora_why:
        return gr.Checkbox(value, label=label, info=i18n(f"tr_{qlora_why}"), interactive=False)
    if isinstance(value, bool):
        return gr.Checkbox(value, label=label, info=info)
    if field == "device":
        return gr.Dropdown(["auto", "cpu", "cuda"], value=value, label=label)
    if field == "score_method":
        return gr.Dropdown([(i18n(f"tr_score_method_{method}"), method) for method in METHODS], value=value,
                           label=label, info=info)
    if field == "trains":  # other combinations (a two-stage job's stage 1) come back as they are
        return gr.Dropdown([(i18n(trains_key(choice)), choice) for choice in TRAINS_CHOICES], value=value,
                           label=label, info=info, allow_custom_value=True)
    return gr.Number(value, label=label, info=info, precision=0 if isinstance(value, int) else None)


def build(services: Services, i18n: gr.I18n, forced_lang: str | None) -> Tab:
    gr.Markdown(i18n("tr_help"))
    default_preset = "2b-gpu" if services.engine.name == "lmdeploy" or not services.source.is_tiny else "demo-cpu"
    worker_gpus = visible_gpus()  # as the worker that app.py starts finds them ("auto")
    with gr.Row():
        with gr.Column(scale=2):
            source = gr.Dropdown(data_choices(services), value=DEMO_SOURCE, label=i18n("tr_data"),
                                 allow_custom_value=True, info=i18n("tr_data_info"), elem_id="train-data")
            with gr.Row():
                preset_name = gr.Radio(list(PRESETS), value=default_preset, label=i18n("tr_preset"))
                name = gr.Textbox(label=i18n("tr_name"), placeholder="my-first-lora")
            model = gr.Textbox(label=i18n("tr_model"), placeholder=services.source.location, info=i18n("tr_model_info"))
            with gr.Accordion(i18n("tr_models"), open=False):
                models = gr.Dataframe(interactive=False, elem_id="train-models")
            shown = dict(zip(FIELDS, preset_values(default_preset)))
            # No minimum= on these numbers: Gradio's own range check turns every output of the click
            # into an error badge with an English message. The spec's checks answer instead, with a
            # sentence per problem, and the page stays as it was.
            settings = {}
            qlora_why = why_not_offered(worker_gpus)  # no GPU, or no bitsandbytes: QLoRA is not offered
            for row in FORM_ROWS:
                with gr.Row():
                    settings.update({field: setting_widget(field, shown[field], i18n, qlora_why and qlora_why.key)
                                     for field in row})
            widgets = [settings[field] for field in FIELDS]
            scoring = gr.Dropdown(scoring_choices(services), value="", label=i18n("tr_scoring"),
                                  info=i18n("tr_scoring_info"), allow_custom_value=True, elem_id="train-scoring")
            start = gr.Button(i18n("tr_start"), variant="primary", elem_id="train-start")
        with gr.Column(scale=3):
            with gr.Row():
                job = gr.Dropdown([], label=i18n("tr_job"), allow_custom_value=True, elem_id="train-job", scale=3)
                refresh = gr.Button(i18n("tr_refresh"), size="sm", scale=1)
            worker_status = gr.Markdown(elem_id="train-worker")
            progress = gr.Markdown(elem_id="train-progress")
            plot = gr.LinePlot(x="step", y="loss", color="series", label=i18n("tr_loss"), height=260,
                               elem_id="train-plot")
            accuracy = gr.LinePlot(x="step", y="accuracy", color="series", label=i18n("tr_accuracy"), height=220,
                                   visible=False, elem_id="train-accuracy")
            with gr.Row():
                cancel = gr.Button(i18n("tr_cancel"), size="sm")
                resume = gr.Button(i18n("tr_resume"), size="sm")
                delete = gr.Button(i18n("tr_delete"), size="sm", variant="stop")
                reuse = gr.Button(i18n("tr_reuse"), size="sm", elem_id="train-reuse")
                chat_with = gr.Button(i18n("tr_chat_with"), size="sm", elem_id="train-chat")
    jobs = gr.Dataframe(label=i18n("tr_jobs"), interactive=False, elem_id="train-jobs")
    checkpoints = gr.Dataframe(label=i18n("tr_checkpoints"), interactive=False, elem_id="train-checkpoints")
    train_export.build(services, i18n, forced_lang, job)
    # Tall enough for the whole tail: a scrolled box showed its top, not the newest lines.
    log_box = gr.Textbox(label=i18n("tr_log"), lines=12, max_lines=32, autoscroll=True, elem_id="train-log")
    timer = gr.Timer(2.0, active=False)
    watch_outputs = [jobs, job, progress, plot, accuracy, log_box, checkpoints, timer, worker_status]
    # Worked out now, not when the tab first opens: a slow on_open that ends after a quick Start
    # overwrites Start's view with the one before the job (and switches the timer off).
    picker_rows()

    def refresh_view(request: gr.Request, job_id):
        return watch(services, job_id, request_lang(request, forced_lang))

    # .input, not .change: a preset picked by "use its settings" must not overwrite the job's numbers.
    preset_name.input(preset_values, [preset_name], widgets, api_name=False)

    def submit(request: gr.Request, source_key, preset_key, job_name, model_spec, *field_values):
        lang = request_lang(request, forced_lang)
        *field_values, scoring_key = field_values
        try:
            spec = build_spec(services.settings.workdir, services.source.location, source_key, preset_key,
                              job_name or "", model_spec or "", dict(zip(FIELDS, field_values)), lang,
                              scoring_key or "", services.settings.data)
            # refused now, not queued to fail a moment later: no QLoRA here, no such GPU, or one too small
            shortfall = (qlora_shortfall(spec, worker_gpus) or gpu_shortfall(spec, worker_gpus)
                         or start_shortfall(spec, worker_gpus))
            if shortfall:
                raise JobError(shortfall)
            queued = queue_jobs(services.jobs, spec, preset_key)
        except SpecError as err:
            warn(say_all(err.problems, lang, form_labels(lang)))
            return watch(services, None, lang)
        except JobError as err:
            warn(say(err.args[0], lang))
            return watch(services, None, lang)
        except (DataError, ValueError, TrainingError, ModelLoadError) as err:  # a model or targets that cannot work
            warn(say(err, lang))
            return watch(services, None, lang)
        if len(queued) == 2:  # a two-stage preset: the second waits for the first
            inform(text("tr_queued_two_stages", lang, first=queued[0].id, second=queued[1].id))
        else:
            inform(text("tr_queued", lang, job=queued[0].id))
        return watch(services, queued[-1].id, lang)

    start.click(submit, [source, preset_name, name, model, *widgets, scoring], watch_outputs, api_name="train_start")

    def act(action: str, job_id, lang: str):
        if not job_id:
            warn(text("tr_pick_job", lang))
            return watch(services, None, lang)
        try:
            getattr(services.jobs, action)(job_id)
        except SpecError as err:  # a resumed job whose spec no longer holds
            warn(say_all(err.problems, lang))
        except JobError as err:
            warn(say(err.args[0], lang))
        return watch(services, None if action == "delete" else job_id, lang)

    def action_handler(action: str):
        def handle(request: gr.Request, job_id):
            return act(action, job_id, request_lang(request, forced_lang))
        return handle

    for button, action in ((cancel, "cancel"), (resume, "resume"), (delete, "delete")):
        button.click(action_handler(action), [job], watch_outputs, api_name=f"train_{action}")
    refresh.click(refresh_view, [job], watch_outputs, api_name="train_view")
    job.input(refresh_view, [job], watch_outputs, api_name=False)
    timer.tick(refresh_view, [job], watch_outputs, api_name=False)

    def fill_form(request: gr.Request, job_id):
        lang = request_lang(request, forced_lang)
        unchanged = [gr.skip()] * (5 + len(widgets))
        if not job_id:
            warn(text("tr_pick_job", lang))
            return unchanged
        try:
            spec = services.jobs.get(job_id).spec
        except JobError as err:
            warn(say(err.args[0], lang))
            return unchanged
        fill = form_from_spec(spec, services.settings.workdir, services.source.location)
        if fill.source is None:
            warn(text("tr_reuse_data_gone", lang, job=job_id, path=spec.data_file))
        if fill.other_settings:
            warn(text("tr_reuse_other_settings", lang, job=job_id, names=", ".join(fill.other_settings),
                            preset=fill.preset))
        inform(text("tr_reused", lang, job=job_id))
        return [gr.skip() if fill.source is None else fill.source, fill.preset, fill.name, fill.model,
                *fill.values, fill.scoring]

    reuse.click(fill_form, [job], [source, preset_name, name, model, *widgets, scoring], api_name="train_reuse")

    def job_status(job_id: str) -> dict:
        """Where a job stands, as data: state, step of total_steps, epoch, loss, samples/s, seconds
        left, fraction done, and why it failed (backend.training.views.job_status)."""
        try:
            return views.job_status(views.job_row(services.jobs.get(job_id)))
        except JobError as err:
            raise failure(str(err)) from None

    gr.api(job_status, api_name="train_status")

    def on_open(request: gr.Request, job_id, current_source, current_scoring):
        """The jobs now (the viewed one kept, a running one re-attached), and the training data and
        evaluation sets with those saved meanwhile."""
        lang = request_lang(request, forced_lang)
        options = data_choices(services, lang)
        offered = {key for _, key in options}
        sets = scoring_choices(services, lang)
        *view, _, worker = watch(services, job_id, lang)
        # The timer ticks once more whatever the jobs were: a Start clicked while this ran may have
        # been answered first, and this older view would otherwise stand with the timer off.
        return (*view, gr.Timer(active=True), worker,
                gr.Dropdown(choices=options, value=current_source if current_source in offered else DEMO_SOURCE),
                gr.Dropdown(choices=sets, value=current_scoring if current_scoring in {k for _, k in sets} else ""),
                models_table(lang))

    return Tab(widgets={"job": job, "source": source},
               on_open=Handler(on_open, [job, source, scoring], [*watch_outputs, source, scoring, models]),
               events={"chat_with": chat_with.click})
