"""The GPU memory a LoRA job needs, estimated before it starts (backend/training/memory.py), and the
refusal at Start of a job that cannot fit, with what to change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.models import families
from backend.training.memory import (
    GB,
    HEADROOM,
    estimate,
    memory_shortfall,
    picker_rows,
    shape_of,
    start_shortfall,
)
from backend.training.spec import preset

BENCH = Path(__file__).resolve().parents[1] / "bench"


def published(config) -> object:
    from transformers import AutoConfig

    values = config()
    return AutoConfig.for_model(values.pop("model_type"), **values)


@pytest.mark.parametrize("config, recorded", [
    (families.qwen2_vl_2b_config, "results-train-speed-h100.json"),
    (families.qwen3_vl_2b_config, "results-family-qwen3_vl-h100.json"),
    (families.internvl3_5_2b_config, "results-family-internvl-h100.json"),
    (families.qwen3_5_2b_config, "results-family-qwen3_5-h100.json"),
])
def test_the_estimate_is_within_25_percent_of_the_recorded_peaks(config, recorded):
    """bench/'s recorded H100 runs (2026-12-07 and -08): our program with and without gradient checkpointing
    (packed rows; Qwen3.5: padded batches), at the bench data's mean sample length."""
    recorded = json.loads((BENCH / recorded).read_text())
    counts, results = recorded["counts"], recorded["results"]
    per_sample = round(counts["tokens"] / counts["samples"])
    spec = preset("2b-gpu", model="-", data_file="-", lora_dropout=0.05)
    shape = shape_of(published(config), spec.target_modules)
    assert shape.lora_per_rank * spec.lora_r == recorded["params"]["lora"]  # the LoRA weights the run had
    runs = [(label, "gradient checkpointing" in label) for label in results if label.startswith("ours")]
    assert {checkpointing for _, checkpointing in runs} == {True, False}
    for label, checkpointing in runs:
        measured = results[label]["peak_gb"]
        got = estimate(shape, spec.with_changes(gradient_checkpointing=checkpointing), "padded" not in label,
                       counts["samples"], per_sample).total / GB
        assert abs(got - measured) <= 0.25 * measured, (label, got, measured)


