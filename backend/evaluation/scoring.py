"""Scoring a model (base, or base + adapter) on multiple-choice questions, in batches.

Two ways to read a model's choice:
- REPLY: it answers (greedy, up to 16 tokens) and the letter is parsed from what it wrote; a reply
  that picks no single choice counts as unparsed, so a model that has not learned the format scores
  nothing. What FoodieQA's authors did.
- LETTER: after the answer's opening ("答案：("), the letter the model finds likeliest; one forward
  pass per batch and no decoding. It always picks a choice, so a model that knows nothing scores near
  chance, and its curve along training moves before the format is learned.

A run keeps every question's reply (for LETTER: each letter's probability), so a person can see why a
score is what it is; runs are saved as JSON beside the checkpoint they scored, and export to CSV.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.data.conversion import answer_opening
from backend.data.schema import LETTERS, MULTIPLE_CHOICE_TASKS, Record
from backend.evaluation.multiple_choice import number_of_choices, parse_choice, prompt_turn, question_and_choices
from backend.inference.engine import Engine, GenerationSettings
from backend.problems import ProblemError

log = logging.getLogger(__name__)

# A letter and a few words is all a reply needs; more only costs time.
SCORING_SETTINGS = GenerationSettings(max_new_tokens=16, temperature=0.0)

REPLY, LETTER = "reply", "letter"  # how a choice is read: parsed from a reply, or the likeliest letter
METHODS = (LETTER, REPLY)  # backend/training/spec.py's SCORE_METHODS: a job's setting


@dataclass(frozen=True)
class ScoredQuestion:
    record_id: str
    task: str
    question_type: str
    cuisine: str
    question: str
    right: str  # the right letter
    picked: str  # the letter parsed from the reply, "" when unparsed
    reply: str

    @property
    def correct(self) -> bool:
        return bool(self.picked) and self.picked == self.right


@dataclass
class ScoreRun:
    model: str  # what was scored, for people: "base" or the adapter's name
    adapter: str | None
    split: str  # which questions: "held-out", "trained", "sivqa", ...
    lang: str
    questions: list[ScoredQuestion] = field(default_factory=list)
    seconds: float = 0.0
    method: str = REPLY  # REPLY or LETTER

    @property
    def accuracy(self) -> float:
        return sum(q.correct for q in self.questions) / len(self.questions) if self.questions else 0.0

    @property
    def unparsed(self) -> int:
        return sum(1 for q in self.questions if not q.picked)

    def to_json(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "questions"},
                "accuracy": self.accuracy, "unparsed": self.unparsed,
                "questions": [asdict(q) for q in self.questions]}

    @classmethod
    def from_json(cls, data: dict) -> ScoreRun:
        run = cls(data["model"], data["adapter"], data["split"], data["lang"], seconds=data.get("seconds", 0.0),
                  method=data.get("method", REPLY))
        run.questions = [ScoredQuestion(**q) for q in data["questions"]]
        return run


def scorable(records: Sequence[Record]) -> list[Record]:
    """The multiple-choice records with an answer; conversations cannot be scored this way."""
    return [r for r in records if r.task in MULTIPLE_CHOICE_TASKS and r.answer is not None
            and 0 < number_of_choices(r) <= len(LETTERS)]


@dataclass
class Preparation:
    """How a scoring readies its batches on the CPU (pictures opened and processed, prompts encoded) for an
    engine that prepares apart from running (TransformersEngine: reply_inputs, letter_inputs): `threads`
    batches at once, ahead of the model, which runs meanwhile; and `kept`, batches held for a later scoring
    of the same questions (a job's next checkpoint, Compare's second model), up to `budget` bytes. On a GPU
    preparing 64 photo questions takes seconds in one thread, longer than running them."""

    threads: int = field(default_factory=lambda: max(1, min(8, os.cpu_count() or 1)))
    budget: int = 0
    kept: dict = field(default_factory=dict)
    kept_bytes: int = 0
    reused: int = 0  # batches taken from `kept`

    def batches(self, engine, keys: list, make: Callable[[int], object]):
        """make(i) for each of `keys` (what identifies batch i), in order: from `kept` where it is, else made
        by a pool of threads, each with its own processor (engine.own_processor_here), ahead of the reader."""
        ahead: deque = deque()
        todo = iter(range(len(keys)))
        with ThreadPoolExecutor(self.threads, initializer=engine.own_processor_here) as pool:
            def submit() -> None:
                index = next(todo, None)
                if index is not None:
                    kept = self.kept.get(keys[index])
                    ahead.append((index, None if kept is not None else pool.submit(make, index), kept))

            try:
                for _ in range(2 * self.threads):
                    submit()
                while ahead:
                    index, future, kept = ahead.popleft()
                    submit()
                    if kept is not None:
                        self.reused += 1
                        yield kept
                        continue
                    prepared = future.result()
                    if self.kept_bytes + prepared.nbytes <= self.budget:
                        self.kept[keys[index]] = prepared
                        self.kept_bytes += prepared.nbytes
                    yield prepared
            finally:
                for _, future, _ in ahead:  # the reader stopped early (an error): nothing more to make
                    if future is not None:
                        future.cancel()


def score(engine: Engine, records: Sequence[Record], *, adapter: str | None = None, split: str = "",
          lang: str = "zh", batch_size: int = 16, method: str = REPLY,
          on_progress: Callable[[int, int], None] | None = None,
          preparation: Preparation | None = None) -> ScoreRun:
    """Ask every record, `batch_size` at a time, and read each choice by `method` (REPLY or LETTER).
    `preparation`: how batches are readied (default: in threads, none kept)."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    if method not in METHODS:
        raise ValueError(f"a choice is read from the reply or by the likeliest letter, not {method!r}")
    todo = scorable(records)
    run = ScoreRun(model=adapter or "base", adapter=adapter, split=split, lang=lang, method=method)
    start = time.perf_counter()
    # asked in order of their pictures' size, so that a batch pads its prompts to a length near their own
    # (a 640x480 photo is 400 tokens, a 1024x768 one 1,000); the run lists them as given
    order = sorted(range(len(todo)), key=lambda i: _picture_pixels(prompt_turn(todo[i], lang)))
    asked = [todo[i] for i in order]
    prompts = [[prompt_turn(r, lang)] for r in asked]
    read = _likeliest_letters if method == LETTER else _parsed_replies
    picks = dict(zip(order, read(engine, asked, prompts, adapter, lang, batch_size, on_progress,
                                 preparation or Preparation())))
    for index, record in enumerate(todo):
        picked, reply = picks[index]
        run.questions.append(ScoredQuestion(
            record_id=record.id, task=record.task, question_type=record.question_type,
            cuisine=record.cuisine, question=record.question, right=record.answer_letter,
            picked=LETTERS[picked] if picked is not None else "", reply=reply))
    run.seconds = time.perf_counter() - start
    log.info("scored %s on %d questions (%s): %.1f%% (%d unparsed) in %.1fs", run.model, len(todo), method,
             100 * run.accuracy, run.unparsed, run.seconds)
    return run


