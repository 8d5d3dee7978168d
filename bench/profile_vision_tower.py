"""The frozen vision tower in training's first epoch: transformers' element-wise code against the
fused Triton kernels (backend/training/vision_kernels.py), timed side by side in one run, the
kernels checked against transformers' own functions, and the top GPU kernels of each.

    python3 bench/profile_vision_tower.py             # Qwen2-VL-2B shape, 64 photo samples, a GPU
    python3 bench/profile_vision_tower.py --dry-run   # narrow model on a CPU: checks it runs (no kernels)

Variants, each over the same pictures in groups of 16 (as a first-epoch step sends them), the time
of a second pass (the first meets new shapes):
- "transformers' element-wise code": the tower as the packed path built it before the kernels
  (patch embedding as one product, one varlen attention call per layer);
- "fused kernels": as built now;
- "fused kernels, cuDNN attention per picture": an experiment, the varlen call replaced by one
  SDPA call per picture with only cuDNN's backend allowed;
- "fused kernels, cuDNN attention over the ragged batch": an experiment, the varlen call replaced by
  cuDNN's own varlen form (`aten._cudnn_attention_forward` with the pictures' offsets).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from profile_packed_step import set_up


def check_kernels(visual, device, dtype) -> None:
    """The two kernels on the tower's own shapes against transformers' functions."""
    from transformers.activations import QuickGELUActivation
    from transformers.models.qwen2_vl import modeling_qwen2_vl as qwen

    from backend.training.vision_kernels import quick_gelu, rotate_and_split

    torch.manual_seed(0)
    attn = visual.blocks[0].attn
    tokens, heads = 3000, attn.num_heads
    qkv = torch.randn(tokens, attn.qkv.out_features, device=device, dtype=dtype) * 3
    head_dim = attn.qkv.out_features // (3 * heads)
    angles = torch.rand(tokens, head_dim // 2, device=device) * 50
    emb = torch.cat([angles, angles], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    q, k, v = qkv.reshape(tokens, 3, heads, -1).permute(1, 0, 2, 3).unbind(0)
    want_q, want_k = qwen.apply_rotary_pos_emb_vision(q, k, cos, sin)
    got_q, got_k, got_v = rotate_and_split(qkv, cos, sin, heads)
    same = [(a == b).float().mean().item() for a, b in ((got_q, want_q), (got_k, want_k), (got_v, v))]
    worst = max((a.float() - b.float()).abs().max().item() for a, b in ((got_q, want_q), (got_k, want_k)))
    print(f"rotary + split against transformers: bit-identical q {same[0]:.6f}, k {same[1]:.6f}, v {same[2]:.6f}; "
          f"largest difference {worst:.3g}", flush=True)
    x = torch.randn(tokens, 5120, device=device, dtype=dtype) * 4
    want = QuickGELUActivation()(x)
    got = quick_gelu(x.clone())
    ulp = ((got.float() - want.float()).abs() / want.float().abs().clamp_min(1e-30)).max().item()
    print(f"QuickGELU against transformers: bit-identical {(got == want).float().mean().item():.6f}; "
          f"largest relative difference {ulp:.3g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--kernels", type=int, default=12, help="rows of each kernel table (0: none)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    from backend.training import flash_varlen, packed, vision_kernels

    device, dtype, _, model, _, dataset = set_up("profile-vision-", args.samples, args.dry_run)
    encoded = [dataset[i] for i in range(len(dataset))]
    visual = packed._inner(model).visual
    on_gpu = device.type == "cuda"
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    groups = [encoded[i:i + 16] for i in range(0, len(encoded), 16)]
    inputs = [(torch.cat([e.inputs["pixel_values"] for e in g]).to(device, dtype),
               torch.cat([e.inputs["image_grid_thw"] for e in g])) for g in groups]
    patches = sum(int(grid.prod(-1).sum()) for _, grid in inputs)
    print(f"{len(encoded)} pictures, {patches / len(encoded):.0f} patches each on average", flush=True)
    if on_gpu and vision_kernels.triton is not None:
        check_kernels(visual, device, dtype)

    @torch.no_grad()
    def run() -> torch.Tensor:
        inner = packed._inner(model)
        return torch.cat([packed._image_features(inner, pixels, grid, device) for pixels, grid in inputs])

    def timed(label: str) -> torch.Tensor:
        run()  # new shapes (cuDNN and cuBLAS plans, Triton's first launches)
        sync()
        t0 = time.perf_counter()
        features = run()
        sync()
        print(f"{label}: {(time.perf_counter() - t0) / len(encoded) * 1e3:.2f} ms per picture", flush=True)
        if args.kernels and on_gpu:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                run()
                sync()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.kernels,
                                            max_name_column_width=80), flush=True)
        return features.float()

    fused = any(isinstance(b.mlp.act, vision_kernels.FusedQuickGELU) for b in visual.blocks)
    vision_kernels.undo_fused_vision_kernels(visual)
    reference = timed("transformers' element-wise code")
    if not fused:
        print("(no fused kernels here: no GPU, Triton or varlen kernel)")
        return
    vision_kernels.use_fused_vision_kernels(visual)
    ours = timed("fused kernels")
    print(f"  relative difference of the features: {((ours - reference).norm() / reference.norm()).item():.2e}",
          flush=True)

    from torch.nn.attention import SDPBackend, sdpa_kernel

    def per_picture(query, key, value, cu_seqlens, longest, scaling):
        bounds = cu_seqlens.tolist()
        parts = [torch.nn.functional.scaled_dot_product_attention(
            *(t[a:b].transpose(0, 1)[None] for t in (query, key, value)), scale=scaling)[0].transpose(0, 1)
            for a, b in itertools.pairwise(bounds)]
        return torch.cat(parts)

    def cudnn_ragged(query, key, value, cu_seqlens, longest, scaling):
        return torch.ops.aten._cudnn_attention_forward(query, key, value, None, cu_seqlens, cu_seqlens, longest,
                                                       longest, False, 0.0, False, False, scale=scaling)[0]

    def experiment(label: str, attention, context) -> None:
        """The tower with its varlen attention call replaced by `attention` (an experiment: a failure
        is printed, not raised)."""
        varlen = flash_varlen.full_varlen_attention
        flash_varlen.full_varlen_attention = attention
        try:
            with context:
                features = timed(label)
            print(f"  relative difference of the features: "
                  f"{((features - reference).norm() / reference.norm()).item():.2e}", flush=True)
        except Exception as error:
            print(f"{label} failed: {type(error).__name__}: {str(error)[:500]}", flush=True)
        finally:
            flash_varlen.full_varlen_attention = varlen

    experiment("fused kernels, cuDNN attention per picture", per_picture, sdpa_kernel([SDPBackend.CUDNN_ATTENTION]))
    experiment("fused kernels, cuDNN attention over the ragged batch (one call per layer)", cudnn_ragged,
               contextlib.nullcontext())

if __name__ == "__main__":
    main()
