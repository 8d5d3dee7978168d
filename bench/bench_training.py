"""Training speed and what training buys, end to end through the job store and the worker.

    python3 bench/bench_training.py                      # demo-cpu preset on the bundled dishes (the CPU bar)
    python3 bench/bench_training.py --runs 3             # three runs, to see the spread on a busy box
    python3 bench/bench_training.py --preset 2b-gpu      # one epoch on a random-weight Qwen2-VL-2B (GPU)

demo-cpu: builds the demo model (timed apart: a one-time cost, cached under the work folder),
queues the preset on the 72 bundled questions, starts a worker the way the app does, and times
submit -> succeeded (wall clock). Then asks every trained question, greedy, and counts the answers
that match the trained answer exactly, for the tuned model and, in the same run, for the untuned
base model (the baseline). Bars: at most 90 s through the worker; at least 90% exact.

2b-gpu: the shape of Qwen2-VL-2B-Instruct with random weights (GPU.md: speed does not depend on
weight values), 256 samples of photo-sized pictures (640x480 to 1024x768) with 10-40 token answers,
one epoch of the 2b-gpu preset (r=128, alpha=256, batch 4 x accumulation 4, bf16) through the same
worker and program. Reports samples/s, tokens/s and peak GPU memory from the job's metrics.
--also-no-checkpointing runs it a second time with gradient checkpointing off; --oom-check queues a
batch that cannot fit and shows the sentence the job fails with.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.training.job_folder import read_metrics
from backend.training.jobs import Job, JobStore
from backend.training.worker import spawn, stop


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else float("nan")


def run_job(store: JobStore, spec, timeout_s: float = 1800) -> tuple[Job, float]:
    """Submit `spec`, wait until the worker has finished it; (job, seconds from submit to the end)."""
    started = time.monotonic()
    job = store.submit(spec)
    while (job := store.get(job.id)).state in ("queued", "running"):
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"job {job.id} still {job.state} after {timeout_s} s:\n{store.log_tail(job.id)}")
        time.sleep(0.1)
    return job, time.monotonic() - started


def throughput(job: Job) -> dict:
    """Samples/s and tokens/s over the whole run (all samples / all training time, evaluation and
    checkpoints included), the final loss and the peak GPU memory."""
    train = [r for r in read_metrics(job.files.metrics) if "loss" in r]
    if not train:
        return {}
    elapsed = train[-1]["elapsed_s"]
    return {"steps": train[-1]["step"], "train_s": elapsed,
            "samples_per_s": sum(r["samples"] for r in train) / elapsed,
            "tokens_per_s": sum(r["tokens"] for r in train) / elapsed, "final_loss": train[-1]["loss"],
            "gpu_mem_gb": max((r.get("gpu_mem_gb", 0.0) for r in train), default=0.0)}


# ---- demo-cpu -----------------------------------------------------------------------------------


def bench_demo(workdir: Path, runs: int) -> None:
    from backend.models.demo import demo_model_dir
    from backend.training.check import exact_answers, load_engine
    from backend.training.demo_data import demo_spec
    from backend.training.samples import read_samples

    t0 = time.monotonic()
    cached = (demo_model_dir(workdir) / "config.json").is_file()
    spec = demo_spec(workdir)  # builds the demo model once
    build_s = time.monotonic() - t0
    store = JobStore(workdir)
    worker = spawn(workdir, gpus="none")
    rows = []
    try:
        for _ in range(runs):
            load_before = load_average()
            job, wall = run_job(store, spec)
            if job.state != "succeeded":
                raise SystemExit(f"job {job.id} {job.state}: {job.error}\n{store.log_tail(job.id)}")
            rows.append({"job": job.id, "wall_s": wall, "load": (load_before, load_average()), **throughput(job)})
    finally:
        stop(worker)

    samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    engine = load_engine(spec.model, {f"run{i}": Path(store.get(r["job"]).files.adapter) for i, r in enumerate(rows)})
    base = exact_answers(engine, samples, None)
    for i, row in enumerate(rows):
        row["exact"] = exact_answers(engine, samples, f"run{i}")

    print(f"\ndemo-cpu preset: {len(samples)} questions, {spec.epochs} epochs, batch {spec.batch_size}, "
          f"r={spec.lora_r}, lr {spec.learning_rate:g}, pictures <= {spec.max_image_pixels} px, "
          f"{os.cpu_count()} CPU cores")
    print(f"demo model build: {build_s:.1f} s ({'cached' if cached else 'built now, once'})\n")
    print("| run | wall, submit -> succeeded | training only | samples/s | tokens/s | exact answers "
          "| load avg before/after |")
    print("|-----|--------------------------:|--------------:|----------:|---------:|--------------:|----------------------:|")
    print(f"| untuned demo model (baseline) | | | | | {base.exact}/{base.asked} ({base.rate:.0%}) | |")
    for i, row in enumerate(rows, 1):
        exact = row["exact"]
        print(f"| {i} | {row['wall_s']:.1f} s | {row['train_s']:.1f} s | {row['samples_per_s']:.1f} | "
              f"{row['tokens_per_s']:.0f} | {exact.exact}/{exact.asked} ({exact.rate:.0%}) | "
              f"{row['load'][0]:.1f} / {row['load'][1]:.1f} |")
    walls = [r["wall_s"] for r in rows]
    rates = [r["exact"].rate for r in rows]
    print(f"\nbars: wall <= 90 s: {'yes' if max(walls) <= 90 else 'NO'} (median {statistics.median(walls):.1f} s); "
          f"exact >= 90%: {'yes' if min(rates) >= 0.9 else 'NO'} (lowest {min(rates):.0%})")
    for sample_id, expected, got in rows[-1]["exact"].misses[:5]:
        print(f"  miss {sample_id}: expected {expected!r}, got {got!r}")


# ---- 2b-gpu -------------------------------------------------------------------------------------


# Qwen2-VL-2B-Instruct's shape (GPU.md), and a narrow stand-in of the same structure for --dry-run.
SHAPE_2B = dict(hidden=1536, layers=28, heads=12, kv_heads=2, mlp=8960, vocab=151936, vision_depth=32,
                vision_width=1280, vision_heads=16)
SHAPE_DRY = dict(hidden=128, layers=2, heads=4, kv_heads=2, mlp=256, vocab=4096, vision_depth=2,
                 vision_width=64, vision_heads=4)


def build_2b_shape(folder: Path, shape: dict = SHAPE_2B) -> Path:
    """Qwen2-VL-2B-Instruct's architecture with random weights, saved as a checkpoint is, with a
    processor that keeps up to 1024x768 pixels and a chat template without {% generation %} markers
    (like the real checkpoint's, so the answers are found by rendered prefixes)."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from backend.models.families import no_video_processor_class
    from backend.models.tiny import FAMILIES, train_tokenizer

    if (folder / "config.json").is_file():
        return folder
    tokenizer = train_tokenizer(FAMILIES["qwen2_vl"])
    tokenizer.chat_template = tokenizer.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    ids = tokenizer.convert_tokens_to_ids
    half_head = shape["hidden"] // shape["heads"] // 2  # mrope splits it 1/4, 3/8, 3/8 (16, 24, 24 for 2B)
    mrope = [half_head // 4, half_head * 3 // 8, half_head - half_head // 4 - half_head * 3 // 8]
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=shape["vocab"], hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                         num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                         intermediate_size=shape["mlp"], max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
                         bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                         pad_token_id=ids("<|endoftext|>"), tie_word_embeddings=True),
        vision_config=dict(depth=shape["vision_depth"], embed_dim=shape["vision_width"], hidden_size=shape["hidden"],
                           num_heads=shape["vision_heads"], mlp_ratio=4, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True, dtype="bfloat16")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16)
    images = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=1024 * 768)
    processor = no_video_processor_class("qwen2_vl")(image_processor=images, tokenizer=tokenizer,
                                                     chat_template=tokenizer.chat_template)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    print(f"built a random Qwen2-VL-2B-shaped model ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B "
          f"parameters) at {folder}")
    return folder


