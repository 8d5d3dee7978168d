"""The Triton kernels of the training path, against the PyTorch and transformers code they replace.

They run only where a CUDA GPU and Triton are (the device machine: `python3 -m pytest
tests/test_gpu_kernels.py`); CI's CPU box skips them and tests the CPU fallbacks instead.
"""

from __future__ import annotations

import pytest
import torch

from backend.training import vision_kernels

gpu = pytest.mark.skipif(not torch.cuda.is_available() or vision_kernels.triton is None,
                         reason="needs a CUDA GPU and Triton")


@gpu
def test_rotary_and_split_equal_transformers_bit_for_bit():
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

    torch.manual_seed(0)
    tokens, heads, head_dim = 1037, 16, 80  # Qwen2-VL's tower: 16 heads of 80; an odd token count
    qkv = torch.randn(tokens, 3 * heads * head_dim, device="cuda", dtype=torch.bfloat16) * 3
    angles = torch.rand(tokens, head_dim // 2, device="cuda") * 60
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    q, k, v = qkv.reshape(tokens, 3, heads, head_dim).permute(1, 0, 2, 3).unbind(0)
    want_q, want_k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    got_q, got_k, got_v = vision_kernels.rotate_and_split(qkv, cos, sin, heads)
    assert torch.equal(got_q, want_q) and torch.equal(got_k, want_k) and torch.equal(got_v, v)
    assert got_q.is_contiguous() and got_v.is_contiguous()


@gpu
def test_quick_gelu_equals_transformers_bit_for_bit():
    from transformers.activations import QuickGELUActivation

    x = torch.randn(333, 5120, device="cuda", dtype=torch.bfloat16) * 5
    assert torch.equal(vision_kernels.quick_gelu(x.clone()), QuickGELUActivation()(x))


@gpu
def test_fused_vision_tower_gives_transformers_features(tmp_path):
    """A tiny Qwen2-VL tower with the fused kernels against the same tower without them."""
    from transformers import AutoModelForImageTextToText

    from backend.models.tiny import build_tiny_model
    from backend.training import packed

    folder = build_tiny_model("qwen2_vl", tmp_path / "tiny")
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.bfloat16).cuda().eval()
    packed.speed_up_vision_tower(model, on_cuda=True)
    visual = model.model.visual
    assert any(isinstance(b.mlp.act, vision_kernels.FusedQuickGELU) for b in visual.blocks)
    grid = torch.tensor([[1, 8, 12], [1, 6, 6]])
    patch = visual.config.in_channels * visual.config.temporal_patch_size * visual.config.patch_size ** 2
    pixels = torch.randn(int(grid.prod(-1).sum()), patch, device="cuda", dtype=torch.bfloat16)
    cuda = torch.device("cuda")
    with torch.no_grad():
        fused = packed._image_features(model.model, pixels, grid, cuda)
        vision_kernels.undo_fused_vision_kernels(visual)
        plain = packed._image_features(model.model, pixels, grid, cuda)
        # transformers' own way: the grid on the GPU, positions and bounds worked out there
        own = torch.cat(list(
            model.model.get_image_features(pixel_values=pixels, image_grid_thw=grid.cuda()).pooler_output))
    assert packed._tower_inputs(model.model, grid, cuda)  # the precomputed inputs were used
    assert torch.equal(fused, plain)
    assert torch.equal(plain, own)

def test_without_triton_the_tower_keeps_transformers_code(monkeypatch, tiny_models):
    """A CPU-only install keeps transformers' tower code, even where the varlen kernel would be."""
    from transformers import AutoModelForImageTextToText

    from backend.training import flash_varlen

    monkeypatch.setattr(vision_kernels, "triton", None)
    monkeypatch.setattr(flash_varlen, "VARLEN_ATTENTION", True)
    model = AutoModelForImageTextToText.from_pretrained(tiny_models["qwen2_vl"])
    assert vision_kernels.use_fused_vision_kernels(model.model.visual) is False
    assert not any(isinstance(b.mlp.act, vision_kernels.FusedQuickGELU) for b in model.model.visual.blocks)
    assert all("forward" not in vars(b.attn) for b in model.model.visual.blocks)


