"""Picture features kept between scorings of a job's checkpoints (backend/inference/picture_memo.py):
reused only while nothing that makes them trains, and the replies are the ones computed afresh."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from backend.data import read_bundled_sample
from backend.evaluation.scoring import score
from backend.inference.picture_memo import PictureMemo, picture_encoders
from backend.inference.transformers_engine import TransformersEngine
from tests.conftest import TINY_MODELS, load_tiny

QUESTIONS = [r for r in read_bundled_sample().records if r.task == "sivqa"][:4]


def engine_with_lora(tiny_models, name: str, target: str) -> TransformersEngine:
    """An engine around the model as a job trains it: everything frozen but a LoRA on `target`."""
    loaded = load_tiny(tiny_models, name)
    loaded.model.requires_grad_(False)
    torch.manual_seed(0)
    loaded.model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=target, init_lora_weights=False))
    return TransformersEngine(loaded)


def replies(engine: TransformersEngine) -> list[str]:
    return [q.reply for q in score(engine, QUESTIONS, batch_size=2).questions]


# BLIP-2's generate runs its vision model directly, not through get_image_features: nothing to keep
@pytest.mark.parametrize("name", [n for n in TINY_MODELS if n not in ("blip_2", "internvl2")])
def test_a_language_model_lora_reuses_the_features_and_answers_the_same(tiny_models, name):
    engine = engine_with_lora(tiny_models, name, r".*(language_model|text_model).*\.(q_proj|v_proj)")
    fresh = replies(engine)
    memo = PictureMemo(2**30)
    with memo.serving(engine.loaded.model) as applies:
        first, second = replies(engine), replies(engine)
    assert applies
    assert (memo.misses, memo.hits) == (2, 2)  # two batches: made once, then kept
    assert first == second == fresh


def test_lora_on_the_vision_tower_turns_the_memo_off(tiny_models):
    engine = engine_with_lora(tiny_models, "qwen2_vl", r".*visual.*qkv")
    memo = PictureMemo(2**30)
    with memo.serving(engine.loaded.model) as applies:
        replies(engine)
        replies(engine)
    assert not applies and memo.hits == memo.misses == 0


def test_other_pictures_are_computed_and_the_method_is_the_class_s_again_after(tiny_models):
    engine = engine_with_lora(tiny_models, "qwen2_vl", r".*language_model.*q_proj")
    memo = PictureMemo(2**30)
    model = engine.loaded.model
    with memo.serving(model):
        replies(engine)
        score(engine, [QUESTIONS[1], QUESTIONS[0]], batch_size=2)  # the same photos, another batch
    assert memo.hits == 0 and memo.misses == 3
    (encoder,) = picture_encoders(model)
    assert "get_image_features" not in vars(encoder)


def test_a_budget_too_small_keeps_nothing_and_changes_nothing(tiny_models):
    engine = engine_with_lora(tiny_models, "qwen2_vl", r".*language_model.*q_proj")
    fresh = replies(engine)
    memo = PictureMemo(1024)
    with memo.serving(engine.loaded.model):
        assert replies(engine) == fresh and replies(engine) == fresh
    assert memo.hits == 0 and memo.used == 0
