"""What the Compare tab offers: models (base and every ready checkpoint) and question sets.

A checkpoint knows the training set it came from (its job's data file sits in that set's folder),
so the questions it trained on and the questions held out from it are offered as two separate
sets: a score on the first says "it learned", only the second says "it generalises".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from backend.data import DataError, Record, load_training_set, read_bundled_sample, read_foodieqa_folder
from backend.problems import ProblemError
from backend.training.jobs import JobStore

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
                                     float(loss) if isinstance(loss, (int, float)) else None))
    return found


def find_choice(choices: list[ModelChoice], key: str | None) -> ModelChoice:
    for choice in choices:
        if choice.key == key:
            return choice
    raise ModelGone("model_gone", "The checkpoint {model} is no longer there (its job was deleted); pick a model "
                    "from the list again.", model=key)


BUNDLED_SET = "bundled sample (all)"  # the question set of the sample bundled with the app
TRAINED, HELD_OUT = "trained", "held-out"  # the two sets of a saved training set


def set_name(kind: str, training_set: str) -> str:
    """A question set's name, which is also its key: "held-out · my-dishes"."""
    return f"{kind} · {training_set}"


def set_kind(name: str) -> tuple[str, str]:
    """(kind, training set) of a name made by set_name; ("", name) for any other set."""
    kind, _, rest = name.partition(" · ")
    return (kind, rest) if kind in (TRAINED, HELD_OUT) and rest else ("", name)


def question_sets(picked: list[ModelChoice], data_dir: Path | None) -> dict[str, tuple[Record, ...]]:
    """Named sets of scorable questions for the picked models, trained and held-out kept apart."""
    sets: dict[str, tuple[Record, ...]] = {}
    for choice in picked:
        if choice.training_set is None or set_name(HELD_OUT, choice.training_set.name) in sets:
            continue
        try:
            training = load_training_set(choice.training_set)
        except DataError as err:
            log.info("no question sets from %s: %s", choice.training_set, err)
            continue
        sets[set_name(HELD_OUT, choice.training_set.name)] = training.heldout_questions
        sets[set_name(TRAINED, choice.training_set.name)] = training.train_questions
    sets[BUNDLED_SET] = read_bundled_sample().records
    if data_dir is not None:
        try:
            sets[f"FoodieQA · {data_dir.name}"] = read_foodieqa_folder(data_dir).records
        except DataError as err:
            log.info("no FoodieQA questions from %s: %s", data_dir, err)
    return sets


def ensure_adapter(engine, choice: ModelChoice) -> str | None:
    """Load the checkpoint's adapter beside the base (once) and return the name requests use."""
    if choice.adapter_dir is None:
        return None
    if not choice.adapter_dir.is_dir():
        raise ModelGone("checkpoint_folder_gone", "The checkpoint folder {folder} is gone; pick a model from the "
                        "list again.", folder=choice.adapter_dir)
    engine.load_adapter(choice.adapter_name, str(choice.adapter_dir))
    return choice.adapter_name
