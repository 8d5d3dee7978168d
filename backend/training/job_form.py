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
from backend.data.library import datasets_root, list_training_sets
from backend.training.demo_data import DEMO_JOB_NAMES, demo_data_file, write_demo_dataset
from backend.training.jobs import Job, JobStore
from backend.training.spec import PRESETS, TWO_STAGE_PRESETS, JobSpec, preset

DEMO_SOURCE = "demo"  # the training-data choice of the bundled dishes as chat samples (demo_data.py)
# The settings a person edits, in the form's order; every other spec field keeps its preset value.
FIELDS = ("lora_r", "lora_alpha", "learning_rate", "epochs", "batch_size", "grad_accum",
          "max_image_pixels", "save_every", "gradient_checkpointing", "device", "gpus", "pack_tokens",
          "trains", "qlora")
# Spec fields the form sets from its other widgets, the job store from where the job lives, or a
# two-stage preset from its first job (two_stage.py).
FORM_FILLED = ("model", "data_file", "image_root", "eval_file", "output_dir", "name", "after_job", "projector_from")


def preset_values(name: str) -> list:
    """The FIELDS of a preset, in order: what the form shows when the preset is picked."""
    values = PRESETS[name]
    defaults = JobSpec()
    return [values.get(field, getattr(defaults, field)) for field in FIELDS]


def build_spec(workdir: Path, app_model: str, source: str, preset_name: str, name: str, model: str,
               values: dict[str, Any], lang: str = "en") -> JobSpec:
    """A checked JobSpec for the form's choices: `source` is DEMO_SOURCE or a saved training set's
    folder, `model` "" for the app's own model, `values` the FIELDS by name. SpecError / DataError
    carry the sentences. A demo job is named in `lang`, the language of the page that started it."""
    overrides = dict(values, threads=PRESETS[preset_name].get("threads", 0))
    if name.strip():
        overrides["name"] = name.strip()
    if model.strip():
        overrides["model"] = model.strip()
    files = demo_files(workdir, lang) if source == DEMO_SOURCE else training_set_files(workdir, source)
    return preset(preset_name, **{"model": app_model, **files, **overrides})


def queue_jobs(store: JobStore, spec: JobSpec, preset_name: str) -> list[Job]:
    """Queue what the form asked for: one job, or a two-stage preset's two (two_stage.py)."""
    if preset_name in TWO_STAGE_PRESETS:
        from backend.training.two_stage import submit_two_stage

        return list(submit_two_stage(store, spec))
    return [store.submit(spec)]


def demo_files(workdir: Path, lang: str = "en") -> dict:
    """The bundled dishes as chat samples (written once under the work folder)."""
    data_file = write_demo_dataset(demo_data_file(workdir))
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
                    other_settings=differing(preset_name))


def source_of(spec: JobSpec, workdir: Path) -> str | None:
    """The training-data choice whose samples the job trained on, if it is still offered."""
    data_file = Path(spec.data_file)
    if data_file == demo_data_file(workdir).resolve():
        return DEMO_SOURCE
    for _, folder, manifest in list_training_sets(workdir):
        if data_file == samples_file(folder, manifest, "train").resolve():
            return str(folder)
    return None