def make_photo_samples(folder: Path, count: int = 256, seed: int = 0) -> Path:
    """`count` LLaVA samples: bundled dish pictures blown up to photo sizes (640x480 .. 1024x768),
    one question each, answers built from the dish's descriptions (10-40 tokens)."""
    from PIL import Image

    from backend.bundled import EXAMPLES_DIR
    from backend.training.samples import write_samples

    rng = random.Random(seed)
    dishes = json.loads((EXAMPLES_DIR / "dishes.json").read_text(encoding="utf-8"))
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(count):
        dish = dishes[i % len(dishes)]
        width = rng.randrange(640, 1025)
        height = min(768, max(480, int(width * rng.uniform(0.6, 0.8))))
        picture = Image.open(EXAMPLES_DIR / "images" / f"{dish['id']}-{i % 3}.jpg").convert("RGB")
        name = f"images/{i:04d}.jpg"
        picture.resize((width, height), Image.BICUBIC).save(folder / name, quality=88)
        zh = i % 2 == 0
        question = "这是什么菜？请介绍一下。" if zh else "What dish is this? Tell me about it."
        fields = ["taste", "where", "plating"][: 1 + i % 3]
        answer = (f"这是{dish['name_zh']}，{dish['cuisine_zh']}。" + "".join(dish[f"{f}_zh"] for f in fields) if zh
                  else f"This is {dish['name_en']}, {dish['cuisine_en']}. " + " ".join(dish[f"{f}_en"] for f in fields))
        records.append({"id": f"p{i:04d}", "image": name, "conversations": [
            {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]})
    return write_samples(records, folder / "train.json")


def bench_2b(workdir: Path, also_no_checkpointing: bool, oom_check: bool, dry_run: bool) -> None:
    from backend.training.spec import preset
    from backend.training.views import gpu_memory

    t0 = time.monotonic()
    model = build_2b_shape(workdir / "models" / ("dry-run-shape" if dry_run else "qwen2-vl-2b-shape"),
                           SHAPE_DRY if dry_run else SHAPE_2B)
    build_s = time.monotonic() - t0
    data = make_photo_samples(workdir / "photo-samples", count=16 if dry_run else 256)
    store = JobStore(workdir)
    worker = spawn(workdir, gpus="auto")
    spec = preset("2b-gpu", model=str(model), data_file=str(data), epochs=1, name="2b shape, 1 epoch",
                  **(dict(device="auto", lora_r=8, lora_alpha=16, max_image_pixels=224 * 224) if dry_run else {}))
    variants = [("2b-gpu preset (gradient checkpointing on)", spec)]
    if also_no_checkpointing:
        variants.append(("same, gradient checkpointing off", spec.with_changes(gradient_checkpointing=False)))
    rows = []
    try:
        for label, variant in variants:
            job, wall = run_job(store, variant)
            if job.state != "succeeded":
                raise SystemExit(f"job {job.id} {job.state}: {job.error}\n{store.log_tail(job.id, 60)}")
            rows.append((label, wall, throughput(job)))
        oom = None
        if oom_check:
            oom, _ = run_job(store, spec.with_changes(batch_size=256, grad_accum=1, gradient_checkpointing=False,
                                                      name="meant to run out of memory"))
    finally:
        stop(worker)

    gpus = gpu_memory()
    print(f"\nrandom-weight Qwen2-VL-{'dry-run' if dry_run else '2B'} shape (build {build_s:.0f} s), "
          f"{'16' if dry_run else '256'} samples of 640x480..1024x768 pictures, "
          f"1 epoch, r={spec.lora_r} alpha={spec.lora_alpha}, "
          f"batch {spec.batch_size} x accumulation {spec.grad_accum}, "
          f"bf16; {gpus[0].name if gpus else 'no GPU seen by nvidia-smi'}\n")
    print("| run | wall, submit -> succeeded | training only | samples/s | tokens/s (real) | peak GPU memory |")
    print("|-----|--------------------------:|--------------:|----------:|----------------:|----------------:|")
    for label, wall, t in rows:
        print(f"| {label} | {wall:.1f} s | {t['train_s']:.1f} s | {t['samples_per_s']:.2f} | {t['tokens_per_s']:.0f} | "
              f"{t['gpu_mem_gb']:.1f} GB |")
    if oom is not None:
        print(f"\nbatch 256 without checkpointing: job {oom.state}: {oom.error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("demo-cpu", "2b-gpu"), default="demo-cpu")
    parser.add_argument("--runs", type=int, default=1, help="demo-cpu: how many times to train (default 1)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a fresh temporary one)")
    parser.add_argument("--also-no-checkpointing", action="store_true", help="2b-gpu: a second run without it")
    parser.add_argument("--oom-check", action="store_true", help="2b-gpu: queue a batch that cannot fit")
    parser.add_argument("--dry-run", action="store_true",
                        help="2b-gpu: a narrow model of the same structure and 16 samples, to check the path on a CPU")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-training-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {workdir}")
    if args.preset == "demo-cpu":
        bench_demo(workdir, args.runs)
    else:
        bench_2b(workdir, args.also_no_checkpointing, args.oom_check, args.dry_run)


if __name__ == "__main__":
    main()
