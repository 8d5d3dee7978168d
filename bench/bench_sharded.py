"""A full fine-tune of the language model sharded with FSDP2 against the same fine-tune unsharded, on
one GPU (a process group of one): the same loss at each of 20 steps, and each run's memory and time.

    python3 bench/bench_sharded.py             # H100: Qwen2-VL-2B's shape, 20 steps of 16 photo samples
    python3 bench/bench_sharded.py --dry-run   # a narrow model and small pictures, on a CPU, to check it

Model: Qwen2-VL-2B-Instruct's shape with random weights built here (bench_training.build_2b_shape;
tied embeddings, as the real checkpoint's). Data: 320 photo samples, 640x480 to 1024x768, answers of
10-40 tokens (bench_training.make_photo_samples), one epoch.

Both runs are the training program as the worker starts it (python -m backend.training.lora
spec.json), each in a fresh process, one after the other: the 2b-gpu preset (batch 4 x accumulation 4,
gradient checkpointing, bf16 autocast, packed rows) with "full_language_model": true (fp32 master
weights for the 1.5 B language-model weights, AdamW, lr 1e-5), no checkpoint but the final model.
The sharded run adds "shard": true (sharding.py). With one process FSDP2 splits nothing: this checks
that sharding changes nothing it learns, and measures what its gathering costs; the memory it saves
grows with the processes.

The unsharded job also runs a second time: how far two runs of the same job drift apart on this GPU
(bf16 kernels that add in a varying order, such as attention's backward pass) is the floor under any
comparison of two runs.

With --deterministic every run takes deterministic kernels (the spec's `deterministic`), so the two
unsharded runs should agree exactly, and what is left between unsharded and sharded is sharding's own.

Bar: every step's loss within 1e-3 of the unsharded run's. Also printed: peak GPU memory, training
time (first step to last, the program's own clock), the whole process's time (loading and saving
the 2B model included), samples/s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_speed import run_program  # noqa: E402
from bench_training import SHAPE_2B, SHAPE_DRY, build_2b_shape, make_photo_samples  # noqa: E402

STEPS = 20
SAME_LOSS = 1e-3


def spec_for(model: Path, data: Path, out: Path, dry_run: bool, **changes):
    from backend.training.spec import preset

    small = (dict(max_image_pixels=224 * 224, device="auto", data_workers=0, batch_size=2, grad_accum=2)
             if dry_run else {})
    return preset("2b-gpu", model=str(model), data_file=str(data), output_dir=str(out), epochs=1, save_every=0,
                  full_language_model=True, learning_rate=1e-5, name=out.name, **{**small, **changes})


def run(spec, dry_run: bool) -> dict:
    """The job in a fresh process; its losses, peak GPU memory and times."""
    from backend.training.job_folder import read_metrics

    result = run_program(spec, 1, dry_run)
    records = [r for r in read_metrics(Path(spec.output_dir) / "metrics.jsonl") if "loss" in r]
    steps = [b["elapsed_s"] - a["elapsed_s"] for a, b in itertools.pairwise(records)]
    return {"losses": result["losses"], "seconds": result["seconds"], "process_s": result["process_s"],
            "samples_per_s": sum(r["samples"] for r in records) / result["seconds"],
            "later_step_s": sum(steps) / max(1, len(steps)),  # steps 2..20: after the first one's start-up
            "peak_gb": max((r.get("gpu_mem_gb", float("nan")) for r in records), default=float("nan"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="a narrow model and small pictures (a CPU is enough)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a fresh temporary one)")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--deterministic", action="store_true",
                        help="every run with deterministic kernels (the spec's `deterministic`): no drift between runs")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sharded-"))
    started = time.monotonic()
    model = build_2b_shape(workdir / "models" / ("dry" if args.dry_run else "qwen2-vl-2b-shape"),
                           SHAPE_DRY if args.dry_run else SHAPE_2B)
    plain = spec_for(model, Path(), workdir / "unsharded", args.dry_run)
    data = make_photo_samples(workdir / "photos", count=STEPS * plain.batch_size * plain.grad_accum)
    plain = plain.with_changes(data_file=str(data), deterministic=args.deterministic)
    sharded = plain.with_changes(shard=True, output_dir=str(workdir / "sharded"), name="sharded")
    prepared = time.monotonic() - started

    again = plain.with_changes(output_dir=str(workdir / "unsharded-again"), name="unsharded-again")
    runs = {"unsharded": run(plain, args.dry_run), "sharded (FSDP2, 1 process)": run(sharded, args.dry_run),
            "unsharded, again": run(again, args.dry_run)}
    a, b, c = (run_["losses"] for run_ in runs.values())
    differences = [abs(x - y) for x, y in zip(a, b)]
    floor = max(abs(x - y) for x, y in zip(a, c))
    same = len(a) == len(b) == STEPS and max(differences) <= SAME_LOSS

    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.dry_run else "CPU (dry run)"
    print(f"\nfull fine-tune of the language model, {'dry-run' if args.dry_run else 'Qwen2-VL-2B'} shape, {STEPS} "
          f"steps of {plain.effective_batch} samples, on {device}{', deterministic kernels' * args.deterministic} "
          f"(model and data made in {prepared:.0f} s)\n")
    print("| run | training | later steps | samples/s | peak GPU memory | whole process |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in runs.items():
        print(f"| {label} | {r['seconds']:.1f} s | {r['later_step_s']:.3f} s | {r['samples_per_s']:.2f} | "
              f"{r['peak_gb']:.1f} GB | {r['process_s']:.0f} s |")
    print(f"\nloss at steps 1 / 10 / 20: unsharded {a[0]:.4f} / {a[9]:.4f} / {a[-1]:.4f}, "
          f"sharded {b[0]:.4f} / {b[9]:.4f} / {b[-1]:.4f}")
    print(f"bar, every step's loss within {SAME_LOSS:g} of the unsharded run's: {'met' if same else 'NOT MET'} "
          f"(largest difference {max(differences):.2e}, {len(a)} and {len(b)} steps); "
          f"all of it {time.monotonic() - started:.0f} s")
    print(f"two unsharded runs of the same job: largest difference {floor:.2e} "
          f"({sum(abs(x - y) > SAME_LOSS for x, y in zip(a, c))} of {len(a)} steps over {SAME_LOSS:g})")
    if args.out:
        args.out.write_text(json.dumps({"device": device, "date": time.strftime("%Y-%m-%d"), "runs": runs,
                                        "deterministic": args.deterministic,
                                        "largest_difference": max(differences), "unsharded_twice": floor,
                                        "met": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
