"""Training on several GPUs of one machine: the same job on 1 GPU and on N GPUs (torchrun, DDP), run
as the app's worker runs it (python -m backend.training.lora spec.json), one after the other.

    python3 bench/bench_train_scaling.py --gpus 2           # a machine with 2 GPUs
    python3 bench/bench_train_scaling.py --dry-run          # narrow model, 2 CPU processes

Model and data as in bench_train_speed.py (Qwen2-VL-2B shape, 256 photo samples, 3 epochs). The
spec is the same for both runs: each GPU takes batch 4 x accumulation 4 per step, so N GPUs make an
effective batch N times larger and an epoch N times fewer steps; samples/s is counted over the same
256 x 3 samples. Time is the training program's own elapsed time (from after the model is loaded to
the last step), read from its metrics; the rate after the first epoch (every picture cached,
start-up behind) is printed beside it, with the first step and the whole process's time (start-up
and loading included, so that work moved off the training clock into the loading would show).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_speed import run_program, spec_for
from bench_training import SHAPE_2B, SHAPE_DRY, build_2b_shape, make_photo_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="a narrow model and 16 samples on CPU processes")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-train-scaling-"))
    model_dir = build_2b_shape(workdir / "model", SHAPE_DRY if args.dry_run else SHAPE_2B)
    count = 16 if args.dry_run else args.samples
    data = make_photo_samples(workdir / "photos", count=count)
    # Untimed: a short job first, so that Triton's on-disk kernel cache (Liger's kernels) is filled
    # for both timed runs, not by the first of them.
    warm = make_photo_samples(workdir / "warm-up", count=8, seed=1)
    run_program(spec_for(model_dir, warm, workdir / "warm-up-job", 1, args.dry_run,
                         **({"device": "cpu"} if args.dry_run else {"gpus": 1})), 1, args.dry_run)
    results = {}
    for processes in (1, args.gpus):
        spec = spec_for(model_dir, data, workdir / f"on-{processes}", args.epochs, args.dry_run,
                        gradient_checkpointing=args.gradient_checkpointing,
                        **({"device": "cpu"} if args.dry_run else {"gpus": processes}))
        results[processes] = run_program(spec, processes, args.dry_run)
        results[processes]["samples_per_s"] = count * args.epochs / results[processes]["seconds"]
    print(f"\n{count} samples x {args.epochs} epochs, gradient checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}\n")
    print("| GPUs | steps | time (training) | first step | samples/s | samples/s after epoch 1 | final loss "
          "| whole process |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for processes, run in results.items():
        print(f"| {processes} | {run['steps']} | {run['seconds']:.1f} s | {run['step_seconds'][0]:.2f} s | "
              f"{run['samples_per_s']:.2f} | {run['later_epochs_samples_per_s']:.2f} | {run['final_loss']:.4f} | "
              f"{run['process_s']:.1f} s |")
    whole = results[args.gpus]['samples_per_s'] / results[1]['samples_per_s']
    later = results[args.gpus]['later_epochs_samples_per_s'] / results[1]['later_epochs_samples_per_s']
    print(f"\nscaling on {args.gpus}: {whole:.2f}x over the whole run, {later:.2f}x after the first epoch "
          "(bar 1.7x on 2)")


if __name__ == "__main__":
    main()
