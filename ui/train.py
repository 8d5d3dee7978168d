"""The Train tab: pick data and settings, queue a LoRA job, watch it learn, manage jobs.

Everything shown is read from the job store and the job folders (backend.training.views), so a
reloaded page, or a restarted app, shows the same jobs and curves as a page that never closed.
A gr.Timer polls while a job is queued or running and switches itself off when none is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from backend.data import DataError, load_training_set, samples_file
from backend.data.library import datasets_root, list_training_sets
from backend.evaluation.choices import model_choices
from backend.markdown_text import as_text
from backend.models.tiny import EXAMPLES_DIR
from backend.services import Services
from backend.training import views
from backend.training.demo_data import write_demo_dataset
from backend.training.job_folder import clock
from backend.training.jobs import JobError, JobStore
from backend.training.spec import PRESETS, JobSpec, SpecError, preset
from backend.training.worker import gpu_shortfall, visible_gpus
from ui.i18n import add_strings, request_lang, text
from ui.problems import say, say_all

log = logging.getLogger(__name__)

DEMO_SOURCE = "demo"  # the bundled dishes as chat samples (backend.training.demo_data)
# The settings a person edits; every other spec field keeps its preset value.
FIELDS = ("lora_r", "lora_alpha", "learning_rate", "epochs", "batch_size", "grad_accum",
          "max_image_pixels", "save_every", "gradient_checkpointing", "device", "gpus", "pack_tokens")
# Spec fields the form sets from its other widgets, or the job store from where the job lives.
FORM_FILLED = ("model", "data_file", "image_root", "eval_file", "output_dir", "name")

STRINGS = {
    "en": {
        "tr_queued": "Queued job {job}.",
        "tr_pick_job": "Pick a job first.",
        "tr_data": "Training data",
        "tr_data_info": "Saved training sets come from the Dataset tab; held-out loss is computed on their held-out part.",
        "tr_preset": "Preset",
        "tr_name": "Job name",
        "tr_model": "Base model (folder or hub id)",
        "tr_lora_r": "LoRA rank r", "tr_lora_alpha": "LoRA alpha", "tr_learning_rate": "Learning rate",
        "tr_epochs": "Epochs", "tr_batch_size": "Batch size", "tr_grad_accum": "Gradient accumulation",
        "tr_max_image_pixels": "Max pixels per picture", "tr_save_every": "Save every N steps",
        "tr_gradient_checkpointing": "Gradient checkpointing", "tr_device": "Device",
        "tr_gpus": "GPUs", "tr_gpus_info": "More than one: the same job on each, through torchrun (data parallel).",
        "tr_pack_tokens": "Tokens per packed row",
        "tr_pack_tokens_info": "Qwen2-VL family: a step's samples go through in rows this long. Lower it if the GPU runs out of memory.",
        "tr_start": "🚀 Start training",
        "tr_jobs": "Jobs",
        "tr_job": "Job to watch",
        "tr_refresh": "🔄 Refresh",
        "tr_cancel": "⏹ Cancel", "tr_resume": "▶️ Resume", "tr_delete": "🗑️ Delete",
        "tr_reuse": "📋 Use its settings",
        "tr_chat_with": "💬 Chat with it",
        "tr_no_checkpoint": "Job {job} has no checkpoint to chat with yet: one is saved every N steps (the form's "
                            "\"Save every N steps\") and at the end.",
        "tr_reused": "The form now holds job {job}'s settings: change what you like and start again.",
        "tr_reuse_data_gone": ("Job {job} trained on {path}, which is no longer a saved training set or the "
                               "bundled dishes; pick the training data again."),
        "tr_reuse_other_settings": ("Job {job} had settings the form does not show ({names}); a new job takes "
                                    "them from the preset {preset}."),
        "tr_loss": "Loss",
        "tr_log": "Log (last lines)",
        "tr_checkpoints": "Checkpoints (pick them in Chat and Compare)",
        "tr_demo_data": "bundled dishes (chat, demo)", "tr_demo_job": "demo: bundled dishes",
        "tr_saved_set": "{name} ({train} train / {heldout} held-out)",
        "tr_state_queued": "queued", "tr_state_running": "running", "tr_state_succeeded": "succeeded",
        "tr_state_failed": "failed", "tr_state_cancelled": "cancelled", "tr_state_interrupted": "interrupted",
        "tr_waiting": "waiting for a free device", "tr_starting": "starting",
        "tr_p_step": "step {step}/{total}", "tr_p_epoch": "epoch {epoch:.2f}", "tr_p_rate": "{rate:.1f} samples/s",
        "tr_p_eta": "ETA {eta}", "tr_p_loss": "loss {loss:.4f}",
        "tr_settings": ("LoRA r {r} · alpha {alpha} · lr {lr} · {epochs} epochs · batch {batch} × {accum} "
                        "accumulation · {checkpointing}"),
        "tr_settings_checkpointing": "gradient checkpointing", "tr_settings_plain": "no gradient checkpointing",
        "tr_col_id": "id", "tr_col_name": "name", "tr_col_state": "state", "tr_col_progress": "progress",
        "tr_col_device": "device", "tr_col_error": "error", "tr_col_checkpoint": "checkpoint",
        "tr_col_step": "step", "tr_col_loss": "loss", "tr_col_folder": "folder",
        "tr_checkpoint_final": "{job} · final {step}", "tr_checkpoint_step": "{job} · step {step}",
        "tr_series_train": "train", "tr_series_eval": "held-out",
        "tr_help": ("LoRA on the language model only (the vision tower stays frozen); loss on the "
                    "answers only. The **demo-cpu** preset trains the demo model on the bundled dishes "
                    "in well under two minutes on a laptop CPU; **2b-gpu** is the course's recipe for a "
                    "2B model (r=128, alpha=256, lr 3e-5). Jobs run on a background worker: close the "
                    "page, come back, and they are still here."),
    },
    "zh": {
        "tr_queued": "任务 {job} 已排队。",
        "tr_pick_job": "请先选择一个任务。",
        "tr_data": "训练数据",
        "tr_data_info": "已保存的训练集来自“数据集”页；留出集损失在其留出部分上计算。",
        "tr_preset": "预设",
        "tr_name": "任务名称",
        "tr_model": "基础模型（文件夹或 hub id）",
        "tr_lora_r": "LoRA 秩 r", "tr_lora_alpha": "LoRA alpha", "tr_learning_rate": "学习率",
        "tr_epochs": "轮数", "tr_batch_size": "批大小", "tr_grad_accum": "梯度累积",
        "tr_max_image_pixels": "每张图最多像素", "tr_save_every": "每 N 步保存",
        "tr_gradient_checkpointing": "梯度检查点", "tr_device": "设备",
        "tr_gpus": "GPU 数", "tr_gpus_info": "多于一块时，同一任务经 torchrun 在每块 GPU 上运行（数据并行）。",
        "tr_pack_tokens": "每个打包行的 token 数",
        "tr_pack_tokens_info": "Qwen2-VL 系列：每步的样本按此长度拼成行一起计算。显存不足时调小。",
        "tr_start": "🚀 开始训练",
        "tr_jobs": "任务",
        "tr_job": "查看的任务",
        "tr_refresh": "🔄 刷新",
        "tr_cancel": "⏹ 取消", "tr_resume": "▶️ 继续", "tr_delete": "🗑️ 删除",
        "tr_reuse": "📋 用它的设置",
        "tr_chat_with": "💬 和它对话",
        "tr_no_checkpoint": "任务 {job} 还没有可以对话的检查点：每 N 步（表单里的“每 N 步保存”）和训练结束时各保存一个。",
        "tr_reused": "表单已填入任务 {job} 的设置：改动想改的，再开始训练。",
        "tr_reuse_data_gone": "任务 {job} 的训练数据 {path} 已不是保存的训练集或内置菜品；请重新选择训练数据。",
        "tr_reuse_other_settings": "任务 {job} 有表单里没有的设置（{names}）；新任务将按预设 {preset} 取这些值。",
        "tr_loss": "损失",
        "tr_log": "日志（最后几行）",
        "tr_checkpoints": "检查点（可在“对话”和“对比”页选用）",
        "tr_demo_data": "内置菜品（对话，演示）", "tr_demo_job": "演示：内置菜品",
        "tr_saved_set": "{name}（训练 {train} 条 / 留出 {heldout} 条）",
        "tr_state_queued": "排队中", "tr_state_running": "运行中", "tr_state_succeeded": "已完成",
        "tr_state_failed": "失败", "tr_state_cancelled": "已取消", "tr_state_interrupted": "已中断",
        "tr_waiting": "等待空闲设备", "tr_starting": "正在启动",
        "tr_p_step": "第 {step}/{total} 步", "tr_p_epoch": "第 {epoch:.2f} 轮", "tr_p_rate": "每秒 {rate:.1f} 个样本",
        "tr_p_eta": "预计还需 {eta}", "tr_p_loss": "损失 {loss:.4f}",
        "tr_settings": "LoRA 秩 {r} · alpha {alpha} · 学习率 {lr} · {epochs} 轮 · 批大小 {batch} × 累积 {accum} · {checkpointing}",
        "tr_settings_checkpointing": "梯度检查点", "tr_settings_plain": "无梯度检查点",
        "tr_col_id": "编号", "tr_col_name": "名称", "tr_col_state": "状态", "tr_col_progress": "进度",
        "tr_col_device": "设备", "tr_col_error": "错误", "tr_col_checkpoint": "检查点",
        "tr_col_step": "步数", "tr_col_loss": "损失", "tr_col_folder": "文件夹",
        "tr_checkpoint_final": "{job} · 最终（第 {step} 步）", "tr_checkpoint_step": "{job} · 第 {step} 步",
        "tr_series_train": "训练", "tr_series_eval": "留出集",
        "tr_help": ("只在语言模型上做 LoRA（视觉塔冻结）；只在回答上计算损失。**demo-cpu** 预设在笔记本 CPU "
                    "上两分钟内用内置菜品训练演示模型；**2b-gpu** 是课程里 2B 模型的配方（r=128、alpha=256、"
                    "lr 3e-5）。任务在后台进程中运行：关掉页面再回来，任务依然在。"),
    },
}
add_strings(STRINGS)


def form_labels(lang: str) -> dict[str, str]:
    """The form's own names for the settings it shows, for sentences about their values."""
    return {field: text(f"tr_{field}", lang) for field in FIELDS}


