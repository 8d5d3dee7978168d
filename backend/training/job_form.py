"""The Train tab's form as data: a job spec built from what a person chose (training data, preset,
name, model and the numbers shown), and the form read back from a job's spec ("use its settings"),
so that trying again with one thing changed is one edit. No widgets here: ui/train.py lays the
form out and says these values' problems in the page's language."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.bundled import EXAMPLES_DIR
from backend.data import DataError, load_training_set, samples_file
from backend.data.library import check_job_name, datasets_root, list_training_sets
from backend.data.split import MANIFEST
from backend.training.demo_data import DEMO_JOB_NAMES, demo_data_file, write_demo_dataset
from backend.training.jobs import Job, JobStore
from backend.training.spec import PRESETS, SCORE_TASKS, TWO_STAGE_PRESETS, JobSpec, preset

DEMO_SOURCE = "demo"  # the training-data choice of the bundled dishes as chat samples (demo_data.py)
# The settings a person edits, in the form's order; every other spec field keeps its preset value.
FIELDS = ("lora_r", "lora_alpha", "learning_rate", "epochs", "batch_size", "grad_accum",
          "max_image_pixels", "save_every", "gradient_checkpointing", "device", "gpus", "pack_tokens",
          "keep_best", "early_stop_patience", "score_method", "trains", "qlora")
# Spec fields the form sets from its other widgets, the job store from where the job lives, or a
# two-stage preset from its first job (two_stage.py).
FORM_FILLED = ("model", "data_file", "image_root", "eval_file", "output_dir", "name", "score_set", "score_task",
               "after_job", "projector_from")
NO_SCORING = ""  # the evaluation-set choice of a job whose checkpoints are not scored
FOODIEQA_SCORING = "foodieqa:"  # + a task: the evaluation-set choice of the --data folder's questions


def score_choices(workdir: Path, data_folder: Path | None) -> list[tuple[str, str, int]]:
    """(kind, key, size) of each evaluation set a job can score its checkpoints on: no scoring, each
    saved set's held-out questions (kind "heldout", key its folder), and the --data folder's tasks
    (kind "foodieqa", key FOODIEQA_SCORING + task). Sizes are questions (0 where not counted)."""
    choices = [("none", NO_SCORING, 0)]
    for _, folder, manifest in list_training_sets(workdir):
        heldout = manifest.get("heldout", {}).get("samples", 0) if isinstance(manifest.get("heldout"), dict) else 0
        if heldout:
            choices.append(("heldout", str(folder), heldout))
    if data_folder is not None:
        choices += [("foodieqa", FOODIEQA_SCORING + task, 0) for task in SCORE_TASKS]
    return choices


def score_fields(choice: str, data_folder: Path | None) -> dict:
    """The spec's score_set and score_task for an evaluation-set choice (score_choices' keys)."""
    if choice.startswith(FOODIEQA_SCORING):
        return {"score_set": str(data_folder or ""), "score_task": choice.removeprefix(FOODIEQA_SCORING)}
    return {"score_set": choice or ""}


def preset_values(name: str) -> list:
    """The FIELDS of a preset, in order: what the form shows when the preset is picked."""
    values = PRESETS[name]
    defaults = JobSpec()
    return [values.get(field, getattr(defaults, field)) for field in FIELDS]


def build_spec(workdir: Path, app_model: str, source: str, preset_name: str, name: str, model: str,
               values: dict[str, Any], lang: str = "en", scoring: str = NO_SCORING,
               data_folder: Path | None = None) -> JobSpec:
    """A checked JobSpec for the form's choices: `source` is DEMO_SOURCE or a saved training set's
    folder, `model` "" for the app's own model, `values` the FIELDS by name. SpecError / DataError
    carry the sentences (a name that breaks a training set's naming rules is a DataError). A demo job
    is named in `lang`, the language of the page that started it."""
    overrides = dict(values, threads=PRESETS[preset_name].get("threads", 0))
    if check_job_name(name):  # a name given in the form follows a training set's rules (charset, length)
        overrides["name"] = name.strip()
    if model.strip():
        overrides["model"] = model.strip()
    files = demo_files(workdir, lang) if source == DEMO_SOURCE else training_set_files(workdir, source)
    return preset(preset_name, **{"model": app_model, **files, **overrides, **score_fields(scoring, data_folder)})


def queue_jobs(store: JobStore, spec: JobSpec, preset_name: str) -> list[Job]:
    """Queue what the form asked for: one job, or a two-stage preset's two (two_stage.py)."""
    if preset_name in TWO_STAGE_PRESETS:
        from backend.training.two_stage import submit_two_stage

        return list(submit_two_stage(store, spec))
    return [store.submit(spec)]


def demo_files(workdir: Path, lang: str = "en") -> dict:
    """The bundled dishes as chat samples (written once under the work folder)."""
    try:
        data_file = write_demo_dataset(demo_data_file(workdir))
    except OSError as err:  # a full disk, a work folder gone read-only
        raise DataError("demo_data_unwritable", "The demo's training samples could not be written to {path} "
                        "({detail}). If its disk is full, free some space, then try again.",
                        path=demo_data_file(workdir), detail=err.strerror or str(err)) from None
    return dict(data_file=str(data_file), image_root=str(EXAMPLES_DIR),
                name=DEMO_JOB_NAMES.get(lang, DEMO_JOB_NAMES["en"]))


def training_set_files(workdir: Path, source: str) -> dict:
    """A training set saved by the Dataset tab: its samples, its held-out part, its pictures."""
    folder = Path(source).resolve()
    if folder.parent != datasets_root(workdir):
        raise DataError("not_a_saved_set", "Training data must be a training set saved in the Dataset tab.")
    training = load_training_set(folder)
    return dict(data_file=str(samples_file(folder, training.manifest, "train")),
                eval_file=str(samples_file(folder, training.manifest, "heldout")) if training.heldout else "",
                image_root=str(training.image_root), name=folder.name)


@dataclass(frozen=True)
class FormFill:
    """What the form showed when a job was started, as far as its saved spec tells."""

    source: str | None  # DEMO_SOURCE or a set's folder; None when the job's data is no longer offered
    preset: str
    name: str  # "" where the form had filled in the name itself
    model: str  # "" for the app's own model (the field's placeholder)
    values: list  # FIELDS, in order
    other_settings: list[str]  # settings outside the form in which the job differs from `preset`
    scoring: str = NO_SCORING  # the evaluation-set choice (score_choices' key)


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
        names_the_form_gave = set(DEMO_JOB_NAMES.values())
    else:
        names_the_form_gave = {Path(source).name} if source else set()
    return FormFill(source=source, preset=preset_name,
                    name="" if spec.name in names_the_form_gave else spec.name,
                    model="" if spec.model == app_model else spec.model,
                    values=[getattr(spec, field) for field in FIELDS],
                    other_settings=differing(preset_name), scoring=scoring_of(spec))


def scoring_of(spec: JobSpec) -> str:
    """The evaluation-set choice a job's spec was made from."""
    if not spec.score_set:
        return NO_SCORING
    if (Path(spec.score_set) / MANIFEST).is_file():
        return str(Path(spec.score_set).resolve())
    return FOODIEQA_SCORING + spec.score_task


def source_of(spec: JobSpec, workdir: Path) -> str | None:
    """The training-data choice whose samples the job trained on, if it is still offered."""
    data_file = Path(spec.data_file)
    if data_file == demo_data_file(workdir).resolve():
        return DEMO_SOURCE
    for _, folder, manifest in list_training_sets(workdir):
        if data_file == samples_file(folder, manifest, "train").resolve():
            return str(folder)
    return None
