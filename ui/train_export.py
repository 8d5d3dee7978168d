"""The Train tab's Export: a checkpoint of the watched job as a merged model folder, an adapter with
its model card, and a zip of that adapter to download (backend/training/export.py does the work).

Exports run one at a time (a merge holds a whole model in memory); API clients call
`train_export` (the button's event: a sentence and the zip as a file) or `train_export_data` (the
paths written, as data).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path

import gradio as gr

from backend.catalog import model_choices
from backend.problems import ProblemError
from backend.services import Services
from backend.training.export import ADAPTER, MERGED, ZIP, Exported, export_checkpoint
from ui.i18n import markdown, model_label, request_lang, text
from ui.problems import say
from ui.toasts import failure, warn

log = logging.getLogger(__name__)

CONCURRENCY = dict(concurrency_limit=1, concurrency_id="export")


def checkpoint_choices(services: Services, job_id: str | None, lang: str) -> list[tuple[str, str]]:
    """The job's checkpoints, final first, as (label in the page's language, catalog key)."""
    if not job_id:
        return []
    return [(model_label(choice, lang), choice.key) for choice in model_choices(services.jobs)
            if choice.key.startswith(f"{job_id}:")]


def downloadable(path: Path) -> str | None:
    """The zip as a file Gradio serves: a hard link in Gradio's upload folder, which Gradio serves
    as it is (the file itself would be copied there, and a 2B model's adapter is hundreds of MB); a
    copy where no link can be made (another disk). None when neither can be written."""
    folder = Path(gr.utils.get_upload_folder()) / "exports" / secrets.token_hex(8)
    served = folder / path.name
    try:
        folder.mkdir(parents=True)
        try:
            os.link(path, served)
        except OSError:
            shutil.copyfile(path, served)
    except OSError as err:
        log.warning("the zip %s cannot be offered for download: %s", path, err)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return str(served)


def done_words(done: Exported, label: str, lang: str) -> str:
    lines = [markdown("ex_done", lang, checkpoint=label, seconds=done.seconds, folder=done.folder)]
    for path, key in ((done.merged, "ex_done_merged"), (done.adapter, "ex_done_adapter"), (done.zip, "ex_done_zip")):
        if path is not None:
            lines.append("- " + markdown(key, lang, path=path))
    return "\n".join(lines)


def build(services: Services, i18n: gr.I18n, forced_lang: str | None, job: gr.Dropdown) -> None:
    """The Export panel; its checkpoints are the watched `job`'s, listed again whenever the job
    changes, the panel opens or the picker is clicked (a running job saves new ones)."""
    with gr.Accordion(i18n("ex_title"), open=False, elem_id="export-panel") as panel:
        gr.Markdown(i18n("ex_help"))
        with gr.Row():
            # custom values: an API client names a checkpoint the page has not listed yet
            checkpoint = gr.Dropdown([], label=i18n("ex_checkpoint"), allow_custom_value=True,
                                     elem_id="export-checkpoint", scale=2)
            kinds = gr.CheckboxGroup([(i18n(f"ex_{kind}"), kind) for kind in (MERGED, ADAPTER, ZIP)],
                                     value=[ADAPTER, ZIP], label=i18n("ex_what"), elem_id="export-kinds", scale=3)
            name = gr.Textbox(label=i18n("ex_name"), info=i18n("ex_name_info"), elem_id="export-name", scale=2)
        start = gr.Button(i18n("ex_start"), variant="secondary", elem_id="export-start")
        result = gr.Markdown(elem_id="export-result")
        download = gr.File(label=i18n("ex_download"), visible=False, interactive=False, elem_id="export-zip")

    def follow_job(request: gr.Request, job_id, current):
        choices = checkpoint_choices(services, job_id, request_lang(request, forced_lang))
        keys = [key for _, key in choices]
        return gr.Dropdown(choices=choices, value=current if current in keys else (keys[0] if keys else None))

    for event in (job.change, panel.expand, checkpoint.focus):
        event(follow_job, [job, checkpoint], [checkpoint], api_name=False, show_progress="hidden")

    def run_export(request: gr.Request, key, what, folder_name):
        """Inputs: checkpoint key, what to write (merged, adapter, zip), folder name under exports/.
        Outputs: where it was written (Markdown), the zip to download."""
        lang = request_lang(request, forced_lang)
        if not key:
            warn(text("ex_pick", lang))
            return gr.skip(), gr.File(visible=False)
        try:
            done = export_checkpoint(services.jobs, services.settings.workdir, key, what or [], folder_name or "")
        except ProblemError as err:
            warn(say(err, lang))
            return "", gr.File(value=None, visible=False)
        except Exception as err:  # not the disk's room (a sentence above): permissions, a vanished folder, memory
            log.exception("export of %s failed", key)
            warn(text("ex_failed", lang, detail=getattr(err, "strerror", None) or f"{type(err).__name__}: {err}"))
            return "", gr.File(value=None, visible=False)
        label = next((lbl for lbl, k in checkpoint_choices(services, key.split(":")[0], lang) if k == key), key)
        served = downloadable(done.zip) if done.zip else None
        return done_words(done, label, lang), gr.File(value=served, visible=served is not None)

    start.click(run_export, [checkpoint, kinds, name], [result, download], api_name="train_export", **CONCURRENCY)

    def export_data(key: str, what: list[str], folder: str = "") -> dict:
        """Export checkpoint `key` ("<job id>:final" or "<job id>:<step>"); `what`: any of merged, adapter,
        zip; `folder`: a name under <work folder>/exports (default "<job id>-<checkpoint>"). Returns the
        paths written (folder, adapter, zip, merged; null where not asked) and the seconds it took."""
        try:
            return export_checkpoint(services.jobs, services.settings.workdir, key, what, folder).to_json()
        except ProblemError as err:
            raise failure(str(err)) from None
        except Exception as err:
            log.exception("export of %s failed", key)
            raise failure(text("ex_failed", "en", detail=f"{type(err).__name__}: {err}")) from None

    gr.api(export_data, api_name="train_export_data", **CONCURRENCY)