def data_choices(services: Services, lang: str = "en") -> list[tuple[str, str]]:
    choices = [(text("tr_demo_data", lang), DEMO_SOURCE)]
    for name, folder, manifest in list_training_sets(services.settings.workdir):
        choices.append((text("tr_saved_set", lang, name=name, train=manifest["train"]["samples"],
                             heldout=manifest["heldout"]["samples"]), str(folder)))
    return choices


def preset_values(name: str) -> list:
    values = PRESETS[name]
    defaults = JobSpec()
    return [values.get(field, getattr(defaults, field)) for field in FIELDS]


@dataclass(frozen=True)
class FormFill:
    """What the form showed when a job was started, as far as its saved spec tells."""

    source: str | None  # a data_choices value; None when the job's data is no longer among them
    preset: str
    name: str  # "" where the form had filled in the name itself
    model: str  # "" for the app's own model (the field's placeholder)
    values: list  # FIELDS, in order
    other_settings: list[str]  # settings outside the form in which the job differs from `preset`


def form_from_spec(spec: JobSpec, workdir: Path, app_model: str) -> FormFill:
    """Fill the form from a job's spec, so that trying again with one thing changed is one edit."""
    source = source_of(spec, workdir)
    # The form takes every setting it does not show from the preset (build_spec), so the job's preset
    # is the one that agrees with it on those; a job queued some other way may match none exactly.
    defaults = JobSpec()
    hidden = set(defaults.to_dict()) - set(FIELDS) - set(FORM_FILLED)

    def differing(preset_name: str) -> list[str]:
        return sorted(key for key in hidden
                      if getattr(spec, key) != PRESETS[preset_name].get(key, getattr(defaults, key)))

    preset_name = min(PRESETS, key=lambda candidate: len(differing(candidate)))
    if source == DEMO_SOURCE:
        names_the_form_gave = {text("tr_demo_job", lang) for lang in ("en", "zh")}
    else:
        names_the_form_gave = {Path(source).name} if source else set()
    return FormFill(source=source, preset=preset_name,
                    name="" if spec.name in names_the_form_gave else spec.name,
                    model="" if spec.model == app_model else spec.model,
                    values=[getattr(spec, field) for field in FIELDS],
                    other_settings=differing(preset_name))