def _picture_pixels(turn) -> int:
    """The pixels of a prompt's pictures, from their headers (0 for one that cannot be read: the engine
    says why when it opens it)."""
    from PIL import Image

    total = 0
    for path in turn.images:
        try:
            with Image.open(path) as picture:
                total += picture.width * picture.height
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return total


def _parsed_replies(engine: Engine, todo: list[Record], prompts: list, adapter: str | None, lang: str,
                    batch_size: int, on_progress, preparation: Preparation) -> list[tuple[int | None, str]]:
    """(picked index or None, reply) per record, each choice parsed from the model's reply. An engine
    that batches requests itself (LMDeploy: `answers_as_done`) gets every question at once, since
    batches of `batch_size` would each wait for their slowest answer; progress is then reported every
    `batch_size` answers."""
    replies: list[str] = [""] * len(todo)
    as_done = getattr(engine, "answers_as_done", None)
    if as_done is not None:
        for done, (index, reply) in enumerate(as_done(prompts, SCORING_SETTINGS, adapter), 1):
            replies[index] = reply
            if on_progress and (done % batch_size == 0 or done == len(todo)):
                on_progress(done, len(todo))
    elif hasattr(engine, "reply_inputs"):  # prepared in threads ahead of the model (Preparation)
        starts = range(0, len(todo), batch_size)
        keys = [(REPLY, lang, tuple(r.id for r in todo[first:first + batch_size])) for first in starts]
        batches = preparation.batches(engine, keys, lambda i: engine.reply_inputs(
            prompts[starts[i]:starts[i] + batch_size]))
        for first, prepared in zip(starts, batches):
            replies[first:first + batch_size] = engine.replies_from(prepared, SCORING_SETTINGS, adapter)
            if on_progress:
                on_progress(min(first + batch_size, len(todo)), len(todo))
    else:
        for first in range(0, len(todo), batch_size):
            replies[first:first + batch_size] = engine.generate_batch(prompts[first:first + batch_size],
                                                                      SCORING_SETTINGS, adapter)
            if on_progress:
                on_progress(min(first + batch_size, len(todo)), len(todo))
    picks = []
    for record, reply in zip(todo, replies):
        _, choices = question_and_choices(record, lang)
        picks.append((parse_choice(reply, choices, number_of_choices(record)), reply.strip()))
    return picks


