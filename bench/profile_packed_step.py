"""Where a packed training step's time goes, on a GPU: the attention kernel (one flash-attention
varlen call per layer, or one SDPA call per sample) and the row size (tokens per forward/backward),
with peak memory for each, and the top GPU kernels of one step. A tool for tuning the defaults in
backend/training/spec.py (pack_tokens) and packed.py; bench_train_speed.py is the benchmark.

    python3 bench/profile_packed_step.py                 # Qwen2-VL-2B shape, 64 photo samples
    python3 bench/profile_packed_step.py --dry-run       # narrow model on a CPU, to check it runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_train_speed import spec_for
from bench_training import SHAPE_2B, SHAPE_DRY, build_2b_shape, make_photo_samples


def set_up(prefix: str, samples: int, dry_run: bool, **changes):
    """The 2B-shaped model built as the training program builds it (with `changes` to the spec) and
    photo samples for it: (device, dtype, spec, model, processor, dataset)."""
    from backend.training.encoding import SampleDataset
    from backend.training.model import build_model
    from backend.training.samples import read_samples

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model_dir = build_2b_shape(workdir / "model", SHAPE_DRY if dry_run else SHAPE_2B)
    data = make_photo_samples(workdir / "photos", count=8 if dry_run else samples)
    spec = spec_for(model_dir, data, workdir / "out", 1, dry_run, **changes)
    model, processor, _, _ = build_model(spec, device, dtype)
    records, _ = read_samples(Path(spec.data_file), spec.images_dir)
    return device, dtype, spec, model, processor, SampleDataset(records, processor, spec.max_image_pixels,
                                                                spec.max_length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--rows", default="2700,5500,11000,16500", help="tokens per packed row to try")
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--prepare-only", action="store_true", help="time decoding and the vision tower, then stop")
    args = parser.parse_args()
    from backend.training import flash_varlen, packed

    device, dtype, _, model, processor, dataset = set_up("profile-packed-", args.samples, args.dry_run)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    t0 = time.perf_counter()
    encoded = [dataset[i] for i in range(len(dataset))]
    torch.set_num_threads(threads)
    print(f"decoding + processor, one process: {(time.perf_counter() - t0) / len(encoded) * 1e3:.1f} ms per sample "
          f"({type(processor.image_processor).__name__})", flush=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    packed.prepare(model, encoded[:16], device, dtype)  # warm-up
    sync()
    t0 = time.perf_counter()
    prepared = [p for i in range(0, len(encoded), 16) for p in packed.prepare(model, encoded[i:i + 16], device, dtype)]
    sync()
    prepare_ms = (time.perf_counter() - t0) / len(prepared) * 1e3
    def vision_tower() -> tuple[float, torch.Tensor]:
        """ms per picture, and the first group's features."""
        features = []
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(encoded), 16):
                group = encoded[i:i + 16]
                features.append(packed._image_features(
                    packed._inner(model), torch.cat([e.inputs["pixel_values"] for e in group]).to(device, dtype),
                    torch.cat([e.inputs["image_grid_thw"] for e in group]), device))
        sync()
        return (time.perf_counter() - t0) / len(encoded) * 1e3, features[0].float()

    ours_ms, ours = vision_tower()
    print(f"varlen kernel available: {flash_varlen.VARLEN_ATTENTION} {flash_varlen._VARLEN_CAUSAL}; "
          f"prepare (vision tower + positions): {prepare_ms:.1f} ms per sample, of which the vision tower "
          f"{ours_ms:.1f} ms; mean {sum(p.length for p in prepared) / len(prepared):.0f} tokens per sample", flush=True)
    # The vision tower as transformers runs it (Conv3d patch embedding, one SDPA call per picture):
    # first pass over these shapes, then a second one.
    visual = packed._inner(model).visual
    vars(visual.patch_embed).pop("forward", None)
    visual.config._attn_implementation = "sdpa"
    first_ms, plain = vision_tower()
    again_ms, _ = vision_tower()
    print(f"vision tower as transformers runs it: {first_ms:.1f} ms per picture on new shapes, {again_ms:.1f} ms "
          f"on seen ones; ours vs it: relative difference {((ours - plain).norm() / plain.norm()).item():.2e}",
          flush=True)
    if args.prepare_only:
        return
    loss_module = packed.PackedLoss(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(row) -> float:
        with autocast:
            loss = loss_module(row)
        loss.backward()
        return loss.item()

    # Same row, both kernels: the losses and gradients must agree (LoRA dropout off for this).
    row = packed.pack(prepared[:4])
    results = {}
    model.eval()
    for varlen in ([True, False] if flash_varlen.VARLEN_ATTENTION else [False]):
        flash_varlen.VARLEN_ATTENTION = varlen
        model.zero_grad(set_to_none=True)
        loss = step(row)
        grad = torch.cat([p.grad.float().flatten() for p in trainable])
        results[varlen] = (loss, grad)
    model.train()
    if len(results) == 2:
        (l1, g1), (l2, g2) = results[True], results[False]
        print(f"varlen vs SDPA loop, same row: loss {l1:.5f} vs {l2:.5f}; gradient relative difference "
              f"{((g1 - g2).norm() / g2.norm()).item():.2e}", flush=True)

    for varlen in ([True, False] if len(results) == 2 else [False]):
        flash_varlen.VARLEN_ATTENTION = varlen
        for max_tokens in [int(x) for x in args.rows.split(",")]:
            rows = [packed.pack(r) for r in packed.split_rows(prepared, max_tokens)]
            rows = [r for r in rows if r.bounds[-1] > max_tokens * 0.7] or rows  # full rows only
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            step(rows[0])  # warm-up
            sync()
            t0, done, tokens = time.perf_counter(), 0, 0
            for i in range(args.iters):
                r = rows[(i + 1) % len(rows)]
                model.zero_grad(set_to_none=True)
                step(r)
                done += r.samples
                tokens += r.bounds[-1]
            sync()
            dt = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else float("nan")
            print(f"{'varlen' if varlen else 'SDPA loop'} rows of <= {max_tokens} tokens: "
                  f"{done / dt:.1f} samples/s, {tokens / dt:.0f} tokens/s (forward+backward only), "
                  f"peak {peak:.1f} GB", flush=True)

    if device.type == "cuda":
        flash_varlen.VARLEN_ATTENTION = len(results) == 2
        rows = [packed.pack(r) for r in packed.split_rows(prepared, 11000)]
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for r in rows[:2]:
                model.zero_grad(set_to_none=True)
                step(r)
            sync()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main()
