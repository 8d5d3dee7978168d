"""Fine-tuning speed on a GPU: the plain LoRA recipe against Foodie Studio's training program, in one
process and one run, on the same data and settings.

    python3 bench/bench_train_speed.py                 # H100: 256 samples, 3 epochs, both runs
    python3 bench/bench_train_speed.py --pack-tokens 16384:gc,16384           # the recorded run (bench/README.md)
    python3 bench/bench_train_speed.py --ablate        # also ours with packing off / fused kernels off
    python3 bench/bench_train_speed.py --ours-only     # ours alone, with its time per step (for tuning)
    python3 bench/bench_train_speed.py --ours-only --repeat 2   # twice in one process
    python3 bench/bench_train_speed.py --dry-run       # a narrow model and 16 samples, to check it on a CPU
    python3 bench/bench_train_speed.py --family qwen3_vl --json bench/results-family-qwen3_vl.json
                                                      # Qwen3-VL-2B / InternVL3.5-2B (internvl) / Qwen3.5-2B
                                                      # (qwen3_5) from their published configs: ~4 min each

Model: Qwen2-VL-2B-Instruct's shape with random weights (speed does not depend on weight values); with
--family, Qwen3-VL-2B-Instruct, InternVL3_5-2B-HF or Qwen3.5-2B built from their published config values
(bench/published_models.py), with fewer samples and epochs so the run stays near 4 minutes, ours
with and without gradient checkpointing, and the memory estimate of backend/training/memory.py printed
beside each run's measured peak.
Data: 256 samples, photo-sized pictures (640x480 .. 1024x768, within the 1024x768 pixel limit) and
answers of 10-40 tokens (bench_training.make_photo_samples). Before each timed run, its path runs
once on 16 other samples in this process, so that first-use costs (kernels loading or compiling)
fall on no timed run; ours also once in a child process first, whose first step is printed: what a
fresh job pays (--no-warmup skips all of it). Settings for both: LoRA r=128,
alpha=256, dropout 0.05 on q/k/v/o/gate/up/down of the language model, batch 4 x accumulation 4,
AdamW lr 3e-5 cosine, bf16 weights with bf16 autocast, clipping at 1.0, no gradient checkpointing.

The baseline is the plain recipe written the way a course or the HF Trainer runs it
(backend/training/plain_loop.py): padded batches, the model's own forward with labels (the vision
tower runs on every step, logits for every position), the loss normalised by the step's answer
tokens as the Trainer does. Ours is backend/training/lora.py's train(), the same function the app's
worker runs; tests/test_training_reference.py checks that both give the same loss at every step.

Model FLOPs (stated convention; attention's own FLOPs are left out of both):
  per token that passes the language model: 4 x N_text (frozen base: forward 2N, input gradients
  2N) + 6 x N_lora (the adapters also get weight gradients); per answer token: 4 x hidden x vocab
  (the LM head, forward and input gradients); per picture patch that passes the vision tower: 2 x
  N_vision (forward only, frozen), counted each time it actually runs: every epoch for the
  baseline, once for ours. Padding tokens count for neither. MFU = model FLOPs / time / 989 TFLOP/s
  (H100 SXM dense bf16).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_training import SHAPE_2B, SHAPE_DRY, build_2b_shape, make_photo_samples  # noqa: E402
from published_models import FAMILY_RUNS, build_published  # noqa: E402

PEAK_FLOPS = 989e12  # H100 SXM, dense bf16


def spec_for(model: Path, data: Path, out: Path, epochs: int, dry_run: bool, **changes):
    from backend.training.spec import preset

    small = dict(lora_r=8, lora_alpha=16, max_image_pixels=224 * 224, device="auto", data_workers=0) if dry_run else {}
    return preset("2b-gpu", model=str(model), data_file=str(data), output_dir=str(out), epochs=epochs,
                  save_every=0, **{"gradient_checkpointing": False, **small, **changes})


def counts_per_epoch(model, processor, spec) -> dict:
    """Tokens, answer tokens and picture patches of one pass over the data (the same for both)."""
    from backend.training.encoding import IGNORE_INDEX, SampleDataset
    from backend.training.samples import read_samples

    samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    dataset = SampleDataset(samples, processor, spec.max_image_pixels, spec.max_length)
    totals = {"samples": len(samples), "tokens": 0, "answer_tokens": 0, "patches": 0}
    for i in range(len(dataset)):
        encoded = dataset[i]
        totals["tokens"] += len(encoded.labels)
        totals["answer_tokens"] += int((encoded.labels[1:] != IGNORE_INDEX).sum())
        pixels = encoded.inputs.get("pixel_values")
        totals["patches"] += 0 if pixels is None else pixels.shape[0]
    return totals


def parameter_counts(model) -> dict:
    """The decoder layers' parameters (text), everything but them, the embeddings and the LM head
    (vision: tower and projector), LoRA's."""
    from backend.training.targets import decoder_layers, decoder_of

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    _, decoder = decoder_of(base)
    _, layers = decoder_layers(decoder)
    frozen = [p for p in base.parameters() if not p.requires_grad]
    text = sum(p.numel() for layer in layers for p in layer.parameters() if not p.requires_grad)
    outer = {id(p) for p in base.get_input_embeddings().parameters()} | {id(p) for p in decoder.parameters()}
    outer |= {id(p) for p in base.get_output_embeddings().parameters()}
    vision = sum(p.numel() for p in frozen if id(p) not in outer)
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = base.config.get_text_config()
    return {"text": text, "vision": vision, "lora": lora, "hidden": config.hidden_size, "vocab": config.vocab_size}


