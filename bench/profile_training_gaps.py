"""How much of a training run the GPU sits idle, and where: our train() on bench_train_speed's data
under torch.profiler (GPU activity only), then the gaps between kernels. A tool for finding what to
speed up next; bench_train_speed.py is the benchmark.

    python3 bench/profile_training_gaps.py              # Qwen2-VL-2B shape, 256 photo samples, 3 epochs
    python3 bench/profile_training_gaps.py --dry-run    # narrow model on a CPU: checks it runs

Prints, for the whole run and for the time after the first epoch's last tower call: the GPU's busy
share (the union of kernels, copies and fills over the span), the idle time in gaps of 1 ms or more,
and the largest gaps with the kernel before and after each, and the longest CUDA runtime calls that
waited on the GPU (synchronisations).

Read the idle share as an upper bound: the profiler slows the CPU's kernel launches (a run took
15.3 s under it against 13.8 s without, on an H200), and a step whose forward pass is bound by
launching (bench/profile_step_parts.py shows when) then idles the GPU more than it does unprofiled.
The large gaps and where they sit (between steps, at an epoch's start) are what it is good for.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_train_speed import run_ours, spec_for
from bench_training import SHAPE_2B, SHAPE_DRY, build_2b_shape, make_photo_samples

DEVICE_KINDS = {"kernel", "gpu_memcpy", "gpu_memset"}


def gaps_report(events: list[dict], label: str, top: int) -> None:
    spans = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in events)
    if not spans:
        print(f"{label}: no GPU events")
        return
    busy, idle, gaps = 0.0, 0.0, []
    end, last_name = spans[0][0], ""
    for start, stop, name in spans:
        if start > end:
            if start - end >= 1000:  # microseconds
                idle += start - end
                gaps.append((start - end, last_name, name))
            busy += stop - start
        elif stop > end:
            busy += stop - end
        if stop > end:
            end, last_name = stop, name
    wall = end - spans[0][0]
    print(f"{label}: {wall / 1e6:.2f} s from first to last GPU event, busy {busy / wall:.1%}; "
          f"{len(gaps)} gaps of 1 ms or more, {idle / 1e6:.3f} s in all ({idle / wall:.1%})")
    for gap, before, after in sorted(gaps, reverse=True)[:top]:
        print(f"  {gap / 1e3:8.1f} ms after {before[:70]!r} before {after[:70]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    from torch.profiler import ProfilerActivity, profile

    workdir = Path(tempfile.mkdtemp(prefix="profile-gaps-"))
    model_dir = build_2b_shape(workdir / "model", SHAPE_DRY if args.dry_run else SHAPE_2B)
    data = make_photo_samples(workdir / "photos", count=16 if args.dry_run else args.samples)
    small = make_photo_samples(workdir / "warmup", count=16)
    run_ours(spec_for(model_dir, small, workdir / "warmup", 1, args.dry_run))  # first-use costs, untimed
    activities = [ProfilerActivity.CUDA] if torch.cuda.is_available() else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        run = run_ours(spec_for(model_dir, data, workdir / "run", args.epochs, args.dry_run))
    print(f"the run: {run['seconds']:.2f} s on its own clock, first epoch {run['first_epoch_s']:.2f} s "
          f"(under the profiler)")
    trace = workdir / "trace.json"
    prof.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    device = [e for e in events if e.get("cat") in DEVICE_KINDS and "dur" in e]
    gaps_report(device, "whole run", args.top)
    tower = [e["ts"] for e in device if "flash_fwd" in e["name"] and "Flash_fwd_kernel_traits<96" in e["name"]]
    if tower:
        later = [e for e in device if e["ts"] > max(tower)]
        gaps_report(later, "after the vision tower's last call", args.top)
    waits = [e for e in events if e.get("cat") == "cuda_runtime" and "dur" in e
             and ("ynchronize" in e["name"] or "Memcpy" in e["name"])]
    runtime = sorted(waits, key=lambda e: e["dur"], reverse=True)
    total = sum(e["dur"] for e in runtime)
    print(f"CUDA runtime calls that can wait on the GPU: {len(runtime)}, {total / 1e6:.3f} s in all; the longest:")
    for e in runtime[:args.top]:
        print(f"  {e['dur'] / 1e3:8.1f} ms {e['name']}")


if __name__ == "__main__":
    main()