class LetterScoringUnavailable(ProblemError, ValueError):
    """An engine that cannot score by the letters' likelihood (LMDeploy's server gives no logits here)."""


def _likeliest_letters(engine: Engine, todo: list[Record], prompts: list, adapter: str | None, lang: str,
                       batch_size: int, on_progress, preparation: Preparation) -> list[tuple[int | None, str]]:
    """(picked index, the letters' probabilities as text) per record: the letter the model finds likeliest
    after the answer's opening."""
    if not hasattr(engine, "letter_inputs"):
        raise LetterScoringUnavailable("letter_needs_transformers", "Scoring by the likeliest letter needs the "
                                       "transformers engine; with LMDeploy serving, score from the replies.")
    starts = range(0, len(todo), batch_size)
    letters = [LETTERS[:number_of_choices(r)] for r in todo]
    keys = [(LETTER, lang, tuple(r.id for r in todo[first:first + batch_size])) for first in starts]
    batches = preparation.batches(engine, keys, lambda i: engine.letter_inputs(
        prompts[starts[i]:starts[i] + batch_size], answer_opening(lang), letters[starts[i]:starts[i] + batch_size]))
    picks = []
    for first, prepared in zip(starts, batches):
        for row_letters, scores in zip(letters[first:first + batch_size],
                                       engine.letter_logprobs_from(prepared, adapter)):
            best = max(range(len(scores)), key=scores.__getitem__)
            shares = [math.exp(v - scores[best]) for v in scores]  # among the letters only
            spread = " · ".join(f"{letter} {100 * share / sum(shares):.0f}%"
                                for letter, share in zip(row_letters, shares))
            picks.append((best, f"({row_letters[best]}) — {spread}"))
        if on_progress:
            on_progress(min(first + batch_size, len(todo)), len(todo))
    return picks


def breakdown(run: ScoreRun, by: str) -> dict[str, tuple[int, int, int]]:
    """Group -> (right, total, unparsed), grouped by "task", "question_type" or "cuisine"."""
    groups: dict[str, list[ScoredQuestion]] = {}
    for q in run.questions:
        groups.setdefault(getattr(q, by) or "—", []).append(q)
    return {name: (sum(q.correct for q in qs), len(qs), sum(1 for q in qs if not q.picked))
            for name, qs in sorted(groups.items())}