def source_of(spec: JobSpec, workdir: Path) -> str | None:
    """The Training data choice whose samples the job trained on, if it is still there."""
    data_file = Path(spec.data_file)
    if data_file == demo_data_file(workdir).resolve():
        return DEMO_SOURCE
    for _, folder, manifest in list_training_sets(workdir):
        if data_file == samples_file(folder, manifest, "train").resolve():
            return str(folder)
    return None


def build_spec(services: Services, source: str, preset_name: str, name: str, model: str, values: dict,
               lang: str = "en"):
    """A checked JobSpec for the form's choices; SpecError / DataError carry the sentences."""
    overrides = dict(values, threads=PRESETS[preset_name].get("threads", 0))
    if name.strip():
        overrides["name"] = name.strip()
    if model.strip():
        overrides["model"] = model.strip()
    files = demo_files(services, lang) if source == DEMO_SOURCE else training_set_files(services, source)
    return preset(preset_name, **{"model": services.source.location, **files, **overrides})


def demo_data_file(workdir: Path) -> Path:
    """Where the bundled dishes are written as chat samples for a demo job."""
    return Path(workdir) / "data" / "demo-dishes.json"


def demo_files(services: Services, lang: str = "en") -> dict:
    """The bundled dishes as chat samples (written once under the work folder); the job is named in
    the language of the page that started it."""
    data_file = write_demo_dataset(demo_data_file(services.settings.workdir))
    return dict(data_file=str(data_file), image_root=str(EXAMPLES_DIR), name=text("tr_demo_job", lang))