def test_qwen3_5s_linear_attention_layers_count_in_the_lora_weights():
    """Qwen3.5-2B: all-linear reaches in_proj_qkv/z/b/a and out_proj of 18 linear-attention layers; the
    Llama-shaped list would be refused before anything is counted."""
    from backend.training.errors import TrainingError

    config = published(families.qwen3_5_2b_config)
    every = shape_of(config, ["all-linear"])
    mlp_only = shape_of(config, ["gate_proj", "up_proj", "down_proj"])
    text = config.text_config
    linear_attention = (2 * 16 * 128 + 16 * 128) + 16 * 128 + 2 * 16 + 16 * 128  # in_proj_qkv, z, b, a; out_proj
    assert every.lora_per_rank - mlp_only.lora_per_rank > 18 * (text.hidden_size * 4 + linear_attention)
    with pytest.raises(TrainingError) as refused:
        shape_of(config, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert refused.value.problem.key == "targets_miss_layers" and "in_proj_qkv" in str(refused.value)


def test_a_linear_attention_layers_trace_is_what_it_keeps_on_real_tensors():
    """The meta-device trace that memory.py counts Qwen3.5's Gated DeltaNet layers by, against the same
    layer run on real tensors on the CPU (transformers' PyTorch version of the layer, as on a GPU without
    flash-linear-attention): the same bytes kept for the backward pass."""
    import torch
    from transformers import AutoModelForImageTextToText

    from backend.training.memory import traced_bytes_per_token

    values = families.qwen3_5_2b_config()
    values["text_config"].update(hidden_size=256, intermediate_size=512, num_hidden_layers=1, vocab_size=512,
                                 linear_num_key_heads=4, linear_num_value_heads=8, linear_key_head_dim=32,
                                 linear_value_head_dim=32, layer_types=["linear_attention"])
    values["vision_config"].update(depth=1, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=256)
    config = published(lambda: values)
    with torch.device("meta"):
        on_meta = AutoModelForImageTextToText.from_config(config).model.language_model.layers[0]
    real = AutoModelForImageTextToText.from_config(config).model.language_model.layers[0].to(torch.bfloat16)
    real.requires_grad_(False)
    tokens = 200  # not a whole number of the layer's 64-token chunks: padding included
    weights = {parameter.data_ptr() for parameter in real.parameters()}
    kept = {}

    def count(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept.setdefault(storage.data_ptr(), storage.nbytes())
        return tensor

    states = torch.randn(1, tokens, 256, dtype=torch.bfloat16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        real(states, position_embeddings=None, attention_mask=None, position_ids=torch.arange(tokens)[None])
    traced = traced_bytes_per_token(on_meta, 256, tokens)
    assert traced == sum(kept.values()) / tokens
    counted_linear_outputs = 2 * sum(m.out_features for m in real.modules() if isinstance(m, torch.nn.Linear))
    assert traced > 2 * counted_linear_outputs  # fp32 copies and chunk states: far more than counting gives


def test_checkpointing_batch_and_picture_size_move_the_estimate_the_way_they_should():
    shape = shape_of(published(families.qwen3_vl_2b_config), ["all-linear"])
    spec = preset("2b-gpu", model="-", data_file="-", gradient_checkpointing=False, pack_tokens=10**6)
    base = estimate(shape, spec, packed=True, samples=256)
    assert estimate(shape, spec.with_changes(gradient_checkpointing=True), True, 256).activations < base.activations / 5
    assert estimate(shape, spec.with_changes(batch_size=2), True, 256).activations < base.activations
    assert estimate(shape, spec.with_changes(max_image_pixels=448 * 448), True, 256).tokens < base.tokens
    assert base.weights == shape.params * 2 and base.lora == shape.lora_per_rank * spec.lora_r * 16
    # padded batches compute logits over the whole vocabulary at every position; packed rows for answers only
    per_sample_padded = estimate(shape, spec, packed=False).logits / spec.batch_size
    assert per_sample_padded > 5 * base.logits / (spec.batch_size * spec.grad_accum)


def test_the_picker_lists_every_family_with_the_estimates_of_the_benchmarked_sizes():
    rows = picker_rows()
    assert {row.family for row in rows} == {f.label for f in families.FAMILIES.values()}
    estimated = {row.hub_id: row for row in rows if row.with_checkpointing_gb}
    assert {"Qwen/Qwen3-VL-2B-Instruct", "OpenGVLab/InternVL3_5-2B-HF", "Qwen/Qwen3.5-2B"} <= set(estimated)
    for row in estimated.values():
        assert 4 < row.with_checkpointing_gb < row.without_checkpointing_gb < 120, row


def test_a_job_that_cannot_fit_is_refused_at_start_with_what_to_change(tiny_models, tmp_path):
    from ui.problems import say

    data = tmp_path / "samples.json"
    data.write_text(json.dumps([{"id": str(i)} for i in range(8)]))
    spec = preset("2b-gpu", model=str(tiny_models["qwen3_vl"]), data_file=str(data), gradient_checkpointing=False)
    assert start_shortfall(spec.with_changes(device="cpu"), ["0"], {"0": 1}) is None  # a CPU job: no GPU to fit
    assert start_shortfall(spec, [], {}) is None  # no GPU seen: gpu_shortfall says so, not this
    # a spec with its own problems is the job store's to refuse; a hub id is read when its job starts
    assert start_shortfall(spec.with_changes(data_file=str(tmp_path / "none.json")), ["0"], {"0": 1}) is None
    assert start_shortfall(spec.with_changes(model="Qwen/Qwen3-VL-2B-Instruct"), ["0"], {"0": 1}) is None
    assert start_shortfall(spec, ["0"], {"0": 80_000}) is None  # a tiny model fits an 80 GB card
    from backend.training.memory import job_estimate

    needed = job_estimate(spec).total * HEADROOM
    with_checkpointing = job_estimate(spec.with_changes(gradient_checkpointing=True)).total * HEADROOM
    assert with_checkpointing < needed
    between = (needed + with_checkpointing) / 2
    refused = memory_shortfall(spec, between)
    assert refused.key == "memory_shortfall" and refused.values["change"].key == "memory_change_checkpointing"
    assert "turn gradient checkpointing on" in refused and "more than the" in refused
    assert "梯度检查点" in say(refused, "zh")
    nothing_fits = memory_shortfall(spec, 1)
    assert nothing_fits.values["change"].key == "memory_change_model"


def test_targets_that_match_nothing_are_a_sentence_at_start(tiny_models, tmp_path):
    from backend.training.errors import TrainingError

    (tmp_path / "x.json").write_text("[]")
    spec = preset("2b-gpu", model=str(tiny_models["qwen2_vl"]), data_file=str(tmp_path / "x.json"),
                  target_modules=["qkv_proj"])
    for device in ("cuda", "cpu"):
        with pytest.raises(TrainingError) as refused:
            start_shortfall(spec.with_changes(device=device), ["0"], {"0": 80_000})
        assert refused.value.problem.key == "targets_not_linear" and "qkv_proj" in str(refused.value)


QWEN2_5_VL_7B_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                          num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)


def test_a_7b_that_does_not_fit_a_16_gb_card_is_offered_qlora_where_it_can_run(tmp_path):
    """Qwen2.5-VL-7B's shape (config.json only: the estimate reads nothing else): in bf16 it needs more
    than 16 GB whatever the batch; with QLoRA its linear layers take a quarter and the embedding table
    none, so QLoRA is the change offered, where a GPU and bitsandbytes are there to run it."""
    from transformers import Qwen2_5_VLConfig

    from ui.problems import say

    config = Qwen2_5_VLConfig(text_config=QWEN2_5_VL_7B_TEXT, vision_config=dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584))
    config.save_pretrained(tmp_path / "7b")
    data = tmp_path / "samples.json"
    data.write_text(json.dumps([{"id": str(i)} for i in range(48)]))
    spec = preset("2b-gpu", model=str(tmp_path / "7b"), data_file=str(data), lora_r=16, lora_alpha=32)
    card = 16 * 2**30

    from backend.training.memory import job_estimate

    bf16, qlora = job_estimate(spec), job_estimate(spec.with_changes(qlora=True))
    assert bf16.weights > 16e9 and qlora.weights < 0.4 * bf16.weights
    assert memory_shortfall(spec, card, qlora_possible=False).values["change"].key != "memory_change_qlora"
    offered = memory_shortfall(spec, card, qlora_possible=True)
    assert offered.values["change"].key == "memory_change_qlora", offered
    assert "QLoRA" in say(offered, "zh")
    assert memory_shortfall(spec.with_changes(qlora=True), card) is None


def test_the_qlora_estimate_is_within_25_percent_of_the_recorded_peaks():
    """bench/results-qlora-h100.json: our bf16 LoRA and our QLoRA on Qwen2.5-VL-7B's shape, batch 4, at the
    bench data's mean sample length (H100, 2026-12-07)."""
    import sys

    sys.path.insert(0, str(BENCH))
    from bench_qlora import QWEN2_5_VL_7B
    from transformers import Qwen2_5_VLConfig

    recorded = json.loads((BENCH / "results-qlora-h100.json").read_text())["results"]
    config = Qwen2_5_VLConfig(text_config=QWEN2_5_VL_7B["text"], vision_config=QWEN2_5_VL_7B["vision"])
    spec = preset("7b-qlora-24gb", model="-", data_file="-", batch_size=4, grad_accum=1)
    shape = shape_of(config, spec.target_modules)
    for label, qlora in (("ours, bf16 LoRA", False), ("ours, QLoRA", True)):
        counts, measured = recorded[label]["counts"], recorded[label]["peak_gb"]
        got = estimate(shape, spec.with_changes(qlora=qlora), True, counts["samples"] // 2,
                       round(counts["tokens"] / counts["samples"])).total / GB
        assert abs(got - measured) <= 0.25 * measured, (label, got, measured)
