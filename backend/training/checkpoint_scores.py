"""Accuracy at every checkpoint: a job that names an evaluation set has each checkpoint it saves
scored on it by the training program, right after the checkpoint is written, with the model it is
training (nothing loaded again) and the engine code Compare scores with (TransformersEngine and
backend/evaluation/scoring.py), so the Train tab plots held-out accuracy against step, marks the
best checkpoint, and a job can keep it or stop early when accuracy stops improving.

The evaluation set is a saved training set's held-out questions (whole dishes the job never saw)
or a FoodieQA folder's task. A set whose photos the job also trains on is never called held out:
its scores carry "trained_on".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.data import DataError, Record, load_training_set, read_foodieqa_folder
from backend.data.split import MANIFEST
from backend.evaluation import scoring
from backend.evaluation.multiple_choice import number_of_choices
from backend.evaluation.scoring import ScoreRun
from backend.inference.picture_memo import PictureMemo
from backend.inference.transformers_engine import TransformersEngine
from backend.models.loading import LoadedModel, max_pixels_of
from backend.training.errors import TrainingError
from backend.training.samples import Sample
from backend.training.spec import JobSpec

log = logging.getLogger("foodie.train")

SCORES_FILE = "eval_scores.json"  # in a checkpoint's folder: the ScoreRun of that checkpoint


@dataclass(frozen=True)
class EvaluationSet:
    name: str  # as the page shows it: "held-out · <set>" or "FoodieQA · <folder> · <task>"
    questions: tuple[Record, ...]
    trained_on: bool  # the job trains on photos of these questions: a score on them is no held-out score

    @property
    def chance(self) -> float:
        """The accuracy of picking a choice at random: where scoring by the likeliest letter starts."""
        return sum(1 / number_of_choices(r) for r in self.questions) / len(self.questions)


def evaluation_set(spec: JobSpec, training: list[Sample]) -> EvaluationSet | None:
    """The questions a job's checkpoints are scored on (None when it names no set). TrainingError
    with a sentence when the set cannot be read or holds nothing to score."""
    if not spec.score_set:
        return None
    folder = Path(spec.score_set)
    try:
        if (folder / MANIFEST).is_file():  # a saved training set: its held-out questions
            name, records = f"held-out · {folder.name}", load_training_set(folder).heldout_questions
        else:
            name = f"FoodieQA · {folder.name} · {spec.score_task}"
            records = tuple(r for r in read_foodieqa_folder(folder).records if r.task == spec.score_task)
    except DataError as err:
        raise TrainingError("score_set_unreadable", "The evaluation set {path} cannot be read: {why}",
                            path=str(folder), why=str(err)) from None
    questions = tuple(scoring.scorable(records))
    if not questions:
        raise TrainingError("score_set_empty", "The evaluation set {name} holds no multiple-choice question to "
                            "score.", name=name)
    trained_photos = {Path(p).resolve() for sample in training for p in sample.images}
    trained_on = any(Path(p).resolve() in trained_photos for r in questions for p in r.images)
    return EvaluationSet(name, questions, trained_on)


def live_engine(model: torch.nn.Module, processor, source, device: torch.device,
                dtype: torch.dtype) -> TransformersEngine:
    """Compare's engine around the model being trained (loaded from `source`, a ModelSource): its
    adapter is the one in training."""
    return TransformersEngine(LoadedModel(source=source, model=model, processor=processor, device=device,
                                          dtype=dtype, max_pixels=max_pixels_of(processor)))


# Host memory for a job's scoring batches as prepared (pictures processed, prompts encoded), kept from one
# checkpoint's scoring to the next: 256 questions with 1024x768 photos take about 3.7 GB.
PREPARED_BUDGET = 4 * 2**30


def score_checkpoint(engine: TransformersEngine, evaluation: EvaluationSet, spec: JobSpec, folder: Path,
                     memo: PictureMemo, precision, preparation: scoring.Preparation) -> ScoreRun:
    """Score the model as it is now (the checkpoint just written) and keep the run in its folder.
    `memo` keeps the photos' features from one checkpoint's scoring to the next, where the job's
    training leaves them unchanged (picture_memo.py), and `preparation` the batches as prepared.
    `precision`: the job's autocast, which its forward passes need (bf16 weights, fp32 LoRA weights)."""
    model = engine.loaded.model
    was_training = model.training
    model.eval()
    hits_before, prepared_before = memo.hits, preparation.reused
    try:
        with memo.serving(model), precision:
            run = scoring.score(engine, evaluation.questions, split=evaluation.name, lang=spec.score_lang,
                                batch_size=spec.score_batch, method=spec.score_method, preparation=preparation)
    finally:
        model.train(was_training)
    reused, prepared = memo.hits - hits_before, preparation.reused - prepared_before
    if reused or prepared:
        log.info("kept from an earlier scoring: %d batch%s as prepared, the photos' features of %d", prepared,
                 "" if prepared == 1 else "es", reused)
    run.model = folder.name
    (folder / SCORES_FILE).write_text(json.dumps({**run.to_json(), "trained_on": evaluation.trained_on},
                                                 ensure_ascii=False), encoding="utf-8")
    return run