@gpu
@pytest.mark.parametrize("variant", ["add", "joint", "cast once a step"])
def test_lora_linear_node_matches_peft_under_bf16_autocast(variant: str):
    """On the GPU path (bf16 autocast, torch's fused dropout kernel): the one-node LoRA layer draws
    peft's mask from the same generator state and gives peft's output (bit for bit with the product
    and the add; to bf16 rounding as one product over [x | low], which rounds once where peft
    rounds twice) and gradients, also with A and B cast once a step (LowPrecisionAdapters), whose
    copies a fused AdamW step marks stale."""
    from peft import LoraConfig, get_peft_model

    from backend.training.lora_forward import (
        LowPrecisionAdapters,
        _joint_weight,
        fold_lora_scaling,
        join_frozen_and_adapter_weights,
        keep_lora_inputs_in_model_dtype,
    )

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1536, 8960, bias=True)).cuda().to(torch.bfloat16)
    model = get_peft_model(net, LoraConfig(r=128, lora_alpha=256, lora_dropout=0.05, target_modules=["0"]))
    torch.nn.init.normal_(model.base_model.model[0].lora_B["default"].weight, std=0.02)
    keep_lora_inputs_in_model_dtype(model)
    x = torch.randn(2000, 1536, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad_out = torch.randn(2000, 8960, device="cuda", dtype=torch.bfloat16)
    layer = model.base_model.model[0]

    def run():
        x.grad = None
        layer.lora_A["default"].weight.grad = layer.lora_B["default"].weight.grad = None
        torch.cuda.manual_seed(11)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        out.backward(grad_out)
        return out.detach(), x.grad, layer.lora_A["default"].weight.grad, layer.lora_B["default"].weight.grad

    want = run()
    assert fold_lora_scaling(model) == 1
    adapters = None
    if variant != "add":
        assert join_frozen_and_adapter_weights(model) == 1
    if variant == "cast once a step":
        adapters = LowPrecisionAdapters(model, torch.bfloat16)
        joint = _joint_weight(layer, "default")
        with adapters.step():
            assert adapters.ready(layer, "default", x, joint) is not None
            got = run()
        assert adapters.ready(layer, "default", x, joint) is None  # after the step: the optimizer changes A and B
    else:
        got = run()
    if variant == "add":
        assert torch.equal(got[0], want[0])
    else:
        assert (got[0].float() - want[0].float()).norm() <= 1e-2 * want[0].float().norm()
    for a, b in zip(got[1:], want[1:]):
        assert (a.float() - b.float()).norm() <= 1e-2 * b.float().norm()


@gpu
def test_fused_rotary_matches_transformers_on_mrope_positions(monkeypatch, tiny_models):
    """The language model's rotary embedding through Liger's kernel, on M-RoPE cos/sin as
    transformers 5 builds them (sections merged, halves repeated): same values and gradients to
    bf16 rounding, and the patch lands where the attention calls it."""
    from transformers import AutoConfig
    from transformers.models.qwen2_vl import modeling_qwen2_vl as modeling

    from backend.training.packed import _use_fused_rotary

    original = modeling.apply_rotary_pos_emb
    monkeypatch.setattr(modeling, "apply_rotary_pos_emb", original)  # undone after the test
    text = AutoConfig.from_pretrained(tiny_models["qwen2_vl"]).text_config
    heads, head_dim, tokens = text.num_attention_heads, text.hidden_size // text.num_attention_heads, 777
    rotary = modeling.Qwen2VLRotaryEmbedding(config=text).cuda()
    positions = torch.randint(0, 300, (3, 1, tokens), device="cuda")
    x = torch.randn(1, tokens, text.hidden_size, device="cuda", dtype=torch.bfloat16)
    cos, sin = rotary(x, positions)
    assert torch.equal(cos[..., : head_dim // 2], cos[..., head_dim // 2:])  # what the kernel relies on

    torch.manual_seed(0)
    q_in = torch.randn(1, tokens, heads, head_dim, device="cuda", dtype=torch.bfloat16)
    k_in = torch.randn(1, tokens, 1, head_dim, device="cuda", dtype=torch.bfloat16)
    grads = [torch.randn(1, heads, tokens, head_dim, device="cuda", dtype=torch.bfloat16),
             torch.randn(1, 1, tokens, head_dim, device="cuda", dtype=torch.bfloat16)]

    def run(function):
        q, k = q_in.clone().requires_grad_(), k_in.clone().requires_grad_()
        # as the attention hands them over: (1, heads, tokens, dim) views of projection outputs
        q_out, k_out = function(q.mul(1).transpose(1, 2), k.mul(1).transpose(1, 2), cos, sin)
        torch.autograd.backward([q_out, k_out], grads)
        return q_out.detach().float(), k_out.detach().float(), q.grad.float(), k.grad.float()

    want = run(original)
    assert _use_fused_rotary("qwen2_vl") and modeling.apply_rotary_pos_emb is not original
    got = run(modeling.apply_rotary_pos_emb)
    for a, b in zip(got, want):
        assert (a - b).norm() <= 1e-2 * b.norm(), ((a - b).norm() / b.norm()).item()


@gpu
def test_triton_starts_early_in_a_thread_and_the_tower_kernel_then_runs():
    thread = vision_kernels.start_triton_early(torch.device("cuda", 0))
    assert thread is not None
    thread.join(timeout=120)
    assert not thread.is_alive()
    x = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    expected = x * torch.sigmoid(1.702 * x)
    assert torch.equal(vision_kernels.quick_gelu(x.clone()), expected)


def test_no_early_triton_start_on_a_cpu():
    assert vision_kernels.start_triton_early(torch.device("cpu")) is None


@gpu
@pytest.mark.parametrize("causal", [True, False])
def test_flash_varlen_equals_torchs_varlen_attention_bit_for_bit(causal: bool):
    """flash_varlen calls the kernels torch's varlen_attn calls, without its custom operator: the
    same output bit for bit and the same gradients to the backward kernel's own run-to-run noise
    (the language model's causal grouped-query attention, and a vision tower's both-ways one)."""
    from torch.nn.attention.varlen import varlen_attn

    from backend.training.flash_varlen import _VARLEN_CAUSAL, _VARLEN_FULL, flash_varlen

    torch.manual_seed(0)
    heads, kv_heads, dim = (12, 2, 128) if causal else (16, 16, 80)
    starts = [0, 700, 1333, 2001, 2600]
    cu = torch.tensor(starts, dtype=torch.int32, device="cuda")
    longest = 1024
    q = torch.randn(starts[-1], heads, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(starts[-1], kv_heads, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(starts[-1], kv_heads, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(starts[-1], heads, dim, device="cuda", dtype=torch.bfloat16)

    def run(attend):
        out = attend()
        out.backward(grad)
        grads = [t.grad.clone() for t in (q, k, v)]
        for t in (q, k, v):
            t.grad = None
        return out.detach(), grads

    options = _VARLEN_CAUSAL if causal else _VARLEN_FULL
    want, want_grads = run(lambda: varlen_attn(q, k, v, cu, cu, longest, longest, scale=dim ** -0.5, **options))
    got, got_grads = run(lambda: flash_varlen(q, k, v, cu, longest, dim ** -0.5, causal=causal))
    assert torch.equal(got, want)
    for a, b in zip(got_grads, want_grads):  # the backward kernel sums dq with atomic adds: not bit for bit
        assert (a.float() - b.float()).norm() <= 1e-3 * b.float().norm()
    with torch.no_grad():  # the vision tower's way in: no autograd node
        assert torch.equal(flash_varlen(q, k, v, cu, longest, dim ** -0.5, causal=causal), want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_loaded_sample_pins_only_its_pictures_and_is_prepared_the_same(tiny_models):
    """The loader pins the pictures' patches only (pinning the small tensors too only grew the pool of
    page-locked blocks); the token ids then reach the GPU from pageable memory, with the same result."""
    from backend.training.encoding import SampleDataset
    from backend.training.packed import prepare
    from backend.training.samples import sample_from_record
    from tests.test_training_packed import EXAMPLES, MAX_LENGTH, PIXELS, RECORDS, lora_model

    model, processor = lora_model(tiny_models["qwen2_vl"])
    model.to("cuda", torch.bfloat16)
    samples = [sample_from_record(record, EXAMPLES) for record in RECORDS]
    encoded = [SampleDataset(samples, processor, PIXELS, MAX_LENGTH)[i].with_pixels_as(torch.bfloat16)
               for i in range(len(samples))]
    pinned = [e.pin_memory() for e in encoded]
    for e in pinned:
        assert not e.labels.is_pinned() and not e.inputs["input_ids"].is_pinned()
        assert "pixel_values" not in e.inputs or e.inputs["pixel_values"].is_pinned()
    assert pinned[-1] is encoded[-1]  # the text-only sample: nothing to pin
    cuda = torch.device("cuda")
    for want, got in zip(prepare(model, encoded, cuda, torch.bfloat16), prepare(model, pinned, cuda, torch.bfloat16),
                         strict=True):
        assert torch.equal(want.input_ids, got.input_ids) and torch.equal(want.targets, got.targets)
        assert torch.equal(want.positions, got.positions)
        assert all(torch.equal(a, b) for a, b in zip(want.pictures, got.pictures, strict=True))
