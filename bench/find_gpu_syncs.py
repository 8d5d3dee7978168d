"""Where a training job makes the CPU wait for the GPU: our train() on a Qwen2-VL-2B-shaped model
and photo samples (as bench_train_speed.py builds them), with torch's CUDA sync debug mode on, and
every synchronising call counted by the line that made it.

A sync is not wrong in itself, but each one stops the CPU from queueing work ahead of the GPU: in a
step whose forward pass is bound by the CPU handing kernels over, the GPU then idles until the CPU
catches up. A tool for finding them, not a benchmark.

    python3 bench/find_gpu_syncs.py                 # one H200: 32 samples, 2 epochs
    python3 bench/find_gpu_syncs.py --dry-run       # on a CPU, to check it runs (finds nothing there)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_train_speed import run_ours, spec_for
from bench_training import SHAPE_2B, SHAPE_DRY, build_2b_shape, make_photo_samples

ROOT = Path(__file__).resolve().parents[1]


def where(stack: list[traceback.FrameSummary]) -> tuple[str, str]:
    """(the innermost line of our own code, the innermost line of any code) that made the call."""
    def label(frame):
        path = Path(frame.filename)
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else Path(*path.parts[-2:])
        return f"{shown}:{frame.lineno} {frame.name}"

    ours = next((f for f in reversed(stack) if Path(f.filename).is_relative_to(ROOT / "backend")), None)
    return (label(ours) if ours else "(not in backend/)"), label(stack[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="find-gpu-syncs-"))
    model_dir = build_2b_shape(workdir / "model", SHAPE_DRY if args.dry_run else SHAPE_2B)
    data = make_photo_samples(workdir / "photos", count=16 if args.dry_run else args.samples)
    spec = spec_for(model_dir, data, workdir / "job", args.epochs, args.dry_run, data_workers=0)

    found: Counter = Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchronizing" in str(message).lower():
            found[where(traceback.extract_stack()[:-1])] += 1

    warnings.showwarning = record
    warnings.simplefilter("always")
    if torch.cuda.is_available():
        torch.cuda.set_sync_debug_mode("warn")
    run = run_ours(spec)
    if torch.cuda.is_available():
        torch.cuda.set_sync_debug_mode("default")
    print(f"{sum(found.values())} synchronising calls in {run['steps']} steps ({args.epochs} epochs), by where:")
    for (ours, inner), count in found.most_common(args.top):
        print(f"  {count:5d}  {ours}  <-  {inner}")


if __name__ == "__main__":
    main()
