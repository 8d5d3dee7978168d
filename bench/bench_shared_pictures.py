"""Training's first epoch on data that asks several questions about each photo, as FoodieQA does
(389 photos behind its 256 single-image and ~403 four-photo questions): the frozen parts prepared
for every sample, with each photo's embeddings computed once and shared (ours), against once per
sample that shows it (the baseline: the same code with the photos left unnamed, as before), side
by side in one run.

    python3 bench/bench_shared_pictures.py              # Qwen2-VL-2B shape on a GPU, 256 samples, 4 per photo
    python3 bench/bench_shared_pictures.py --dry-run    # narrow model on a CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from profile_packed_step import set_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--per-photo", type=int, default=4, help="questions asked about each photo")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    from backend.training import packed
    from backend.training.encoding import SampleDataset

    device, dtype, spec, model, processor, dataset = set_up("bench-shared-", args.samples, args.dry_run)
    model.train()
    # Sample i shows the photo of sample i - i % per_photo: its question and answer stay its own.
    samples = [dataclasses.replace(s, images=dataset.samples[i - i % args.per_photo].images)
               for i, s in enumerate(dataset.samples)]
    shared = SampleDataset(samples, processor, spec.max_image_pixels, spec.max_length)
    encoded = [shared[i].with_pixels_as(dtype) for i in range(len(shared))]
    unnamed = [dataclasses.replace(e, pictures=()) for e in encoded]
    photos = len({e.pictures for e in encoded})
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"{len(encoded)} samples showing {photos} photos", flush=True)

    passes = []  # pictures per call of the vision tower
    packed._inner(model).visual.register_forward_hook(
        lambda module, args, kwargs, out: passes.append(len(kwargs["grid_thw"])), with_kwargs=True)

    def first_epoch(items) -> tuple[float, int, list]:
        cache = packed.PackedCache(64 * 2**30)
        passes.clear()
        sync()
        start = time.perf_counter()
        prepared = [p for i in range(0, len(items), 16)  # a step's 16 samples at a time, as training does
                    for p in packed.prepare(model, items[i:i + 16], device, dtype, cache)]
        sync()
        return time.perf_counter() - start, sum(passes), prepared

    first_epoch(unnamed[:16])  # warm-up: first use of the kernels
    baseline_s, baseline_passes, as_before = first_epoch(unnamed)
    ours_s, our_passes, as_now = first_epoch(encoded)
    rows = [("each sample's photo through the tower (baseline)", baseline_s, baseline_passes),
            ("each photo once, shared (ours)", ours_s, our_passes)]
    print("\n| preparing a first epoch | seconds | ms per sample | passes through the vision tower |")
    print("|---|---:|---:|---:|")
    for label, seconds, count in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / len(encoded) * 1e3:.1f} | {count} |")
    difference = max((a - b).abs().max().item() for x, y in zip(as_before, as_now)
                      for a, b in zip(x.pictures, y.pictures, strict=True))
    print(f"\nspeed-up {baseline_s / ours_s:.2f}x; largest difference between the two ways' picture embeddings "
          f"{difference:.3g} (batches of different pictures through the tower)")


if __name__ == "__main__":
    main()
