"""What scoring every checkpoint costs a job: the same job run with and without an evaluation set, in
one process, one after the other, each twice; the job's wall time (the training program's train(),
set-up to the final adapter) compared.

    python3 bench/bench_checkpoint_scores.py            # the CPU box: the demo model, bundled sample
    python3 bench/bench_checkpoint_scores.py --save-every 9   # the same, a checkpoint every 9 steps
    python3 bench/bench_checkpoint_scores.py --method reply   # each choice parsed from a generated reply
    python3 bench/bench_checkpoint_scores.py --gpu      # a GPU: Qwen2-VL-2B's shape, 256 held-out questions
    python3 bench/bench_checkpoint_scores.py --gpu --dry-run   # the --gpu path on a narrow model, on a CPU

CPU: the demo-cpu preset (10 epochs, 30 steps) on a training set saved from the bundled sample's
single-image questions (held-out share 0.3), a checkpoint where the preset saves one (the last step;
--save-every for more); scored: its held-out questions at each checkpoint. Bar: scoring adds <= 10%.
GPU: the 2b-gpu preset (3 epochs, batch 4 x 4, checkpointing off) on 256 photo questions in
FoodieQA's sivqa shape, a checkpoint each epoch; scored: 256 other questions in a batch of 64 at each.
Bar: scoring adds <= 15%. Both score by the job's default, the likeliest letter (--method reply: from replies).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_job(spec) -> tuple[float, int]:
    """(seconds, checkpoints scored) of one run of the training program in this process."""
    from backend.training.job_folder import JobFiles, read_metrics
    from backend.training.lora import train
    from backend.training.processes import StopFlag

    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if train(spec, files, StopFlag()) != 0:
        raise SystemExit(f"the job in {files.root} failed")
    seconds = time.perf_counter() - started
    return seconds, sum("eval_accuracy" in r for r in read_metrics(files.metrics))


def cpu_specs(workdir: Path, save_every: int | None) -> tuple:
    from backend.data import build_training_set, read_bundled_sample
    from backend.models.demo import ensure_demo_model
    from backend.training.spec import preset

    folder = workdir / "datasets" / "sivqa"
    saved = build_training_set(read_bundled_sample().records, folder, heldout_ratio=0.3, tasks=("sivqa",), seed=3)
    model = ensure_demo_model(workdir)
    base = preset("demo-cpu", model=model.location, data_file=str(folder / "train.json"),
                  image_root=str(saved.image_root), keep_last=1, **({"save_every": save_every} if save_every else {}))
    return base, base.with_changes(score_set=str(folder)), len(saved.heldout_questions)


def gpu_specs(workdir: Path, dry_run: bool) -> tuple:
    from bench_training import SHAPE_2B, SHAPE_DRY, build_2b_shape
    from fake_foodieqa import make
    from transformers import AutoTokenizer

    from backend.models.loading import resolve
    from backend.training.spec import preset

    model = build_2b_shape(workdir / "models" / "shape", SHAPE_DRY if dry_run else SHAPE_2B)
    count = 16 if dry_run else 256
    # twice the photos: the first half trained on, the other half's questions scored (held out)
    out = workdir / "data"
    make(out, 2 * count, 2 * count, AutoTokenizer.from_pretrained(resolve(str(model)).location))
    data = json.loads((out / "train.json").read_text(encoding="utf-8"))[:count]
    (out / "train.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    questions = json.loads((out / "sivqa_tidy.json").read_text(encoding="utf-8"))[count:]
    (out / "sivqa_tidy.json").write_text(json.dumps(questions, ensure_ascii=False), encoding="utf-8")
    steps_per_epoch = -(-len(data) // 16)
    base = preset("2b-gpu", model=str(model), data_file=str(workdir / "data" / "train.json"),
                  image_root=str(workdir / "data"), gradient_checkpointing=False, save_every=steps_per_epoch,
                  keep_last=3, device="auto", **({"max_image_pixels": 224 * 224} if dry_run else {}))
    return base, base.with_changes(score_set=str(workdir / "data"), score_batch=64), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--save-every", type=int, help="CPU: a checkpoint every N steps (default: the preset's)")
    parser.add_argument("--method", choices=("letter", "reply"), default="letter", help="how each choice is read")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-checkpoint-scores-"))
    plain, scored, questions = gpu_specs(workdir, args.dry_run) if args.gpu else cpu_specs(workdir, args.save_every)
    scored = scored.with_changes(score_method=args.method)
    results: dict[str, list[float]] = {"without scoring (baseline)": [], "scoring each checkpoint (ours)": []}
    counted = 0
    run_job(plain.with_changes(output_dir=str(workdir / "warm-up"), epochs=1))  # first-use costs on neither
    for run in range(args.runs):
        for label, spec in zip(results, (plain, scored)):
            seconds, checkpoints = run_job(spec.with_changes(output_dir=str(workdir / f"job-{label[:7]}-{run}")))
            results[label].append(seconds)
            print(f"run {run + 1}, {label}: {seconds:.1f} s, {checkpoints} checkpoints scored", flush=True)
            counted = max(counted, checkpoints)
    base, ours = (statistics.median(v) for v in results.values())
    print(f"\n{'GPU' if args.gpu else 'CPU'} run; {questions} questions scored at each of {counted} checkpoints, "
          f"by {'the likeliest letter' if args.method == 'letter' else 'parsing replies'}\n")
    print("| run | wall time (runs) | median |")
    print("|---|---|---:|")
    for label, values in results.items():
        print(f"| {label} | {', '.join(f'{v:.1f} s' for v in values)} | {statistics.median(values):.1f} s |")
    bar = 15 if args.gpu else 10
    print(f"\nscoring adds {100 * (ours - base) / base:.1f}% (bar {bar}%)")


if __name__ == "__main__":
    main()