def model_flops(params: dict, counts: dict, epochs: int, vision_passes: int) -> float:
    per_epoch = ((4 * params["text"] + 6 * params["lora"]) * counts["tokens"]
                 + 4 * params["hidden"] * params["vocab"] * counts["answer_tokens"])
    return per_epoch * epochs + 2 * params["vision"] * counts["patches"] * vision_passes


# ---- the plain recipe ---------------------------------------------------------------------------


def run_baseline(spec, device: torch.device) -> tuple[dict, object, object]:
    """The plain recipe (backend/training/plain_loop.py) on these settings. Returns (result, model,
    processor)."""
    from backend.training.plain_loop import train_plain

    run = train_plain(spec, device)
    return {"seconds": run.seconds, "losses": run.losses, "padded_tokens": run.padded_tokens}, run.model, run.processor


# ---- ours: the training program -----------------------------------------------------------------


def run_ours(spec) -> dict:
    """Our training program's train(), in this process."""
    from backend.training.job_folder import JobFiles
    from backend.training.lora import train
    from backend.training.processes import StopFlag

    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    status = train(spec, files, StopFlag())
    if status != 0:
        raise SystemExit(f"our training program exited with {status}")
    return finished_run(files)


def run_program(spec, processes: int, dry_run: bool) -> dict:
    """Our training program as the worker starts it (python -m backend.training.lora spec.json), in
    a child process, or under torchrun with `processes` of them (one GPU each)."""
    from backend.training.job_folder import JobFiles

    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    spec.save(files.root / "spec.json")
    program = ["-m", "backend.training.lora", str(files.root / "spec.json")]
    if processes > 1:
        program = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] + program
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if not dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(processes))
    started = time.monotonic()
    done = subprocess.run([sys.executable, *program], env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"the job on {processes} process(es) exited with {done.returncode}; see {files.log}")
    # the whole process too (start-up, loading, saving): work moved from the training clock into
    # the loading would show here
    return {**finished_run(files), "process_s": time.monotonic() - started}


