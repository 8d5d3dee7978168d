"""Scoring by the likeliest letter (TransformersEngine.letter_logprobs, scoring.LETTER): one forward pass
per batch reads, after the answer's opening, each letter's log-probability; the same numbers as a plain
forward pass over each question and letter alone, on every family; and a model trained on the answers
picks by it what its replies say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backend.data import build_training_set, load_training_set, read_bundled_sample
from backend.data.conversion import answer_opening
from backend.evaluation.multiple_choice import number_of_choices, prompt_turn
from backend.evaluation.scoring import LETTER, REPLY, LetterScoringUnavailable, score
from backend.inference.transformers_engine import TransformersEngine
from backend.models.loading import load, resolve
from backend.training.job_folder import EXIT_OK, JobFiles
from backend.training.lora import train
from backend.training.processes import StopFlag
from backend.training.spec import SCORE_METHODS, preset
from tests.conftest import TINY_MODELS, load_tiny

RECORDS = read_bundled_sample().records
# a photo question, a question whose choices are four photos, and one without a photo: prompts of
# different lengths in one left-padded batch
MIXED = [next(r for r in RECORDS if r.task == task) for task in ("sivqa", "mivqa", "textqa")]


def engine_of(tiny_models, name: str) -> TransformersEngine:
    return TransformersEngine(load_tiny(tiny_models, name))


def one_by_one(engine: TransformersEngine, record, letters: str) -> list[float]:
    """Each letter's log-probability from its own unpadded forward pass over the question, the opening
    and that letter, with every position's logits: where the letter's reply first differs from the
    others', the logits one position earlier."""
    tokenizer = engine.loaded.processor.tokenizer
    prompt, pictures = engine._prompt_and_images([prompt_turn(record)])
    texts = [prompt + answer_opening("zh") + letter for letter in letters]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    parted = next(i for i in range(min(map(len, ids))) if len({seq[i] for seq in ids}) > 1)
    found = []
    for text, seq in zip(texts, ids):
        inputs = engine.loaded.processor(text=[text], images=[pictures] if pictures else None, return_tensors="pt")
        with torch.inference_mode():
            logits = engine.loaded.model(**inputs).logits[0]
        at = inputs["input_ids"].shape[1] - (len(seq) - parted)  # the letter's own token in this row
        found.append(logits[at - 1].float().log_softmax(-1)[seq[parted]].item())
    return found


@pytest.mark.parametrize("name", TINY_MODELS)
def test_a_batch_reads_each_letter_as_a_forward_pass_over_it_alone_does(tiny_models, name):
    engine = engine_of(tiny_models, name)
    records = MIXED[:2] if name == "blip_2" else MIXED  # BLIP-2's forward needs a picture (as its generate)
    letters = ["ABCD"[:number_of_choices(r)] for r in records]
    batched = engine.letter_logprobs([[prompt_turn(r)] for r in records], answer_opening("zh"), letters)
    for record, row_letters, row in zip(records, letters, batched):
        assert len(row) == len(row_letters) and all(v <= 0 for v in row)
        assert row == pytest.approx(one_by_one(engine, record, row_letters), abs=2e-4), record.task


def test_a_model_trained_on_the_answers_picks_by_its_letters_what_its_replies_say(demo_workdir, tmp_path):
    folder = tmp_path / "sivqa"
    build_training_set(RECORDS, folder, heldout_ratio=0.3, tasks=("sivqa",), seed=3)
    model = next((demo_workdir / "models").iterdir())
    spec = preset("demo-cpu", model=str(model), data_file=str(folder / "train.json"), eval_file="",
                  image_root=json.loads((folder / "split.json").read_text())["image_root"],
                  output_dir=str(tmp_path / "job"))
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir(parents=True)
    assert train(spec, files, StopFlag()) == EXIT_OK
    engine = TransformersEngine(load(resolve(str(model))))
    engine.load_adapter("tuned", str(files.adapter))
    trained = [r for r in RECORDS if r.id in {q.id for q in load_training_set(folder).train_questions}]
    replies = score(engine, trained, adapter="tuned", method=REPLY)
    letters = score(engine, trained, adapter="tuned", method=LETTER)
    assert replies.accuracy >= 0.6  # it learned most answers ...
    agree = [a.picked == b.picked for a, b in zip(replies.questions, letters.questions) if a.picked]
    assert sum(agree) >= 0.95 * len(agree)  # ... and the letter it finds likeliest is the one it writes
    assert letters.accuracy >= replies.accuracy - 0.05 and letters.unparsed == 0 and letters.method == LETTER
    assert letters.questions[0].reply.startswith(f"({letters.questions[0].picked}) — A ")


def test_an_engine_without_logits_is_told_to_score_from_the_replies():
    class RepliesOnly:
        def generate_batch(self, conversations, settings, adapter=None):
            return ["(A)"] * len(conversations)

    with pytest.raises(LetterScoringUnavailable, match="score from the replies"):
        score(RepliesOnly(), MIXED, method=LETTER)
    assert score(RepliesOnly(), MIXED, method=REPLY).unparsed == 0


def test_the_job_setting_names_the_scoring_methods():
    from backend.evaluation.scoring import METHODS

    assert SCORE_METHODS == METHODS
    assert preset("demo-cpu").score_method == LETTER


def test_a_model_that_answers_only_about_a_photo_says_so_for_a_text_question(tiny_models):
    from backend.inference.engine import GenerationSettings
    from backend.inference.transformers_engine import PictureNeeded

    engine = engine_of(tiny_models, "blip_2")
    text_question = next(r for r in RECORDS if r.task == "textqa")
    for method in SCORE_METHODS:
        with pytest.raises(PictureNeeded, match="BLIP-2 answers only questions about a photo"):
            score(engine, [MIXED[0], text_question], method=method)
    with pytest.raises(PictureNeeded):
        list(engine.stream([prompt_turn(text_question)], GenerationSettings(max_new_tokens=4)))
    assert score(engine, MIXED[:2], method=LETTER).unparsed == 0  # photo questions are answered
