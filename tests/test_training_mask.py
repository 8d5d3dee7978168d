"""What the loss sees: answer tokens only, in every turn, for every model family we train; and
LoRA on the language model only."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from backend.models.loading import load_processor, resolve
from backend.training.encoding import (
    IGNORE_INDEX,
    SampleError,
    collate,
    encode_sample,
    has_generation_markers,
    marks_cover_answers,
)
from backend.training.model import language_model_targets
from backend.training.samples import sample_from_record
from backend.training.steps import answer_loss

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TWO_TURNS = {"id": "jiaozi", "image": "images/jiaozi-0.jpg", "conversations": [
    {"from": "human", "value": "<image>\n这是什么菜？"}, {"from": "gpt", "value": "这是饺子，属于东北菜。"},
    {"from": "human", "value": "What dish is this?"},
    {"from": "gpt", "value": "This is Dumplings, a Northeastern dish."}]}
PIXELS = 112 * 112


def without_markers(processor):
    """The same processor with a chat template that has no {% generation %} markers, like most
    real checkpoints: the answers must then be found by rendering prefixes."""
    plain = copy.deepcopy(processor)
    plain.chat_template = plain.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    assert not has_generation_markers(plain)
    return plain


@pytest.fixture(scope="module")
def processors(tiny_models) -> dict:
    return {family: load_processor(resolve(str(folder))) for family, folder in tiny_models.items()}


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "internvl", "llava"])
@pytest.mark.parametrize("markers", [True, False], ids=["generation-markers", "rendered-prefixes"])
def test_only_the_answers_of_every_turn_are_labelled(processors, family: str, markers: bool) -> None:
    processor = processors[family] if markers else without_markers(processors[family])
    sample = sample_from_record(TWO_TURNS, EXAMPLES)
    encoded = encode_sample(processor, sample, PIXELS, 512)
    ids, labels = encoded.inputs["input_ids"], encoded.labels
    answer = labels != IGNORE_INDEX

    # Labelled tokens keep their own id; together they spell both answers and each end-of-turn.
    assert torch.equal(labels[answer], ids[answer])
    tokenizer = processor.tokenizer
    assert tokenizer.decode(ids[answer]) == ("这是饺子，属于东北菜。<|im_end|>"
                                             "This is Dumplings, a Northeastern dish.<|im_end|>")
    # The questions, the picture and the role headers teach nothing.
    picture_tokens = ids == processor.image_token_id
    assert picture_tokens.sum() > 1 and not (answer & picture_tokens).any()
    assert "这是什么菜" in tokenizer.decode(ids[~answer]) and "What dish is this?" in tokenizer.decode(ids[~answer])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "internvl", "llava"])
def test_one_english_turn_after_a_picture_is_labelled_by_its_answer(processors, family: str) -> None:
    """Under transformers 5.17 the generation markers of exactly this sample (the demo's English
    questions) marked four picture tokens instead of the answer; the check sends it to the prefix method."""
    record = {"id": "en", "image": "images/jiaozi-0.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat dish is this?"},
        {"from": "gpt", "value": "This is Dumplings, a Northeastern dish."}]}
    encoded = encode_sample(processors[family], sample_from_record(record, EXAMPLES), PIXELS, 512)
    answer = encoded.inputs["input_ids"][encoded.labels != IGNORE_INDEX]
    assert processors[family].tokenizer.decode(answer) == "This is Dumplings, a Northeastern dish.<|im_end|>"


def test_both_ways_of_finding_answers_agree(processors) -> None:
    sample = sample_from_record(TWO_TURNS, EXAMPLES)
    for family, processor in processors.items():
        marked = encode_sample(processor, sample, PIXELS, 512)
        rendered = encode_sample(without_markers(processor), sample, PIXELS, 512)
        pick = lambda e: e.inputs["input_ids"][e.labels != IGNORE_INDEX].tolist()
        assert pick(marked) == pick(rendered), family


def test_marks_on_anything_but_the_answers_are_refused(processors) -> None:
    """transformers 5.17's generation-marker mask put the answer's marks on picture tokens (the demo
    then never learnt its English answers); such marks must send encoding to the prefix method."""
    processor = processors["qwen2_vl"]
    sample = sample_from_record(TWO_TURNS, EXAMPLES)
    encoded = encode_sample(processor, sample, PIXELS, 512)
    ids, answers = encoded.inputs["input_ids"], (encoded.labels != IGNORE_INDEX).long()
    assert marks_cover_answers(processor, ids, answers, sample.messages)
    on_pictures = (ids == processor.image_token_id).long()
    assert not marks_cover_answers(processor, ids, on_pictures, sample.messages)
    marked = answers.nonzero().flatten()
    gap = int((marked[1:] - marked[:-1] > 1).nonzero()[0])  # where the first answer's marks end
    first_answer_only = answers.clone()
    first_answer_only[marked[gap + 1]:] = 0
    assert not marks_cover_answers(processor, ids, first_answer_only, sample.messages)
    assert not marks_cover_answers(processor, ids, torch.zeros_like(answers), sample.messages)


def test_the_loss_counts_answer_positions_only() -> None:
    torch.manual_seed(0)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6, IGNORE_INDEX]])
    logits = torch.randn(1, 5, 10)
    loss = answer_loss(logits, labels)
    # Position t predicts token t+1: positions 1 and 2 predict the answer tokens 5 and 6.
    expected = torch.nn.functional.cross_entropy(logits[0, 1:3], torch.tensor([5, 6]), reduction="sum")
    assert torch.allclose(loss, expected)
    changed = logits.clone()
    changed[0, [0, 3, 4]] += 100 * torch.randn(3, 10)  # positions that predict no answer token
    assert torch.allclose(answer_loss(changed, labels), loss)
    changed[0, 2] += 100 * torch.randn(10)
    assert not torch.allclose(answer_loss(changed, labels), loss)


def test_a_batch_pads_on_the_right_and_mixes_picture_and_text_samples(processors) -> None:
    processor = processors["qwen2_vl"]
    with_picture = encode_sample(processor, sample_from_record(TWO_TURNS, EXAMPLES), PIXELS, 512)
    text_only = encode_sample(processor, sample_from_record({"id": "t", "conversations": [
        {"from": "human", "value": "饺子？"}, {"from": "gpt", "value": "东北菜。"}]}, EXAMPLES), PIXELS, 512)
    batch = collate([text_only, with_picture], processor.tokenizer.pad_token_id)
    n = len(text_only.labels)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(with_picture.labels))
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all() and (batch["attention_mask"][0, n:] == 0).all()
    assert (batch["input_ids"][0, n:] == processor.tokenizer.pad_token_id).all()
    assert torch.equal(batch["pixel_values"], with_picture.inputs["pixel_values"])


def test_a_sample_whose_picture_does_not_fit_says_so(processors) -> None:
    sample = sample_from_record(TWO_TURNS, EXAMPLES)
    with pytest.raises(SampleError, match="raise max length or lower the picture size"):
        encode_sample(processors["qwen2_vl"], sample, PIXELS, 8)
    cut = encode_sample(processors["qwen2_vl"], sample, PIXELS, 40)  # the first answer survives
    assert len(cut.labels) == 40 and cut.answer_tokens > 0


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "internvl", "llava"])
def test_lora_targets_are_language_model_layers_only(tiny_models, family: str) -> None:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_models[family]))
    targets = language_model_targets(model, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"])
    layers = model.config.get_text_config().num_hidden_layers
    assert len(targets) == 7 * layers
    assert all(".language_model." in name for name in targets)
    vision_linear = [name for name, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and "language_model" not in name and name != "lm_head"]
    assert vision_linear and not set(vision_linear) & set(targets)