def training_set_files(services: Services, source: str) -> dict:
    """A training set saved by the Dataset tab: its samples, its held-out part, its pictures."""
    folder = Path(source).resolve()
    if folder.parent != datasets_root(services.settings.workdir):
        raise DataError("not_a_saved_set", "Training data must be a training set saved in the Dataset tab.")
    training = load_training_set(folder)
    return dict(data_file=str(samples_file(folder, training.manifest, "train")),
                eval_file=str(samples_file(folder, training.manifest, "heldout")) if training.heldout else "",
                image_root=str(training.image_root), name=folder.name)


JOB_COLUMNS = ("id", "name", "state", "progress", "device", "error")
CHECKPOINT_COLUMNS = ("checkpoint", "step", "loss", "folder")


def columns(names: tuple[str, ...], lang: str) -> list[str]:
    return [text(f"tr_col_{name}", lang) for name in names]


def state_word(state: str, lang: str) -> str:
    return text(f"tr_state_{state}", lang)


def progress_words(row: views.JobRow, lang: str) -> str:
    """Where a job stands, in the page's language: step, epoch, speed, time left, loss."""
    if not row.total_steps:
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
    return text("tr_settings", lang, r=spec.lora_r, alpha=spec.lora_alpha, lr=f"{spec.learning_rate:g}",
                epochs=spec.epochs, batch=spec.batch_size, accum=spec.grad_accum,
                checkpointing=text(checkpointing_key, lang))


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


def loss_plot(points: list[dict], lang: str) -> gr.LinePlot:
    """The loss curve, its axes and series named in the page's language. No points: value None (not
    an empty frame): a Gradio 6.31 LinePlot that was once given an empty frame draws every later line
    without a colour, that is, invisibly."""
    series = {"train": text("tr_series_train", lang), "held-out": text("tr_series_eval", lang)}
    frame = None
    if points:
        frame = pd.DataFrame([{**p, "series": series.get(p["series"], p["series"])} for p in points],
                             columns=["step", "loss", "series"])
    return gr.LinePlot(value=frame, x_title=text("tr_col_step", lang), y_title=text("tr_col_loss", lang),
                       color_title="")


def newest_checkpoint(jobs: JobStore, job_id: str | None) -> str | None:
    """The model key of a job's final checkpoint, else its latest; None while it has saved none."""
    keys = [c.key for c in model_choices(jobs) if c.key.startswith(f"{job_id}:")]
    return keys[0] if job_id and keys else None