def finished_run(files) -> dict:
    """Time (the program's own, from after loading to the last step), losses and steps of a done run."""
    from backend.training.job_folder import read_metrics

    records = [r for r in read_metrics(files.metrics) if "loss" in r]
    first_epoch = [r for r in records if r["epoch"] <= 1.0]
    later = records[len(first_epoch):]
    return {"seconds": records[-1]["elapsed_s"], "losses": [r["loss"] for r in records],
            "final_loss": records[-1]["loss"], "steps": records[-1]["step"],
            "first_epoch_s": first_epoch[-1]["elapsed_s"] if first_epoch else float("nan"),
            "step_seconds": [b["elapsed_s"] - a["elapsed_s"] for a, b in zip([{"elapsed_s": 0}] + records, records)],
            # after the first epoch: every picture is cached, start-up is behind
            "later_epochs_samples_per_s": (sum(r["samples"] for r in later) / (later[-1]["elapsed_s"] -
                                           first_epoch[-1]["elapsed_s"])) if later and first_epoch else float("nan")}


def same_batch_losses(model, processor, spec, device) -> tuple[float, float]:
    """One batch of 4, the trained baseline adapter: the padded forward's loss and the packed one's."""
    from backend.training.encoding import SampleDataset, collate
    from backend.training.packed import PackedLoss, pack, prepare, use_packed_attention
    from backend.training.samples import read_samples
    from backend.training.steps import answer_loss

    samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    dataset = SampleDataset(samples[:4], processor, spec.max_image_pixels, spec.max_length)
    encoded = [dataset[i] for i in range(len(dataset))]
    use_packed_attention(model)
    model.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.no_grad(), autocast:
        batch = {k: v.to(device) for k, v in collate(encoded, processor.tokenizer.pad_token_id).items()}
        labels = batch.pop("labels")
        padded = answer_loss(model(**batch).logits, labels).item()
        packed = PackedLoss(model)(pack(prepare(model, encoded, device, dtype))).item()
    return padded, packed


def memory_estimates(spec, results: dict, variants: list, counts: dict, fast: bool, device) -> dict:
    """backend/training/memory.py's estimate of each of our runs (its settings, the data's mean sample
    length) beside its measured peak; printed as a table, returned for the JSON."""
    from backend.training.memory import GB, job_shape
    from backend.training.memory import estimate as estimated

    shape, _ = job_shape(spec)
    per_sample = round(counts["tokens"] / counts["samples"])
    settings = {label: changes for label, changes in variants}
    rows = {}
    print("\n| run | measured peak (allocated) | estimate | estimate / measured |\n|---|---:|---:|---:|")
    for label, result in results.items():
        if label.startswith("plain"):
            continue  # the plain recipe is not our program (transformers' fp32 logits on top): no estimate
        run_spec = spec.with_changes(**settings.get(label, {}))
        guess = estimated(shape, run_spec, fast and run_spec.packed, counts["samples"], per_sample)
        measured = result["peak_gb"]
        rows[label] = {"measured_gb": measured, "estimate_gb": guess.total / GB, "parts": guess.parts()}
        ratio = guess.total / GB / measured if device.type == "cuda" else float("nan")
        print(f"| {label} | {measured:.1f} GB | {guess.total / GB:.1f} GB ({guess.parts()}) | {ratio:.2f} "
              "(bar 0.75-1.25) |")
    return rows


def peak_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")


def allocator_counts(device: torch.device) -> tuple[int, int, int, float]:
    """How often CUDA's caching allocators have asked the driver for memory so far: GPU blocks, retries
    after freeing the cache, page-locked host blocks (the data loader's pinned batches) and the
    milliseconds those took. A run in a fresh process pays for every block it first needs."""
    if device.type != "cuda":
        return 0, 0, 0, 0.0
    stats, host = torch.cuda.memory_stats(device), torch.cuda.host_memory_stats()
    return (stats.get("num_device_alloc", 0), stats.get("num_alloc_retries", 0), host.get("num_host_alloc", 0),
            host.get("host_alloc_time.total", 0) / 1000)