@dataclass
class BestSoFar:
    """The best held-out accuracy so far, its step, and how many scorings since it improved."""

    accuracy: float = -1.0
    step: int = 0
    since: int = 0

    def update(self, step: int, accuracy: float) -> bool:
        """Count a new scoring; whether it is the best so far (ties go to the earlier step)."""
        if accuracy > self.accuracy:
            self.accuracy, self.step, self.since = accuracy, step, 0
            return True
        self.since += 1
        return False

    def patience_spent(self, patience: int) -> bool:
        return patience > 0 and self.since >= patience


class CheckpointScorer:
    """Scores a job's checkpoints as they are written and judges them: the best so far (kept from
    pruning, and the final adapter when the job keeps the best), and whether to stop early. Rank 0
    scores; with several processes, all learn its verdict on stopping."""

    scores = True

    def __init__(self, evaluation: EvaluationSet, engine: TransformersEngine, spec: JobSpec, metrics, dist,
                 precision) -> None:
        self.evaluation, self.engine, self.spec, self.metrics, self.dist = evaluation, engine, spec, metrics, dist
        self.precision = precision
        self.best = BestSoFar()
        self.memo = PictureMemo(int(spec.vision_cache_gb * 2**30))
        self.preparation = scoring.Preparation(budget=PREPARED_BUDGET)

    @property
    def keep(self) -> int | None:
        """The step of the best checkpoint so far, which pruning must not delete."""
        return self.best.step or None

    def restore(self, saved: list[tuple[int, Path]], steps_per_epoch: int) -> None:
        """On resume: the scores of the checkpoints already written (the newest scored now if a stop
        came between its saving and its scoring: the model in memory is that checkpoint)."""
        for step, folder in saved:
            kept = _read_scores(folder)
            if kept is not None:
                self.best.update(step, kept["accuracy"])
            elif (step, folder) == saved[-1]:
                self.score(step, step / steps_per_epoch, folder)

    def score(self, step: int, epoch: float, folder: Path) -> bool:
        """Score the checkpoint just written at `folder`; whether the job should now stop early."""
        stop = False
        if self.dist.is_main:
            run = score_checkpoint(self.engine, self.evaluation, self.spec, folder, self.memo, self.precision,
                                   self.preparation)
            better = self.best.update(step, run.accuracy)
            self.metrics.write({"step": step, "epoch": round(epoch, 4), "eval_accuracy": round(run.accuracy, 6),
                                "eval_unparsed": run.unparsed, "eval_questions": len(run.questions),
                                "eval_set": self.evaluation.name, "trained_on": self.evaluation.trained_on,
                                "eval_method": run.method, "eval_chance": round(self.evaluation.chance, 6),
                                "best": better})
            log.info("step %d | accuracy %.1f%% on %s (%d questions%s)%s", step, 100 * run.accuracy,
                     self.evaluation.name, len(run.questions), ", trained on" if self.evaluation.trained_on else "",
                     " | the best so far" if better else "")
            stop = self.best.patience_spent(self.spec.early_stop_patience)
            if stop:
                log.info("stopping early: no better accuracy in %d scorings since step %d (%.1f%%)",
                         self.spec.early_stop_patience, self.best.step, 100 * self.best.accuracy)
        if self.dist.world > 1:
            verdict = [stop]
            torch.distributed.broadcast_object_list(verdict, src=0)
            stop = verdict[0]
        return stop

    def use_best(self, model, files, final_step: int, device) -> dict:
        """When the job keeps the best: the best checkpoint's adapter weights put back into the model
        before the final adapter (and merged model) is written. What to add to the job's summary."""
        if not self.spec.keep_best or not self.best.step or self.best.step == final_step:
            return {}
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        from backend.training.job_folder import checkpoint_name

        best = files.checkpoints / checkpoint_name(self.best.step)
        set_peft_model_state_dict(model, load_file(best / "adapter_model.safetensors", device=str(device)))
        log.info("the final adapter is the best checkpoint's: step %d, %.1f%% on %s", self.best.step,
                 100 * self.best.accuracy, self.evaluation.name)
        return {"best_step": self.best.step, "best_accuracy": self.best.accuracy}


class NoScoring:
    """A job that names no evaluation set: nothing is scored, nothing stops early."""

    scores = False
    keep = None

    def restore(self, saved, steps_per_epoch) -> None:
        pass

    def score(self, step, epoch, folder) -> bool:
        return False

    def use_best(self, model, files, final_step, device) -> dict:
        return {}


def checkpoint_scorer(spec: JobSpec, samples: list[Sample], model, processor, source, device, dtype, metrics,
                      dist, autocast) -> CheckpointScorer | NoScoring:
    evaluation = evaluation_set(spec, samples)
    if evaluation is None:
        return NoScoring()
    return CheckpointScorer(evaluation, live_engine(model, processor, source, device, dtype), spec, metrics,
                            dist, autocast)


def _read_scores(folder: Path) -> dict | None:
    try:
        return json.loads((folder / SCORES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