def watch(services: Services, job_id: str | None, lang: str = "en") -> tuple:
    """Outputs: jobs table, job picker, progress markdown, loss plot, log, checkpoints, timer."""
    rows = views.job_rows(services.jobs)
    ids = [r.id for r in rows]
    if job_id not in ids:
        job_id = ids[0] if ids else None
    active = any(r.state in ("queued", "running") for r in rows)
    picker = gr.Dropdown(choices=[(f"{r.id} · {r.name} · {state_word(r.state, lang)}", r.id) for r in rows],
                         value=job_id)
    if job_id is None:
        return job_table(rows, lang), picker, "", loss_plot([], lang), "", checkpoint_table(services, None, lang), \
            gr.Timer(active=active)
    row = next(r for r in rows if r.id == job_id)
    bar = "█" * int(20 * row.fraction) + "░" * (20 - int(20 * row.fraction))
    progress = f"**{state_word(row.state, lang)}** `{bar}` {100 * row.fraction:.0f}% · {progress_words(row, lang)}"
    progress += f"\n\n<sub>{as_text(settings_words(row.spec, lang))}</sub>"
    if row.error:
        progress += f"\n\n⚠️ {say(row.error, lang)}"
    memory = views.gpu_memory()
    if memory:
        progress += "\n\n" + " · ".join(m.text for m in memory)
    curve = loss_plot(views.loss_curve(services.jobs, job_id).rows(), lang)
    return (job_table(rows, lang), picker, progress, curve, views.log_tail(services.jobs, job_id, 30),
            checkpoint_table(services, job_id, lang), gr.Timer(active=active))