def triton_variants() -> Counter:
    """Triton kernels this process holds, by name, one per specialisation (Triton specialises integer
    arguments on divisibility by 16): a run that needs one it has not made yet waits for it."""
    made: Counter = Counter()
    try:
        from triton.runtime.jit import JITFunction
    except ImportError:
        return made
    for obj in gc.get_objects():
        if isinstance(obj, JITFunction):
            for cache in getattr(obj, "device_caches", {}).values():
                made[obj.__name__] += len(cache[0] if isinstance(cache, tuple) else cache)
    return made


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def epoch_means(losses: list[float], epochs: int) -> list[float]:
    per = len(losses) // epochs
    return [sum(losses[i * per : (i + 1) * per]) / per for i in range(epochs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILY_RUNS), help="a published 2B checkpoint of this family "
                        "(random weights from its config) instead of the Qwen2-VL-2B shape, with its own data size")
    parser.add_argument("--samples", type=int, help="default 256 (with --family: the family's, ~4 minutes)")
    parser.add_argument("--epochs", type=int, help="default 3 (with --family: the family's)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a fresh temporary one)")
    parser.add_argument("--ablate", action="store_true",
                        help="also run ours with packing off, and without fused kernels")
    parser.add_argument("--dry-run", action="store_true", help="a narrow model and 16 samples, to check on a CPU")
    parser.add_argument("--no-warmup", action="store_true", help="time each path from a cold start")
    parser.add_argument("--pack-tokens", default="", help="also run ours with these tokens per packed row "
                        "(comma-separated; after a number, :gc adds gradient checkpointing, :compile compiled "
                        "layers, :gc+compile both), beside the default")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--ours-only", action="store_true", help="no baseline: our run alone, with its "
                        "time per step (for tuning; the bars need the baseline in the same run)")
    parser.add_argument("--repeat", type=int, default=1, help="with --ours-only: each run this many times, one "
                        "after the other in this process (is a run faster in a process that has trained before?)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-train-speed-"))
    run = FAMILY_RUNS.get(args.family)
    args.samples = args.samples or (run.samples if run else 256)
    args.epochs = args.epochs or (run.epochs if run else 3)
    if run and not args.pack_tokens:  # the bars: ours with and without gradient checkpointing
        args.pack_tokens = "16384:gc"
    count = 16 if args.dry_run else args.samples
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    t0 = time.monotonic()
    if run:
        model_dir = build_published(args.family, workdir / "models" / (f"dry-{args.family}" if args.dry_run
                                                                         else args.family), args.dry_run)
    else:
        model_dir = build_2b_shape(workdir / "models" / ("dry" if args.dry_run else "qwen2-vl-2b-shape"),
                                   SHAPE_DRY if args.dry_run else SHAPE_2B)
    data = make_photo_samples(workdir / "photos", count=count)
    print(f"model and data ready in {time.monotonic() - t0:.0f} s", flush=True)
    spec = spec_for(model_dir, data, workdir / "ours", args.epochs, args.dry_run)
    from backend.training.model import model_type_of, packs

    fast = packs(spec, model_type_of(spec))  # Qwen3.5: no fast path; ours trains on padded batches too

    variants = []
    if args.ablate:  # before ours: Liger patches transformers' classes for the rest of the process
        variants += [("ours, padded batches (packing off)", dict(packed=False, fused_kernels=False)),
                     ("ours, packed, no fused kernels", dict(fused_kernels=False))]
    for option in filter(None, args.pack_tokens.split(",")):
        tokens, _, extras = option.partition(":")
        extras = set(filter(None, extras.split("+")))
        if extras - {"gc", "compile"}:
            parser.error(f"--pack-tokens {option}: after the colon, gc and/or compile (joined by +)")
        label = ((f"ours, rows of {tokens} tokens" if fast else "ours, padded batches")
                 + (", gradient checkpointing" if "gc" in extras else "")
                 + (", compiled layers" if "compile" in extras else ""))
        variants.append((label, dict(pack_tokens=int(tokens), gradient_checkpointing="gc" in extras,
                                     compile_layers="compile" in extras)))
    # Liger patches transformers' classes for the rest of the process, and compiled layers cannot
    # trace its kernels: the runs without Liger go first
    variants.sort(key=lambda variant: variant[1].get("fused_kernels", True) and not variant[1].get("compile_layers"))
    variants.append((f"ours (packed rows of {spec.pack_tokens} tokens, cached pictures, fused kernels)" if fast else
                     "ours (padded batches: no fast path for this family, the job's log says why)", {}))

    small = make_photo_samples(workdir / "warmup", count=16)

    def warm_up_ours(index: int, changes: dict) -> None:
        """Our program once on the 16 other samples in this process, right before a timed run of it,
        as the baseline's warm-up is: first-use costs (CUDA kernels loading, Triton's and inductor's
        kernels loading or compiling) fall on neither timed run."""
        if not args.no_warmup:
            run_ours(spec_for(model_dir, small, workdir / f"warmup-ours-{index}", 1, args.dry_run, **changes))

    if not args.no_warmup:
        # Both paths once on 16 samples, untimed, so one-time costs fall on neither timed run: the
        # baseline in this process; ours first in a child process (Triton compiling Liger's kernels to
        # its disk cache, as an earlier job would have; Liger patches transformers' classes in the
        # process it runs in, and the baseline must stay plain), then in this process before each run.
        if not args.ours_only:
            run_baseline(spec_for(model_dir, small, workdir / "warmup-base", 1, args.dry_run), device)
        if not run:  # (a --family run leaves it out: its minutes go to the timed runs)
            fresh = run_program(spec_for(model_dir, small, workdir / "warmup-ours", 1, args.dry_run), 1, args.dry_run)
            print(f"a fresh training process (as the worker starts one), 16 samples: its one step took "
                  f"{fresh['step_seconds'][0]:.2f} s (kernels loaded and compiled on first use: a cost each job "
                  "pays once, left out of the timed runs below by warming each run up in this process)", flush=True)
        if any(changes.get("compile_layers") for _, changes in variants):  # inductor's caches, on disk
            run_program(spec_for(model_dir, small, workdir / "warmup-compiled", 1, args.dry_run, compile_layers=True),
                        1, args.dry_run)
        print(f"warm-up done at {time.monotonic() - t0:.0f} s", flush=True)

    if args.ours_only:
        from backend.training.model import build_model

        model, processor, _, _ = build_model(spec.with_changes(packed=False, fused_kernels=False), device,
                                             torch.bfloat16 if device.type == "cuda" else torch.float32)
        params, counts = parameter_counts(model), counts_per_epoch(model, processor, spec)
        del model
        for i, (label, changes) in enumerate(variants):
            reset_peak(device)
            warm_up_ours(i, changes)
            for repeat in range(max(1, args.repeat)):
                before, kernels = allocator_counts(device), triton_variants()
                run = run_ours(spec.with_changes(output_dir=str(workdir / f"ours-{i}-{repeat}"), **changes))
                mallocs, retries, pinned, pinned_ms = (after - first for after, first in
                                                       zip(allocator_counts(device), before))
                flops = model_flops(params, counts, args.epochs, vision_passes=1)
                print(f"{label}{f', run {repeat + 1}' if args.repeat > 1 else ''}: {run['seconds']:.1f} s, MFU "
                      f"{flops / run['seconds'] / PEAK_FLOPS:.1%}, first epoch {run['first_epoch_s']:.1f} s, later "
                      f"epochs {run['later_epochs_samples_per_s']:.1f} samples/s, peak {peak_gb(device):.1f} GB, "
                      f"{mallocs} cudaMalloc calls, {retries} retries after a failed one, {pinned} page-locked "
                      f"blocks allocated in {pinned_ms:.0f} ms, Triton kernels made (compiled, or loaded from "
                      f"Triton's disk cache): {dict(triton_variants() - kernels) or 'none'}")
                print("  seconds per step:", " ".join(f"{s:.2f}" for s in run["step_seconds"]), flush=True)
        return

    results: dict[str, dict] = {}
    reset_peak(device)
    base, model, processor = run_baseline(spec, device)
    base["peak_gb"] = peak_gb(device)
    results["plain recipe (baseline)"] = base
    params = parameter_counts(model)
    counts = counts_per_epoch(model, processor, spec)
    padded, packed = same_batch_losses(model, processor, spec, device) if fast else (float("nan"), float("nan"))
    del model
    reset_peak(device)

    for i, (label, changes) in enumerate(variants):
        warm_up_ours(i, changes)
        reset_peak(device)
        run = run_ours(spec.with_changes(output_dir=str(workdir / f"ours-{i}"), **changes))
        run["peak_gb"] = peak_gb(device)
        results[label] = run
        print(f"{label}: {run['seconds']:.1f} s", flush=True)

    print(f"\n{torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}, torch {torch.__version__}; "
          f"{count} samples x {args.epochs} epochs; {counts['tokens'] / count:.0f} tokens and "
          f"{counts['answer_tokens'] / count:.1f} answer tokens per sample, {counts['patches'] / count:.0f} "
          f"picture patches; N_text {params['text'] / 1e9:.2f} B, N_vision {params['vision'] / 1e9:.2f} B, "
          f"N_lora {params['lora'] / 1e6:.1f} M\n")
    print("| run | time | samples/s | tokens/s (real) | peak GPU memory | MFU | loss, epoch means |")
    print("|---|---:|---:|---:|---:|---:|---|")
    baseline = results["plain recipe (baseline)"]
    for label, run in results.items():
        plain = label.startswith("plain") or "packing off" in label or not fast
        flops = model_flops(params, counts, args.epochs, vision_passes=args.epochs if plain else 1)
        run.update(samples_per_s=count * args.epochs / run["seconds"],
                   tokens_per_s=counts["tokens"] * args.epochs / run["seconds"],
                   mfu=flops / run["seconds"] / PEAK_FLOPS,
                   epoch_losses=epoch_means(run["losses"], args.epochs))
        print(f"| {label} | {run['seconds']:.1f} s | {run['samples_per_s']:.2f} | {run['tokens_per_s']:.0f} | "
              f"{run['peak_gb']:.1f} GB | {run['mfu']:.1%} | {' / '.join(f'{x:.4f}' for x in run['epoch_losses'])} |")
    ours = results[variants[-1][0]]
    speedup = ours["samples_per_s"] / baseline["samples_per_s"]
    memory = ours["peak_gb"] / baseline["peak_gb"]
    padding = 1 - counts["tokens"] * args.epochs / baseline["padded_tokens"]
    print(f"\nspeed-up {speedup:.2f}x (bar 1.8x); peak memory {memory:.0%} of the baseline's (bar 60%); "
          f"our MFU {ours['mfu']:.1%} (bar 35%); the baseline's batches were {padding:.0%} padding")
    if run:  # the bars for these families: >= 3x the samples/s at <= 50% of the memory
        for label, result in results.items():
            if label.startswith("ours"):
                print(f"{label}: {result['samples_per_s'] / baseline['samples_per_s']:.2f}x the plain recipe's "
                      f"samples/s (bar 3x) at {result['peak_gb'] / baseline['peak_gb']:.0%} of its peak memory "
                      "(bar 50%)")
    estimates = memory_estimates(spec, results, variants, counts, fast, device)
    if fast:
        print(f"same batch, the baseline's trained adapter: padded loss {padded:.5f}, packed {packed:.5f}, "
              f"relative difference {abs(packed - padded) / abs(padded):.2e} (bar 1e-2)")
    print(f"first step's loss (same 16 samples, adapters still zero): baseline {baseline['losses'][0]:.5f}, "
          f"ours {ours['losses'][0]:.5f}")
    if args.json:
        args.json.write_text(json.dumps({"family": args.family or "qwen2_vl-2b-shape", "params": params,
                                         "counts": counts, "results": results, "estimates": estimates,
                                         "same_batch": {"padded": padded, "packed": packed},
                                         "device": torch.cuda.get_device_name() if device.type == "cuda" else "CPU",
                                         "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # As the training program sets it (lora.main), for both runs alike: rows of changing length
    # otherwise fragment the CUDA allocator's blocks.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    main()