def side_by_side(runs: Sequence[ScoreRun], by: str, total: str = "all",
                 unparsed: str = "{count} unparsed") -> list[list[str]]:
    """Rows of [group, accuracy of run 1, accuracy of run 2, ...] for a table, plus a total row.
    `total` and `unparsed` are the words a page uses for the total row and for unparsed replies."""
    tables = [breakdown(run, by) for run in runs]
    groups = sorted({g for table in tables for g in table})

    def cell(right: int, count: int, unparsed_count: int) -> str:
        text = f"{100 * right / count:.1f}% ({right}/{count})" if count else "—"
        return text + (", " + unparsed.format(count=unparsed_count) if unparsed_count else "")

    rows = [[g] + [cell(*table.get(g, (0, 0, 0))) for table in tables] for g in groups]
    rows.append([total] + [cell(sum(q.correct for q in r.questions), len(r.questions), r.unparsed) for r in runs])
    return rows


def per_question(runs: Sequence[ScoreRun]) -> list[list[str]]:
    """One row per question: id, question, right letter, then each run's pick, reply and ✓/✗."""
    by_id = [{q.record_id: q for q in run.questions} for run in runs]
    rows = []
    for q in runs[0].questions if runs else []:
        row = [q.record_id, q.question, q.right]
        for answers in by_id:
            other = answers.get(q.record_id)
            row += [other.picked or "?", other.reply, "✓" if other.correct else "✗"] if other else ["", "", ""]
        rows.append(row)
    return rows


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets ("=HYPERLINK(...)",
# "@SUM(...)", and a tab or carriage return before them); such a cell gets a leading apostrophe, which
# the spreadsheet shows as text (OWASP's advice on CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutral_cell(cell: object) -> object:
    """A cell as a spreadsheet shows it without running it: text starting like a formula gets a "'"."""
    return f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell


def to_csv(runs: Sequence[ScoreRun], header: Sequence[str] | None = None) -> str:
    """per_question() as CSV, under `header` (the page's words for the columns) or plain English ones;
    no cell can start a formula (neutral_cell): questions, replies and model names come from people."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header is None:
        header = ["id", "question", "right"]
        for run in runs:
            header += [f"{run.model} picked", f"{run.model} reply", f"{run.model} correct"]
    writer.writerow([neutral_cell(cell) for cell in header])
    writer.writerows([neutral_cell(cell) for cell in row] for row in per_question(runs))
    return out.getvalue()


def file_part(name: str) -> str:
    """A model's or a split's name as part of a file name: one plain word, whatever the name holds
    (a job named "a/b" or with a line break must not lead elsewhere or break the name)."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._")[:60] or "model"


def save(run: ScoreRun, folder: Path) -> Path:
    """Write the run beside what it scored (a checkpoint folder), named by model, split and time. A
    failed write (a full disk) leaves no partial file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"score-{file_part(run.model)}-{file_part(run.split or 'questions')}-"
                     f"{time.strftime('%Y%m%d-%H%M%S')}.json")
    tmp = path.with_suffix(".partial")
    try:
        tmp.write_text(json.dumps(run.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_runs(folder: Path) -> list[ScoreRun]:
    runs = []
    for path in sorted(folder.glob("score-*.json")):
        try:
            runs.append(ScoreRun.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("skipping unreadable score file %s: %s", path, err)
    return runs


def write_csv(runs: Sequence[ScoreRun], headers: Sequence[str], folder: Path) -> Path:
    """The per-question table as a CSV file in `folder`, named by time (each scoring gets its own),
    with a BOM so that Excel opens Chinese right."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"scores-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.csv"
    try:
        csv_path.write_text(to_csv(runs, headers), encoding="utf-8-sig")
    except BaseException:
        csv_path.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise
    return csv_path
