"""The catalog of models every tab picks from: the base model the app serves and each job's ready
checkpoints, newest job first. Chat, Train ("chat with it") and Compare all name a model by its
key here ("base", "<job id>:<step>", "<job id>:final"), and load its adapter through it.

A checkpoint also knows the training set it came from (its job's data file sits in that set's
folder), so Compare can offer its trained and held-out questions apart
(backend/evaluation/question_sets.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from backend.problems import ProblemError
from backend.training.jobs import JobStore
from backend.training.spec import LANGUAGE_LORA

log = logging.getLogger(__name__)

BASE_KEY = "base"


class ModelGone(ProblemError, ValueError):
    """A model picked on the page whose checkpoint was deleted since (another tab, another visitor)."""


@dataclass(frozen=True)
class ModelChoice:
    key: str  # "base", or "<job id>:<step>" / "<job id>:final"
    adapter_dir: Path | None = None
    training_set: Path | None = None
    job_name: str = ""
    step: int | None = None  # None for the base model
    final: bool = False
    loss: float | None = None  # the checkpoint's training loss, when it was recorded
    trains: str = LANGUAGE_LORA  # what its job trained (spec.py); more than LoRA on the language model
    # means LMDeploy serves it as a merged model of its own (served_merged)

    @property
    def label(self) -> str:
        """In English, for logs and score files (a page names it in its own language: ui.i18n)."""
        if self.step is None:
            return "base model"
        label = f"{self.job_name} · {'final' if self.final else f'step {self.step}'}"
        return label if self.loss is None else f"{label} · loss {self.loss:.3f}"

    @property
    def adapter_name(self) -> str | None:
        return None if self.adapter_dir is None else self.key.replace(":", "-")


def model_choices(jobs: JobStore) -> list[ModelChoice]:
    """The base model, then every job's ready checkpoints, newest job first."""
    found = [ModelChoice(BASE_KEY)]
    for job in jobs.list():
        try:
            checkpoints = jobs.checkpoints(job.id)
        except Exception as err:  # a damaged job folder must not hide the others
            log.warning("cannot list checkpoints of %s: %s", job.id, err)
            continue
        training_set = Path(job.spec.data_file).parent if job.spec.data_file else None
        for ckpt in reversed(checkpoints):
            key = f"{job.id}:{'final' if ckpt.final else ckpt.step}"
            loss = ckpt.metrics.get("loss") or ckpt.metrics.get("train_loss")
            found.append(ModelChoice(key, ckpt.path, training_set, job.name or job.id, ckpt.step, ckpt.final,
                                     float(loss) if isinstance(loss, (int, float)) else None, job.spec.trains))
    return found


def find_choice(choices: list[ModelChoice], key: str | None) -> ModelChoice:
    for choice in choices:
        if choice.key == key:
            return choice
    raise ModelGone("model_gone", "The checkpoint {model} is no longer there (its job was deleted); pick a model "
                    "from the list again.", model=key)


def ensure_adapter(engine, choice: ModelChoice) -> str | None:
    """Load the checkpoint's adapter beside the base (once) and return the name requests use."""
    if choice.adapter_dir is None:
        return None
    if not choice.adapter_dir.is_dir():
        raise ModelGone("checkpoint_folder_gone", "The checkpoint folder {folder} is gone; pick a model from the "
                        "list again.", folder=choice.adapter_dir)
    engine.load_adapter(choice.adapter_name, str(choice.adapter_dir))
    return choice.adapter_name


def served_merged(engine_name: str, choice: ModelChoice) -> bool:
    """Whether the engine serves this checkpoint as a merged model of its own: LMDeploy applies LoRA on
    the language model only (backend/inference/merged.py), so any checkpoint that trained more."""
    return engine_name == "lmdeploy" and choice.step is not None and choice.trains != LANGUAGE_LORA


def newest_checkpoint(jobs: JobStore, job_id: str | None) -> str | None:
    """The key of a job's final checkpoint, else its latest; None while it has saved none."""
    keys = [c.key for c in model_choices(jobs) if c.key.startswith(f"{job_id}:")]
    return keys[0] if job_id and keys else None