def build(services: Services, i18n: gr.I18n, forced_lang: str | None):
    gr.Markdown(i18n("tr_help"))
    default_preset = "2b-gpu" if services.engine.name == "lmdeploy" or not services.source.is_tiny else "demo-cpu"
    with gr.Row():
        with gr.Column(scale=2):
            source = gr.Dropdown(data_choices(services), value=DEMO_SOURCE, label=i18n("tr_data"), allow_custom_value=True,
                                 info=i18n("tr_data_info"), elem_id="train-data")
            with gr.Row():
                preset_name = gr.Radio(list(PRESETS), value=default_preset, label=i18n("tr_preset"))
                name = gr.Textbox(label=i18n("tr_name"), placeholder="my-first-lora")
            model = gr.Textbox(label=i18n("tr_model"), placeholder=services.source.location)
            values = preset_values(default_preset)
            # No minimum= on these numbers: Gradio's own range check turns every output of the click
            # into an error badge with an English message. The spec's checks answer instead, with a
            # sentence per problem, and the page stays as it was.
            with gr.Row():
                widgets = [
                    gr.Number(values[0], label=i18n("tr_lora_r"), precision=0),
                    gr.Number(values[1], label=i18n("tr_lora_alpha")),
                    gr.Number(values[2], label=i18n("tr_learning_rate")),
                    gr.Number(values[3], label=i18n("tr_epochs"), precision=0),
                    gr.Number(values[4], label=i18n("tr_batch_size"), precision=0),
                ]
            with gr.Row():
                widgets += [
                    gr.Number(values[5], label=i18n("tr_grad_accum"), precision=0),
                    gr.Number(values[6], label=i18n("tr_max_image_pixels"), precision=0),
                    gr.Number(values[7], label=i18n("tr_save_every"), precision=0),
                    gr.Checkbox(values[8], label=i18n("tr_gradient_checkpointing")),
                    gr.Dropdown(["auto", "cpu", "cuda"], value=values[9], label=i18n("tr_device")),
                ]
            with gr.Row():
                widgets += [
                    gr.Number(values[10], label=i18n("tr_gpus"), info=i18n("tr_gpus_info"), precision=0),
                    gr.Number(values[11], label=i18n("tr_pack_tokens"), info=i18n("tr_pack_tokens_info"), precision=0),
                ]
            start = gr.Button(i18n("tr_start"), variant="primary", elem_id="train-start")
        with gr.Column(scale=3):
            with gr.Row():
                job = gr.Dropdown([], label=i18n("tr_job"), allow_custom_value=True, elem_id="train-job", scale=3)
                refresh = gr.Button(i18n("tr_refresh"), size="sm", scale=1)
            progress = gr.Markdown(elem_id="train-progress")
            plot = gr.LinePlot(x="step", y="loss", color="series", label=i18n("tr_loss"), height=260,
                               elem_id="train-plot")
            with gr.Row():
                cancel = gr.Button(i18n("tr_cancel"), size="sm")
                resume = gr.Button(i18n("tr_resume"), size="sm")
                delete = gr.Button(i18n("tr_delete"), size="sm", variant="stop")
                reuse = gr.Button(i18n("tr_reuse"), size="sm", elem_id="train-reuse")
                chat_with = gr.Button(i18n("tr_chat_with"), size="sm", elem_id="train-chat")
    jobs = gr.Dataframe(label=i18n("tr_jobs"), interactive=False, elem_id="train-jobs")
    checkpoints = gr.Dataframe(label=i18n("tr_checkpoints"), interactive=False, elem_id="train-checkpoints")
    # Tall enough for the whole tail: a scrolled box showed its top, not the newest lines.
    log_box = gr.Textbox(label=i18n("tr_log"), lines=12, max_lines=32, autoscroll=True, elem_id="train-log")
    timer = gr.Timer(2.0, active=False)
    watch_outputs = [jobs, job, progress, plot, log_box, checkpoints, timer]
    worker_gpus = visible_gpus()  # as the worker that app.py starts finds them ("auto")

    def refresh_view(request: gr.Request, job_id):
        return watch(services, job_id, request_lang(request, forced_lang))

    def on_load(request: gr.Request):
        return watch(services, None, request_lang(request, forced_lang))

    # .input, not .change: a preset picked by "use its settings" must not overwrite the job's numbers.
    preset_name.input(preset_values, [preset_name], widgets, api_name=False)

    def submit(request: gr.Request, source_key, preset_key, job_name, model_spec, *field_values):
        lang = request_lang(request, forced_lang)
        try:
            spec = build_spec(services, source_key, preset_key, job_name or "", model_spec or "",
                              dict(zip(FIELDS, field_values)), lang)
            shortfall = gpu_shortfall(spec, worker_gpus)
            if shortfall:  # refused now, not queued to fail a moment later
                raise JobError(shortfall)
            queued = services.jobs.submit(spec)
        except SpecError as err:
            gr.Warning(say_all(err.problems, lang, form_labels(lang)))
            return watch(services, None, lang)
        except JobError as err:
            gr.Warning(say(err.args[0], lang))
            return watch(services, None, lang)
        except (DataError, ValueError) as err:
            gr.Warning(say(err, lang))
            return watch(services, None, lang)
        gr.Info(text("tr_queued", lang, job=queued.id))
        return watch(services, queued.id, lang)

    start.click(submit, [source, preset_name, name, model, *widgets], watch_outputs, api_name="train_start")

    def act(action: str, job_id, lang: str):
        if not job_id:
            gr.Warning(text("tr_pick_job", lang))
            return watch(services, None, lang)
        try:
            getattr(services.jobs, action)(job_id)
        except SpecError as err:  # a resumed job whose spec no longer holds
            gr.Warning(say_all(err.problems, lang))
        except JobError as err:
            gr.Warning(say(err.args[0], lang))
        return watch(services, None if action == "delete" else job_id, lang)

    def action_handler(action: str):
        def handle(request: gr.Request, job_id):
            return act(action, job_id, request_lang(request, forced_lang))
        return handle

    for button, action in ((cancel, "cancel"), (resume, "resume"), (delete, "delete")):
        button.click(action_handler(action), [job], watch_outputs, api_name=f"train_{action}")
    refresh.click(refresh_view, [job], watch_outputs, api_name="train_status")
    job.input(refresh_view, [job], watch_outputs, api_name=False)
    timer.tick(refresh_view, [job], watch_outputs, api_name=False)

    def fill_form(request: gr.Request, job_id):
        lang = request_lang(request, forced_lang)
        unchanged = [gr.skip()] * (4 + len(widgets))
        if not job_id:
            gr.Warning(text("tr_pick_job", lang))
            return unchanged
        try:
            spec = services.jobs.get(job_id).spec
        except JobError as err:
            gr.Warning(say(err.args[0], lang))
            return unchanged
        fill = form_from_spec(spec, services.settings.workdir, services.source.location)
        if fill.source is None:
            gr.Warning(text("tr_reuse_data_gone", lang, job=job_id, path=spec.data_file))
        if fill.other_settings:
            gr.Warning(text("tr_reuse_other_settings", lang, job=job_id, names=", ".join(fill.other_settings),
                            preset=fill.preset))
        gr.Info(text("tr_reused", lang, job=job_id))
        return [gr.skip() if fill.source is None else fill.source, fill.preset, fill.name, fill.model,
                *fill.values]

    reuse.click(fill_form, [job], [source, preset_name, name, model, *widgets], api_name="train_reuse")

    def reload_sources(request: gr.Request, current):
        options = data_choices(services, request_lang(request, forced_lang))
        return gr.Dropdown(choices=options, value=current if current in dict(map(reversed, options)) else DEMO_SOURCE)

    return on_load, watch_outputs, (reload_sources, source), (chat_with, job)
