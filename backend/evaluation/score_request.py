"""What the Compare tab's "Score both" asks for: two models (base or checkpoints) on one question
set. Checked first (the set is offered, it has questions to score), then each model scored once
(both sides the same model: once in all), each run saved beside the checkpoint it scored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backend.catalog import BASE_KEY, ModelChoice, ensure_adapter, find_choice, model_choices
from backend.data import Record
from backend.evaluation import scoring
from backend.evaluation.question_sets import PROBE_SET, probe_questions, question_sets
from backend.inference.engine import Engine
from backend.problems import ProblemError
from backend.training.jobs import JobStore

# Host memory for one request's prepared batches, shared by its two models (checkpoint_scores.py has the size)
SHARED_PREPARATION_BUDGET = 2 * 2**30


class ScoringRequestError(ProblemError):
    """A scoring request that cannot start (no question set, nothing to score in it)."""


@dataclass(frozen=True)
class ScoredModels:
    runs: list[scoring.ScoreRun]  # in the order asked for; one run when both sides were the same model
    models: list[ModelChoice]  # the model of each run
    questions: int  # how many questions each run answered
    records: dict[str, Record]  # the set's questions by id (their pictures, dishes and choices)
    probe: list[scoring.ScoreRun]  # each model on the general-ability probe (empty when not asked)


# (index of the model being scored, how many models, that model, questions done, questions in all)
Progress = Callable[[int, int, ModelChoice, int, int], None]


def score_models(engine: Engine, jobs: JobStore, workdir: Path, data_dir: Path | None, keys: tuple[str, str],
                 set_name: str, lang: str, batch_size: int, on_progress: Progress | None = None,
                 with_probe: bool = False, method: str = scoring.REPLY) -> ScoredModels:
    """Score the models `keys` name on the question set `set_name`, asked in `lang` (zh or en), each
    choice read by `method` (scoring.REPLY or LETTER), and `with_probe`, on the general-ability probe
    too (a model's probe score is kept and reused).
    Raises ScoringRequestError (or ModelGone, a ValueError) with a sentence for the person."""
    choices = model_choices(jobs)
    picked = [find_choice(choices, key) for key in keys]
    if picked[0].key == picked[1].key:  # as on a page with no checkpoint yet: twice the time, no news
        picked = picked[:1]
    sets = question_sets(picked, data_dir)
    if set_name not in sets:
        raise ScoringRequestError("scoring_no_set", "Pick a question set first (press Refresh if the list is "
                                  "empty).")
    records = scoring.scorable(sets[set_name])
    if not records:
        raise ScoringRequestError("scoring_nothing_to_score", "{name} has no multiple-choice questions to "
                                  "score.", name=set_name)
    runs = []
    # the second model is asked the same questions: their batches as prepared serve it too
    preparation = scoring.Preparation(budget=SHARED_PREPARATION_BUDGET)
    for index, choice in enumerate(picked):
        adapter = ensure_adapter(engine, choice)

        def report(done: int, total: int, index=index, choice=choice) -> None:
            if on_progress is not None:
                on_progress(index, len(picked), choice, done, total)

        report(0, len(records))
        run = scoring.score(engine, records, adapter=adapter, split=set_name.split(" · ")[0], lang=lang,
                            batch_size=batch_size, method=method, on_progress=report, preparation=preparation)
        run.model = choice.label
        scoring.save(run, scores_folder(choice, workdir))
        runs.append(run)
    probe = []
    if with_probe and set_name != PROBE_SET:
        probe = [probe_run(engine, choice, workdir, lang, batch_size, method) for choice in picked]
    return ScoredModels(runs, picked, len(records), {r.id: r for r in records}, probe)


def scores_folder(choice: ModelChoice, workdir: Path) -> Path:
    """Where a model's score runs are kept: beside its checkpoint, or the work folder's scores/base."""
    return choice.adapter_dir or Path(workdir) / "scores" / BASE_KEY


def probe_run(engine: Engine, choice: ModelChoice, workdir: Path, lang: str, batch_size: int,
              method: str = scoring.REPLY) -> scoring.ScoreRun:
    """The model on the general-ability probe. A checkpoint's run is kept and reused (its answers do
    not change); the base model's is scored each time (the app may serve another base next time)."""
    questions = scoring.scorable(probe_questions())
    folder = scores_folder(choice, workdir)
    kept = [run for run in scoring.load_runs(folder) if choice.adapter_dir is not None
            and run.split == PROBE_SET and run.lang == lang and run.method == method
            and len(run.questions) == len(questions)]
    if kept:
        return kept[-1]
    run = scoring.score(engine, questions, adapter=ensure_adapter(engine, choice), split=PROBE_SET, lang=lang,
                        batch_size=batch_size, method=method)
    run.model = choice.label
    scoring.save(run, folder)
    return run
